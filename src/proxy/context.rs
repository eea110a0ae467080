//! What one request knows as it goes through the hooks: the facts of the request as a whole,
//! and those of its current attempt, which a retry replaces as a whole.

use super::routing::RouteId;
use super::upstream::Upstream;
use super::State;
use crate::cause::CauseFinding;
use crate::config::{self, PeerAddr};
use crate::diagnosis::classify::Progress;
use crate::diagnosis::Finding;
use crate::id::RequestId;
use crate::outcome::Timings;
use crate::registry::{InFlightToken, ServerHistory};
use crate::report::Attempt;
use crate::shutdown::InFlightGuard;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The facts one request accumulates as it goes through the hooks.
pub struct RequestCtx {
    /// The config this request runs under, from start to end, whatever reloads happen.
    pub(crate) state: Arc<State>,
    pub(crate) request: RequestFacts,
    /// The current attempt; a new one starts from nothing ([`RequestCtx::start_attempt`]).
    pub(crate) attempt: AttemptFacts,
    /// Counts this request as in flight until the context is dropped (a SIGTERM drain waits
    /// for it).
    _in_flight: InFlightGuard,
}

/// What holds for the whole request, across its attempts.
pub(crate) struct RequestFacts {
    pub(crate) id: RequestId,
    pub(crate) received: Instant,
    pub(crate) received_at: SystemTime,
    /// Whether this client may see detailed fields (the `[diagnosis]` policy).
    pub(crate) trusted: bool,
    pub(crate) route: Option<RouteId>,
    /// The route's upstream, by index in the state.
    pub(crate) upstream: Option<usize>,
    /// The request target the app gets when it is not the client's: the path with its
    /// dot-segments resolved, and the query (see `request_checks::PathCheck`).
    pub(crate) upstream_target: Option<String>,
    /// Whether the client asked for a protocol upgrade (WebSocket).
    pub(crate) upgrade: bool,
    /// The total timeout in force for this request, if any.
    pub(crate) total_timeout: Option<Duration>,
    /// Servers tried so far (bit i = server i), so a retry goes elsewhere.
    pub(crate) tried: u64,
    /// Attempts made: servers picked, whether or not a connection followed.
    pub(crate) attempts: u32,
    /// Every failed attempt, for the report; empty (no allocation) on success.
    pub(crate) failed_attempts: Vec<Attempt>,
    pub(crate) bytes_sent_upstream: u64,
    pub(crate) bytes_received_upstream: u64,
    /// The diagnosis, once there is one.
    pub(crate) finding: Option<Finding>,
    /// Its cause, once derived. Shared, so that the report keeps it while the access line
    /// still reads it, without a copy of its texts.
    pub(crate) cause: Option<Arc<CauseFinding>>,
    /// The first attempt that broke mid-request, if one did: when a retry then only meets the
    /// aftermath (refused: the app died of this request), the answer is about this one.
    pub(crate) broken: Option<BrokenAttempt>,
}

/// An attempt whose connection broke after the request went out, before any answer.
#[derive(Debug, Clone)]
pub(crate) struct BrokenAttempt {
    pub(crate) finding: Finding,
    pub(crate) address: Option<PeerAddr>,
    pub(crate) reused: bool,
    /// The reused connection's age (see `AttemptFacts::reused_connection_age`).
    pub(crate) reused_connection_age: Option<Duration>,
    /// How long the request had been in flight when it broke.
    pub(crate) age: Option<Duration>,
}

/// What one attempt reached: a server, a connection, an answer.
#[derive(Default)]
pub(crate) struct AttemptFacts {
    /// The index of the server, in its upstream.
    pub(crate) server: Option<usize>,
    /// The address tried: an IP address and port, or a unix socket.
    pub(crate) address: Option<PeerAddr>,
    pub(crate) progress: Progress,
    pub(crate) connect_started: Option<Instant>,
    /// TCP (and TLS) connect; absent when a pooled connection was reused.
    pub(crate) connect: Option<Duration>,
    pub(crate) reused_connection: bool,
    /// How long ago a reused pooled connection was opened (its age bounds how long the app
    /// let it idle), when its digest says.
    pub(crate) reused_connection_age: Option<Duration>,
    pub(crate) request_sent: Option<Instant>,
    /// From sending the request to the response header.
    pub(crate) response: Option<Duration>,
    /// The upstream's final status, once its response header arrived.
    pub(crate) upstream_status: Option<u16>,
    /// Counts the attempt as in flight at its server (its history) until replaced.
    pub(crate) server_in_flight: Option<InFlightToken>,
    /// The first bytes of the body of an error answer (see `upstream_response_body_peek`).
    pub(crate) body_start: Option<bytes::Bytes>,
    /// What the server said of its answer besides it, when that makes it a diagnosis of its
    /// own: php-fpm's stderr ("Primary script unknown", a PHP fatal error). `response_filter`
    /// takes it as the answer's finding.
    pub(crate) said: Option<Finding>,
    /// At a FastCGI upstream: the script and the server's stderr.
    pub(crate) fastcgi: Option<Box<FastcgiAttempt>>,
    /// The certificate a TLS server presented, when this attempt made the handshake.
    pub(crate) certificate: Option<Arc<crate::report::Certificate>>,
    /// The DNS answer the address came from, for a hostname server.
    pub(crate) dns: Option<Arc<crate::resolve::Addresses>>,
}

