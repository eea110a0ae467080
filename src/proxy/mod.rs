//! The proxy: Pingora's `ProxyHttp` hooks, each recording what it saw into the request context.
//!
//! Data flows one way. The hooks only record facts ([`RequestCtx`]): the route, the address
//! tried, how far the request got, timings, the upstream's status. A failure triage decides
//! itself travels as the error's [`LocalFailure`] cause. When Pingora reports a failure
//! (`fail_to_proxy`), the classifier turns the error and those facts into a diagnosis; the
//! response ([`respond`]) and the records of the finished request ([`finish`]) only read it.

mod attempt;
pub mod balancer;
mod context;
mod explain;
mod fastcgi;
mod finish;
pub mod forwarding;
pub mod health;
mod probe;
pub mod request_checks;
mod respond;
pub mod routing;
mod socket_file;
mod state;
pub mod upstream;

pub use context::RequestCtx;
pub use state::State;

use crate::accesslog::AccessLog;
use crate::app_evidence::Watcher;
use crate::client::ClientConnections;
use crate::config::{self, BootConfig, PeerAddr, ServerAddr};
use crate::deploys::DeployLog;
use crate::diagnosis::classify::Progress;
use crate::diagnosis::{ClientOutcome, Diagnosis, Finding, LocalFailure};
use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::render::{self, Renderer};
use crate::report::{Redaction, ReportStore};
use crate::shutdown::InFlight;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use attempt::{expects_tls, BODY_START};
use bytes::Bytes;
use pingora::apps::HeadFailure;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The triage proxy.
pub struct Triage {
    state: Arc<ArcSwap<State>>,
    metrics: Arc<Metrics>,
    reports: Arc<ReportStore>,
    /// The deploy markers, which a failure soon after one names.
    deploys: Arc<DeployLog>,
    /// The machine, sampled in the background: evidence for causes and reports.
    machine: Arc<Machine>,
    /// Each upstream's own log and process, gathered in the background.
    app_evidence: Arc<Watcher>,
    /// Each upstream's last hour and its incidents, for `/incidents`.
    incidents: Arc<crate::incidents::Incidents>,
    /// Which request header values reports keep (`[reports] keep_headers`).
    redaction: Redaction,
    access_log: AccessLog,
    renderer: Renderer,
    /// Sets the forwarding headers on each request going upstream.
    forwarding: forwarding::Forwarding,
    in_flight: Arc<InFlight>,
    /// Counts the connections closed for a `[client]` limit.
    clients: Arc<ClientConnections>,
    /// Where failure reports are linked, if the ring keeps any (fixed at start, like the ring).
    report_url: Option<String>,
    /// The probes of failed addresses, and their last results.
    prober: probe::Prober,
    /// The log lines of what FastCGI servers write to stderr, as bounded as error lines.
    fastcgi_stderr_lines: crate::accesslog::RateLimiter,
}

/// What the proxy records into and reads from for the life of the process, whatever reloads
/// happen: created once at start (`server.rs`) and shared with the admin listener.
pub struct Services {
    pub metrics: Arc<Metrics>,
    pub reports: Arc<ReportStore>,
    pub deploys: Arc<DeployLog>,
    pub machine: Arc<Machine>,
    pub app_evidence: Arc<Watcher>,
    pub incidents: Arc<crate::incidents::Incidents>,
    pub in_flight: Arc<InFlight>,
    pub clients: Arc<ClientConnections>,
    /// Where the text access lines go, batched; the process's exit writes what is left.
    pub access_lines: Arc<crate::accesslog::batches::Batches>,
}

impl Triage {
    /// `state` is shared with the reloader, which swaps in a new one on a valid reload; `boot`
    /// gives what stays as the process started: the access log, the report link and what
    /// reports keep.
    pub fn new(state: Arc<ArcSwap<State>>, services: Services, boot: &BootConfig) -> Triage {
        let log = &boot.log;
        let Services {
            metrics,
            reports,
            deploys,
            machine,
            app_evidence,
            incidents,
            in_flight,
            clients,
            access_lines,
        } = services;
        Triage {
            state,
            metrics,
            reports,
            deploys,
            machine,
            app_evidence,
            incidents,
            redaction: Redaction::new(&boot.reports.keep_headers),
            access_log: AccessLog::new(
                log.format.clone(),
                log.access,
                log.error_lines_per_second,
                access_lines,
            ),
            renderer: Renderer::new(),
            forwarding: forwarding::Forwarding::new(),
            in_flight,
            clients,
            report_url: boot.report_url(),
            prober: probe::Prober::default(),
            fastcgi_stderr_lines: crate::accesslog::RateLimiter::new(log.error_lines_per_second),
        }
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The reason the client reset its HTTP/2 stream with, if it did. The stream is polled once,
/// never waited on: Pingora keeps only the text of a reset it saw while waiting for the
/// upstream, and the stream still holds the typed reason.
fn client_stream_reset(session: &mut Session) -> Option<h2::Reason> {
    let closed = session.as_downstream_mut().watch_h2_stream_close()?;
    let mut closed = std::pin::pin!(closed);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match closed.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(reason)) => Some(reason),
        std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => None,
    }
}

