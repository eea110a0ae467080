//! Just enough HTTP/1.1 wire handling for the test origin (which reads requests) and the test
//! client (which reads responses): find the end of a head, split it into a start line and
//! headers, and read a body framed by Content-Length, chunked encoding or the connection's end.
//!
//! It is deliberately small and lenient where that helps a test see what was really sent, and
//! strict where a real peer would be (a head that is not text fails at once instead of waiting
//! for a `\r\n\r\n` that will never come, e.g. a TLS ClientHello sent to a plain HTTP port).

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of one read from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// A parsed message head: the request or status line, then the header fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Whether a comma-separated header (Connection, Transfer-Encoding) lists `token`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// How the body after this head is delimited, for a request (RFC 9112 section 6.3: a request
    /// without Content-Length or chunked encoding has no body).
    pub fn request_framing(&self) -> Result<Framing, String> {
        match self.declared_framing()? {
            Some(framing) => Ok(framing),
            None => Ok(Framing::Length(0)),
        }
    }

    /// How the body after this head is delimited, for a response to a request with `method`
    /// (RFC 9112 section 6.3: HEAD, 1xx, 204 and 304 have no body; otherwise chunked, then
    /// Content-Length, else the body runs until the server closes).
    pub fn response_framing(&self, status: u16, method: &str) -> Result<Framing, String> {
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Framing::Length(0));
        }
        Ok(self.declared_framing()?.unwrap_or(Framing::UntilClose))
    }

    fn declared_framing(&self) -> Result<Option<Framing>, String> {
        if self.header_has_token("transfer-encoding", "chunked") {
            return Ok(Some(Framing::Chunked));
        }
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(|n| Some(Framing::Length(n)))
                .map_err(|_| format!("invalid Content-Length: {v:?}")),
        }
    }
}

/// The first value of a header in a list, by case-insensitive name.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for "no body").
    Length(usize),
    /// `Transfer-Encoding: chunked`, ended by a zero-size chunk.
    Chunked,
    /// Everything until the peer closes the connection (responses only).
    UntilClose,
}

/// Why a head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The peer closed cleanly (FIN) before the head was complete; `received` is what came,
    /// empty when the connection ended at a message boundary.
    Closed { received: Vec<u8> },
    /// Reading failed (e.g. ECONNRESET) before the head was complete.
    Io { error: io::Error, received: Vec<u8> },
    /// The bytes are not an HTTP/1.x head (or it exceeds the size limit).
    Malformed { reason: String, received: Vec<u8> },
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Closed { received } => write!(
                f,
                "connection closed after {} bytes, before a complete head: {}",
                received.len(),
                printable(received)
            ),
            HeadError::Io { error, received } => write!(
                f,
                "read failed ({error}) after {} bytes, before a complete head: {}",
                received.len(),
                printable(received)
            ),
            HeadError::Malformed { reason, received } => {
                write!(f, "malformed head ({reason}): {}", printable(received))
            }
        }
    }
}

/// A body as read from the wire, complete or not.
#[derive(Debug)]
pub struct Body {
    /// The body bytes (de-chunked) that arrived.
    pub bytes: Vec<u8>,
    /// Whether the body ended where its framing said it would.
    pub complete: bool,
    /// The read error that cut the body, if one did (EOF is not an error).
    pub error: Option<io::Error>,
}

/// A stream with a buffer of bytes read but not yet consumed, so that a head can be split from
/// the body that follows it, and keep-alive requests can follow each other on one connection.
pub struct WireReader<S> {
    pub stream: S,
    buffered: Vec<u8>,
}

