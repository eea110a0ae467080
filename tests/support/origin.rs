//! A fault-injecting origin: an HTTP/1.1 server on loopback that fails the way real apps fail
//! (refuses, resets, closes, stalls, answers garbage, cuts its body, presents a bad
//! certificate...), so that each of triage's diagnoses can be provoked on purpose.
//!
//! `spawn(behavior)` binds `127.0.0.1:0` and serves every connection with that behaviour, each
//! in its own task, until the returned [`Origin`] is dropped, which also ends every connection
//! it holds (stalled ones included).
//!
//! How connections end, from the peer's side:
//! - "close" is a clean FIN (over TLS: close_notify, then FIN), after which the origin keeps
//!   reading and discarding for up to 2 s so that late bytes from the peer do not turn the FIN
//!   into an RST;
//! - "reset" sets SO_LINGER to 0 and closes, so the kernel sends an RST and the peer's next
//!   read fails with ECONNRESET. Over TLS the TCP socket is taken out of the TLS stream and reset
//!   the same way, without a close_notify, so it is a real reset there too;
//! - "hold" keeps the socket open and silent until the origin is dropped.
//!
//! A request that is not HTTP (a TLS ClientHello sent to a plain origin, say) gets
//! `400 Bad Request` and a close, as nginx does, so a TLS client sees plain-text bytes at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::certs::{self, CertifiedKey};
use super::http1::{reason_phrase, HeadError, WireReader};

/// Largest request head the origin reads; more is answered 400.
const MAX_REQUEST_HEAD: usize = 1024 * 1024;
/// Largest request body the origin reads and keeps.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Caps that keep every loop bounded even if a test goes wrong.
const MAX_CONNECTIONS: usize = 100_000;
const MAX_REQUESTS_PER_CONNECTION: usize = 100_000;
/// How long a cleanly closing origin keeps draining the peer's bytes after its FIN.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// Pause between writing a partial body and cutting the connection, so the peer has read the
/// head and the partial body before the RST (which may discard unread data at the peer).
pub const CUT_PAUSE: Duration = Duration::from_millis(50);

/// A TLS 1.2-framed fatal `handshake_failure` alert record, for [`Behavior::SpeaksFirst`]: a
/// TLS client receiving it fails its handshake with that alert, the way it does against a
/// server sharing no protocol version or cipher suite with it.
pub const TLS_HANDSHAKE_FAILURE_ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// What the origin does with each connection. All but `Respond`, `Echo` and `SlowHeaders`
/// act on the first request of a connection (`SpeaksFirst` before any) and then end it.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// A correct response with Content-Length (added unless `headers` has Content-Length or
    /// Transfer-Encoding), keeping the connection alive for further requests (unless the
    /// request or `headers` say `Connection: close`): the app answering 200, or 500/503 when
    /// its database is down.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Reads the request, then resets the connection (RST): the app crashed mid-request.
    ResetBeforeResponse,
    /// Reads the request, then closes cleanly (FIN) without a byte: the app closed the
    /// connection, or crashed with a clean socket teardown.
    CloseBeforeResponse,
    /// Reads the request and never answers, holding the connection: a stuck app.
    Stall,
    /// Reads the request, writes these raw bytes, then closes: another service on the port,
    /// or an app writing garbage.
    Garbage(Vec<u8>),
    /// A valid status line, then one header `X-Huge` whose value is `bytes` long, then
    /// `Content-Length: 0` and the end of the head, then a close: a runaway cookie.
    HugeHeaders { bytes: usize },
    /// `200` with `Content-Length: announced`, `sent` bytes of body (`b'x'`), a
    /// [`CUT_PAUSE`], then an RST: the app killed while streaming.
    BodyReset { announced: usize, sent: usize },
    /// Like `BodyReset` but ending with a clean FIN: the app lied about Content-Length.
    BodyClose { announced: usize, sent: usize },
    /// Like `BodyReset` but then holding the connection silently: an app stuck mid-body.
    BodyStall { announced: usize, sent: usize },
    /// Reads each request, waits `delay`, then answers `status` normally (keep-alive): a slow
    /// query, for response timeouts.
    SlowHeaders { delay: Duration, status: u16 },
    /// A TLS server (tokio-rustls, ring) presenting `cert`, serving `inner` over TLS. A failed
    /// handshake (e.g. the client rejects the certificate) just closes that connection.
    /// `inner` must not itself be `Tls` or `SpeaksTls`.
    Tls {
        cert: CertifiedKey,
        inner: Box<Behavior>,
    },
    /// A TLS server with a self-signed certificate for "localhost" answering 200 (body
    /// `hello over TLS\n`): for a proxy configured for plain HTTP in front of a TLS origin.
    SpeaksTls,
    /// Writes these bytes as soon as the connection is accepted, before (and without) reading
    /// a request, then closes: a non-HTTP service that speaks first on the port (an SSH or
    /// MySQL greeting), or, with [`TLS_HANDSHAKE_FAILURE_ALERT`], a TLS server refusing every
    /// handshake.
    SpeaksFirst(Vec<u8>),
    /// Answers 200 with a `text/plain` body listing the request's headers as received, one
    /// `name: value` per line (names lowercased, in order), plus the response headers
    /// `x-echo-method`, `x-echo-target` and `x-echo-body-length` (keep-alive).
    Echo,
}

