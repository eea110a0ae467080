//! The CGI response header a script writes at the start of its stdout (RFC 3875 section 6),
//! turned into an HTTP response header: `Status: 404 Not Found` is the status, a `Location`
//! without a `Status` is a `302` redirect, anything else is a header field. The header is
//! bounded ([`MAX_HEAD`]); a line that is not `name: value` with a valid name and value, or a
//! status that is not three digits from 100 to 599, makes the answer invalid.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use pingora::http::ResponseHeader;

/// The largest CGI header accepted. nginx's `fastcgi_buffer_size` is 4 or 8 KiB ("upstream
/// sent too big header"); 64 KiB leaves room for the cookies and CSP headers frameworks write,
/// and is still far from what a loop printing headers reaches.
pub const MAX_HEAD: usize = 64 * 1024;

/// Header fields that concern only one connection, never passed on (RFC 9110 section 7.6.1):
/// Pingora frames the response for the client itself.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Why the CGI header cannot become an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] without its end.
    TooLarge,
    /// Not a CGI header; the reason names the line.
    Invalid(String),
}

/// The response header, and the body bytes that came with it.
#[derive(Debug)]
pub struct Head {
    pub response: ResponseHeader,
    /// `Content-Length`, when the script set one.
    pub content_length: Option<u64>,
    pub body_start: Bytes,
}

/// Collects stdout until the header is complete.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: BytesMut,
}

impl HeadReader {
    /// Adds stdout; the parsed header once its end arrived.
    pub fn push(&mut self, stdout: &[u8]) -> Result<Option<Head>, HeadError> {
        // The end may straddle the previous piece and this one.
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(stdout);
        let Some((head_len, separator)) = end_of_head(&self.buf[from..]) else {
            if self.buf.len() > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        };
        let head_len = from + head_len;
        if head_len > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut rest = std::mem::take(&mut self.buf);
        let head = rest.split_to(head_len + separator);
        parse(&head[..head_len], rest.freeze()).map(Some)
    }

    /// Stdout ended before the header did: the bytes that came, for the detail.
    pub fn unfinished(&self) -> &[u8] {
        &self.buf
    }
}

/// Where the header ends: its length and the separator's.
fn end_of_head(buf: &[u8]) -> Option<(usize, usize)> {
    for (i, window) in buf.windows(2).enumerate() {
        if window == b"\n\n" {
            return Some((i + 1, 1));
        }
        if window == b"\r\n" && buf.get(i + 2..i + 4) == Some(b"\r\n") {
            return Some((i + 2, 2));
        }
    }
    None
}

fn parse(head: &[u8], body_start: Bytes) -> Result<Head, HeadError> {
    let mut status: Option<StatusCode> = None;
    let mut location = false;
    let mut content_length = None;
    let mut fields: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(8);
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let invalid = |why: &str| HeadError::Invalid(format!("{why}: {}", shown(line)));
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(invalid("a header line without a colon"));
        };
        let name = HeaderName::from_bytes(&line[..colon])
            .map_err(|_| invalid("an invalid header name"))?;
        let value = line[colon + 1..].trim_ascii();
        if name.as_str() == "status" {
            status = Some(parse_status(value).ok_or_else(|| invalid("an invalid Status"))?);
            continue;
        }
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if name == http::header::CONTENT_LENGTH {
            let length = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| invalid("an invalid Content-Length"))?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(invalid("a second, different Content-Length"));
            }
            content_length = Some(length);
        }
        location |= name == http::header::LOCATION;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| invalid("an invalid header value"))?;
        fields.push((name, value));
    }
    // RFC 3875 section 6.2.3: a Location alone is a client redirect.
    let status = status.unwrap_or(if location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    let mut response = ResponseHeader::build(status, Some(fields.len()))
        .map_err(|e| HeadError::Invalid(e.to_string()))?;
    for (name, value) in fields {
        response
            .append_header(name, value)
            .map_err(|e| HeadError::Invalid(e.to_string()))?;
    }
    Ok(Head {
        response,
        content_length,
        body_start,
    })
}

/// `404`, `404 Not Found`: three digits from 100 to 599, then optionally a reason.
fn parse_status(value: &[u8]) -> Option<StatusCode> {
    let code = value.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || value.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    StatusCode::from_bytes(code)
        .ok()
        .filter(|s| (100..600).contains(&s.as_u16()))
}

/// A line of the header as a detail shows it: printable ASCII, at most 128 bytes.
fn shown(line: &[u8]) -> String {
    crate::render::text::header_text(&String::from_utf8_lossy(line), 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(stdout: &[u8]) -> Result<Option<Head>, HeadError> {
        HeadReader::default().push(stdout)
    }

    /// Status and Location become the status; other fields pass, hop-by-hop ones do not; the
    /// body bytes after the header are kept; LF-only headers read as CRLF ones.
    #[test]
    fn cgi_header_becomes_http() {
        let h = head(b"Status: 404 Not Found\r\nContent-type: text/html\r\nConnection: close\r\n\r\nFile not found.\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.response.status, 404);
        assert_eq!(h.response.headers["content-type"], "text/html");
        assert!(h.response.headers.get("connection").is_none());
        assert_eq!(&h.body_start[..], b"File not found.\n");
        let h = head(b"Location: /login\n\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.response.status, 302);
        assert_eq!(h.response.headers["location"], "/login");
        let h = head(b"Status: 301\r\nLocation: /x\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.response.status, 301);
        let h = head(b"X-A: 1\r\nContent-Length: 5\r\n\r\nhello")
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (h.response.status.as_u16(), h.content_length),
            (200, Some(5))
        );
    }

    /// The header's end is found across pieces, however stdout is cut.
    #[test]
    fn header_end_across_pieces() {
        let stdout = b"Content-type: text/plain\r\nX-B: 2\r\n\r\nbody";
        for split in 0..stdout.len() {
            let mut reader = HeadReader::default();
            let first = reader.push(&stdout[..split]).expect("valid");
            let h = match first {
                Some(h) => h,
                None => reader
                    .push(&stdout[split..])
                    .expect("valid")
                    .expect("complete"),
            };
            assert_eq!(h.response.headers["x-b"], "2", "split at {split}");
        }
    }

    /// Lines that are no header, bad statuses and names, and an endless header are refused.
    #[test]
    fn refuses_what_is_no_cgi_header() {
        for bad in [
            &b"<html>oops\r\n\r\n"[..],
            b"Status: 99\r\n\r\n",
            b"Status: 600 Nope\r\n\r\n",
            b"Status: 2000\r\n\r\n",
            b"Bad Name: x\r\n\r\n",
            b"Content-Length: -1\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(HeadError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut reader = HeadReader::default();
        let line = b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut result = Ok(None);
        for _ in 0..(MAX_HEAD / line.len() + 2) {
            result = reader.push(line);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.err(), Some(HeadError::TooLarge));
    }
}
