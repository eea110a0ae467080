//! Active health checks: every `interval`, each server of an upstream that has a
//! `[upstreams.NAME.health_check]` is probed (a TCP connect, or `GET path` expecting 2xx/3xx),
//! and the result, classified with the same taxonomy as live traffic, moves the server in or out
//! of rotation once the thresholds are met.

use super::balancer::{CheckResult, Transition};
use super::State;
use crate::config::{HealthCheck, HealthCheckKind, ServerAddr};
use crate::diagnosis::Diagnosis;
use crate::resolve::HostResolver;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

async fn check_upstream_forever(state: &State, upstream: usize, check: &HealthCheck) {
    let Some(up) = state.upstreams.get(upstream) else {
        return;
    };
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (index, server) in up.balancer.servers.iter().enumerate() {
            let result = probe(&server.addr, check, &state.resolver).await;
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

/// One check of one server.
async fn probe(server: &ServerAddr, check: &HealthCheck, resolver: &HostResolver) -> CheckResult {
    let outcome = tokio::time::timeout(check.timeout, async {
        let addr = match server {
            ServerAddr::Ip(addr) => *addr,
            ServerAddr::Host { host, port } => match resolver.addresses(host).await {
                Ok(found) => SocketAddr::new(found.0[0], *port),
                Err(reason) => return Err((Diagnosis::DnsError, reason)),
            },
        };
        let mut stream = TcpStream::connect(addr).await.map_err(|e| {
            let diagnosis = match e.kind() {
                ErrorKind::ConnectionRefused => Diagnosis::ConnectRefused,
                ErrorKind::TimedOut => Diagnosis::ConnectTimeout,
                _ => Diagnosis::ConnectFailed,
            };
            (diagnosis, e.to_string())
        })?;
        match &check.kind {
            HealthCheckKind::Tcp => Ok(()),
            HealthCheckKind::Http { path } => http_check(&mut stream, server, path).await,
        }
    })
    .await;
    let (diagnosis, detail) = match outcome {
        Ok(Ok(())) => (None, String::new()),
        Ok(Err((diagnosis, detail))) => (Some(diagnosis), detail),
        Err(_) => (
            Some(Diagnosis::ResponseTimeout),
            format!("no answer within {:?}", check.timeout),
        ),
    };
    CheckResult {
        at: SystemTime::now(),
        diagnosis,
        detail,
    }
}

/// `GET path` over an open connection; 2xx and 3xx pass.
async fn http_check(
    stream: &mut TcpStream,
    server: &ServerAddr,
    path: &str,
) -> Result<(), (Diagnosis, String)> {
    let host = match server {
        ServerAddr::Ip(addr) => addr.to_string(),
        ServerAddr::Host { host, .. } => host.clone(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: triage-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| (Diagnosis::RequestSendFailed, e.to_string()))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    // The status line is all a check needs: "HTTP/1.1 200" is 12 bytes.
    while read < 12 {
        match stream.read(&mut head[read..]).await {
            Ok(0) => {
                return Err((
                    Diagnosis::ConnectionClosed,
                    format!("closed after {read} bytes"),
                ))
            }
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Err((Diagnosis::ConnectionReset, e.to_string()))
            }
            Err(e) => return Err((Diagnosis::ConnectionReset, e.to_string())),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200..=399) => Ok(()),
        Some(code) => Err((
            Diagnosis::UpstreamStatus,
            format!("GET {path} answered {code}"),
        )),
        None => Err((
            Diagnosis::InvalidResponse,
            format!("not an HTTP response: {}", line.escape_default()),
        )),
    }
}
