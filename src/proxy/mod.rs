//! The proxy: Pingora's `ProxyHttp` hooks, each recording what it saw into the request context.
//!
//! Data flows one way. The hooks only record facts ([`RequestCtx`]): the route, the address
//! tried, how far the request got, timings, the upstream's status. When Pingora reports a failure
//! (`fail_to_proxy`), the classifier turns those facts into a diagnosis; the response headers,
//! the error page and the access log only read that diagnosis.

pub mod balancer;
pub mod forwarding;
pub mod health;
pub mod request_checks;
pub mod routing;
pub mod upstream;

use crate::accesslog::{AccessEntry, AccessLog};
use crate::client::{ClientConnections, CloseReason};
use crate::config::{self, BootConfig, LiveConfig, ServerAddr};
use crate::diagnosis::classify::Progress;
use crate::diagnosis::{classify, ClientOutcome, Diagnosis, Disclosure, Facts, Finding};
use crate::id::RequestId;
use crate::metrics::{MetricHandles, Metrics, RequestOutcome};
use crate::render::page::BodyFormat;
use crate::render::{self, Detail, Failure, Renderer, Timings};
use crate::report::{self, Attempt, Redaction, Report, ReportStore};
use crate::resolve::HostResolver;
use crate::shutdown::{InFlight, InFlightGuard};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::HeadFailure;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;
use request_checks::Refusal;
use routing::{RouteId, RouteTable};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use upstream::Upstream;

/// Everything a request needs that comes from the live config, built once per reload.
pub struct State {
    pub config: LiveConfig,
    pub resolver: Arc<HostResolver>,
    pub handles: MetricHandles,
    pub routes: RouteTable,
    /// Each route's metric label, by route index.
    pub route_labels: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub disclosure: Disclosure,
}

impl State {
    /// Everything `config` needs at run time; fails (without panicking) if the DNS resolver
    /// cannot be set up.
    pub fn new(config: LiveConfig, metrics: &Metrics) -> Result<State, String> {
        let upstreams = config.upstreams.iter().map(Upstream::new).collect();
        let hostnames = config
            .upstreams
            .iter()
            .flat_map(|u| u.servers.iter())
            .filter_map(|s| match s {
                ServerAddr::Host { host, .. } => Some(host.clone()),
                ServerAddr::Ip(_) => None,
            });
        let resolver = Arc::new(HostResolver::new(
            hostnames,
            &config.resolver.nameservers,
            config.resolver.refresh,
        )?);
        Ok(State {
            resolver,
            handles: metrics.handles(&config),
            routes: RouteTable::new(&config.routes),
            route_labels: config
                .routes
                .iter()
                .map(|r| crate::metrics::route_label(r.host.as_deref(), &r.path_prefix))
                .collect(),
            disclosure: Disclosure::new(&config.diagnosis),
            upstreams,
            config,
        })
    }
}

impl State {
    /// Sets each server's `triage_upstream_server_healthy` to whether it is in rotation now
    /// (passing its health checks and not ejected), for a scrape of `/metrics`. Read from the
    /// balancer rather than set on each change: an ejection ends on its own when `fail_timeout`
    /// passes, with no event that could update the gauge.
    pub fn refresh_health_gauges(&self) {
        for (upstream_index, upstream) in self.upstreams.iter().enumerate() {
            for (server_index, server) in upstream.balancer.servers.iter().enumerate() {
                self.handles.set_server_healthy(
                    upstream_index,
                    server_index,
                    server.is_available(),
                );
            }
        }
    }
}