impl<S> WireReader<S> {
    pub fn new(stream: S) -> Self {
        WireReader {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Gives back the stream; bytes buffered but not consumed are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: AsyncRead + Unpin> WireReader<S> {
    /// Reads one more chunk into the buffer; Ok(0) at EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.stream.read(&mut chunk).await?;
        self.buffered.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads a head up to and including its blank line, leaving any following bytes buffered.
    /// Fails as soon as the bytes cannot be the start of an HTTP head, so a peer speaking
    /// another protocol is noticed at once instead of after a timeout.
    pub async fn read_head(&mut self, max_bytes: usize) -> Result<Head, HeadError> {
        // Each pass either consumes a read (bounded by max_bytes) or returns.
        loop {
            if let Some(end) = find(&self.buffered, b"\r\n\r\n") {
                let head_bytes: Vec<u8> = self.buffered.drain(..end + 4).collect();
                return parse_head(&head_bytes[..end]).map_err(|reason| HeadError::Malformed {
                    reason,
                    received: head_bytes,
                });
            }
            if let Err(reason) = check_partial_head(&self.buffered) {
                return Err(HeadError::Malformed {
                    reason,
                    received: std::mem::take(&mut self.buffered),
                });
            }
            if self.buffered.len() > max_bytes {
                return Err(HeadError::Malformed {
                    reason: format!("head larger than {max_bytes} bytes"),
                    received: std::mem::take(&mut self.buffered),
                });
            }
            match self.fill().await {
                Ok(0) => {
                    return Err(HeadError::Closed {
                        received: std::mem::take(&mut self.buffered),
                    })
                }
                Ok(_) => {}
                Err(error) => {
                    return Err(HeadError::Io {
                        error,
                        received: std::mem::take(&mut self.buffered),
                    })
                }
            }
        }
    }

    /// Reads a body with the given framing, stopping at `max_bytes` (then `complete` is false).
    /// Never fails: what arrived is returned with `complete` and the error that cut it.
    pub async fn read_body(&mut self, framing: Framing, max_bytes: usize) -> Body {
        let mut body = Body {
            bytes: Vec::new(),
            complete: false,
            error: None,
        };
        let result = match framing {
            Framing::Length(n) => self.read_exact_into(n, max_bytes, &mut body.bytes).await,
            Framing::Chunked => self.read_chunked_into(max_bytes, &mut body.bytes).await,
            Framing::UntilClose => self.read_to_close_into(max_bytes, &mut body.bytes).await,
        };
        match result {
            Ok(complete) => body.complete = complete,
            Err(error) => body.error = Some(error),
        }
        body
    }

    /// Moves up to `n` bytes into `out`; Ok(true) when all `n` came, Ok(false) on EOF.
    async fn read_exact_into(
        &mut self,
        n: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let mut remaining = n;
        while remaining > 0 {
            if self.buffered.is_empty() && self.fill().await? == 0 {
                return Ok(false);
            }
            let take = remaining.min(self.buffered.len());
            if out.len() + take > max_bytes {
                return Ok(false);
            }
            out.extend(self.buffered.drain(..take));
            remaining -= take;
        }
        Ok(true)
    }

    /// Reads until EOF; always "complete" when the peer closes cleanly, since that is the
    /// framing.
    async fn read_to_close_into(
        &mut self,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        out.append(&mut self.buffered);
        while self.fill().await? > 0 {
            out.append(&mut self.buffered);
            if out.len() > max_bytes {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads one CRLF-terminated line (without the CRLF); None on EOF before the line ended.
    async fn read_line(&mut self, max_bytes: usize) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buffered, b"\r\n") {
                let line: Vec<u8> = self.buffered.drain(..end + 2).take(end).collect();
                return Ok(Some(line));
            }
            if self.buffered.len() > max_bytes {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Decodes a chunked body into `out`; Ok(true) once the last chunk and trailers arrived.
    async fn read_chunked_into(&mut self, max_bytes: usize, out: &mut Vec<u8>) -> io::Result<bool> {
        const MAX_LINE: usize = 8 * 1024;
        // Each chunk adds at least one byte or ends the loop, so max_bytes bounds it.
        loop {
            let Some(line) = self.read_line(MAX_LINE).await? else {
                return Ok(false);
            };
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                // Trailer fields, ignored, up to the blank line that ends the message.
                for _ in 0..1024 {
                    match self.read_line(MAX_LINE).await? {
                        None => return Ok(false),
                        Some(l) if l.is_empty() => return Ok(true),
                        Some(_) => {}
                    }
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "too many trailers",
                ));
            }
            if !self.read_exact_into(size, max_bytes, out).await? {
                return Ok(false);
            }
            match self.read_line(MAX_LINE).await? {
                None => return Ok(false),
                Some(l) if l.is_empty() => {}
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk data not followed by CRLF",
                    ))
                }
            }
        }
    }
}

/// Parses the hex size at the start of a chunk-size line, ignoring chunk extensions.
fn parse_chunk_size(line: &[u8]) -> io::Result<usize> {
    let text = String::from_utf8_lossy(line);
    let hex = text.split(';').next().unwrap_or("").trim();
    usize::from_str_radix(hex, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid chunk size line: {text:?}"),
        )
    })
}

/// Splits a head (without its final blank line) into start line and header fields.
fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("").to_owned();
    if start_line.is_empty() {
        return Err("empty start line".to_owned());
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("invalid header name: {name:?}"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head {
        start_line,
        headers,
    })
}

/// Rejects early what cannot become a head: a start line with control bytes, as binary
/// protocols send (a TLS record starts with 0x14 to 0x17). Bytes above 0x7f stay allowed: a
/// reason phrase may carry obs-text.
fn check_partial_head(buffered: &[u8]) -> Result<(), String> {
    let first_line = match find(buffered, b"\r\n") {
        Some(end) => &buffered[..end],
        None => buffered,
    };
    match first_line
        .iter()
        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        Some(at) => Err(format!(
            "byte 0x{:02x} at offset {at} cannot be in an HTTP start line",
            first_line[at]
        )),
        None => Ok(()),
    }
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes shown as text for error messages: printable ASCII kept, the rest escaped, cut at 512.
pub fn printable(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(512)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > 512 {
        format!("\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// The standard reason phrase for a status code, for the status lines the origin writes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
