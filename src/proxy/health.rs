//! Active health checks: every `interval`, each server of an upstream that has a
//! `[upstreams.NAME.health_check]` is probed, and the result moves the server in or out of
//! rotation once the thresholds are met.
//!
//! A probe reaches the server as a request would: through Pingora's connector, with the peer the
//! proxy builds for it ([`Upstream::peer`]: TLS, SNI, CA file and timeouts are the upstream's).
//! A TCP check connects (and, to a TLS upstream, completes the handshake); an HTTP check then
//! sends `GET path` over Pingora's HTTP/1.1 client session (to a FastCGI upstream, as a FastCGI
//! request for the script at `path`: see [`crate::fastcgi::check`]) and passes on 2xx or 3xx. A failure
//! is classified by the proxy's own classifier from the same facts (the error and how far the
//! probe got), so a probe says what live traffic would: `connect_refused`, `connect_timeout`,
//! a TLS token, `upstream_expects_tls`, `upstream_status` for a failing status. Each probe
//! opens a connection of its own, from a connector of its own (never one of the proxy's pooled
//! connections), and closes it.
//!
//! The checks act on the servers' shared state (see [`crate::registry`]): the loops restart with
//! each reload, and carry on where the previous config's left off.

use super::balancer::{CheckResult, Server, Transition};
use super::upstream::Upstream;
use super::State;
use crate::config::{HealthCheck, HealthCheckKind, PeerAddr, RouteTimeouts, ServerAddr};
use crate::diagnosis::classify::Progress;
use crate::diagnosis::{classify, Diagnosis, Facts, Finding};
use crate::resolve::HostResolver;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Informational responses (1xx) a check reads past before the final one, at most.
const MAX_INFORMATIONAL: usize = 4;

/// Runs the checks of every upstream of `state` that has them, until aborted.
pub async fn run(state: Arc<State>) {
    let checks: Vec<_> = state
        .config
        .upstreams
        .iter()
        .enumerate()
        .filter_map(|(i, u)| u.health_check.clone().map(|c| (i, c)))
        .collect();
    let tasks: Vec<_> = checks
        .into_iter()
        .map(|(upstream, check)| {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                check_upstream_forever(&state, upstream, &check).await;
            })
        })
        .collect();
    // Aborting this future must stop the checks: abort them when it is dropped.
    let _stop_on_drop = AbortOnDrop(tasks.iter().map(|t| t.abort_handle()).collect());
    for task in tasks {
        let _ = task.await;
    }
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The probes' connector, one for the process: the proxy's has the same TLS setup (Pingora's
/// rustls connector, the system's CAs unless the peer brings its own), but its pool stays the
/// proxy's alone. Probes never return a connection to this one's pool.
fn connector() -> &'static TransportConnector {
    static CONNECTOR: OnceLock<TransportConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| TransportConnector::new(None))
}

async fn check_upstream_forever(state: &State, upstream: usize, check: &HealthCheck) {
    let Some(up) = state.upstreams.get(upstream) else {
        return;
    };
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (index, server) in up.balancer.servers.iter().enumerate() {
            let result = probe(up, server, check, &state.resolver).await;
            let verdict = result
                .diagnosis
                .map_or("passed".to_owned(), |d| d.token().to_owned());
            let transition = up.balancer.record_check(
                index,
                result,
                check.healthy_threshold,
                check.unhealthy_threshold,
            );
            match transition {
                Transition::None => {}
                Transition::WentDown => {
                    tracing::warn!(upstream = %up.name, server = %server.label, check = %verdict, "server failed its health checks: out of rotation");
                }
                Transition::CameUp => {
                    tracing::info!(upstream = %up.name, server = %server.label, "server passed its health checks: back in rotation");
                }
            }
        }
    }
}

/// One check of one server, within the check's timeout.
async fn probe(
    up: &Upstream,
    server: &Server,
    check: &HealthCheck,
    resolver: &HostResolver,
) -> CheckResult {
    let mut progress = Progress::Started;
    let attempt = attempt(up, server, check, resolver, &mut progress);
    let failure = match tokio::time::timeout(check.timeout, attempt).await {
        Ok(Ok(())) => None,
        Ok(Err(finding)) => Some(finding),
        Err(_) => Some(over_time(up, server, check.timeout, progress)),
    };
    let (diagnosis, detail) =
        failure.map_or((None, String::new()), |f| (Some(f.diagnosis), f.detail));
    CheckResult {
        at: SystemTime::now(),
        diagnosis,
        detail,
    }
}

/// A check that ran out of time before a step's own timeout fired (its steps together took
/// longer): classified as the timeout of the step it was at.
fn over_time(up: &Upstream, server: &Server, timeout: Duration, progress: Progress) -> Finding {
    let kind = match progress {
        Progress::Started => {
            let host = match &server.addr {
                ServerAddr::Host { host, .. } => host.as_str(),
                ServerAddr::Ip(_) | ServerAddr::Unix(_) => "",
            };
            return Finding {
                diagnosis: Diagnosis::DnsError,
                detail: format!("resolving {host}: no answer within the check's {timeout:?}"),
            };
        }
        Progress::Connecting => ErrorType::ConnectTimedout,
        Progress::Connected | Progress::ResponseHeaders | Progress::ResponseStarted => {
            ErrorType::ReadTimedout
        }
    };
    let error = Error::explain(kind, format!("health check timeout {timeout:?}")).into_up();
    classified(up, server, &error, progress)
}