impl Behavior {
    /// `200 OK` with this body as `text/plain`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Behavior::respond(200, body)
    }

    /// A correct response with this status and a `text/plain` body.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Behavior::Respond {
            status,
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: body.into(),
        }
    }

    /// `inner` served over TLS with `cert`.
    pub fn tls(cert: CertifiedKey, inner: Behavior) -> Self {
        Behavior::Tls {
            cert,
            inner: Box::new(inner),
        }
    }
}

/// A request as the origin received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    /// The request target as sent (a path, normally).
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Header fields in the order and case received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::http1::header_value(&self.headers, name)
    }

    fn wants_close(&self) -> bool {
        let connection_has = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        connection_has("close") || (self.version == "HTTP/1.0" && !connection_has("keep-alive"))
    }
}

/// What the origin has seen, shared between its tasks and the test.
#[derive(Default)]
struct Record {
    connections: AtomicUsize,
    requests: Mutex<Vec<ReceivedRequest>>,
}

/// A running origin; dropping it stops accepting and ends every connection it holds.
pub struct Origin {
    /// Where it listens (127.0.0.1 or ::1, ephemeral port).
    pub addr: SocketAddr,
    record: Arc<Record>,
    accept_task: JoinHandle<()>,
}

impl Origin {
    /// How many TCP connections it accepted (including ones whose TLS handshake failed), e.g.
    /// to assert that a retry did or did not happen.
    pub fn connections(&self) -> usize {
        self.record.connections.load(Ordering::SeqCst)
    }

    /// How many requests it read completely (head and body).
    pub fn requests(&self) -> usize {
        self.record.requests.lock().unwrap().len()
    }

    /// Every request it read completely, in arrival order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.record.requests.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

/// Starts an origin on `127.0.0.1:0` serving `behavior`.
pub async fn spawn(behavior: Behavior) -> Origin {
    spawn_at(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), behavior)
        .await
        .expect("bind an origin on 127.0.0.1:0")
}

/// Starts an origin on a given loopback address (port 0 for an ephemeral one); fails if the
/// address is taken. Panics on a non-loopback address: tests never listen elsewhere.
pub async fn spawn_at(addr: SocketAddr, behavior: Behavior) -> io::Result<Origin> {
    assert!(
        addr.ip().is_loopback(),
        "test origins listen on loopback only, not {addr}"
    );
    // Port 0: any port but one picked for a server that binds it later.
    let listener = if addr.port() == 0 {
        let std_listener = super::ports::bind_unpicked(
            || std::net::TcpListener::bind(addr),
            |l| l.local_addr().map(|a| a.port()),
        )?;
        std_listener.set_nonblocking(true)?;
        TcpListener::from_std(std_listener)?
    } else {
        TcpListener::bind(addr).await?
    };
    let addr = listener.local_addr()?;
    let (tls, app) = split_tls(behavior);
    let record = Arc::new(Record::default());
    let accept_task = tokio::spawn(accept_loop(listener, tls, Arc::new(app), record.clone()));
    Ok(Origin {
        addr,
        record,
        accept_task,
    })
}

/// Two origins on the same port, one on 127.0.0.1 and one on ::1, for "the upstream's address
/// changed" tests: a hostname resolved first to one address and then to the other, with one
/// port in the config. Retries with another port if ::1 has the first one taken.
pub async fn spawn_same_port(on_v4: Behavior, on_v6: Behavior) -> (Origin, Origin) {
    let mut last_error = None;
    for _ in 0..20 {
        let v4 = spawn(on_v4.clone()).await;
        let v6_addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, v4.addr.port(), 0, 0));
        match spawn_at(v6_addr, on_v6.clone()).await {
            Ok(v6) => return (v4, v6),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1 after 20 tries: {last_error:?}");
}

