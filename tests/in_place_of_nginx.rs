//! What a user replacing nginx relies on, each against real servers on loopback: forwarding
//! headers, body limits, load balancing with health checks and ejection (which nothing a client
//! does can trigger), retries, DNS changes, and WebSocket upgrades.

mod support;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use support::certs::TestPki;
use support::client::{self, Request};
use support::dns::spawn_dns;
use support::origin::{self, refused_addr, Behavior};
use support::triage::{metric_becomes, Triage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn route(upstream: &str) -> String {
    format!("[[routes]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\n")
}

/// An app that echoes the request it got, behind triage on one route; `upstream_keys` are
/// added to its upstream's table.
async fn echo_app_behind_triage(upstream_keys: &str) -> (origin::Origin, Triage) {
    let app = origin::spawn(Behavior::Echo).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n{upstream_keys}{}",
        app.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    (app, triage)
}

/// The app gets X-Forwarded-For/Proto/Host, X-Real-IP and an X-Request-Id; Host is rewritten
/// when the upstream says so; hop-by-hop and Connection-nominated headers do not reach it, nor
/// a client's own claims of an address (X-Real-IP is replaced, Forwarded and True-Client-IP
/// removed).
#[tokio::test]
async fn forwarding_headers_reach_the_app() {
    let (_app, triage) = echo_app_behind_triage("host_header = \"internal.app\"\n").await;
    let resp = client::send(
        triage.http,
        Request::get("/")
            .header("Host", "shop.example")
            .header("X-Forwarded-For", "203.0.113.9")
            .header("Connection", "close, X-Secret")
            .header("X-Secret", "hop-only")
            .header("Keep-Alive", "timeout=5")
            .header("X-Real-IP", "10.6.6.6")
            .header("Forwarded", "for=10.6.6.6")
            .header("True-Client-IP", "10.6.6.6"),
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
        "x-real-ip: 127.0.0.1",
        &format!("x-request-id: {id}"),
    ] {
        assert!(
            seen.lines().any(|l| l == line),
            "missing {line:?} in\n{seen}"
        );
    }
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("keep-alive"), "{seen}");
    assert!(!seen.contains("10.6.6.6"), "{seen}");
}

/// Each standard hop-by-hop field is removed on its own, without a Connection header naming
/// anything (Pingora is patched to skip the removals when a request has none of them: this is
/// what that check must not miss).
#[tokio::test]
async fn hop_by_hop_fields_without_connection_do_not_reach_the_app() {
    let (_app, triage) = echo_app_behind_triage("").await;
    for (name, value) in [
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Proxy-Authenticate", "Basic"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
    ] {
        let resp = client::send(triage.http, Request::get("/").header(name, value))
            .await
            .expect("response");
        assert_eq!(resp.status, 200, "{name}");
        let seen = resp.body_text();
        let lowercase = name.to_ascii_lowercase();
        assert!(
            !seen
                .lines()
                .any(|l| l.starts_with(&format!("{lowercase}:"))),
            "{name} reached the app:\n{seen}"
        );
        assert!(
            seen.lines().any(|l| l.starts_with("x-request-id: ")),
            "{seen}"
        );
    }
}

/// Upstream connections are kept alive and reused, as nginx's `keepalive` does: ten requests,
/// each on a new client connection, reach the app over one connection, on IPv4 and on IPv6
/// (Pingora is patched to check a pooled connection's peer against the address it connected
/// to, not by `getpeername`: this is what that check must still let through). Each request is
/// sent once the one before it is logged: Pingora pools the upstream connection after the
/// response's last byte went to the client, so a client that comes back at once can be ahead
/// of it, and the connection pooled just after would only be reused by the request after.
#[tokio::test]
async fn upstream_connections_are_reused() {
    for loopback in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let app = origin::spawn_at(SocketAddr::new(loopback, 0), Behavior::Echo)
            .await
            .expect("bind the app on loopback");
        let config = format!(
            "[upstreams.app]\nservers = [\"{}\"]\n{}",
            app.addr,
            route("app")
        );
        let triage = Triage::start(&config).await;
        for i in 0..10 {
            let resp = client::get(triage.http, "/").await;
            assert_eq!(resp.status, 200, "request {i} to {}", app.addr);
            triage
                .wait_for_output_times("\"GET / HTTP/1.1\" 200 ", i + 1, Duration::from_secs(5))
                .await;
        }
        assert_eq!(app.requests(), 10, "{}", app.addr);
        assert_eq!(app.connections(), 1, "connections to {}", app.addr);
    }
}

