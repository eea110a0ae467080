//! The limits on client (downstream) connections: `[client]` turned into the limits Pingora
//! enforces (vendored patches: see `vendor/pingora-core/PATCHES.md` 3 and 4), the cap on open
//! connections, and the count of the connections closed for a limit.
//!
//! Every limit a client can reach ends its connection. What is answered (408, 431) is answered
//! by the proxy (`invalid_request`, `fail_to_proxy`), with a diagnosis, an access line and a
//! report. What is closed with nothing to answer (a connection that sent nothing, an idle
//! keep-alive or HTTP/2 connection, one over `max_connections`) has no request for the access
//! log to show, so it is logged here, rate-limited per reason. Both are counted in
//! `triage_client_connections_closed_total{reason}`. None of it touches an upstream: these
//! closes happen before a request is routed, or are diagnoses of the client's fault, which
//! never count towards passive ejection.

use crate::accesslog::RateLimiter;
use crate::config::ClientSettings;
use crate::diagnosis::taxonomy::taxonomy;
use crate::diagnosis::Diagnosis;
use crate::metrics::Metrics;
use pingora::apps::{ClientClose, ClientCloseObserver, ClientLimits};
use pingora::services::listening::{ConnectionLimit, ConnectionPermit};
use prometheus::{IntCounter, IntGauge};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

taxonomy! {
    /// Why a client connection was closed for a `[client]` limit: the `reason` label of
    /// `triage_client_connections_closed_total`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum CloseReason {
        unknown: UnknownCloseReason,
        /// No complete request head within `header_timeout` (408 when part of it came).
        HeaderTimeout => "header_timeout",
        /// No request body data for `body_timeout` (408).
        BodyTimeout => "body_timeout",
        /// Idle between requests for `keepalive_timeout` (HTTP/2: after a GOAWAY).
        KeepaliveTimeout => "keepalive_timeout",
        /// The response unread for `send_timeout`.
        SendTimeout => "send_timeout",
        /// A request head over `max_header_bytes` (431).
        HeadersTooLarge => "headers_too_large",
        /// Accepted beyond `max_connections`, closed at once.
        MaxConnections => "max_connections",
    }
}

impl CloseReason {
    /// The limit a request with this diagnosis had its connection closed for, if any.
    pub const fn of(diagnosis: Diagnosis) -> Option<CloseReason> {
        match diagnosis {
            Diagnosis::ClientHeaderTimeout => Some(CloseReason::HeaderTimeout),
            Diagnosis::ClientBodyTimeout => Some(CloseReason::BodyTimeout),
            Diagnosis::ClientSendTimeout => Some(CloseReason::SendTimeout),
            Diagnosis::RequestHeadersTooLarge => Some(CloseReason::HeadersTooLarge),
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
            | Diagnosis::ConnectionReset
            | Diagnosis::ConnectionClosed
            | Diagnosis::RequestSendFailed
            | Diagnosis::RequestSendTimeout
            | Diagnosis::ResponseTimeout
            | Diagnosis::InvalidResponse
            | Diagnosis::ResponseHeadersTooLarge
            | Diagnosis::FastcgiOverloaded
            | Diagnosis::FastcgiRejected
            | Diagnosis::OutsideRoot
            | Diagnosis::ScriptNotFound
            | Diagnosis::ScriptDenied
            | Diagnosis::BodyReset
            | Diagnosis::BodyClosed
            | Diagnosis::BodyTimeout
            | Diagnosis::NoRoute
            | Diagnosis::NoHealthyUpstream
            | Diagnosis::RequestBodyTooLarge
            | Diagnosis::UpgradeFailed
            | Diagnosis::UpgradeRefused
            | Diagnosis::UpstreamStatus
            | Diagnosis::ClientClosed
            | Diagnosis::BadRequest
            | Diagnosis::InternalError => None,
        }
    }

    /// What the log line of a close with nothing answered says.
    const fn explanation(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => {
                "client connection closed: no request head within [client] header_timeout"
            }
            CloseReason::BodyTimeout => {
                "client connection closed: no request body within [client] body_timeout"
            }
            CloseReason::KeepaliveTimeout => {
                "client connection closed: idle for [client] keepalive_timeout"
            }
            CloseReason::SendTimeout => {
                "client connection closed: response unread for [client] send_timeout"
            }
            CloseReason::HeadersTooLarge => {
                "client connection closed: request head over [client] max_header_bytes"
            }
            CloseReason::MaxConnections => {
                "client connection refused: [client] max_connections are open"
            }
        }
    }
}

