//! Clients that are slow, idle, greedy or never read, against the real triage binary with short
//! `[client]` limits: each is cut off by its limit, answered with the diagnosis a client sees
//! (408, 431) where something can still be answered, counted in
//! `triage_client_connections_closed_total{reason}`, and never counted against the upstream.
//! Without the limits (Pingora 0.9.1 as published) every one of these connections is held for
//! ever, with its buffers; each wait here is bounded, so such a test fails instead of hanging.

mod support;

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::certs::TestPki;
use support::client::{self, Connection, Request};
use support::http1::{Framing, Head, WireReader};
use support::origin::{self, Behavior, Origin};
use support::triage::Triage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any one wait of these tests may take: far beyond the 1 s limits configured,
/// so a limit that works never comes near it, and one that does not fails the test here.
const BOUND: Duration = Duration::from_secs(10);

/// triage in front of `app` (max_fails = 1, so a single failure counted against the server
/// would take it out of rotation) with these `[client]` keys.
async fn start(app: &Origin, client: &str) -> Triage {
    Triage::start(&config(app.addr, client)).await
}

fn config(app: SocketAddr, client: &str) -> String {
    format!(
        "[client]\n{client}\n[upstreams.app]\nservers = [\"{app}\"]\nmax_fails = 1\n\
         fail_timeout = \"1h\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    )
}

/// The value of `triage_client_connections_closed_total{reason}` in a scrape.
fn closed(metrics: &str, reason: &str) -> u64 {
    series(
        metrics,
        &format!("triage_client_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}

/// The value of the series written exactly `name_and_labels` in a scrape (0 when absent).
fn series(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Scrapes `/metrics` until `ready` holds (counts are made just after a connection ends), for
/// at most [`BOUND`]; returns the last scrape either way.
async fn metrics_when(triage: &Triage, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let m = client::get(triage.admin, "/metrics").await.body_text();
        if ready(&m) || tokio::time::Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the upstream's server is still in rotation: its gauge says so and a request gets
/// the app's 200 (not 503 `no_healthy_upstream`).
async fn assert_server_in_rotation(triage: &Triage, app: &Origin) {
    let metrics = client::get(triage.admin, "/metrics").await.body_text();
    let healthy = format!(
        "triage_upstream_server_healthy{{server=\"{}\",upstream=\"app\"}}",
        app.addr
    );
    assert_eq!(series(&metrics, &healthy), 1, "{metrics}");
    let response = client::get(triage.http, "/after").await;
    assert_eq!(response.status, 200, "{response:?}");
}

/// Reads a response head from `reader`, then everything up to the server's close; `None` for
/// the head if the server closed (or reset) first. Returns whether the connection ended
/// within [`BOUND`].
async fn answer_then_close<S: tokio::io::AsyncRead + Unpin>(
    reader: &mut WireReader<S>,
) -> (Option<Head>, bool) {
    let read = async {
        let head = reader.read_head(64 << 10).await.ok();
        let _ = reader.read_body(Framing::UntilClose, 1 << 20).await;
        head
    };
    match tokio::time::timeout(BOUND, read).await {
        Ok(head) => (head, true),
        Err(_) => (None, false),
    }
}

/// Whether the server closes `stream` (EOF or reset) within [`BOUND`] without sending a byte.
async fn closed_without_a_byte(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(BOUND, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A client that sends its request head one byte at a time (a byte every 100 ms, each read
/// resetting any per-read timeout) gets 408 `client_header_timeout` once `header_timeout`
/// (1 s) has passed since the connection started, and then the connection closes. It is
/// counted (`header_timeout`), logged, and nothing reaches the app. Fails without the patched
/// Pingora, whose timeout applied to each read and so never expired.
#[tokio::test]
async fn a_header_drip_gets_408_and_the_connection_closes() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = start(&app, "header_timeout = \"1s\"").await;
    let (read, mut write) = TcpStream::connect(triage.http).await.unwrap().into_split();
    let drip = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Drip: ".iter();
        for &byte in head.chain(std::iter::repeat(&b'a')).take(100) {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (head, closed_after) = answer_then_close(&mut WireReader::new(read)).await;
    drip.abort();
    let head = head.expect("a response before the connection closed");
    assert!(head.start_line.starts_with("HTTP/1.1 408 "), "{head:?}");
    assert_eq!(head.header("x-diagnosis"), Some("client_header_timeout"));
    assert_eq!(head.header("connection"), Some("close"));
    assert!(closed_after, "the connection stayed open after the 408");
    let m = metrics_when(&triage, |m| closed(m, "header_timeout") == 1).await;
    assert_eq!(closed(&m, "header_timeout"), 1, "{m}");
    triage
        .wait_for_output("diagnosis=client_header_timeout", BOUND)
        .await;
    assert_eq!(app.requests(), 0);
}

/// A connection that sends nothing at all is closed after `header_timeout`, with nothing
/// sent (there is no request to answer, as nginx does), and counted as `header_timeout`.
#[tokio::test]
async fn a_silent_connection_is_closed_after_header_timeout() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = start(&app, "header_timeout = \"1s\"").await;
    let mut silent = TcpStream::connect(triage.http).await.unwrap();
    assert!(closed_without_a_byte(&mut silent).await);
    let m = metrics_when(&triage, |m| closed(m, "header_timeout") == 1).await;
    assert_eq!(closed(&m, "header_timeout"), 1, "{m}");
}

/// A client that stops sending its request body gets 408 `client_body_timeout` after
/// `body_timeout` (1 s) without data, and its connection closes; it is counted as
/// `body_timeout`, and though the request had reached the app, the server stays in rotation
/// (max_fails = 1 would have ejected it on one counted failure).
#[tokio::test]
async fn a_stalled_body_gets_408_and_never_counts_against_the_upstream() {
    let app = origin::spawn(Behavior::Echo).await;
    let triage = start(&app, "body_timeout = \"1s\"").await;
    let mut tcp = TcpStream::connect(triage.http).await.unwrap();
    tcp.write_all(b"PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let (head, closed_after) = answer_then_close(&mut WireReader::new(tcp)).await;
    let head = head.expect("a response before the connection closed");
    assert!(head.start_line.starts_with("HTTP/1.1 408 "), "{head:?}");
    assert_eq!(head.header("x-diagnosis"), Some("client_body_timeout"));
    assert!(closed_after, "the connection stayed open after the 408");
    let m = metrics_when(&triage, |m| closed(m, "body_timeout") == 1).await;
    assert_eq!(closed(&m, "body_timeout"), 1, "{m}");
    assert_server_in_rotation(&triage, &app).await;
}

/// The same over HTTP/2: a stream whose body stops gets 408 `client_body_timeout` after
/// `body_timeout`. Fails without the patch: Pingora 0.9.1 read an HTTP/2 body without any
/// timeout.
#[tokio::test]
async fn a_stalled_http2_body_gets_408() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::Echo).await;
    let triage = Triage::start_https(
        &pki.leaf(&["localhost"]),
        &config(app.addr, "body_timeout = \"1s\""),
    )
    .await;
    let (client, _connection) = h2_connect(&pki, &triage).await;
    let mut client = client.ready().await.expect("h2 ready");
    let request = http::Request::put("https://localhost/upload")
        .header("content-length", "1000")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).expect("send");
    body.send_data(Bytes::from_static(b"abc"), false).unwrap();
    let response = tokio::time::timeout(BOUND, response)
        .await
        .expect("an answer within the bound")
        .expect("a response");
    assert_eq!(response.status(), 408);
    assert_eq!(
        response.headers().get("x-diagnosis").unwrap(),
        "client_body_timeout"
    );
    let m = metrics_when(&triage, |m| closed(m, "body_timeout") == 1).await;
    assert_eq!(closed(&m, "body_timeout"), 1, "{m}");
}

/// A kept-alive connection serves requests back to back, then, idle for `keepalive_timeout`
/// (1 s), is closed, and counted as `keepalive_timeout`. Fails without the patch: Pingora
/// 0.9.1 waited for the next request of an HTTP/1.1 connection for ever.
#[tokio::test]
async fn an_idle_keepalive_connection_is_closed() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = start(&app, "keepalive_timeout = \"1s\"").await;
    let mut connection = Connection::connect(triage.http).await.unwrap();
    for path in ["/one", "/two"] {
        let response = connection.send(Request::get(path)).await.unwrap();
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    let mut tcp = connection.into_tcp();
    assert!(closed_without_a_byte(&mut tcp).await);
    let m = metrics_when(&triage, |m| closed(m, "keepalive_timeout") == 1).await;
    assert_eq!(closed(&m, "keepalive_timeout"), 1, "{m}");
}

/// An HTTP/2 connection with no request in flight for `keepalive_timeout` (1 s) gets a GOAWAY
/// (NO_ERROR: closed on purpose, no request lost) and is closed; counted as
/// `keepalive_timeout`. Read frame by frame, so what is checked is what went on the wire.
/// Fails without the patch: Pingora 0.9.1 kept an idle HTTP/2 connection for ever, and closed
/// it, when told to, without a GOAWAY.
#[tokio::test]
async fn an_idle_http2_connection_gets_goaway() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = Triage::start_https(
        &pki.leaf(&["localhost"]),
        &config(app.addr, "keepalive_timeout = \"1s\""),
    )
    .await;
    let mut tls = tls_h2(&pki, &triage).await;
    // The client preface and an empty SETTINGS frame; then nothing.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(BOUND, tls.read_to_end(&mut received)).await;
    let goaway = frames(&received)
        .into_iter()
        .find(|(kind, _)| *kind == 0x7)
        .expect("a GOAWAY frame before the close");
    let error_code = goaway.1.get(4..8).expect("a GOAWAY payload");
    assert_eq!(error_code, [0, 0, 0, 0], "NO_ERROR");
    let m = metrics_when(&triage, |m| closed(m, "keepalive_timeout") == 1).await;
    assert_eq!(closed(&m, "keepalive_timeout"), 1, "{m}");
}

/// A client that sends a request and never reads the 16 MiB answer is closed after
/// `send_timeout` (1 s) without progress: it gets only what the socket buffers held, the
/// access log says `client_send_timeout`, it is counted as `send_timeout`, and the server
/// stays in rotation. Fails without the patch, which wrote to a client without any timeout.
#[tokio::test]
async fn a_client_that_never_reads_is_closed_after_send_timeout() {
    const BODY: usize = 16 << 20;
    let app = origin::spawn(Behavior::ok(vec![b'x'; BODY])).await;
    let triage = start(&app, "send_timeout = \"1s\"").await;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&triage.http.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut tcp = TcpStream::from_std(socket.into()).unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let m = metrics_when(&triage, |m| closed(m, "send_timeout") == 1).await;
    assert_eq!(closed(&m, "send_timeout"), 1, "{m}");
    triage
        .wait_for_output("diagnosis=client_send_timeout", BOUND)
        .await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(BOUND, tcp.read_to_end(&mut received)).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200 ") && received.len() < BODY,
        "{} bytes",
        received.len()
    );
    assert_server_in_rotation(&triage, &app).await;
}

/// A request head over `max_header_bytes` (4 KiB here) gets 431 `request_headers_too_large`
/// and its connection closes; counted as `headers_too_large`, and nothing reaches the app. A
/// head under the limit is served. Fails without the patch: Pingora 0.9.1 took heads up to
/// 1 MiB.
#[tokio::test]
async fn headers_over_max_header_bytes_get_431() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = start(&app, "max_header_bytes = 4096").await;
    let under = Request::get("/").header("x-big", &"a".repeat(3000));
    assert_eq!(client::send(triage.http, under).await.unwrap().status, 200);
    let mut tcp = TcpStream::connect(triage.http).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (head, closed_after) = answer_then_close(&mut WireReader::new(tcp)).await;
    let head = head.expect("a response before the connection closed");
    assert!(head.start_line.starts_with("HTTP/1.1 431 "), "{head:?}");
    assert_eq!(
        head.header("x-diagnosis"),
        Some("request_headers_too_large")
    );
    assert!(closed_after, "the connection stayed open after the 431");
    let m = metrics_when(&triage, |m| closed(m, "headers_too_large") == 1).await;
    assert_eq!(closed(&m, "headers_too_large"), 1, "{m}");
    assert_eq!(app.requests(), 1, "only the request under the limit");
}

/// With `max_connections = 2` and two connections open, a third is closed as soon as triage
/// accepts it, without an answer, and counted as `max_connections`; once one of the two
/// closes, a new connection is served again. `triage_client_connections` follows the count.
#[tokio::test]
async fn connections_beyond_max_connections_are_refused_and_counted() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let triage = start(&app, "max_connections = 2").await;
    let open = |n| move |m: &str| series(m, "triage_client_connections") == n;
    // The start-up probe's connection may not be closed yet on triage's side.
    metrics_when(&triage, open(0)).await;
    let first = TcpStream::connect(triage.http).await.unwrap();
    metrics_when(&triage, open(1)).await;
    let _second = TcpStream::connect(triage.http).await.unwrap();
    let m = metrics_when(&triage, open(2)).await;
    assert_eq!(series(&m, "triage_client_connections"), 2, "{m}");
    let mut third = TcpStream::connect(triage.http).await.unwrap();
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(closed_without_a_byte(&mut third).await);
    let m = metrics_when(&triage, |m| closed(m, "max_connections") == 1).await;
    assert_eq!(closed(&m, "max_connections"), 1, "{m}");
    drop(first);
    let m = metrics_when(&triage, open(1)).await;
    assert_eq!(series(&m, "triage_client_connections"), 1, "{m}");
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    assert_eq!(app.requests(), 1);
}

/// A TLS connection to triage's https listener, trusting `pki`'s CA, with ALPN h2.
async fn tls_h2(pki: &TestPki, triage: &Triage) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*pki.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let https = triage.https.expect("an https listener");
    let tcp = TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// An HTTP/2 client connection to triage, and the task driving it.
async fn h2_connect(
    pki: &TestPki,
    triage: &Triage,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = tls_h2(pki, triage).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    (client, tokio::spawn(connection))
}

/// The HTTP/2 frames in `bytes` (after the server's nothing-but-frames start): each frame's
/// type and payload; a cut last frame is left out.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let Some(payload) = bytes.get(9..9 + length) else {
            break;
        };
        frames.push((bytes[3], payload.to_vec()));
        bytes = &bytes[9 + length..];
    }
    frames
}