/// A client's well-formed X-Request-Id is passed through, and Host is kept by default.
#[tokio::test]
async fn request_id_and_host_pass_through() {
    let (_app, triage) = echo_app_behind_triage("").await;
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

/// A request body and a response body of several MiB pass through whole and in order, twice
/// on one kept-alive client connection and then a plain GET: between its two halves the HTTP/1
/// path passes bodies in pieces through a pipe four pieces deep (pingora-proxy patch 9), so
/// each direction fills it and waits for the other side to drain it.
#[tokio::test]
async fn large_bodies_pass_whole_both_ways() {
    let app = origin::spawn(Behavior::Echo).await;
    // Bytes that differ from piece to piece, so that a piece lost, doubled or reordered shows.
    let pattern = |len: usize, seed: u32| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8)
            .collect()
    };
    let download = pattern(3 << 20, 7);
    let big = origin::spawn(Behavior::Respond {
        status: 200,
        headers: vec![(
            "Content-Type".to_owned(),
            "application/octet-stream".to_owned(),
        )],
        body: download.clone(),
    })
    .await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[upstreams.big]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/download\"\nupstream = \"big\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\nmax_body_size = 8388608\n",
        app.addr, big.addr
    );
    let triage = Triage::start(&config).await;
    let mut conn = client::Connection::connect(triage.http)
        .await
        .expect("connect");
    let uploads = [pattern(5 << 20, 1), pattern((2 << 20) + 12_345, 2)];
    for upload in &uploads {
        let resp = conn
            .send(Request::post("/upload", upload.clone()).timeout(Duration::from_secs(30)))
            .await
            .expect("response");
        assert_eq!(resp.status, 200, "{:?}", resp.headers);
        assert_eq!(
            resp.header("x-echo-body-length"),
            Some(upload.len().to_string().as_str())
        );
    }
    let received = app.received();
    assert_eq!(received.len(), 2);
    for (got, sent) in received.iter().zip(&uploads) {
        assert!(
            got.body == *sent,
            "the app got {} bytes, not the {} sent",
            got.body.len(),
            sent.len()
        );
    }
    let resp = conn
        .send(Request::get("/download").timeout(Duration::from_secs(30)))
        .await
        .expect("response");
    assert_eq!(resp.status, 200);
    assert!(
        resp.body == download,
        "{} bytes came, not the {} sent",
        resp.body.len(),
        download.len()
    );
    assert_eq!(big.connections(), 1);
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