/// The open client connections, shared by the accept loops and their permits.
struct Open {
    count: AtomicUsize,
    gauge: IntGauge,
}

/// Held by each admitted connection; frees its slot when the connection ends.
struct Permit(Arc<Open>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.dec();
    }
}

/// The client connections of the process: the cap on how many are open, and the count (and
/// rate-limited log) of those closed for a limit.
pub struct ClientConnections {
    settings: ClientSettings,
    open: Arc<Open>,
    closed: [IntCounter; CloseReason::COUNT],
    /// Each reason has its own budget, so a flood of one (idle keep-alive closes) cannot hide
    /// another.
    log_budget: [RateLimiter; CloseReason::COUNT],
}

impl ClientConnections {
    /// `lines_per_second`: each reason's log budget (`[log] error_lines_per_second`).
    pub fn new(settings: &ClientSettings, metrics: &Metrics, lines_per_second: u32) -> Self {
        ClientConnections {
            settings: settings.clone(),
            open: Arc::new(Open {
                count: AtomicUsize::new(0),
                gauge: metrics.client_connections(),
            }),
            closed: metrics.client_connections_closed(),
            log_budget: CloseReason::ALL.map(|_| RateLimiter::new(lines_per_second)),
        }
    }

    /// The limits Pingora enforces on every client connection, reporting to `self` the
    /// connections it closes with nothing sent.
    pub fn limits(self: &Arc<Self>) -> Arc<ClientLimits> {
        let settings = &self.settings;
        Arc::new(ClientLimits {
            header_timeout: settings.header_timeout,
            body_timeout: settings.body_timeout,
            keepalive_timeout: settings.keepalive_timeout,
            send_timeout: settings.send_timeout,
            max_header_bytes: settings.max_header_bytes,
            observer: Some(Arc::clone(self) as Arc<dyn ClientCloseObserver>),
        })
    }

    /// Counts a connection closed for `reason` whose request the access log shows.
    pub fn count(&self, reason: CloseReason) {
        self.closed[reason].inc();
    }

    /// Counts, and logs within the reason's budget, a connection closed for `reason` that no
    /// access line shows. Idle keep-alive connections closing is routine: logged at debug.
    fn closed_unseen(&self, reason: CloseReason) {
        self.count(reason);
        let Some(suppressed) = self.log_budget[reason].admit() else {
            return;
        };
        let message = reason.explanation();
        match reason {
            CloseReason::KeepaliveTimeout => {
                tracing::debug!(reason = reason.token(), suppressed, "{message}");
            }
            CloseReason::HeaderTimeout
            | CloseReason::BodyTimeout
            | CloseReason::SendTimeout
            | CloseReason::HeadersTooLarge => {
                tracing::warn!(reason = reason.token(), suppressed, "{message}");
            }
            CloseReason::MaxConnections => {
                let max = self.settings.max_connections;
                tracing::warn!(reason = reason.token(), max, suppressed, "{message}");
            }
        }
    }
}

impl ClientCloseObserver for ClientConnections {
    fn closed(&self, why: ClientClose) {
        self.closed_unseen(match why {
            ClientClose::HeaderTimeout => CloseReason::HeaderTimeout,
            ClientClose::KeepaliveTimeout => CloseReason::KeepaliveTimeout,
        });
    }
}

impl ConnectionLimit for ClientConnections {
    /// A slot if fewer than `max_connections` are open, else the connection is refused (closed
    /// as soon as accepted, as nginx closes one it has no `worker_connections` slot for).
    fn admit(&self) -> Option<ConnectionPermit> {
        let open = &self.open;
        let before = open.count.fetch_add(1, Ordering::Relaxed);
        if before >= self.settings.max_connections {
            open.count.fetch_sub(1, Ordering::Relaxed);
            self.closed_unseen(CloseReason::MaxConnections);
            return None;
        }
        open.gauge.inc();
        Some(Box::new(Permit(Arc::clone(open))))
    }
}

