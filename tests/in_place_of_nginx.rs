//! What a user replacing nginx relies on, each against real servers on loopback: forwarding
//! headers, body limits, load balancing with health checks and ejection, retries, DNS changes,
//! and WebSocket upgrades.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use support::client::{self, Request};
use support::dns::spawn_dns;
use support::origin::{self, refused_addr, Behavior};
use support::triage::Triage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn route(upstream: &str) -> String {
    format!("[[routes]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\n")
}

/// Polls `/metrics` until `series` has `value`, for at most `within`; returns whether it did.
async fn metric_becomes(triage: &Triage, series: &str, value: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let m = client::get(triage.admin, "/metrics").await.body_text();
        if m.lines().any(|l| l == format!("{series} {value}")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The app gets X-Forwarded-For/Proto/Host and an X-Request-Id; Host is rewritten when the
/// upstream says so; hop-by-hop and Connection-nominated headers do not reach it.
#[tokio::test]
async fn forwarding_headers_reach_the_app() {
    let app = origin::spawn(Behavior::Echo).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\nhost_header = \"internal.app\"\n{}",
        app.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let resp = client::send(
        triage.http,
        Request::get("/")
            .header("Host", "shop.example")
            .header("X-Forwarded-For", "203.0.113.9")
            .header("Connection", "close, X-Secret")
            .header("X-Secret", "hop-only")
            .header("Keep-Alive", "timeout=5"),
    )
    .await
    .expect("response");
    assert_eq!(resp.status, 200);
    let seen = resp.body_text();
    let id = resp.header("x-diagnosis-id").expect("id");
    for line in [
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: shop.example",
        "host: internal.app",
        &format!("x-request-id: {id}"),
    ] {
        assert!(
            seen.lines().any(|l| l == line),
            "missing {line:?} in\n{seen}"
        );
    }
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("keep-alive"), "{seen}");
}

/// A client's well-formed X-Request-Id is passed through, and Host is kept by default.
#[tokio::test]
async fn request_id_and_host_pass_through() {
    let app = origin::spawn(Behavior::Echo).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n{}",
        app.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let resp = client::send(
        triage.http,
        Request::get("/")
            .header("Host", "shop.example")
            .header("X-Request-Id", "req-42"),
    )
    .await
    .expect("response");
    let seen = resp.body_text();
    assert!(seen.lines().any(|l| l == "x-request-id: req-42"), "{seen}");
    assert!(seen.lines().any(|l| l == "host: shop.example"), "{seen}");
}

/// A body over the route's max_body_size is refused with 413 request_body_too_large, whether
/// it is declared (Content-Length) or streamed (chunked); the app never sees it whole.
#[tokio::test]
async fn body_limit() {
    let app = origin::spawn(Behavior::Echo).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\nmax_body_size = 1000\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    let ok = client::send(triage.http, Request::post("/", vec![b'a'; 1000]))
        .await
        .expect("response");
    assert_eq!(ok.status, 200);
    let declared = client::send(triage.http, Request::post("/", vec![b'a'; 5000]))
        .await
        .expect("response");
    assert_eq!(declared.status, 413);
    assert_eq!(
        declared.header("x-diagnosis"),
        Some("request_body_too_large")
    );
    assert_eq!(declared.header("x-diagnosis-phase"), Some("request"));
    let mut chunked = b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend(b"3e8\r\n");
        chunked.extend(vec![b'b'; 1000]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let streamed = client::send_raw(triage.http, &chunked, Duration::from_secs(10))
        .await
        .expect("response");
    assert_eq!(streamed.status, 413, "{streamed:?}");
    assert_eq!(
        streamed.header("x-diagnosis"),
        Some("request_body_too_large")
    );
}

/// Two servers, one down: health checks take it out of rotation (gauge 0), every request lands
/// on the good one; when it comes back, checks put it back in (gauge 1) and it gets traffic.
#[tokio::test]
async fn health_checks_flip_a_server_out_and_back_in() {
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let flaky_addr = refused_addr();
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{flaky_addr}\"]\nretries = 0\n\
         [upstreams.app.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n{}",
        good.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let gauge =
        format!("triage_upstream_server_healthy{{server=\"{flaky_addr}\",upstream=\"app\"}}");
    assert!(
        metric_becomes(&triage, &gauge, "0", Duration::from_secs(5)).await,
        "the dead server never left the rotation"
    );
    for _ in 0..6 {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body_text(), "good\n");
    }
    let back = origin::spawn_at(flaky_addr, Behavior::ok("back\n"))
        .await
        .expect("rebind the server's port");
    assert!(
        metric_becomes(&triage, &gauge, "1", Duration::from_secs(5)).await,
        "the server never came back"
    );
    let mut bodies = Vec::new();
    for _ in 0..6 {
        bodies.push(client::get(triage.http, "/").await.body_text());
    }
    assert!(bodies.iter().any(|b| b == "back\n"), "{bodies:?}");
    assert!(back.requests() > 0);
}

/// Every server down: 503 no_healthy_upstream, and the detail names each server and its check.
#[tokio::test]
async fn no_healthy_upstream() {
    let (a, b) = (refused_addr(), refused_addr());
    let config = format!(
        "[upstreams.app]\nservers = [\"{a}\", \"{b}\"]\n\
         [upstreams.app.health_check]\ninterval = \"100ms\"\nunhealthy_threshold = 1\n{}",
        route("app")
    );
    let triage = Triage::start(&config).await;
    let gauge = format!("triage_upstream_server_healthy{{server=\"{b}\",upstream=\"app\"}}");
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_secs(5)).await);
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("no_healthy_upstream"));
    let detail = resp.header("x-diagnosis-detail").expect("detail");
    for server in [a, b] {
        assert!(
            detail.contains(&format!("{server}: failed health checks (connect_refused")),
            "{detail}"
        );
    }
}