/// The host a request is for: the authority of an absolute URI, else the `Host` header.
fn request_host(session: &Session) -> Option<&str> {
    let req = session.req_header();
    req.uri.host().or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

#[async_trait]
impl ProxyHttp for Triage {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.load_full(), self.in_flight.enter())
    }

    /// No downstream modules. Pingora's default adds its response-compression module, disabled,
    /// which still runs on every request (a context allocated, its header and body filters
    /// called: about 900 instructions); triage compresses nothing and passes the app's own
    /// `Content-Encoding` through.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// A request whose head Pingora could not read: not valid HTTP (`400 bad_request`), over
    /// `[client] max_header_bytes` (`431 request_headers_too_large`) or not complete within
    /// `[client] header_timeout` (`408 client_header_timeout`). Answered with triage's own page
    /// and headers (HTML: without a parsed head there is no `Accept`), counted and logged like
    /// any other failure, instead of Pingora's bare answer that nobody saw.
    async fn invalid_request(
        &self,
        error: &Error,
        failure: HeadFailure,
        client: Option<&pingora::protocols::l4::socket::SocketAddr>,
    ) -> Option<(ResponseHeader, Bytes)> {
        self.answer_unparsed(error, failure, client)
    }

    /// Drops the client's own `X-Diagnosis-*` headers, decides disclosure, checks the request
    /// (`request_checks`: what fails is answered here, 400 `bad_request`) and routes it on its
    /// normalized path. A request no route matches is answered here (404 `no_route`), keeping
    /// the connection alive.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        for name in render::reserved_headers(&session.req_header().headers) {
            session.req_header_mut().remove_header(&name);
        }
        ctx.request.trusted = ctx.state.disclosure.shows_detail(client_ip(session));
        let path_check = match request_checks::check_request(session.req_header_mut()) {
            Ok(path_check) => path_check,
            Err(refusal) => {
                self.refuse(session, ctx, refusal).await;
                return Ok(true);
            }
        };
        ctx.request.upstream_target = path_check.upstream_target(session.req_header().uri.query());
        let path = path_check.matching(session.req_header().uri.path());
        ctx.request.upgrade = session.is_upgrade_req();
        let Some(route) = ctx.state.routes.find(request_host(session), path) else {
            let finding = Finding {
                diagnosis: Diagnosis::NoRoute,
                detail: String::new(),
            };
            self.answer_early(session, ctx, finding, http::StatusCode::NOT_FOUND, true)
                .await;
            return Ok(true);
        };
        ctx.request.route = Some(route);
        let Some(limit) = ctx.route().map(|r| r.max_body_size) else {
            return Ok(false);
        };
        ctx.request.upstream = ctx.route().map(|r| r.upstream);
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(declared) if declared > limit => {
                let finding = Finding {
                    diagnosis: Diagnosis::RequestBodyTooLarge,
                    detail: format!("Content-Length {declared} > max_body_size {limit}"),
                };
                // The body is not read: the connection cannot be reused.
                let status = http::StatusCode::PAYLOAD_TOO_LARGE;
                self.answer_early(session, ctx, finding, status, false)
                    .await;
                Ok(true)
            }
            // An upstream that speaks FastCGI is served here, not by Pingora's HTTP proxy.
            Some(_) | None => self.serve_fastcgi(session, ctx, &path_check).await,
        }
    }

    /// Picks the next available server of the route's upstream (one not tried yet by this
    /// request) and resolves it without blocking: no server in rotation ends the request with
    /// `no_healthy_upstream`, a hostname that does not resolve with `dns_error`, never a panic.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let state = Arc::clone(&ctx.state);
        let Some(upstream) = ctx.request.upstream.and_then(|i| state.upstreams.get(i)) else {
            return Error::e_explain(InternalError, "request has no upstream");
        };
        if ctx.request.attempts == 0 {
            // The second it was received in: the clock was read then.
            upstream.count_request(crate::window::second_of(ctx.request.received_at));
        }
        let Some(index) = upstream.balancer.pick(ctx.request.tried) else {
            return Err(match upstream.balancer.held_off() {
                Some(index) => Self::answer_held_off(ctx, upstream, index),
                None => Self::no_healthy_server(upstream),
            });
        };
        ctx.start_attempt(index);
        let server = &upstream.balancer.servers[index];
        ctx.attempt.server_in_flight = Some(server.history.request_started());
        let address = match &server.addr {
            ServerAddr::Ip(address) => PeerAddr::Inet(*address),
            ServerAddr::Unix(path) => PeerAddr::Unix(path.clone()),
            ServerAddr::Host { host, port } => match state.resolver.addresses(host).await {
                Ok(found) => {
                    server.history.record_address(&found.ips);
                    let ip = found.ips[(ctx.request.attempts as usize - 1) % found.ips.len()];
                    ctx.attempt.dns = Some(found);
                    PeerAddr::Inet(SocketAddr::new(ip, *port))
                }
                Err(reason) => {
                    let finding = Finding {
                        diagnosis: Diagnosis::DnsError,
                        detail: reason,
                    };
                    ctx.record_attempt(finding.clone());
                    return Err(LocalFailure::error(finding.diagnosis, finding.detail));
                }
            },
        };
        let no_override = config::RouteTimeouts::default();
        let timeouts = state
            .route(ctx.request.route)
            .map_or(&no_override, |r| &r.timeouts);
        ctx.request.total_timeout = timeouts.total.or(upstream.total_timeout);
        let total_left = ctx.request.total_timeout.map(|total| {
            total
                .saturating_sub(ctx.request.received.elapsed())
                .max(Duration::from_millis(1))
        });
        let peer = upstream.peer(&server.addr, &address, timeouts, total_left);
        ctx.attempt.address = Some(address);
        ctx.attempt.connect_started = Some(Instant::now());
        Ok(Box::new(peer?))
    }

    /// The connection (and TLS) is up: the request is about to be sent.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.attempt.progress = Progress::Connected;
        ctx.attempt.reused_connection = reused;
        if reused {
            // The stream keeps the digest of its connect: its age is how long the app has had
            // it, an upper bound on how long the app let it idle. Measured to when the attempt
            // asked for a connection (the clock was read then): the pool handed this one over
            // moments later.
            let asked = ctx.attempt.connect_started.map(|at| ctx.wall_time(at));
            ctx.attempt.reused_connection_age = digest
                .and_then(|d| d.timing_digest.first())
                .and_then(|t| t.as_ref())
                .zip(asked)
                .and_then(|(t, asked)| asked.duration_since(t.established_ts).ok());
        } else {
            ctx.attempt.connect = ctx.attempt.connect_started.map(|t| t.elapsed());
            // A new TLS connection: the certificate the server presented, for the expiry
            // gauge an alert watches weeks before it turns into a handshake failure.
            // Its details go into the report of a failure on this connection.
            let peer = digest
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|tls| tls.peer_certificate.as_ref());
            if let Some(peer) = peer {
                if let (Some(upstream), Some(server)) = (ctx.request.upstream, ctx.attempt.server) {
                    ctx.state
                        .handles
                        .set_certificate_expiry(upstream, server, peer.not_after);
                }
                ctx.attempt.certificate = Some(Arc::new(crate::report::Certificate::of(peer)));
            }
        }
        Ok(())
    }

    /// Adds the forwarding headers apps expect (as nginx's usual `proxy_set_header` lines),
    /// rewrites `Host` when the upstream says so, and marks when the request leaves, to time
    /// the answer. Hop-by-hop headers are already removed by Pingora's upstream request policy.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.forwarding.add(
            upstream_request,
            client_ip(session),
            forwarding::scheme_of(session),
            ctx.request.id,
        )?;
        if let Some(host) = ctx.upstream().and_then(|u| u.host_header.as_deref()) {
            upstream_request.insert_header(http::header::HOST, host)?;
        }
        if let Some(target) = &ctx.request.upstream_target {
            upstream_request.set_raw_path(target.as_bytes())?;
        }
        ctx.attempt.request_sent = Some(Instant::now());
        Ok(())
    }

    /// An error answer's body may say why (a database error, "plain HTTP request was sent to
    /// HTTPS port"): its first bytes are read before the header goes on.
    fn upstream_response_body_peek(
        &self,
        upstream_response: &ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> usize {
        let status = upstream_response.status;
        if status.is_server_error() || status == http::StatusCode::BAD_REQUEST {
            BODY_START
        } else {
            0
        }
    }

    /// Keeps the start of an error answer's body for the cause. A 400 that says the port
    /// expects TLS is no client error: it fails the attempt as `upstream_expects_tls`.
    async fn upstream_response_body_start(
        &self,
        _session: &mut Session,
        upstream_response: &ResponseHeader,
        body_start: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.attempt.body_start = Some(Bytes::copy_from_slice(body_start));
        if upstream_response.status == http::StatusCode::BAD_REQUEST {
            if let Some(said) = expects_tls(body_start) {
                return Err(LocalFailure::error(
                    Diagnosis::UpstreamExpectsTls,
                    format!("the upstream answered 400: \"{said}\""),
                ));
            }
        }
        Ok(())
    }

    /// The upstream's final response header arrived.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        ctx.attempt.progress = Progress::ResponseHeaders;
        ctx.attempt.upstream_status = Some(upstream_response.status.as_u16());
        // One clock reading for the response time, the server's history and (unless the
        // body's start is read first) the Server-Timing total.
        let now = Instant::now();
        ctx.attempt.response = ctx
            .attempt
            .request_sent
            .map(|t| now.saturating_duration_since(t));
        // A final answer (or a protocol switch): the server works.
        if let (Some(upstream), Some(server)) = (ctx.upstream(), ctx.attempt.server) {
            let status = upstream_response.status.as_u16();
            let at = ctx.wall_time(now);
            upstream
                .balancer
                .record_success(server, status, ctx.attempt.response, at);
        }
        Ok(())
    }

    /// Adds the id and source to every proxied response, and the `upstream_status` diagnosis
    /// when the app itself answered 5xx: the status and body pass through untouched.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status;
        if status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(());
        }
        let said = ctx.attempt.said.take();
        let diagnosis = if ctx.request.upgrade && status != http::StatusCode::SWITCHING_PROTOCOLS {
            Some(Diagnosis::UpgradeRefused)
        } else if let Some(said) = &said {
            Some(said.diagnosis)
        } else if status.is_server_error() {
            Some(Diagnosis::UpstreamStatus)
        } else {
            None
        };
        ctx.request.finding = diagnosis.map(|diagnosis| Finding {
            diagnosis,
            detail: said.map(|s| s.detail).unwrap_or_default(),
        });
        if let Some(finding) = &ctx.request.finding {
            ctx.request.cause = Some(Arc::new(self.explain(session, ctx, finding, None).await));
        }
        // The response header arrived just now, unless the body's start was awaited since.
        let now = match (ctx.response_arrived(), &ctx.attempt.body_start) {
            (Some(at), None) => at,
            _ => Instant::now(),
        };
        let disclosed = self.disclosed(ctx, "", now);
        self.renderer.decorate_upstream_response(
            upstream_response,
            ctx.request.id,
            diagnosis,
            ctx.request.attempts,
            disclosed.as_ref(),
            ctx.request.cause.as_deref(),
        )?;
        ctx.attempt.progress = Progress::ResponseStarted;
        Ok(())
    }

    /// Counts the request body bytes sent upstream, for the report, and ends a body that grows
    /// past the route's `max_body_size` (413 `request_body_too_large`).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.request.bytes_sent_upstream += chunk.len() as u64;
            let limit = ctx.route().map_or(u64::MAX, |r| r.max_body_size);
            if ctx.request.bytes_sent_upstream > limit {
                return Err(LocalFailure::error(
                    Diagnosis::RequestBodyTooLarge,
                    format!("body larger than max_body_size {limit}"),
                ));
            }
        }
        Ok(())
    }

    /// Counts the response body bytes received from upstream, for the report.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.request.bytes_received_upstream += chunk.len() as u64;
        }
        if let Some(total) = ctx.request.total_timeout {
            if ctx.request.received.elapsed() > total {
                let mut e = Error::explain(
                    ReadTimedout,
                    format!("total_timeout {total:?} exceeded while reading body"),
                );
                e.as_up();
                return Err(e);
            }
        }
        Ok(None)
    }

    /// A connect (or TLS) failure: recorded as an attempt; Pingora decides the retry.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        let finding = self.classify_attempt(&e, session, ctx);
        let diagnosis = finding.diagnosis;
        if matches!(
            diagnosis,
            Diagnosis::ConnectRefused | Diagnosis::SocketRefused
        ) {
            if let (Some(upstream), Some(server)) = (ctx.upstream(), ctx.attempt.server) {
                upstream.balancer.record_refused(server);
            }
        }
        ctx.record_attempt(finding);
        self.count_server_failure(ctx, diagnosis);
        let mut e = e;
        // Nothing reached the app: trying another server is safe for any method, within the
        // upstream's retry count and budget.
        let retry = ctx.upstream().is_some_and(|u| {
            ctx.request.attempts <= u.retries
                && u.balancer.has_untried(ctx.request.tried)
                && u.allow_retry()
        });
        e.set_retry(retry);
        e
    }

    /// A failure on an established connection: recorded as an attempt. The retry policy is
    /// Pingora's default (only idempotent requests whose body is still buffered, and only
    /// failures of a reused pooled connection), decided here because overriding this hook
    /// without deciding panics, and never once the server had the request for longer than the
    /// stale keep-alive race.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let finding = self.classify_attempt(&e, session, ctx);
        let diagnosis = finding.diagnosis;
        let age = ctx.age();
        let broke = matches!(
            diagnosis,
            Diagnosis::ConnectionReset | Diagnosis::ConnectionClosed | Diagnosis::RequestSendFailed
        );
        if broke && ctx.request.broken.is_none() {
            ctx.request.broken = Some(context::BrokenAttempt {
                finding: finding.clone(),
                address: ctx.attempt.address.clone(),
                reused: ctx.attempt.reused_connection,
                reused_connection_age: ctx.attempt.reused_connection_age,
                age,
            });
        }
        ctx.record_attempt(finding);
        self.count_server_failure(ctx, diagnosis);
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A request the server had for longer than the stale keep-alive race was not lost to a
        // closed pooled connection: the app had it, and may have died of it. Replaying it
        // against a restarted app would repeat the crash, and hide it.
        let had_it = age.is_some_and(|age| age >= ctx.state.thresholds.stale_race);
        if had_it
            || crate::diagnosis::classify::local_failure(&e).is_some()
            || !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// Classifies the failure and answers it: a generated status with headers and a page, or,
    /// once the upstream's status went out, nothing more than the cut the client already sees.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let mut finding = self.classify_attempt(e, session, ctx);
        // A retry refused after the connection broke mid-request met only the aftermath: the
        // answer is about the break. So did one whose connect was reset (`connect_failed`):
        // an exiting process's listener still completes a handshake it then resets.
        let broken = ctx.request.broken.take().filter(|b| {
            matches!(
                finding.diagnosis,
                Diagnosis::ConnectRefused | Diagnosis::SocketRefused | Diagnosis::ConnectFailed
            ) && b.address == ctx.attempt.address
        });
        if let Some(broken) = &broken {
            finding = broken.finding.clone();
        }
        ctx.request.cause = Some(Arc::new(
            self.explain(session, ctx, &finding, broken.as_ref()).await,
        ));
        let (error_code, can_reuse_downstream) = match finding.diagnosis.outcome() {
            // A response already went out (the app answered before the client's body timed
            // out): a page now would be written into it. The connection closes instead.
            ClientOutcome::Generated(status) if session.response_written().is_some() => {
                (status.as_u16(), false)
            }
            ClientOutcome::Generated(status) => {
                // Like nginx, the client keeps its connection after an error page, unless part
                // of its request body is still unread: draining an unknown amount from a client
                // the upstream never saw is not worth it, so that connection is closed.
                let keep_alive = session.is_body_done();
                let written = self
                    .respond_failure(session, ctx, &finding, status, keep_alive)
                    .await;
                (status.as_u16(), keep_alive && written)
            }
            ClientOutcome::Nothing { logged_as } => (logged_as, false),
            ClientOutcome::PassedThrough | ClientOutcome::CutBody => {
                (ctx.attempt.upstream_status.unwrap_or(0), false)
            }
        };
        ctx.request.finding = Some(finding);
        FailToProxy {
            error_code,
            can_reuse_downstream,
        }
    }

    /// triage writes its own line for every request in `logging`; Pingora's would repeat it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// The end of every request: metrics, the report of a failure, and the access-log line.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        self.finish(session, ctx);
    }
}
