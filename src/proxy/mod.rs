//! The proxy: Pingora's `ProxyHttp` hooks, each recording what it saw into the request context.
//!
//! Data flows one way. The hooks only record facts ([`RequestCtx`]): the route, the address
//! tried, how far the request got, timings, the upstream's status. When Pingora reports a failure
//! (`fail_to_proxy`), the classifier turns those facts into a diagnosis; the response headers,
//! the error page and the access log only read that diagnosis.

pub mod routing;
pub mod upstream;

use crate::config::{Config, ServerAddr};
use crate::diagnosis::classify::Progress;
use crate::diagnosis::{classify, ClientOutcome, Diagnosis, Disclosure, Facts, Finding};
use crate::id::RequestId;
use crate::render::page::BodyFormat;
use crate::render::{self, Detail, Failure, Renderer, Timings};
use crate::resolve::HostResolver;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use routing::{RouteId, RouteTable};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use upstream::Upstream;

/// Everything a request needs that comes from the config, built once.
pub struct State {
    pub config: Config,
    pub routes: RouteTable,
    pub upstreams: Vec<Upstream>,
    pub disclosure: Disclosure,
}

impl State {
    pub fn new(config: Config) -> Result<State, String> {
        let upstreams = config
            .upstreams
            .iter()
            .map(Upstream::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(State {
            routes: RouteTable::new(&config.routes),
            disclosure: Disclosure::new(&config.diagnosis),
            upstreams,
            config,
        })
    }

    /// The hostnames among all upstream servers, for the resolver to keep fresh.
    pub fn hostnames(&self) -> impl Iterator<Item = String> + '_ {
        self.config
            .upstreams
            .iter()
            .flat_map(|u| u.servers.iter())
            .filter_map(|s| match s {
                ServerAddr::Host { host, .. } => Some(host.clone()),
                ServerAddr::Ip(_) => None,
            })
    }
}

/// The facts one request accumulates as it goes through the hooks.
#[derive(Debug)]
pub struct RequestCtx {
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
    /// Set by `upstream_peer` when the hostname did not resolve: Pingora only sees a generic
    /// error, so the reason is kept here.
    pub dns_failure: Option<String>,
    /// The diagnosis, once there is one.
    pub finding: Option<Finding>,
}

impl RequestCtx {
    fn new() -> RequestCtx {
        RequestCtx {
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
            dns_failure: None,
            finding: None,
        }
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
    state: Arc<State>,
    resolver: Arc<HostResolver>,
    renderer: Renderer,
}

impl Triage {
    pub fn new(state: Arc<State>, resolver: Arc<HostResolver>) -> Triage {
        Triage {
            state,
            resolver,
            renderer: Renderer::new(),
        }
    }

    fn upstream_name(&self, ctx: &RequestCtx) -> Option<&str> {
        ctx.upstream
            .and_then(|i| self.state.upstreams.get(i))
            .map(|u| u.name.as_str())
    }