/// The facts one request accumulates as it goes through the hooks.
pub struct RequestCtx {
    /// The config this request runs under, from start to end, whatever reloads happen.
    pub state: Arc<State>,
    pub id: RequestId,
    pub received: Instant,
    pub received_at: SystemTime,
    /// Whether this client may see detailed fields (the `[diagnosis]` policy).
    pub trusted: bool,
    pub route: Option<RouteId>,
    pub upstream: Option<usize>,
    /// The address of the current attempt.
    pub address: Option<SocketAddr>,
    pub progress: Progress,
    pub attempts: u32,
    pub connect_started: Option<Instant>,
    pub connect_time: Option<Duration>,
    pub reused_connection: bool,
    pub request_sent: Option<Instant>,
    pub response_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    /// A diagnosis a hook made itself before failing the request (DNS failure, no healthy
    /// server, body too large): Pingora only sees a generic error, so the reason is kept here.
    pub preset: Option<Finding>,
    /// The index of the server of the current attempt.
    pub server: Option<usize>,
    /// The request target the app gets when it is not the client's: the path with its
    /// dot-segments resolved, and the query (see `request_checks::PathCheck`).
    pub upstream_target: Option<String>,
    /// Servers tried so far (bit i = server i), so a retry goes elsewhere.
    pub tried: u64,
    /// Whether the client asked for a protocol upgrade (WebSocket).
    pub upgrade: bool,
    /// The total timeout in force for this request, if any.
    pub total_timeout: Option<Duration>,
    /// The diagnosis, once there is one.
    pub finding: Option<Finding>,
    /// Every failed attempt, for the report; empty (no allocation) on success.
    pub failed_attempts: Vec<Attempt>,
    pub bytes_sent_upstream: u64,
    pub bytes_received_upstream: u64,
    /// Counts this request as in flight until the context is dropped (a SIGTERM drain waits
    /// for it).
    _in_flight: InFlightGuard,
}

impl RequestCtx {
    fn new(state: Arc<State>, in_flight: InFlightGuard) -> RequestCtx {
        RequestCtx {
            _in_flight: in_flight,
            state,
            id: RequestId::next(),
            received: Instant::now(),
            received_at: SystemTime::now(),
            trusted: false,
            route: None,
            upstream: None,
            address: None,
            progress: Progress::Started,
            attempts: 0,
            connect_started: None,
            connect_time: None,
            reused_connection: false,
            request_sent: None,
            response_time: None,
            upstream_status: None,
            preset: None,
            server: None,
            upstream_target: None,
            tried: 0,
            upgrade: false,
            total_timeout: None,
            finding: None,
            failed_attempts: Vec::new(),
            bytes_sent_upstream: 0,
            bytes_received_upstream: 0,
        }
    }

    /// Records the failure of the current attempt.
    fn record_attempt(&mut self, finding: Finding) {
        self.failed_attempts.push(Attempt {
            address: self.address,
            diagnosis: Some(finding.diagnosis),
            detail: finding.detail,
            reused_connection: self.reused_connection,
            connect: self.connect_time,
            response: self.response_time,
        });
    }

    fn timings(&self) -> Timings {
        Timings {
            connect: self.connect_time,
            response: self.response_time,
            total: self.received.elapsed(),
        }
    }
}

/// The triage proxy.
pub struct Triage {
    state: Arc<ArcSwap<State>>,
    metrics: Arc<Metrics>,
    reports: Arc<ReportStore>,
    /// Which request header values reports keep (`[reports] keep_headers`).
    redaction: Redaction,
    access_log: AccessLog,
    renderer: Renderer,
    in_flight: Arc<InFlight>,
    /// Counts the connections closed for a `[client]` limit.
    clients: Arc<ClientConnections>,
    /// Where failure reports are linked, if the ring keeps any (fixed at start, like the ring).
    report_url: Option<String>,
}

impl Triage {
    /// `state` is shared with the reloader, which swaps in a new one on a valid reload; `boot`
    /// gives what stays as the process started: the access log, the report link and what
    /// reports keep.
    pub fn new(
        state: Arc<ArcSwap<State>>,
        metrics: Arc<Metrics>,
        reports: Arc<ReportStore>,
        in_flight: Arc<InFlight>,
        clients: Arc<ClientConnections>,
        boot: &BootConfig,
    ) -> Triage {
        let log = &boot.log;
        Triage {
            state,
            metrics,
            reports,
            redaction: Redaction::new(&boot.reports.keep_headers),
            access_log: AccessLog::new(log.format.clone(), log.access, log.error_lines_per_second),
            renderer: Renderer::new(),
            in_flight,
            clients,
            report_url: boot.report_url(),
        }
    }