/// A connect failure on the first server is retried on the second: the client gets the good
/// answer, with X-Diagnosis-Attempts: 2, and the retry is counted.
#[tokio::test]
async fn retry_lands_on_the_good_server() {
    let dead = refused_addr();
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{dead}\", \"{}\"]\nretries = 1\n{}",
        good.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "good\n");
    assert_eq!(resp.header("x-diagnosis-attempts"), Some("2"));
    assert!(
        metric_becomes(
            &triage,
            "triage_upstream_retries_total{upstream=\"app\"}",
            "1",
            Duration::from_secs(5)
        )
        .await
    );
}

/// With retries off, a dead server fails the request, then passive ejection keeps it out of
/// rotation for fail_timeout: the following requests all reach the good server.
#[tokio::test]
async fn passive_ejection_after_failures() {
    let dead = refused_addr();
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{dead}\", \"{}\"]\nretries = 0\nmax_fails = 1\nfail_timeout = \"30s\"\n{}",
        good.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let first = client::get(triage.http, "/").await;
    assert_eq!(first.status, 502);
    assert_eq!(first.header("x-diagnosis"), Some("connect_refused"));
    for _ in 0..6 {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let gauge = format!("triage_upstream_server_healthy{{server=\"{dead}\",upstream=\"app\"}}");
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_secs(2)).await);
}