/// A TLS connection to triage's https listener, trusting `pki`'s CA, speaking HTTP/2 (ALPN
/// h2): the client handle, and the task driving the connection (abort it to drop the
/// connection at once, as a browser tab closing does).
async fn h2_connect(
    pki: &TestPki,
    https: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let mut config = (*pki.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(https).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    (client, tokio::spawn(connection))
}

/// Sends a GET for `path` on a new HTTP/2 stream and returns the response future, which cancels
/// the stream (RST_STREAM(CANCEL), as a browser navigating away does) when dropped unanswered.
async fn h2_get(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> h2::client::ResponseFuture {
    let ready = tokio::time::timeout(Duration::from_secs(5), client.clone().ready())
        .await
        .expect("stream capacity in time")
        .expect("h2 connection usable");
    *client = ready;
    let request = http::Request::get(format!("https://localhost{path}"))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    response
}

/// Waits (bounded) until the two origins together have read `count` requests; false if they
/// never do, e.g. because triage stopped sending to them.
async fn origins_reach(a: &origin::Origin, b: &origin::Origin, count: usize) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if a.requests() + b.requests() >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Two slow servers with max_fails = 3, and the config both tests below share. The delay
/// leaves a client ample time to go away while triage waits for the answer.
async fn two_slow_servers() -> (origin::Origin, origin::Origin, String) {
    let slow = Behavior::SlowHeaders {
        delay: Duration::from_secs(1),
        status: 200,
    };
    let (a, b) = (origin::spawn(slow.clone()).await, origin::spawn(slow).await);
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{}\"]\nretries = 0\nmax_fails = 3\nfail_timeout = \"60s\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\nmax_body_size = 1000\n",
        a.addr, b.addr
    );
    (a, b, config)
}

/// Both servers are in rotation (health gauge 1), and the next requests all succeed and reach
/// both of them.
async fn both_servers_serve(triage: &Triage, a: &origin::Origin, b: &origin::Origin) {
    for server in [a.addr, b.addr] {
        let gauge =
            format!("triage_upstream_server_healthy{{server=\"{server}\",upstream=\"app\"}}");
        let m = client::get(triage.admin, "/metrics").await.body_text();
        assert!(
            m.lines().any(|l| l == format!("{gauge} 1")),
            "{server} left the rotation:\n{m}"
        );
    }
    let (before_a, before_b) = (a.requests(), b.requests());
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let http = triage.http;
        requests.spawn(async move { client::get(http, "/after").await });
    }
    while let Some(resp) = requests.join_next().await {
        let resp = resp.expect("request task");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert!(
        a.requests() > before_a && b.requests() > before_b,
        "both servers get requests: {} -> {}, {} -> {}",
        before_a,
        a.requests(),
        before_b,
        b.requests()
    );
}

/// An HTTP/2 client cancelling its streams (RST_STREAM(CANCEL), as a browser navigating away)
/// or dropping its connection while the app is slow is client_closed, as an HTTP/1 hang-up
/// is: the access log says 499 client_closed, so do the reports and the metrics, and it counts
/// against no server: eight of them on a two-server upstream with max_fails = 3 (where six
/// counted failures would eject both) leave both in rotation, serving.
#[tokio::test]
async fn http2_cancel_is_client_closed_and_ejects_no_server() {
    let pki = TestPki::new();
    let (a, b, config) = two_slow_servers().await;
    let triage = Triage::start_https(&pki.leaf(&["localhost"]), &config).await;
    let https = triage.https.expect("https listener");
    let (mut client, _connection) = h2_connect(&pki, https).await;
    for sent in 1..=6 {
        let response = h2_get(&mut client, "/cancelled").await;
        assert!(
            origins_reach(&a, &b, sent).await,
            "request {sent} never reached a server"
        );
        drop(response);
    }
    // A connection dropped with a stream in flight (a browser tab closed) is the same.
    for sent in 7..=8 {
        let (mut dropped, connection) = h2_connect(&pki, https).await;
        let response = h2_get(&mut dropped, "/dropped").await;
        assert!(
            origins_reach(&a, &b, sent).await,
            "request {sent} never reached a server"
        );
        connection.abort();
        drop(response);
    }
    assert!(
        metric_becomes(
            &triage,
            "triage_upstream_failures_total{cause=\"client_error\",diagnosis=\"client_closed\",phase=\"request\",upstream=\"app\"}",
            "8",
            Duration::from_secs(5)
        )
        .await,
        "eight client_closed failures; metrics:\n{}\nlog:\n{}",
        client::get(triage.admin, "/metrics").await.body_text(),
        triage.stdout()
    );
    // Access lines are written in batches, at most `[log] access_flush` (100ms) late.
    let log = triage
        .wait_for_output_times("HTTP/2.0\" 499 ", 8, Duration::from_secs(5))
        .await;
    let cancelled: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("\"GET /cancelled HTTP/2.0\"") || l.contains("\"GET /dropped HTTP/2.0\"")
        })
        .collect();
    assert_eq!(cancelled.len(), 8, "{log}");
    for line in &cancelled {
        assert!(line.contains("\" 499 "), "{line}");
        assert!(line.contains("diagnosis=client_closed"), "{line}");
    }
    let m = client::get(triage.admin, "/metrics").await.body_text();
    assert!(
        m.lines()
            .any(|l| l == "triage_client_closed_total{route=\"/\"} 8"),
        "{m}"
    );
    let list = client::send(
        triage.admin,
        Request::get("/diagnoses?diagnosis=client_closed").header("Accept", "application/json"),
    )
    .await
    .expect("report list");
    let json: serde_json::Value = serde_json::from_slice(&list.body).expect("JSON");
    let reports = json["diagnoses"].as_array().expect("array");
    assert_eq!(reports.len(), 8, "{json}");
    assert!(reports.iter().all(|r| r["status"] == 499), "{json}");
    both_servers_serve(&triage, &a, &b).await;
    // The HTTP/2 connection itself still serves, on both servers.
    let (before_a, before_b) = (a.requests(), b.requests());
    for _ in 0..2 {
        let response = h2_get(&mut client, "/after").await;
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("answer in time")
            .expect("response");
        assert_eq!(response.status(), 200);
    }
    assert!(a.requests() > before_a && b.requests() > before_b);
}