/// What an attempt at a FastCGI server adds to the facts.
#[derive(Debug, Default)]
pub(crate) struct FastcgiAttempt {
    /// The `SCRIPT_FILENAME` sent.
    pub(crate) script_filename: String,
    /// Whether the front controller found the script under root on triage's disk.
    pub(crate) script_on_disk: bool,
    pub(crate) stderr: crate::fastcgi::Stderr,
}

impl RequestCtx {
    pub(crate) fn new(state: Arc<State>, in_flight: InFlightGuard) -> RequestCtx {
        RequestCtx {
            _in_flight: in_flight,
            state,
            request: RequestFacts {
                id: RequestId::next(),
                received: Instant::now(),
                received_at: SystemTime::now(),
                trusted: false,
                route: None,
                upstream: None,
                upstream_target: None,
                upgrade: false,
                total_timeout: None,
                tried: 0,
                attempts: 0,
                failed_attempts: Vec::new(),
                bytes_sent_upstream: 0,
                bytes_received_upstream: 0,
                finding: None,
                cause: None,
                broken: None,
            },
            attempt: AttemptFacts::default(),
        }
    }

    /// Starts an attempt at `server`: the previous attempt's facts are gone, and the attempt
    /// is counted.
    pub(crate) fn start_attempt(&mut self, server: usize) {
        self.attempt = AttemptFacts {
            server: Some(server),
            progress: Progress::Connecting,
            ..AttemptFacts::default()
        };
        self.request.attempts += 1;
        if server < 64 {
            self.request.tried |= 1 << server;
        }
    }

    /// The request's upstream, once routed.
    pub(crate) fn upstream(&self) -> Option<&Upstream> {
        self.request
            .upstream
            .and_then(|i| self.state.upstreams.get(i))
    }

    /// The upstream's config name, or "" before routing.
    pub(crate) fn upstream_name(&self) -> &str {
        self.upstream().map_or("", |u| u.name.as_str())
    }

    /// The matched route's config.
    pub(crate) fn route(&self) -> Option<&config::Route> {
        self.state.route(self.request.route)
    }

    /// The matched route's metric label, or "" before routing.
    pub(crate) fn route_label(&self) -> &str {
        self.request
            .route
            .and_then(|r| self.state.route_labels.get(r))
            .map_or("", |l| l.as_str())
    }

    /// The history of the current attempt's server.
    pub(crate) fn server_history(&self) -> Option<&ServerHistory> {
        self.state
            .server_history(self.request.upstream?, self.attempt.server?)
    }

    /// Records the failure of the current attempt, for the report and in its server's
    /// history.
    pub(crate) fn record_attempt(&mut self, finding: Finding) {
        if let Some(history) = self.server_history() {
            history.record_failure(finding.diagnosis);
        }
        self.request.failed_attempts.push(Attempt {
            address: self.attempt.address.clone(),
            diagnosis: Some(finding.diagnosis),
            detail: finding.detail,
            reused_connection: self.attempt.reused_connection,
            connect: self.attempt.connect,
            response: self.attempt.response,
            certificate: self.attempt.certificate.clone(),
            dns: self.attempt.dns.clone(),
        });
    }

    /// How long the current attempt's request has been at the server.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.attempt.request_sent.map(|t| t.elapsed())
    }

    /// The current attempt's timings, and the request's so far.
    pub(crate) fn timings(&self) -> Timings {
        self.timings_at(Instant::now())
    }

    /// The current attempt's timings, and the request's until `now` (a clock reading the
    /// caller has made anyway).
    pub(crate) fn timings_at(&self, now: Instant) -> Timings {
        Timings {
            connect: self.attempt.connect,
            response: self.attempt.response,
            total: now.saturating_duration_since(self.request.received),
        }
    }

    /// When the current attempt's final response header arrived: its request's sending plus
    /// the response time measured then.
    pub(crate) fn response_arrived(&self) -> Option<Instant> {
        let sent = self.attempt.request_sent?;
        sent.checked_add(self.attempt.response?)
    }

    /// The wall-clock time of `at`, a reading of the monotonic clock during this request:
    /// the request's wall-clock reading moved on by the monotonic time since, so that a hook
    /// needing both reads the clock once.
    pub(crate) fn wall_time(&self, at: Instant) -> SystemTime {
        self.request.received_at + at.saturating_duration_since(self.request.received)
    }
}