/// The open files a process needs for `max_connections` client connections: one per client
/// connection, one more to the upstream while its request runs, and room for the listeners,
/// the pools of idle upstream connections, the log and the admin listener.
pub fn files_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(1024)
}

/// Raises the process's soft open-file limit (`RLIMIT_NOFILE`) to what `max_connections`
/// needs, up to the hard limit, as Go's runtime and nginx's `worker_rlimit_nofile` do: the
/// usual soft limit of 1024 would make `accept` fail long before `max_connections`. Returns a
/// warning when even the hard limit is lower, or the limit cannot be read or set.
pub fn raise_file_limit(max_connections: usize) -> Option<String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let needed = files_needed(max_connections);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => return Some(format!("cannot read the open-file limit: {e}")),
    };
    if soft == RLIM_INFINITY || soft >= needed {
        return None;
    }
    let raised = if hard == RLIM_INFINITY {
        needed
    } else {
        needed.min(hard)
    };
    if raised > soft {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
            return Some(format!(
                "cannot raise the open-file limit from {soft} to {raised}: {e}"
            ));
        }
    }
    (raised < needed).then(|| {
        format!(
            "the open-file limit is {raised} (hard limit {hard}), below the {needed} that \
             [client] max_connections = {max_connections} needs: connections will fail to be \
             accepted before that; raise LimitNOFILE (systemd) or ulimit -n, or lower \
             max_connections"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(max_connections: usize) -> (Arc<ClientConnections>, Metrics) {
        let metrics = Metrics::new("test").unwrap();
        let settings = ClientSettings {
            max_connections,
            ..ClientSettings::default()
        };
        (
            Arc::new(ClientConnections::new(&settings, &metrics, 10)),
            metrics,
        )
    }

    /// Beyond `max_connections` a connection gets no permit and is counted; a permit dropped
    /// frees its slot, and the gauge follows.
    #[test]
    fn the_cap_admits_up_to_max_and_frees_slots() {
        let (clients, metrics) = connections(2);
        let first = clients.admit().expect("first");
        let second = clients.admit().expect("second");
        assert!(clients.admit().is_none());
        assert_eq!(clients.closed[CloseReason::MaxConnections].get(), 1);
        assert_eq!(metrics.client_connections().get(), 2);
        drop(first);
        assert_eq!(metrics.client_connections().get(), 1);
        let third = clients.admit().expect("a slot was freed");
        drop((second, third));
        assert_eq!(metrics.client_connections().get(), 0);
        assert_eq!(clients.open.count.load(Ordering::Relaxed), 0);
    }

    /// Pingora's reports and the diagnosed closes count under the reason of their limit.
    #[test]
    fn closes_count_by_reason() {
        let (clients, _metrics) = connections(1);
        clients.closed(ClientClose::KeepaliveTimeout);
        clients.closed(ClientClose::HeaderTimeout);
        for d in Diagnosis::ALL {
            if let Some(reason) = CloseReason::of(d) {
                clients.count(reason);
            }
        }
        let count = |reason: CloseReason| clients.closed[reason].get();
        assert_eq!(count(CloseReason::KeepaliveTimeout), 1);
        assert_eq!(count(CloseReason::HeaderTimeout), 2);
        assert_eq!(count(CloseReason::BodyTimeout), 1);
        assert_eq!(count(CloseReason::SendTimeout), 1);
        assert_eq!(count(CloseReason::HeadersTooLarge), 1);
        assert_eq!(count(CloseReason::MaxConnections), 0);
    }

    /// The limit is raised to what a small cap needs (the hard limit allows it anywhere the
    /// tests run), and then left as it is.
    #[test]
    fn the_file_limit_is_raised_to_what_max_connections_needs() {
        use nix::sys::resource::{getrlimit, Resource};
        assert_eq!(raise_file_limit(100), None);
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(soft >= files_needed(100));
        assert_eq!(raise_file_limit(1), None);
    }

    /// Only the client's own diagnoses close for a client limit.
    #[test]
    fn only_client_diagnoses_have_a_close_reason() {
        for d in Diagnosis::ALL {
            if CloseReason::of(d).is_some() {
                assert_eq!(d.fault(), crate::diagnosis::Fault::Client, "{}", d.token());
            }
        }
    }
}
