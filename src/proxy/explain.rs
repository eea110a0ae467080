//! The evidence of a failure, gathered for its cause: what the failed attempt reached, a probe
//! of the failed address when one decides between causes, and the server's history; then the
//! one derivation ([`crate::cause::derive`]).

use super::context::BrokenAttempt;
use super::probe::ProbeKind;
use super::{RequestCtx, Triage};
use crate::cause::{self, CauseFinding, DeployMark, HostState, Observed, Probe, ServerPast};
use crate::config::{PeerAddr, ServerAddr};
use crate::diagnosis::{Diagnosis, Finding};
use crate::registry::HistorySnapshot;
use pingora::proxy::Session;
use std::time::SystemTime;

impl Triage {
    /// The cause of the failure `finding` of the request's last attempt, or of `broken` when the
    /// last attempt only met its aftermath (a retry refused after a connection broke
    /// mid-request: the app died, of this very request perhaps).
    pub(super) async fn explain(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        finding: &Finding,
        broken: Option<&BrokenAttempt>,
    ) -> CauseFinding {
        let (address, reused, connection_age, age) = match broken {
            Some(b) => (b.address.clone(), b.reused, b.reused_connection_age, b.age),
            None => (
                ctx.attempt.address.clone(),
                ctx.attempt.reused_connection,
                ctx.attempt.reused_connection_age,
                ctx.age(),
            ),
        };
        let upstream = ctx.upstream();
        let upstream_tls = upstream.is_some_and(|u| u.tls);
        let fastcgi_root = upstream
            .and_then(|u| u.fastcgi.as_ref())
            .map(|f| f.root.as_str());
        let probe = match (broken, &address) {
            // The retry's refusal is the probe.
            (Some(_), _) => Probe::Refused,
            // Unix sockets are not probed (yet).
            (None, None | Some(PeerAddr::Unix(_))) => Probe::NotRun,
            (None, Some(PeerAddr::Inet(address))) => {
                let fastcgi = fastcgi_root.is_some();
                match probe_kind(finding.diagnosis, upstream_tls, reused, fastcgi) {
                    Some(kind) => self.prober.probe(*address, kind).await,
                    None => Probe::NotRun,
                }
            }
        };
        let fastcgi = fastcgi_root.map(|root| {
            let attempt = ctx.attempt.fastcgi.as_deref();
            cause::FastcgiObserved {
                root,
                script_filename: attempt.map_or("", |a| a.script_filename.as_str()),
                script_on_disk: attempt.is_some_and(|a| a.script_on_disk),
                stderr: attempt.map_or(&[][..], |a| a.stderr.bytes()),
            }
        });
        let host = upstream
            .zip(ctx.attempt.server)
            .and_then(|(u, i)| u.balancer.servers.get(i))
            .and_then(|s| match &s.addr {
                ServerAddr::Host { host, .. } => Some(host.as_str()),
                ServerAddr::Ip(_) | ServerAddr::Unix(_) => None,
            });
        let route = ctx.route();
        let read_timeout = route
            .and_then(|r| r.timeouts.read)
            .or(upstream.map(|u| u.read_timeout()))
            .unwrap_or_default();
        let now = SystemTime::now();
        let history = ctx.server_history();
        let past = history.map(|h| past_of(h.snapshot(now)));
        // The deploy before the failures began: a release that has failed since its deploy
        // is still the one to roll back, however long ago that was.
        let began = past.as_ref().and_then(|p| p.failing_since).unwrap_or(now);
        let deploy = upstream
            .and_then(|u| {
                self.deploys
                    .latest(&u.name, began, ctx.state.thresholds.deploy_window)
            })
            .map(|d| DeployMark {
                version: d.version,
                time: d.time,
            });
        let sample = self.machine.latest();
        let machine = sample.at.map(|_| HostState {
            cpu_busy_percent: sample.cpu_busy_percent,
            mem_available_bytes: sample.mem_available_bytes,
            mem_total_bytes: sample.mem_total_bytes,
            disks: sample
                .disks
                .iter()
                .map(|d| (d.path.display().to_string(), d.free_bytes, d.total_bytes))
                .collect(),
        });
        // What the app's own log and process showed by now: a copy of what the evidence
        // thread read, never a read of the files.
        let app = upstream
            .and_then(|u| self.app_evidence.watched(&u.name))
            .map(|watched| watched.at_failure(now));
        let found = cause::derive(&Observed {
            diagnosis: finding.diagnosis,
            id: ctx.request.id.as_str(),
            address,
            host,
            upstream_tls,
            reused,
            connection_age,
            age,
            path: session.req_header().uri.path(),
            read_timeout,
            status: ctx.attempt.upstream_status,
            body_start: ctx.attempt.body_start.as_deref().unwrap_or_default(),
            past: past.as_ref(),
            deploy: deploy.as_ref(),
            machine: machine.as_ref(),
            probe,
            now,
            thresholds: ctx.state.thresholds,
            fastcgi,
            app: app.as_ref(),
        });
        // Counted after the derivation, so a request is not its own precedent.
        if let (Some(history), Some(age)) = (history, age) {
            if broke_before_answer(finding.diagnosis)
                || finding.diagnosis == Diagnosis::UpstreamStatus
            {
                history.record_broken(age);
            }
        }
        found
    }
}