    fn detail<'a>(&'a self, ctx: &'a RequestCtx, text: &'a str) -> Option<Detail<'a>> {
        ctx.trusted.then(|| Detail {
            upstream: self.upstream_name(ctx),
            address: ctx.address,
            text,
            timings: ctx.timings(),
        })
    }

    /// Writes the error response for a failure triage answers itself.
    async fn respond_failure(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        finding: &Finding,
        status: http::StatusCode,
        keep_alive: bool,
    ) {
        let failure = Failure {
            id: ctx.id,
            diagnosis: finding.diagnosis,
            status,
            at: ctx.received_at,
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
        if let Err(e) = written {
            tracing::debug!(id = %ctx.id, error = %e, "could not write the error response");
        }
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
        RequestCtx::new()
    }

    /// Drops the client's own `X-Diagnosis-*` headers, decides disclosure, and routes. A request
    /// no route matches is answered here (404 `no_route`), keeping the connection alive.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let forged = req
            .headers
            .keys()
            .any(|name| name.as_str().starts_with(render::RESERVED_PREFIX));
        if forged {
            let names: Vec<_> = req
                .headers
                .keys()
                .filter(|name| name.as_str().starts_with(render::RESERVED_PREFIX))
                .cloned()
                .collect();
            let req = session.req_header_mut();
            for name in names {
                req.remove_header(&name);
            }
        }
        ctx.trusted = self.state.disclosure.shows_detail(client_ip(session));
        let path = session.req_header().uri.path();
        match self.state.routes.find(request_host(session), path) {
            Some(route) => {
                ctx.route = Some(route);
                ctx.upstream = self.state.config.routes.get(route).map(|r| r.upstream);
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

    /// Picks the next server of the route's upstream and resolves it without blocking: a
    /// hostname that does not resolve ends the request with `dns_error`, never a panic.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(upstream) = ctx.upstream.and_then(|i| self.state.upstreams.get(i)) else {
            return Error::e_explain(InternalError, "request has no upstream");
        };
        // A retry starts a new attempt: forget what the previous one reached.
        ctx.attempts += 1;
        ctx.progress = Progress::Connecting;
        ctx.connect_time = None;
        ctx.reused_connection = false;
        ctx.address = None;
        let server = upstream.next_server();
        let address = match server {
            ServerAddr::Ip(address) => *address,
            ServerAddr::Host { host, port } => match self.resolver.addresses(host).await {
                Ok(found) => {
                    let ip = found.0[(ctx.attempts as usize - 1) % found.0.len()];
                    SocketAddr::new(ip, *port)
                }
                Err(reason) => {
                    ctx.dns_failure = Some(reason);
                    let mut e = Error::explain(ConnectError, "upstream hostname did not resolve");
                    e.as_up();
                    return Err(e);
                }
            },
        };
        ctx.address = Some(address);
        ctx.connect_started = Some(Instant::now());
        Ok(Box::new(upstream.peer(server, address)))
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

    /// Marks when the request leaves for the upstream, to time its answer.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        _upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
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
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        if upstream_response.status.is_server_error() {
            ctx.finding = Some(Finding {
                diagnosis: Diagnosis::UpstreamStatus,
                detail: String::new(),
            });
        }
        let detail = self.detail(ctx, "");
        self.renderer
            .decorate_upstream_response(upstream_response, ctx.id, detail.as_ref())?;
        ctx.progress = Progress::ResponseStarted;
        Ok(())
    }

    /// Classifies the failure and answers it: a generated status with headers and a page, or,
    /// once the upstream's status went out, nothing more than the cut the client already sees.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let finding = match ctx.dns_failure.take() {
            Some(reason) => Finding {
                diagnosis: Diagnosis::DnsError,
                detail: reason,
            },
            None => classify(&Facts {
                error: e,
                progress: ctx.progress,
                upstream_tls: ctx
                    .upstream
                    .and_then(|i| self.state.upstreams.get(i))
                    .is_some_and(|u| u.tls),
            }),
        };
        let error_code = match finding.diagnosis.outcome() {
            ClientOutcome::Generated(status) => {
                self.respond_failure(session, ctx, &finding, status, false)
                    .await;
                status.as_u16()
            }
            ClientOutcome::Nothing { logged_as } => logged_as,
            ClientOutcome::PassedThrough | ClientOutcome::CutBody => {
                ctx.upstream_status.unwrap_or(0)
            }
        };
        ctx.finding = Some(finding);
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// triage writes its own line for every request in `logging`; Pingora's would repeat it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// One access-log line per request, with its diagnosis.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let req = session.req_header();
        let diagnosis = ctx.finding.as_ref().map(|f| f.diagnosis);
        let status = match diagnosis {
            Some(d) => d.logged_status(ctx.upstream_status),
            None => ctx.upstream_status.unwrap_or(0),
        };
        let source = diagnosis.map_or("upstream", |d| d.source().token());
        let route = ctx
            .route
            .and_then(|r| self.state.config.routes.get(r))
            .map_or("", |r| r.path_prefix.as_str());
        tracing::info!(
            target: "access",
            id = %ctx.id,
            method = %req.method,
            host = request_host(session).unwrap_or(""),
            path = req.uri.path(),
            route,
            upstream = self.upstream_name(ctx).unwrap_or(""),
            address = ?ctx.address,
            status,
            source,
            diagnosis = diagnosis.map_or("", |d| d.token()),
            phase = diagnosis.map_or("", |d| d.phase().token()),
            detail = ctx.finding.as_ref().map_or("", |f| f.detail.as_str()),
            attempts = ctx.attempts,
            reused = ctx.reused_connection,
            connect_ms = ctx.connect_time.map(|d| d.as_secs_f64() * 1e3),
            upstream_ms = ctx.response_time.map(|d| d.as_secs_f64() * 1e3),
            total_ms = ctx.received.elapsed().as_secs_f64() * 1e3,
        );
    }
}
