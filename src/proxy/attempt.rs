//! What happens to one attempt at a server: its failure classified, counted against the
//! server when the server caused it, and the answers triage gives without an attempt (a
//! server held off after a refusal, none in rotation), and what an error answer's body may say
//! about the attempt.

use super::upstream::Upstream;
use super::{balancer, client_stream_reset, context, socket_file, RequestCtx, Triage};
use crate::config::{PeerAddr, ServerAddr};
use crate::diagnosis::{classify, Diagnosis, Facts, Finding, LocalFailure};
use pingora::proxy::Session;
use pingora::{Error, ErrorSource};

impl Triage {
    /// The diagnosis of a failed attempt: what the error carries if triage decided it
    /// ([`LocalFailure`]), else the classifier's reading of the error and the attempt's facts;
    /// a unix socket's connect failure with what its path shows.
    pub(super) fn classify_attempt(
        &self,
        error: &Error,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> Finding {
        // Only a failure on the client's side can be its stream reset: the upstream's failures
        // (a failure storm) skip the look at the h2 stream and its lock.
        let client_reset = match error.esource() {
            ErrorSource::Downstream => client_stream_reset(session),
            ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => None,
        };
        let unix_socket = match &ctx.attempt.address {
            Some(PeerAddr::Unix(path)) => Some(path),
            Some(PeerAddr::Inet(_)) | None => None,
        };
        let finding = classify(&Facts {
            error,
            progress: ctx.attempt.progress,
            upstream_tls: ctx.upstream().is_some_and(|u| u.tls),
            unix_socket: unix_socket.is_some(),
            upgrade: ctx.request.upgrade,
            request_unsent: !session.is_body_done(),
            client_reset,
        });
        match unix_socket {
            Some(path) => socket_file::explained(finding, path),
            None => finding,
        }
    }

    /// The only servers left refused a connection moments ago: the request is answered
    /// `connect_refused` (`socket_refused` at a unix socket) from that refusal, without connecting again (`refused_holdoff`).
    /// No attempt is made, so none is counted against the server or shown in the attempts.
    pub(super) fn answer_held_off(
        ctx: &mut RequestCtx,
        upstream: &Upstream,
        index: usize,
    ) -> Box<Error> {
        let server = &upstream.balancer.servers[index];
        let (address, refused) = match &server.addr {
            ServerAddr::Ip(address) => (Some(PeerAddr::Inet(*address)), Diagnosis::ConnectRefused),
            ServerAddr::Host { .. } => (None, Diagnosis::ConnectRefused),
            ServerAddr::Unix(path) => {
                (Some(PeerAddr::Unix(path.clone())), Diagnosis::SocketRefused)
            }
        };
        // What an earlier attempt of this request reached is not this answer's.
        ctx.attempt = context::AttemptFacts {
            // Not an attempt (none is counted), but the answer is about this server: its
            // history gives the cause.
            server: Some(index),
            address,
            ..context::AttemptFacts::default()
        };
        let (ago, left) = server.refusal().unwrap_or_default();
        LocalFailure::error(
            refused,
            format!(
                "not connected: {} refused a connection {} ms ago; the next request in {} ms connects again",
                server.label,
                ago.as_millis(),
                left.as_millis()
            ),
        )
    }

    /// No server of the upstream is in rotation: `no_healthy_upstream`, saying why each is out.
    pub(super) fn no_healthy_server(upstream: &Upstream) -> Box<Error> {
        let detail = upstream
            .balancer
            .servers
            .iter()
            .map(|server| {
                let why = match server.last_check.load_full() {
                    Some(check) if !server.is_checked_up() => format!(
                        "failed health checks ({}{}{})",
                        check.diagnosis.map_or("", |d| d.token()),
                        if check.detail.is_empty() { "" } else { ": " },
                        check.detail
                    ),
                    _ if server.is_ejected() => "ejected after repeated failures".to_owned(),
                    _ => "unavailable".to_owned(),
                };
                format!("{}: {why}", server.label)
            })
            .collect::<Vec<_>>()
            .join("; ");
        LocalFailure::error(Diagnosis::NoHealthyUpstream, detail)
    }

    /// Counts a failed attempt against its server (passive ejection) when the server caused it,
    /// logging an ejection. Nothing a client does counts.
    pub(super) fn count_server_failure(&self, ctx: &RequestCtx, diagnosis: Diagnosis) {
        if !diagnosis.counts_against_upstream() {
            return;
        }
        let (Some(upstream), Some(server)) = (ctx.upstream(), ctx.attempt.server) else {
            return;
        };
        if upstream.balancer.record_failure(server) == balancer::Transition::WentDown {
            let label = upstream
                .balancer
                .servers
                .get(server)
                .map_or("", |s| s.label.as_str());
            tracing::warn!(upstream = %upstream.name, server = label, "server ejected after repeated failures");
        }
    }
}

/// How much of an error answer's body is read before its header goes on.
pub(super) const BODY_START: usize = 4096;

/// What servers answer, in a 400, to plain HTTP on a TLS port: nginx, then Go's net/http.
pub(super) fn expects_tls(body: &[u8]) -> Option<&'static str> {
    const SAYINGS: [&str; 2] = [
        "The plain HTTP request was sent to HTTPS port",
        "Client sent an HTTP request to an HTTPS server",
    ];
    let text = String::from_utf8_lossy(body);
    SAYINGS.into_iter().find(|s| text.contains(s))
}