    fn classify_attempt(&self, error: &Error, session: &mut Session, ctx: &RequestCtx) -> Finding {
        // Only a failure on the client's side can be its stream reset: the upstream's failures
        // (a failure storm) skip the look at the h2 stream and its lock.
        let client_reset = match error.esource() {
            ErrorSource::Downstream => client_stream_reset(session),
            ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => None,
        };
        classify(&Facts {
            error,
            progress: ctx.progress,
            upstream_tls: self.upstream_of(ctx).is_some_and(|u| u.tls),
            upgrade: ctx.upgrade,
            request_unsent: !session.is_body_done(),
            client_reset,
        })
    }

    /// The finding of a failed attempt: what a hook already diagnosed (a body over
    /// max_body_size fails in request_body_filter, which Pingora reports as a bare 413), else
    /// the classifier's.
    fn attempt_finding(&self, error: &Error, session: &mut Session, ctx: &RequestCtx) -> Finding {
        match &ctx.preset {
            Some(finding) => finding.clone(),
            None => self.classify_attempt(error, session, ctx),
        }
    }

    fn upstream_of<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a Upstream> {
        ctx.upstream.and_then(|i| ctx.state.upstreams.get(i))
    }

    /// The only servers left refused a connection moments ago: the request is answered
    /// `connect_refused` from that refusal, without connecting again (`refused_holdoff`).
    /// No attempt is made, so none is counted against the server or shown in the attempts.
    fn answer_held_off(
        &self,
        ctx: &mut RequestCtx,
        upstream: &Upstream,
        index: usize,
    ) -> Box<Error> {
        ctx.attempts -= 1;
        let server = &upstream.balancer.servers[index];
        if let ServerAddr::Ip(address) = server.addr {
            ctx.address = Some(address);
        }
        let (ago, left) = server.refusal().unwrap_or_default();
        ctx.preset = Some(Finding {
            diagnosis: Diagnosis::ConnectRefused,
            detail: format!(
                "not connected: {} refused a connection {} ms ago; the next request in {} ms connects again",
                server.label,
                ago.as_millis(),
                left.as_millis()
            ),
        });
        let mut e = Error::explain(ConnectRefused, "upstream refused a connection moments ago");
        e.as_up();
        e
    }