/// The proxy's classification of `error` at `progress`, for a request without a body (and,
/// at a unix socket, what its path shows).
fn classified(up: &Upstream, server: &Server, error: &Error, progress: Progress) -> Finding {
    let unix_socket = match &server.addr {
        ServerAddr::Unix(path) => Some(path),
        ServerAddr::Ip(_) | ServerAddr::Host { .. } => None,
    };
    let finding = classify(&Facts {
        error,
        progress,
        upstream_tls: up.tls,
        unix_socket: unix_socket.is_some(),
        upgrade: false,
        request_unsent: false,
        client_reset: None,
    });
    match unix_socket {
        Some(path) => super::socket_file::explained(finding, path),
        None => finding,
    }
}

/// Resolves, connects and, for an HTTP check, asks; `progress` says how far it got.
async fn attempt(
    up: &Upstream,
    server: &Server,
    check: &HealthCheck,
    resolver: &HostResolver,
    progress: &mut Progress,
) -> Result<(), Finding> {
    let address = match &server.addr {
        ServerAddr::Ip(address) => PeerAddr::Inet(*address),
        ServerAddr::Unix(path) => PeerAddr::Unix(path.clone()),
        ServerAddr::Host { host, port } => {
            let found = resolver.addresses(host).await.map_err(|reason| Finding {
                diagnosis: Diagnosis::DnsError,
                detail: reason,
            })?;
            server.history.record_address(&found.ips);
            let Some(ip) = found.ips.first() else {
                return Err(Finding {
                    diagnosis: Diagnosis::DnsError,
                    detail: format!("resolving {host}: no addresses"),
                });
            };
            PeerAddr::Inet(SocketAddr::new(*ip, *port))
        }
    };
    *progress = Progress::Connecting;
    let failed =
        |error: Box<Error>, progress: Progress| classified(up, server, &error.into_up(), progress);
    let peer = probe_peer(up, &server.addr, &address, check.timeout)
        .map_err(|e| failed(e, Progress::Connecting))?;
    let stream = connector()
        .new_stream(&peer)
        .await
        .map_err(|e| failed(e, Progress::Connecting))?;
    *progress = Progress::Connected;
    let path = match &check.kind {
        HealthCheckKind::Tcp => return Ok(()),
        HealthCheckKind::Http { path } => path,
    };
    if let Some(fastcgi) = &up.fastcgi {
        let mut stream = stream;
        let status = crate::fastcgi::check::status_of(&mut stream, fastcgi, path)
            .await
            .map_err(|e| failed(e, Progress::Connected))?;
        *progress = Progress::ResponseHeaders;
        return check_status(path, status);
    }
    let mut session = HttpSession::new_with_options(stream, &peer);
    session.read_timeout = peer.options.read_timeout;
    session.write_timeout = peer.options.write_timeout;
    let request =
        check_request(up, &server.addr, path).map_err(|e| failed(e, Progress::Connected))?;
    session
        .write_request_header(request)
        .await
        .map_err(|e| failed(e, Progress::Connected))?;
    session
        .finish_body()
        .await
        .map_err(|e| failed(e, Progress::Connected))?;
    let mut status = 0;
    for _ in 0..=MAX_INFORMATIONAL {
        session
            .read_response()
            .await
            .map_err(|e| failed(e, Progress::Connected))?;
        status = session.resp_header().map_or(0, |h| h.status.as_u16());
        if !(100..200).contains(&status) {
            break;
        }
    }
    *progress = Progress::ResponseHeaders;
    // Dropping the session closes the connection: it is never pooled.
    check_status(path, status)
}

/// A check passes on 2xx and 3xx.
fn check_status(path: &str, status: u16) -> Result<(), Finding> {
    match status {
        200..=399 => Ok(()),
        code => Err(Finding {
            diagnosis: Diagnosis::UpstreamStatus,
            detail: format!("GET {path} answered {code}"),
        }),
    }
}

/// The proxy's peer for the server, with every step bounded by the check's timeout as well
/// (each step then fails with the error it would give a request).
fn probe_peer(
    up: &Upstream,
    server: &ServerAddr,
    address: &PeerAddr,
    timeout: Duration,
) -> pingora::Result<HttpPeer> {
    let mut peer = up.peer(server, address, &RouteTimeouts::default(), Some(timeout))?;
    let options = &mut peer.options;
    for step in [
        &mut options.connection_timeout,
        &mut options.total_connection_timeout,
        &mut options.write_timeout,
    ] {
        *step = Some(step.map_or(timeout, |t| t.min(timeout)));
    }
    Ok(peer)
}

/// `GET path`, for the upstream's `host_header` if it has one, else the server's name
/// (`localhost` for a unix socket, as a client on the same host would say).
fn check_request(
    up: &Upstream,
    server: &ServerAddr,
    path: &str,
) -> pingora::Result<Box<RequestHeader>> {
    let host = match (&up.host_header, server) {
        (Some(host), _) => host.clone(),
        (None, ServerAddr::Ip(addr)) => addr.to_string(),
        (None, ServerAddr::Host { host, .. }) => host.clone(),
        (None, ServerAddr::Unix(_)) => "localhost".to_owned(),
    };
    let mut request = RequestHeader::build("GET", path.as_bytes(), Some(3))?;
    request.insert_header(http::header::HOST, host)?;
    request.insert_header(http::header::USER_AGENT, "triage-health-check")?;
    request.insert_header(http::header::CONNECTION, "close")?;
    Ok(Box::new(request))
}
