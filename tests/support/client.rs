//! A tiny raw HTTP/1.1 client, so that tests see exactly what a client of triage sees: the
//! status line, every header as sent, the body bytes, and whether the body was cut.
//!
//! - [`send`] opens a connection, sends one request and reads one response. It adds
//!   `Host: localhost` and `Connection: close` unless the request sets them.
//! - [`get`] is `send` for a plain GET that panics on a transport error.
//! - [`Connection`] keeps one connection for several requests (keep-alive by default).
//! - [`send_raw`] sends arbitrary bytes (invalid HTTP, for `bad_request` tests).
//!
//! Every exchange has a deadline ([`DEFAULT_TIMEOUT`] unless the request sets one): past it
//! the test panics with a message saying what hung, so a hang fails the test instead of
//! stalling CI.
//!
//! Outcomes: a failure before a complete response head (refused, reset or closed before the
//! status line, garbage) is an `Err(ClientError)`; once a head arrived the result is
//! `Ok(Response)`, with `complete == false` when the body then ended early.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http1::{header_value, printable, HeadError, WireReader};

/// Deadline of a whole exchange (connect, send, read the response) unless the request says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head read; more is a `ClientError::Malformed`.
const MAX_RESPONSE_HEAD: usize = 16 * 1024 * 1024;
/// Largest response body kept; more ends the body with `complete == false`.
const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM_RESPONSES: usize = 16;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target, normally a path such as `/api/x?y=1`.
    pub path: String,
    /// Sent in this order, as given. `Host`, `Connection` and `Content-Length` are added when
    /// absent (see [`send`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Deadline for the whole exchange.
    pub timeout: Duration,
}

