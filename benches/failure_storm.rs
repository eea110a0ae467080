//! Failure storm: does memory stay flat when every request fails?
//!
//! Starts the release `triage` binary in front of a port where nothing listens, sends
//! `TRIAGE_STORM_REQUESTS` requests (default 1,000,000) from concurrent loopback clients, and
//! prints triage's resident memory after the first 10,000 and at the end, with their ratio.
//! Every request must come back as a diagnosed 502 `connect_refused`. Exits non-zero if the
//! growth is over 10% or any response is wrong. Bounded: at most 15 minutes.
//!
//! Run: `cargo bench --bench failure_storm` (see benches/README.md).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WARMUP: usize = 10_000;
const CONCURRENCY: usize = 64;
const TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One request on a new connection; true if it was the expected diagnosed 502.
async fn one_request(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let sent = stream
        .write_all(b"GET /storm HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    if sent.is_err() {
        return false;
    }
    let mut response = Vec::with_capacity(4096);
    if stream.read_to_end(&mut response).await.is_err() {
        return false;
    }
    response.starts_with(b"HTTP/1.1 502")
        && response
            .windows(b"x-diagnosis: connect_refused".len())
            .any(|w| w == b"x-diagnosis: connect_refused")
}

/// Sends `count` requests with `CONCURRENCY` clients; returns how many were wrong.
async fn storm(addr: SocketAddr, count: usize, deadline: Instant) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, wrong) = (Arc::clone(&next), Arc::clone(&wrong));
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count && Instant::now() < deadline {
                    if !one_request(addr).await {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.await;
    }
    wrong.load(Ordering::Relaxed)
}

fn main() {
    // `cargo bench` passes `--bench`; this benchmark takes no arguments of its own.
    let total: usize = std::env::var("TRIAGE_STORM_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dead = free_port(); // released at once: nothing listens there
    let http = free_port();
    let admin = free_port();
    let dir = std::env::temp_dir().join(format!("triage-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("storm.toml");
    // refused_holdoff off: every request goes through the connect path, the one that
    // allocates most per failure, instead of being answered from the last refusal.
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttp = [\"{http}\"]\n[admin]\nlisten = \"{admin}\"\n\
             [upstreams.dead]\nservers = [\"{dead}\"]\nrefused_holdoff = \"off\"\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"dead\"\n"
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start triage");
    let pid = child.id();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let verdict = runtime.block_on(async {
        let up_by = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(http).await.is_err() {
            if Instant::now() > up_by {
                return Err("triage did not start".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deadline = Instant::now() + TIME_LIMIT;
        let started = Instant::now();
        let mut wrong = storm(http, WARMUP.min(total), deadline).await;
        let rss_warm = rss_kib(pid);
        wrong += storm(http, total.saturating_sub(WARMUP), deadline).await;
        let elapsed = started.elapsed();
        let rss_end = rss_kib(pid);
        let growth = rss_end as f64 / rss_warm.max(1) as f64 - 1.0;
        println!(
            "failure storm: {total} requests to a refused upstream in {elapsed:.1?} ({:.0} req/s)",
            total as f64 / elapsed.as_secs_f64()
        );
        println!("resident memory after {WARMUP}: {rss_warm} KiB");
        println!("resident memory after {total}: {rss_end} KiB");
        println!(
            "growth: {:+.1}% (limit +10%), wrong responses: {wrong}",
            growth * 100.0
        );
        if Instant::now() > deadline {
            return Err("time limit reached before all requests were sent".to_owned());
        }
        if wrong > 0 {
            return Err(format!("{wrong} responses were not a diagnosed 502"));
        }
        if growth > 0.10 {
            return Err(format!("memory grew {:.1}%", growth * 100.0));
        }
        Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(reason) = verdict {
        eprintln!("FAIL: {reason}");
        std::process::exit(1);
    }
    println!("PASS");
}