/// The origin's address changes in DNS: triage re-resolves on its interval and follows it
/// (nginx keeps the stale address for ever), and logs the change.
#[tokio::test]
async fn dns_change_is_picked_up() {
    let (v4, v6) = origin::spawn_same_port(Behavior::ok("old\n"), Behavior::ok("new\n")).await;
    let dns = spawn_dns(HashMap::from([(
        "app.test".to_owned(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]))
    .await;
    let config = format!(
        "[resolver]\nnameservers = [\"{}\"]\nrefresh = \"100ms\"\n[upstreams.app]\nservers = [\"app.test:{}\"]\n{}",
        dns.addr,
        v4.addr.port(),
        route("app")
    );
    let triage = Triage::start(&config).await;
    assert_eq!(client::get(triage.http, "/").await.body_text(), "old\n");
    dns.set("app.test", vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    triage
        .wait_for_output("upstream address changed", Duration::from_secs(5))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut body = String::new();
    while tokio::time::Instant::now() < deadline {
        body = client::get(triage.http, "/").await.body_text();
        if body == "new\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body, "new\n");
    drop(v6);
}

/// A WebSocket-style echo server: answers the upgrade with 101, then echoes bytes.
async fn spawn_upgrade_echo() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

const UPGRADE_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A WebSocket upgrade passes through, and bytes go both ways after the 101.
#[tokio::test]
async fn websocket_echo_round_trip() {
    let app = spawn_upgrade_echo().await;
    let triage = Triage::start(&format!(
        "[upstreams.ws]\nservers = [\"{app}\"]\n{}",
        route("ws")
    ))
    .await;
    let mut stream = TcpStream::connect(triage.http).await.expect("connect");
    stream.write_all(UPGRADE_REQUEST).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte))
            .await
            .expect("101 in time")
            .expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-diagnosis-id:"), "{head}");
    // A masked WebSocket text frame "hello"; the echo server returns the bytes as they are.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    stream.write_all(&frame).await.expect("send frame");
    let mut echoed = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(echoed, frame);
}

/// The app answers an upgrade without switching protocols: its answer passes through, tagged
/// upgrade_refused; an app that resets instead gives 502 upgrade_failed.
#[tokio::test]
async fn websocket_refused_and_broken() {
    let refusing = origin::spawn(Behavior::respond(404, "no websockets here")).await;
    let breaking = origin::spawn(Behavior::ResetBeforeResponse).await;
    let config = format!(
        "[upstreams.refusing]\nservers = [\"{}\"]\n[upstreams.breaking]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/ws\"\nupstream = \"refusing\"\n[[routes]]\npath_prefix = \"/broken\"\nupstream = \"breaking\"\n",
        refusing.addr, breaking.addr
    );
    let triage = Triage::start(&config).await;
    let refused = client::send_raw(triage.http, UPGRADE_REQUEST, Duration::from_secs(5))
        .await
        .expect("response");
    assert_eq!(refused.status, 404);
    assert_eq!(refused.header("x-diagnosis"), Some("upgrade_refused"));
    assert_eq!(refused.header("x-diagnosis-source"), Some("upstream"));
    let broken_request = String::from_utf8_lossy(UPGRADE_REQUEST).replace("GET /ws", "GET /broken");
    let broken = client::send_raw(
        triage.http,
        broken_request.as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .expect("response");
    assert_eq!(broken.status, 502);
    assert_eq!(broken.header("x-diagnosis"), Some("upgrade_failed"));
}

/// A route's own read_timeout overrides its upstream's: the stuck request on that route gets
/// its 504 after the route's timeout, not the upstream's.
#[tokio::test]
async fn route_timeout_overrides_the_upstream() {
    let app = origin::spawn(Behavior::Stall).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\nread_timeout = \"30s\"\n\
         [[routes]]\npath_prefix = \"/quick\"\nupstream = \"app\"\nread_timeout = \"300ms\"\n{}",
        app.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let started = tokio::time::Instant::now();
    let resp = client::get(triage.http, "/quick/report").await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.header("x-diagnosis"), Some("response_timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// total_timeout bounds the wait for the answer even when read_timeout is longer.
#[tokio::test]
async fn total_timeout_bounds_the_exchange() {
    let app = origin::spawn(Behavior::SlowHeaders {
        delay: Duration::from_secs(3),
        status: 200,
    })
    .await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\nread_timeout = \"30s\"\ntotal_timeout = \"300ms\"\n{}",
        app.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let started = tokio::time::Instant::now();
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.header("x-diagnosis"), Some("response_timeout"));
    assert!(started.elapsed() < Duration::from_secs(2));
}