/// An address where nothing listens: a port picked ([`super::ports::pick`]) that no other
/// test is given and this process's servers pass over, so a connection there is refused until
/// the test itself binds it.
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, super::ports::pick()))
}

/// Separates the TLS layer, if any, from the behaviour served inside it.
fn split_tls(behavior: Behavior) -> (Option<TlsAcceptor>, Behavior) {
    match behavior {
        Behavior::Tls { cert, inner } => {
            assert!(
                !matches!(*inner, Behavior::Tls { .. } | Behavior::SpeaksTls),
                "Behavior::Tls cannot wrap another TLS behaviour"
            );
            (Some(TlsAcceptor::from(cert.server_config())), *inner)
        }
        Behavior::SpeaksTls => {
            let cert = certs::self_signed(&["localhost"]);
            (
                Some(TlsAcceptor::from(cert.server_config())),
                Behavior::ok("hello over TLS\n"),
            )
        }
        plain => (None, plain),
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<Behavior>,
    record: Arc<Record>,
) {
    let mut connections = JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(_) => {
                // Out of file descriptors or similar: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        record.connections.fetch_add(1, Ordering::SeqCst);
        connections.spawn(serve_connection(
            tcp,
            tls.clone(),
            app.clone(),
            record.clone(),
        ));
        // Reap finished connection tasks so the set does not grow with every connection.
        while connections.try_join_next().is_some() {}
    }
    // Past the cap: stop accepting but keep the open connections until the origin is dropped.
    std::future::pending::<()>().await
}

/// How the behaviour wants the connection to end.
enum Ending {
    Close,
    Reset,
    Hold,
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Arc<Behavior>,
    record: Arc<Record>,
) {
    // Small writes (a head, then a partial body) should leave at once, not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    match tls {
        None => {
            let mut wire = WireReader::new(tcp);
            let ending = serve_requests(&mut wire, &app, &record).await;
            let tcp = wire.into_inner();
            match ending {
                Ending::Close => close_gracefully(tcp).await,
                Ending::Reset => reset(tcp),
                Ending::Hold => hold(tcp).await,
            }
        }
        Some(acceptor) => match acceptor.accept(tcp).into_fallible().await {
            Ok(tls_stream) => {
                let mut wire = WireReader::new(tls_stream);
                let ending = serve_requests(&mut wire, &app, &record).await;
                let tls_stream = wire.into_inner();
                match ending {
                    Ending::Close => close_gracefully(tls_stream).await,
                    // No close_notify: take the socket out of TLS and reset it.
                    Ending::Reset => reset(tls_stream.into_inner().0),
                    Ending::Hold => hold(tls_stream).await,
                }
            }
            // tokio-rustls has already sent the alert, if any; the peer then sees a FIN.
            Err((_handshake_error, tcp)) => close_gracefully(tcp).await,
        },
    }
}

/// Serves requests on one connection according to `app` until it says how to end.
async fn serve_requests<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut WireReader<S>,
    app: &Behavior,
    record: &Record,
) -> Ending {
    if let Behavior::SpeaksFirst(bytes) = app {
        let _ = write_flush(&mut wire.stream, bytes).await;
        return Ending::Close;
    }
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let request = match read_request(wire).await {
            Ok(request) => request,
            Err(RequestError::Ended) => return Ending::Close,
            Err(RequestError::NotHttp) => {
                let _ =
                    write_simple(&mut wire.stream, 400, &[], b"Bad Request\n", true, false).await;
                return Ending::Close;
            }
        };
        record.requests.lock().unwrap().push(request.clone());
        let close = request.wants_close();
        let head_only = request.method.eq_ignore_ascii_case("HEAD");
        let stream = &mut wire.stream;
        let written = match app {
            Behavior::Respond {
                status,
                headers,
                body,
            } => {
                let says_close = headers.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case("connection")
                        && value.to_ascii_lowercase().contains("close")
                });
                let written = write_simple(stream, *status, headers, body, close, head_only).await;
                if says_close {
                    return Ending::Close;
                }
                written
            }
            Behavior::Echo => {
                let (headers, body) = echo(&request);
                write_simple(stream, 200, &headers, &body, close, head_only).await
            }
            Behavior::SlowHeaders { delay, status } => {
                tokio::time::sleep(*delay).await;
                let headers = [("Content-Type".to_owned(), "text/plain".to_owned())];
                write_simple(
                    stream,
                    *status,
                    &headers,
                    b"slow response\n",
                    close,
                    head_only,
                )
                .await
            }
            Behavior::ResetBeforeResponse => return Ending::Reset,
            Behavior::CloseBeforeResponse => return Ending::Close,
            Behavior::Stall => return Ending::Hold,
            Behavior::Garbage(bytes) => {
                let _ = write_flush(stream, bytes).await;
                return Ending::Close;
            }
            Behavior::HugeHeaders { bytes } => {
                let mut head = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
                head.resize(head.len() + bytes, b'h');
                head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
                let _ = write_flush(stream, &head).await;
                return Ending::Close;
            }
            Behavior::BodyReset { announced, sent } => {
                write_partial_body(stream, *announced, *sent).await;
                tokio::time::sleep(CUT_PAUSE).await;
                return Ending::Reset;
            }
            Behavior::BodyClose { announced, sent } => {
                write_partial_body(stream, *announced, *sent).await;
                tokio::time::sleep(CUT_PAUSE).await;
                return Ending::Close;
            }
            Behavior::BodyStall { announced, sent } => {
                write_partial_body(stream, *announced, *sent).await;
                return Ending::Hold;
            }
            Behavior::Tls { .. } | Behavior::SpeaksTls => {
                unreachable!("split_tls removed the TLS layer")
            }
            Behavior::SpeaksFirst(_) => unreachable!("answered before reading a request"),
        };
        if written.is_err() || close {
            return Ending::Close;
        }
    }
    Ending::Close
}