/// Nothing a client does counts against a server. Fifty client-caused failures, mixed, against
/// a two-server upstream with max_fails = 3 (where six counted failures would eject both):
/// a `Connection` header nominating a protected header (400 bad_request, nothing reaches the
/// app), a streamed body over max_body_size (413), an upload the client abandons half-way,
/// HTTP/1 clients hanging up while the app is slow, and HTTP/2 streams cancelled while it is
/// slow (the last three 499 client_closed). None is answered 503 no_healthy_upstream, none
/// ejects a server, and afterwards both servers are in rotation and serve.
#[tokio::test]
async fn client_caused_failures_never_eject_a_server() {
    let pki = TestPki::new();
    let (a, b, config) = two_slow_servers().await;
    let triage = Triage::start_https(&pki.leaf(&["localhost"]), &config).await;
    let (mut h2, _connection) = h2_connect(&pki, triage.https.expect("https listener")).await;
    let mut chunked_over_limit =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked_over_limit.extend(b"3e8\r\n");
        chunked_over_limit.extend(vec![b'b'; 1000]);
        chunked_over_limit.extend(b"\r\n");
    }
    chunked_over_limit.extend(b"0\r\n\r\n");
    let mut abandoned_upload =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 900\r\n\r\n".to_vec();
    abandoned_upload.extend(vec![b'c'; 400]);
    let mut reached = 0;
    for round in 0..10 {
        let bad = client::send(
            triage.http,
            Request::get("/bad").header("Connection", "keep-alive, X-Forwarded-For"),
        )
        .await
        .expect("response");
        assert_eq!(bad.status, 400, "round {round}: {bad:?}");
        assert_eq!(bad.header("x-diagnosis"), Some("bad_request"), "{bad:?}");
        let large = client::send_raw(triage.http, &chunked_over_limit, Duration::from_secs(5))
            .await
            .expect("response");
        assert_eq!(large.status, 413, "round {round}: {large:?}");
        assert_eq!(
            large.header("x-diagnosis"),
            Some("request_body_too_large"),
            "{large:?}"
        );
        let mut upload = TcpStream::connect(triage.http).await.expect("connect");
        upload.write_all(&abandoned_upload).await.expect("write");
        drop(upload);
        let mut hang_up = TcpStream::connect(triage.http).await.expect("connect");
        hang_up
            .write_all(b"GET /hang-up HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let cancelled = h2_get(&mut h2, "/cancelled").await;
        reached += 2;
        assert!(
            origins_reach(&a, &b, reached).await,
            "round {round}: the slow requests no longer reach a server"
        );
        drop(hang_up);
        drop(cancelled);
    }
    assert!(
        metric_becomes(
            &triage,
            "triage_upstream_failures_total{cause=\"client_error\",diagnosis=\"client_closed\",phase=\"request\",upstream=\"app\"}",
            "30",
            Duration::from_secs(5)
        )
        .await,
        "30 client_closed failures; log:\n{}",
        triage.stdout()
    );
    let log = triage.stdout();
    assert!(!log.contains("no_healthy_upstream"), "{log}");
    assert!(!log.contains("server ejected"), "{log}");
    both_servers_serve(&triage, &a, &b).await;
}

/// The positive control of the tests above: failures the server causes still eject it. A
/// server that resets every connection after reading the request is out after max_fails = 3
/// resets (connection_reset, counted on an established connection, unlike the refused connects
/// of passive_ejection_after_failures), and then every request lands on the good server.
#[tokio::test]
async fn upstream_resets_still_eject_the_server() {
    let resetting = origin::spawn(Behavior::ResetBeforeResponse).await;
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{}\"]\nretries = 0\nmax_fails = 3\nfail_timeout = \"60s\"\n{}",
        resetting.addr,
        good.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let mut resets = 0;
    for _ in 0..6 {
        let resp = client::get(triage.http, "/").await;
        if resp.status == 502 {
            assert_eq!(
                resp.header("x-diagnosis"),
                Some("connection_reset"),
                "{resp:?}"
            );
            resets += 1;
        }
    }
    assert_eq!(resets, 3);
    let gauge = format!(
        "triage_upstream_server_healthy{{server=\"{}\",upstream=\"app\"}}",
        resetting.addr
    );
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_secs(2)).await);
    let seen = resetting.requests();
    for _ in 0..6 {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert_eq!(
        resetting.requests(),
        seen,
        "an ejected server gets no requests"
    );
}

/// The healthy gauge follows the real state: 0 while a server is ejected, 1 again once its
/// `fail_timeout` has passed and it is back in rotation (the gauge used to stay 0 for ever).
#[tokio::test]
async fn healthy_gauge_returns_when_the_ejection_ends() {
    let dead = refused_addr();
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{dead}\", \"{}\"]\nretries = 0\nmax_fails = 1\nfail_timeout = \"1s\"\nrefused_holdoff = \"off\"\n{}",
        good.addr,
        route("app")
    );
    let triage = Triage::start(&config).await;
    let gauge = format!("triage_upstream_server_healthy{{server=\"{dead}\",upstream=\"app\"}}");
    let mut refused = false;
    for _ in 0..4 {
        refused |= client::get(triage.http, "/").await.status == 502;
    }
    assert!(refused, "no request went to the dead server");
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_millis(500)).await);
    assert!(
        metric_becomes(&triage, &gauge, "1", Duration::from_secs(3)).await,
        "the gauge stayed 0 after fail_timeout"
    );
}