impl Request {
    /// A request with this method and path, no headers, no body.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    pub fn head(path: &str) -> Self {
        Request::new("HEAD", path)
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Request::new("POST", path).body(body)
    }

    /// Adds a header (repeat the call for repeated headers).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body; Content-Length is added when sending unless a header frames it.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the deadline of the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The bytes on the wire, with the defaults added.
    fn to_bytes(&self, add_connection_close: bool) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self.has_header("host") {
            head.push_str("Host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body_needs_length = !self.body.is_empty()
            || matches!(
                self.method.to_ascii_uppercase().as_str(),
                "POST" | "PUT" | "PATCH"
            );
        if body_needs_length
            && !self.has_header("content-length")
            && !self.has_header("transfer-encoding")
        {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if add_connection_close && !self.has_header("connection") {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A response as received.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    /// The reason phrase of the status line.
    pub reason: String,
    /// Header fields in the order and case received.
    pub headers: Vec<(String, String)>,
    /// The body as received (de-chunked).
    pub body: Vec<u8>,
    /// False when the body ended early: fewer bytes than Content-Length, chunked without the
    /// last chunk, or a read error (reset) mid-body.
    pub complete: bool,
    /// The read error that cut the body, if one did (e.g. `ConnectionReset`); `None` when the
    /// body is complete or ended with a clean close.
    pub body_error: Option<io::ErrorKind>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Every value of a header, in order, by case-insensitive name.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Readable in a failed assertion: the body as (escaped, truncated) text.
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body", &format_args!("{}", printable(&self.body)))
            .field("complete", &self.complete)
            .field("body_error", &self.body_error)
            .finish()
    }
}

/// Why no response arrived.
#[derive(Debug)]
pub enum ClientError {
    /// The connection could not be opened (e.g. `ConnectionRefused`).
    Connect(io::Error),
    /// Writing the request failed and no response could be read afterwards.
    Send(io::Error),
    /// The server closed cleanly (FIN) before a complete response head; `received` is what
    /// came (empty when nothing did).
    Closed { received: Vec<u8> },
    /// Reading failed (e.g. `ConnectionReset`) before a complete response head.
    Read { error: io::Error, received: Vec<u8> },
    /// What arrived is not an HTTP/1.x response head.
    Malformed { reason: String, received: Vec<u8> },
}

impl ClientError {
    /// The I/O error kind, for `Connect`, `Send` and `Read`.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ClientError::Connect(e) | ClientError::Send(e) => Some(e.kind()),
            ClientError::Read { error, .. } => Some(error.kind()),
            ClientError::Closed { .. } | ClientError::Malformed { .. } => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect failed: {e}"),
            ClientError::Send(e) => write!(f, "sending the request failed: {e}"),
            ClientError::Closed { received } => write!(
                f,
                "connection closed before a complete response head, after {}",
                printable(received)
            ),
            ClientError::Read { error, received } => write!(
                f,
                "read failed before a complete response head ({error}), after {}",
                printable(received)
            ),
            ClientError::Malformed { reason, received } => {
                write!(
                    f,
                    "not an HTTP response ({reason}): {}",
                    printable(received)
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Opens a connection to `addr`, sends `req` (with `Host: localhost` and `Connection: close`
/// added unless set), and reads the response. Panics if the exchange exceeds `req.timeout`.
pub async fn send(addr: SocketAddr, req: Request) -> Result<Response, ClientError> {
    let what = format!("{} {} to {addr}", req.method, req.path);
    with_deadline(req.timeout, &what, async {
        let mut conn = Connection::open(addr).await?;
        conn.exchange(&req.to_bytes(true), &req.method).await
    })
    .await
}

/// A GET of `path` on `addr`; panics if no response head arrives.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    send(addr, Request::get(path))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// Sends `raw` bytes as they are on a new connection and reads one response (framed as for a
/// GET, or HEAD if `raw` starts with "HEAD "). Panics if that exceeds `timeout`.
pub async fn send_raw(
    addr: SocketAddr,
    raw: &[u8],
    timeout: Duration,
) -> Result<Response, ClientError> {
    let what = format!(
        "raw request {} to {addr}",
        printable(&raw[..raw.len().min(64)])
    );
    let method = if raw.starts_with(b"HEAD ") {
        "HEAD"
    } else {
        "GET"
    };
    with_deadline(timeout, &what, async {
        let mut conn = Connection::open(addr).await?;
        conn.exchange(raw, method).await
    })
    .await
}

/// One client connection, for several requests in a row (keep-alive).
pub struct Connection {
    wire: WireReader<TcpStream>,
}

impl Connection {
    /// Connects to `addr` (bounded by [`DEFAULT_TIMEOUT`]; panics past it).
    pub async fn connect(addr: SocketAddr) -> Result<Connection, ClientError> {
        with_deadline(
            DEFAULT_TIMEOUT,
            &format!("connect to {addr}"),
            Self::open(addr),
        )
        .await
    }

    async fn open(addr: SocketAddr) -> Result<Connection, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(Connection {
            wire: WireReader::new(tcp),
        })
    }

    /// Sends `req` as given (only `Host` is added when absent: no `Connection: close`, so the
    /// connection stays usable) and reads the response. Panics past `req.timeout`.
    pub async fn send(&mut self, req: Request) -> Result<Response, ClientError> {
        let what = format!("{} {} on a kept-alive connection", req.method, req.path);
        with_deadline(
            req.timeout,
            &what,
            self.exchange(&req.to_bytes(false), &req.method),
        )
        .await
    }

    /// The underlying socket, e.g. to close it half-way for `client_closed` tests.
    pub fn into_tcp(self) -> TcpStream {
        self.wire.into_inner()
    }

    async fn exchange(&mut self, request: &[u8], method: &str) -> Result<Response, ClientError> {
        // A server may answer and close before reading the whole request (413, say): if the
        // write fails, still try to read what it said before reporting the write error.
        let sent = async {
            self.wire.stream.write_all(request).await?;
            self.wire.stream.flush().await
        }
        .await;
        let response = self.read_response(method).await;
        match (sent, response) {
            (Err(send_error), Err(_)) => Err(ClientError::Send(send_error)),
            (_, response) => response,
        }
    }

    async fn read_response(&mut self, method: &str) -> Result<Response, ClientError> {
        for _ in 0..MAX_INTERIM_RESPONSES {
            let head = self
                .wire
                .read_head(MAX_RESPONSE_HEAD)
                .await
                .map_err(|e| match e {
                    HeadError::Closed { received } => ClientError::Closed { received },
                    HeadError::Io { error, received } => ClientError::Read { error, received },
                    HeadError::Malformed { reason, received } => {
                        ClientError::Malformed { reason, received }
                    }
                })?;
            let malformed = |reason: String| ClientError::Malformed {
                reason,
                received: head.start_line.clone().into_bytes(),
            };
            let (status, reason) = parse_status_line(&head.start_line).map_err(malformed)?;
            // 101 switches protocols: there is no next HTTP response to wait for.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let framing = head.response_framing(status, method).map_err(malformed)?;
            let body = self.wire.read_body(framing, MAX_RESPONSE_BODY).await;
            return Ok(Response {
                status,
                reason,
                headers: head.headers,
                body: body.bytes,
                complete: body.complete,
                body_error: body.error.map(|e| e.kind()),
            });
        }
        Err(ClientError::Malformed {
            reason: format!("more than {MAX_INTERIM_RESPONSES} interim responses"),
            received: Vec::new(),
        })
    }
}

/// Splits `HTTP/1.1 200 OK` into the status and the reason phrase.
fn parse_status_line(line: &str) -> Result<(u16, String), String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "status line does not start with HTTP/1.x: {line:?}"
        ));
    }
    let code = parts.next().unwrap_or("");
    let status = match code.parse::<u16>() {
        Ok(status) if code.len() == 3 && (100..=999).contains(&status) => status,
        _ => return Err(format!("invalid status code in {line:?}")),
    };
    Ok((status, parts.next().unwrap_or("").to_owned()))
}

/// Runs `exchange`, panicking with a clear message if it takes longer than `timeout`.
async fn with_deadline<T>(
    timeout: Duration,
    what: &str,
    exchange: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => panic!("{what}: no complete response within {timeout:?} (the server hangs?)"),
    }
}