/// The history as the cause reads it.
fn past_of(h: HistorySnapshot) -> ServerPast {
    ServerPast {
        first_seen: Some(h.first_seen),
        last_success: h.last_success,
        failing_since: h.failing_since,
        failures: h.streak,
        comebacks: h.comebacks,
        comeback_window: h.comeback_window,
        in_flight: h.in_flight,
        recent_response_times: h.recent_response_times,
        address_change: h.address_change.map(|c| (c.at, c.old, c.new)),
        broken_ages: h.broken_ages,
    }
}

/// Whether `diagnosis` is a connection that broke after the request went out, with no answer.
fn broke_before_answer(diagnosis: Diagnosis) -> bool {
    matches!(
        diagnosis,
        Diagnosis::ConnectionReset
            | Diagnosis::ConnectionClosed
            | Diagnosis::RequestSendFailed
            | Diagnosis::BodyReset
            | Diagnosis::BodyClosed
    )
}

/// Which probe decides between the causes of `diagnosis`, if any does. At a FastCGI server
/// (`fastcgi`) a FastCGI answer is expected, never a sign of the wrong protocol: a timeout asks
/// whether a worker is free (none is: the pool is exhausted), a break whether it still listens.
fn probe_kind(
    diagnosis: Diagnosis,
    upstream_tls: bool,
    reused: bool,
    fastcgi: bool,
) -> Option<ProbeKind> {
    match diagnosis {
        Diagnosis::ResponseTimeout if fastcgi => Some(ProbeKind::FastcgiWorker),
        // A new plain connection dropped before any answer: a TLS or FastCGI server closing on
        // what it cannot read looks the same as a dying app, until asked in its protocol.
        Diagnosis::ConnectionReset | Diagnosis::ConnectionClosed | Diagnosis::RequestSendFailed
            if !upstream_tls && !reused && !fastcgi =>
        {
            Some(ProbeKind::Protocol)
        }
        Diagnosis::ConnectionReset
        | Diagnosis::ConnectionClosed
        | Diagnosis::RequestSendFailed
        | Diagnosis::BodyReset
        | Diagnosis::BodyClosed => Some(ProbeKind::Listening),
        Diagnosis::InvalidResponse if !upstream_tls && !fastcgi => Some(ProbeKind::Protocol),
        Diagnosis::DnsError
        | Diagnosis::ConnectRefused
        | Diagnosis::ConnectUnreachable
        | Diagnosis::ConnectFailed
        | Diagnosis::ConnectTimeout
        | Diagnosis::SocketMissing
        | Diagnosis::SocketPermissionDenied
        | Diagnosis::SocketRefused
        | Diagnosis::SocketBacklogFull
        | Diagnosis::TlsHandshakeFailed
        | Diagnosis::TlsCertificateExpired
        | Diagnosis::TlsCertificateUntrusted
        | Diagnosis::TlsCertificateNameMismatch
        | Diagnosis::TlsUpstreamPlaintext
        | Diagnosis::UpstreamExpectsTls
        | Diagnosis::RequestSendTimeout
        | Diagnosis::ResponseTimeout
        | Diagnosis::InvalidResponse
        | Diagnosis::ResponseHeadersTooLarge
        | Diagnosis::FastcgiOverloaded
        | Diagnosis::FastcgiRejected
        | Diagnosis::BodyTimeout
        | Diagnosis::NoRoute
        | Diagnosis::NoHealthyUpstream
        | Diagnosis::RequestBodyTooLarge
        | Diagnosis::OutsideRoot
        | Diagnosis::UpgradeFailed
        | Diagnosis::UpgradeRefused
        | Diagnosis::UpstreamStatus
        | Diagnosis::ScriptNotFound
        | Diagnosis::ScriptDenied
        | Diagnosis::ClientClosed
        | Diagnosis::BadRequest
        | Diagnosis::RequestHeadersTooLarge
        | Diagnosis::ClientHeaderTimeout
        | Diagnosis::ClientBodyTimeout
        | Diagnosis::ClientSendTimeout
        | Diagnosis::InternalError => None,
    }
}