    /// Counts a failed attempt against its server (passive ejection) when the server caused it,
    /// logging an ejection. Nothing a client does counts.
    fn count_server_failure(&self, ctx: &RequestCtx, diagnosis: Diagnosis) {
        if !diagnosis.counts_against_upstream() {
            return;
        }
        let (Some(upstream_index), Some(server)) = (ctx.upstream, ctx.server) else {
            return;
        };
        let Some(upstream) = ctx.state.upstreams.get(upstream_index) else {
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

    /// Stores the report of a request that has a diagnosis.
    fn store_report(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        finding: &Finding,
        status: u16,
    ) {
        let req = session.req_header();
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| self.redaction.header(name.as_str(), value.as_bytes()))
            .collect();
        let path = report::redact_path(
            req.uri
                .path_and_query()
                .map_or_else(|| req.uri.path(), |pq| pq.as_str()),
        );
        let stored = self.reports.insert(Report {
            id: ctx.id,
            time: ctx.received_at,
            method: req.method.as_str().to_owned(),
            host: render::text::header_text(request_host(session).unwrap_or(""), 256),
            path: render::text::header_text(&path, 2048),
            headers,
            route: ctx
                .route
                .and_then(|r| ctx.state.route_labels.get(r))
                .cloned()
                .unwrap_or_default(),
            upstream: self.upstream_name(ctx).unwrap_or("").to_owned(),
            diagnosis: finding.diagnosis,
            detail: finding.detail.clone(),
            status,
            attempts: std::mem::take(&mut ctx.failed_attempts),
            bytes_sent_upstream: ctx.bytes_sent_upstream,
            bytes_received_upstream: ctx.bytes_received_upstream,
            total: ctx.received.elapsed(),
        });
        self.metrics.set_stored(stored);
    }

    fn upstream_name<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a str> {
        ctx.upstream
            .and_then(|i| ctx.state.upstreams.get(i))
            .map(|u| u.name.as_str())
    }

    fn detail<'a>(&'a self, ctx: &'a RequestCtx, text: &'a str) -> Option<Detail<'a>> {
        ctx.trusted.then(|| Detail {
            upstream: self.upstream_name(ctx),
            address: ctx.address.map(render::text::AddrText::new),
            text,
            timings: ctx.timings(),
            report_url: self.report_url.as_deref(),
        })
    }

    /// Writes the error response for a failure triage answers itself; true when all of it was
    /// written. `keep_alive: false` tells the client the connection closes after it.
    async fn respond_failure(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        finding: &Finding,
        status: http::StatusCode,
        keep_alive: bool,
    ) -> bool {
        let failure = Failure {
            id: ctx.id,
            diagnosis: finding.diagnosis,
            status,
            at: ctx.received_at,
            attempts: ctx.attempts,
            detail: self.detail(ctx, &finding.detail),
        };
        let format = BodyFormat::from_accept(
            session
                .req_header()
                .headers
                .get(http::header::ACCEPT)
                .map(|v| v.as_bytes()),
        );
        let written = match self.renderer.failure_response(&failure, format) {
            Ok((resp, body)) if keep_alive => write_response(session, resp, body).await,
            Ok((resp, body)) => session.write_error_response(resp, body).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(id = %ctx.id, error = %e, "could not write the error response");
                false
            }
        }
    }

    /// Answers a request that `request_checks` refused: 400 `bad_request` with what was wrong,
    /// and the connection closes after it (as nginx closes it after a 400; when the body's
    /// framing is in doubt, nothing else read from that connection could be trusted).
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, refusal: Refusal) {
        let finding = Finding {
            diagnosis: Diagnosis::BadRequest,
            detail: refusal.detail().to_owned(),
        };
        self.respond_failure(session, ctx, &finding, http::StatusCode::BAD_REQUEST, false)
            .await;
        ctx.finding = Some(finding);
    }
}