enum RequestError {
    /// The peer closed or reset, or the request was cut.
    Ended,
    /// The bytes are not an HTTP request.
    NotHttp,
}

/// Reads one request: its head up to `\r\n\r\n`, then its body (Content-Length or chunked).
async fn read_request<S: AsyncRead + Unpin>(
    wire: &mut WireReader<S>,
) -> Result<ReceivedRequest, RequestError> {
    let head = match wire.read_head(MAX_REQUEST_HEAD).await {
        Ok(head) => head,
        Err(HeadError::Malformed { .. }) => return Err(RequestError::NotHttp),
        Err(HeadError::Closed { received }) if !received.is_empty() => {
            return Err(RequestError::NotHttp)
        }
        Err(_) => return Err(RequestError::Ended),
    };
    let mut parts = head.start_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::NotHttp);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(RequestError::NotHttp);
    }
    let framing = head.request_framing().map_err(|_| RequestError::NotHttp)?;
    let body = wire.read_body(framing, MAX_REQUEST_BODY).await;
    if !body.complete {
        return Err(RequestError::Ended);
    }
    Ok(ReceivedRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers: head.headers,
        body: body.bytes,
    })
}

/// The response headers and body of `Behavior::Echo`.
fn echo(request: &ReceivedRequest) -> (Vec<(String, String)>, Vec<u8>) {
    let body: String = request
        .headers
        .iter()
        .map(|(name, value)| format!("{}: {}\n", name.to_ascii_lowercase(), value))
        .collect();
    let headers = vec![
        ("Content-Type".to_owned(), "text/plain".to_owned()),
        ("x-echo-method".to_owned(), request.method.clone()),
        ("x-echo-target".to_owned(), request.target.clone()),
        (
            "x-echo-body-length".to_owned(),
            request.body.len().to_string(),
        ),
    ];
    (headers, body.into_bytes())
}

/// Writes a complete response, adding Content-Length (unless the headers frame the body
/// themselves) and `Connection: close` when closing.
async fn write_simple<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close && !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    write_flush(stream, &bytes).await
}

/// A 200 head announcing `announced` body bytes, then `sent` bytes of `b'x'`, flushed.
async fn write_partial_body<S: AsyncWrite + Unpin>(stream: &mut S, announced: usize, sent: usize) {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n"
    )
    .into_bytes();
    bytes.resize(bytes.len() + sent, b'x');
    let _ = write_flush(stream, &bytes).await;
}

async fn write_flush<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Sends FIN (after close_notify on TLS), then reads and discards what the peer still sends
/// for a while: closing a socket with unread data makes the kernel send RST instead.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        let mut sink = [0u8; 4096];
        for _ in 0..100_000 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Closes with RST: SO_LINGER 0 makes close() abort the connection.
fn reset(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Keeps the connection open and silent until the origin is dropped (reading and discarding
/// what the peer sends, so its writes never block).
async fn hold<S: AsyncRead + Unpin>(mut stream: S) {
    let mut sink = [0u8; 4096];
    for _ in 0..100_000 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The peer is gone or done sending; stay open (half-closed) until the origin is dropped.
    std::future::pending::<()>().await;
    drop(stream);
}
