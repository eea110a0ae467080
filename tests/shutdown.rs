//! Shutdown is bounded: SIGINT ends triage within a second or two and SIGTERM after the
//! requests in flight finish (at most `[server] shutdown_timeout`), whatever the admin
//! listener, the health checks and the load are doing, and the log stays small.
//!
//! The bug these tests guard against was a race: a listener registered with one runtime
//! thread and accepted on another spun on "runtime is shutting down" accept errors without
//! yielding, so its runtime never finished shutting down and the log grew by ~100k lines a
//! second. The first test stops triage many times in a row under the conditions it was seen
//! in (health-checked two-server upstream with retries, load, an admin client on keep-alive
//! scraping /metrics) to give the race every chance.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::{self, Connection, Request};
use support::origin::{self, Behavior};
use support::triage::Triage;

/// How many times in a row the first test starts and stops triage.
const STOP_ROUNDS: usize = 16;
/// The most a log may hold after one start, some load and a stop (the access log is off).
const MAX_LOG_BYTES: usize = 64 * 1024;

/// A health-checked two-server upstream with one retry, behind `/`, without the access log
/// (so what remains in the log is what the shutdown wrote).
fn busy_config(a: SocketAddr, b: SocketAddr, extra: &str) -> String {
    format!(
        "[log]\naccess = false\n{extra}\n\
         [upstreams.app]\nservers = [\"{a}\", \"{b}\"]\nretries = 1\n\
         [upstreams.app.health_check]\nkind = \"tcp\"\ninterval = \"50ms\"\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    )
}

/// Keeps triage busy until it goes away: two clients sending requests, one admin client
/// scraping /metrics on a keep-alive connection. Every loop is bounded.
fn start_load(triage: &Triage) -> Vec<tokio::task::JoinHandle<()>> {
    let (http, admin) = (triage.http, triage.admin);
    let mut tasks: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    let request = Request::get("/").timeout(Duration::from_secs(5));
                    if client::send(http, request).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    tasks.push(tokio::spawn(async move {
        let Ok(mut scraper) = Connection::connect(admin).await else {
            return;
        };
        for _ in 0..2_000 {
            let request = Request::get("/metrics").timeout(Duration::from_secs(5));
            if scraper.send(request).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    tasks
}

fn stop_load(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.abort();
    }
}

/// The log a stopped triage left, checked to be small and free of an accept-error storm.
fn assert_small_log(triage: &Triage, round: usize) {
    let log = triage.stdout() + &triage.stderr();
    let accept_errors = log.matches("Accept() failed").count();
    assert!(
        log.len() <= MAX_LOG_BYTES && accept_errors <= 2,
        "round {round}: the log holds {} bytes, {accept_errors} accept errors; its start:\n{}",
        log.len(),
        &log[..log.len().min(4096)]
    );
}

/// SIGINT and SIGTERM in turn, many times in a row under load: each process exits within 3 s
/// (SIGTERM drains requests that take a millisecond) and writes a few kilobytes of log at most.
#[tokio::test]
async fn stopped_under_load_exits_in_time_every_time() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    for round in 0..STOP_ROUNDS {
        let mut triage = Triage::start(&busy_config(a.addr, b.addr, "")).await;
        let load = start_load(&triage);
        // Stop at a different point of the load in each round.
        tokio::time::sleep(Duration::from_millis(150 + 40 * round as u64)).await;
        let signal = if round % 2 == 0 { "INT" } else { "TERM" };
        triage.signal(signal);
        let exited = triage.wait_exit(Duration::from_secs(3)).await;
        stop_load(load);
        assert!(
            exited.is_some(),
            "round {round}: triage still runs 3 s after SIG{signal}"
        );
        assert_small_log(&triage, round);
    }
}

/// SIGTERM with a request in flight: that request still gets its answer, and triage exits as
/// soon as it is done, well before the grace period ends.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits() {
    let slow = origin::spawn(Behavior::SlowHeaders {
        delay: Duration::from_millis(700),
        status: 200,
    })
    .await;
    let other = origin::spawn(Behavior::ok("fast\n")).await;
    let config = busy_config(
        slow.addr,
        other.addr,
        "[server]\nshutdown_timeout = \"20s\"\n",
    );
    // Only the slow server: the request in flight must be the slow one.
    let config = config.replace(&format!(", \"{}\"", other.addr), "");
    let mut triage = Triage::start(&config).await;
    let http = triage.http;
    let in_flight = tokio::spawn(async move { client::send(http, Request::get("/")).await });
    // The request has reached the app when the origin counts it.
    for _ in 0..100 {
        if slow.requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.requests(), 1, "the request never reached the app");
    triage.signal("TERM");
    let answer = in_flight.await.expect("client task").expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    let exited = triage.wait_exit(Duration::from_secs(5)).await;
    let (took, status) = exited.expect("triage still runs 5 s after its last request finished");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    triage
        .wait_for_output("no request in flight; exiting", Duration::from_secs(1))
        .await;
    assert_small_log(&triage, 0);
}

/// SIGTERM with a request that would never finish (the app is stuck, read_timeout is long):
/// triage exits when `shutdown_timeout` ends and says how many requests it cut.
#[tokio::test]
async fn sigterm_exits_at_the_grace_period_with_a_stuck_request() {
    let stuck = origin::spawn(Behavior::Stall).await;
    let mut triage = Triage::start(&format!(
        "[server]\nshutdown_timeout = \"1s\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nread_timeout = \"60s\"\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        stuck.addr
    ))
    .await;
    let http = triage.http;
    let in_flight = tokio::spawn(async move {
        client::send(http, Request::get("/").timeout(Duration::from_secs(30))).await
    });
    for _ in 0..100 {
        if stuck.requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stuck.requests(), 1, "the request never reached the app");
    triage.signal("TERM");
    let exited = triage.wait_exit(Duration::from_secs(4)).await;
    let (took, _) = exited.expect("triage still runs 4 s after SIGTERM with a 1 s grace period");
    assert!(
        took >= Duration::from_millis(900),
        "{took:?}: exited before the grace period"
    );
    assert!(
        in_flight.await.expect("client task").is_err(),
        "the stuck request cannot have been answered"
    );
    triage
        .wait_for_output("1 requests still in flight", Duration::from_secs(1))
        .await;
}

/// The access lines still held in their threads' batches when a signal ends triage are
/// written before it exits, on SIGTERM and on SIGINT: with `access_flush = "10s"` nothing but
/// the exit writes them within the test (the exit's flush, or the batches' drop when Pingora
/// drops the proxy; with neither the lines are lost and the test fails).
#[tokio::test]
async fn access_lines_held_at_exit_are_written() {
    let app = origin::spawn(Behavior::ok("ok\n")).await;
    for signal in ["TERM", "INT"] {
        let mut triage = Triage::start(&format!(
            "[log]\naccess_flush = \"10s\"\n\
             [upstreams.app]\nservers = [\"{}\"]\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
            app.addr
        ))
        .await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let resp = client::get(triage.http, &format!("/held/{signal}/{n}")).await;
            assert_eq!(resp.status, 200, "{resp:?}");
            ids.push(resp.header("x-diagnosis-id").expect("id").to_owned());
        }
        triage.signal(signal);
        let exited = triage.wait_exit(Duration::from_secs(5)).await;
        assert!(exited.is_some(), "triage still runs 5 s after SIG{signal}");
        let log = triage.stdout();
        for id in &ids {
            assert!(
                log.lines()
                    .any(|l| l.contains(&format!("id={id}")) && l.contains(" 200 ")),
                "SIG{signal}: no access line for {id}:\n{log}"
            );
        }
    }
}