async fn write_response(
    session: &mut Session,
    resp: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
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
        let mut ctx = self.new_ctx();
        let client = client.and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.trusted = ctx.state.disclosure.shows_detail(client);
        let diagnosis = match failure {
            HeadFailure::Malformed => Diagnosis::BadRequest,
            HeadFailure::TooLarge => Diagnosis::RequestHeadersTooLarge,
            HeadFailure::TimedOut => Diagnosis::ClientHeaderTimeout,
        };
        if let Some(reason) = CloseReason::of(diagnosis) {
            self.clients.count(reason);
        }
        let finding = Finding {
            diagnosis,
            detail: render::text::header_text(&error.to_string(), render::text::MAX_HEADER_TEXT),
        };
        let status = diagnosis.logged_status(None);
        let failure = Failure {
            id: ctx.id,
            diagnosis: finding.diagnosis,
            status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST),
            at: ctx.received_at,
            attempts: 0,
            detail: self.detail(&ctx, &finding.detail),
        };
        let response = self
            .renderer
            .failure_response(&failure, BodyFormat::Html)
            .ok();
        let total = ctx.received.elapsed();
        ctx.state.handles.record(&RequestOutcome {
            route: None,
            upstream: None,
            status,
            source: crate::diagnosis::Source::Proxy,
            diagnosis: Some(finding.diagnosis),
            retries: 0,
            connect: None,
            response: None,
            total,
        });
        self.access_log.write(
            &AccessEntry {
                id: ctx.id.as_str(),
                client,
                time: ctx.received_at,
                method: "-",
                path: "-",
                version: "-",
                status,
                bytes_sent: response.as_ref().map_or(0, |(_, body)| body.len()),
                referer: "",
                user_agent: "",
                host: "",
                route: "",
                upstream_name: "",
                address: None,
                source: crate::diagnosis::Source::Proxy.token(),
                diagnosis: finding.diagnosis.token(),
                phase: finding.diagnosis.phase().token(),
                detail: &finding.detail,
                attempts: 0,
                reused: false,
                connect: None,
                upstream: None,
                total,
            },
            true,
        );
        response
    }

    /// Drops the client's own `X-Diagnosis-*` headers, decides disclosure, checks the request
    /// (`request_checks`: what fails is answered here, 400 `bad_request`) and routes it on its
    /// normalized path. A request no route matches is answered here (404 `no_route`), keeping
    /// the connection alive.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        for name in render::reserved_headers(&session.req_header().headers) {
            session.req_header_mut().remove_header(&name);
        }
        ctx.trusted = ctx.state.disclosure.shows_detail(client_ip(session));
        let path_check = match request_checks::check_request(session.req_header_mut()) {
            Ok(path_check) => path_check,
            Err(refusal) => {
                self.refuse(session, ctx, refusal).await;
                return Ok(true);
            }
        };
        ctx.upstream_target = path_check.upstream_target(session.req_header().uri.query());
        let path = path_check.matching(session.req_header().uri.path());
        ctx.upgrade = session.is_upgrade_req();
        let state = Arc::clone(&ctx.state);
        match state.routes.find(request_host(session), path) {
            Some(route) => {
                ctx.route = Some(route);
                let limit = state.config.routes.get(route).map(|r| {
                    ctx.upstream = Some(r.upstream);
                    r.max_body_size
                });
                let declared = session
                    .req_header()
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let (Some(limit), Some(declared)) = (limit, declared) {
                    if declared > limit {
                        let finding = Finding {
                            diagnosis: Diagnosis::RequestBodyTooLarge,
                            detail: format!("Content-Length {declared} > max_body_size {limit}"),
                        };
                        // The body is not read: the connection cannot be reused.
                        self.respond_failure(
                            session,
                            ctx,
                            &finding,
                            http::StatusCode::PAYLOAD_TOO_LARGE,
                            false,
                        )
                        .await;
                        ctx.finding = Some(finding);
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            None => {
                let finding = Finding {
                    diagnosis: Diagnosis::NoRoute,
                    detail: String::new(),
                };
                self.respond_failure(session, ctx, &finding, http::StatusCode::NOT_FOUND, true)
                    .await;
                ctx.finding = Some(finding);
                Ok(true)
            }
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
        let Some(upstream) = ctx.upstream.and_then(|i| state.upstreams.get(i)) else {
            return Error::e_explain(InternalError, "request has no upstream");
        };
        if ctx.attempts == 0 {
            upstream.count_request();
        }
        // A retry starts a new attempt: forget what the previous one reached.
        ctx.attempts += 1;
        ctx.progress = Progress::Connecting;
        ctx.connect_time = None;
        ctx.response_time = None;
        ctx.reused_connection = false;
        ctx.address = None;
        ctx.server = None;
        let Some(index) = upstream.balancer.pick(ctx.tried) else {
            if let Some(index) = upstream.balancer.held_off() {
                return Err(self.answer_held_off(ctx, upstream, index));
            }
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
            ctx.preset = Some(Finding {
                diagnosis: Diagnosis::NoHealthyUpstream,
                detail,
            });
            let mut e = Error::explain(ConnectError, "no server of the upstream is in rotation");
            e.as_up();
            return Err(e);
        };
        ctx.server = Some(index);
        if index < 64 {
            ctx.tried |= 1 << index;
        }
        let server = &upstream.balancer.servers[index];
        let address = match &server.addr {
            ServerAddr::Ip(address) => *address,
            ServerAddr::Host { host, port } => match state.resolver.addresses(host).await {
                Ok(found) => {
                    let ip = found.0[(ctx.attempts as usize - 1) % found.0.len()];
                    SocketAddr::new(ip, *port)
                }
                Err(reason) => {
                    let finding = Finding {
                        diagnosis: Diagnosis::DnsError,
                        detail: reason,
                    };
                    ctx.record_attempt(finding.clone());
                    ctx.preset = Some(finding);
                    let mut e = Error::explain(ConnectError, "upstream hostname did not resolve");
                    e.as_up();
                    return Err(e);
                }
            },
        };
        ctx.address = Some(address);
        ctx.connect_started = Some(Instant::now());
        let no_override = config::RouteTimeouts::default();
        let timeouts = ctx
            .route
            .and_then(|r| state.config.routes.get(r))
            .map_or(&no_override, |r| &r.timeouts);
        ctx.total_timeout = timeouts.total.or(upstream.total_timeout);
        let total_left = ctx.total_timeout.map(|total| {
            total
                .saturating_sub(ctx.received.elapsed())
                .max(Duration::from_millis(1))
        });
        Ok(Box::new(upstream.peer(
            &server.addr,
            address,
            timeouts,
            total_left,
        )))
    }

    /// The connection (and TLS) is up: the request is about to be sent.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.progress = Progress::Connected;
        ctx.reused_connection = reused;
        if !reused {
            ctx.connect_time = ctx.connect_started.map(|t| t.elapsed());
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
        forwarding::add_forwarding_headers(
            upstream_request,
            client_ip(session),
            forwarding::scheme_of(session),
            ctx.id,
        )?;
        if let Some(host) = self.upstream_of(ctx).and_then(|u| u.host_header.as_deref()) {
            upstream_request.insert_header(http::header::HOST, host)?;
        }
        if let Some(target) = &ctx.upstream_target {
            upstream_request.set_raw_path(target.as_bytes())?;
        }
        ctx.request_sent = Some(Instant::now());
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
        // A final answer (or a protocol switch): the server works.
        if let (Some(upstream), Some(server)) = (self.upstream_of(ctx), ctx.server) {
            upstream.balancer.record_success(server);
        }
        ctx.progress = Progress::ResponseHeaders;
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        ctx.response_time = ctx.request_sent.map(|t| t.elapsed());
        Ok(())
    }

    /// Adds the id and source to every proxied response, and the `upstream_status` diagnosis
    /// when the app itself answered 5xx: the status and body pass through untouched.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status;
        if status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(());
        }
        let diagnosis = if ctx.upgrade && status != http::StatusCode::SWITCHING_PROTOCOLS {
            Some(Diagnosis::UpgradeRefused)
        } else if status.is_server_error() {
            Some(Diagnosis::UpstreamStatus)
        } else {
            None
        };
        ctx.finding = diagnosis.map(|diagnosis| Finding {
            diagnosis,
            detail: String::new(),
        });
        let detail = self.detail(ctx, "");
        self.renderer.decorate_upstream_response(
            upstream_response,
            ctx.id,
            diagnosis,
            ctx.attempts,
            detail.as_ref(),
        )?;
        ctx.progress = Progress::ResponseStarted;
        Ok(())
    }

    /// Counts the request body bytes sent upstream, for the report.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.bytes_sent_upstream += chunk.len() as u64;
            let limit = ctx
                .route
                .and_then(|r| ctx.state.config.routes.get(r))
                .map_or(u64::MAX, |r| r.max_body_size);
            if ctx.bytes_sent_upstream > limit {
                ctx.preset = Some(Finding {
                    diagnosis: Diagnosis::RequestBodyTooLarge,
                    detail: format!("body larger than max_body_size {limit}"),
                });
                return Error::e_explain(HTTPStatus(413), "request body larger than max_body_size");
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
            ctx.bytes_received_upstream += chunk.len() as u64;
        }
        if let Some(total) = ctx.total_timeout {
            if ctx.received.elapsed() > total {
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
        if diagnosis == Diagnosis::ConnectRefused {
            if let (Some(upstream), Some(server)) = (self.upstream_of(ctx), ctx.server) {
                upstream.balancer.record_refused(server);
            }
        }
        ctx.record_attempt(finding);
        self.count_server_failure(ctx, diagnosis);
        let mut e = e;
        // Nothing reached the app: trying another server is safe for any method, within the
        // upstream's retry count and budget.
        let retry = self.upstream_of(ctx).is_some_and(|u| {
            ctx.attempts <= u.retries && u.balancer.has_untried(ctx.tried) && u.allow_retry()
        });
        e.set_retry(retry);
        e
    }

    /// A failure on an established connection: recorded as an attempt. The retry policy is
    /// Pingora's default (only idempotent requests whose body is still buffered, and only
    /// failures of a reused pooled connection), decided here because overriding this hook
    /// without deciding panics.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let finding = self.attempt_finding(&e, session, ctx);
        let diagnosis = finding.diagnosis;
        ctx.record_attempt(finding);
        self.count_server_failure(ctx, diagnosis);
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
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
        let finding = match ctx.preset.take() {
            Some(finding) => finding,
            None => self.classify_attempt(e, session, ctx),
        };
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
                (ctx.upstream_status.unwrap_or(0), false)
            }
        };
        ctx.finding = Some(finding);
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
        let diagnosis = ctx.finding.as_ref().map(|f| f.diagnosis);
        let status = match diagnosis {
            Some(d) => d.logged_status(ctx.upstream_status),
            None => ctx.upstream_status.unwrap_or(0),
        };
        let source = diagnosis.map_or(crate::diagnosis::Source::Upstream, |d| d.source());
        if let Some(reason) = diagnosis.and_then(CloseReason::of) {
            self.clients.count(reason);
        }
        let total = ctx.received.elapsed();
        ctx.state.handles.record(&RequestOutcome {
            route: ctx.route,
            upstream: ctx.upstream,
            status,
            source,
            diagnosis,
            retries: ctx.attempts.saturating_sub(1),
            connect: ctx.connect_time,
            response: ctx.response_time,
            total,
        });
        if let Some(finding) = ctx.finding.take() {
            self.store_report(session, ctx, &finding, status);
            ctx.finding = Some(finding);
        }
        let failed = diagnosis.is_some_and(|d| d != Diagnosis::ClientClosed);
        if !self.access_log.writes_anything(failed) {
            return;
        }
        let req = session.req_header();
        let header = |name: http::header::HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let finding = ctx.finding.as_ref();
        // Redacted as in reports: a path's `;` parameters (a session id), and all of the
        // Referer but where it points. Each is borrowed unless it has something to redact.
        let path = report::redact_path_params(req.uri.path());
        let referer = report::redact_url(header(http::header::REFERER));
        let entry = AccessEntry {
            id: ctx.id.as_str(),
            client: client_ip(session),
            time: ctx.received_at,
            method: req.method.as_str(),
            path: &path,
            version: match req.version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            status,
            bytes_sent: session.as_ref().body_bytes_sent(),
            referer: &referer,
            user_agent: header(http::header::USER_AGENT),
            host: request_host(session).unwrap_or(""),
            route: ctx
                .route
                .and_then(|r| ctx.state.route_labels.get(r))
                .map_or("", |l| l.as_str()),
            upstream_name: self.upstream_name(ctx).unwrap_or(""),
            address: ctx.address,
            source: source.token(),
            diagnosis: diagnosis.map_or("", |d| d.token()),
            phase: diagnosis.map_or("", |d| d.phase().token()),
            detail: finding.map_or("", |f| f.detail.as_str()),
            attempts: ctx.attempts,
            reused: ctx.reused_connection,
            connect: ctx.connect_time,
            upstream: ctx.response_time,
            total,
        };
        self.access_log.write(&entry, failed);
    }
}
