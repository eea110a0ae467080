//! FastCGI records (the FastCGI 1.0 specification, section 3): what triage writes to a FastCGI
//! server, and the incremental reader of what the server writes back.
//!
//! triage sends one request per connection, always with request id 1 (as nginx does without
//! `fastcgi_keep_conn`): `FCGI_BEGIN_REQUEST` (role responder, no keep-conn), the params as
//! `FCGI_PARAMS` records closed by an empty one, the body as `FCGI_STDIN` records closed by an
//! empty one. The server answers `FCGI_STDOUT` and `FCGI_STDERR` records and ends with
//! `FCGI_END_REQUEST`. Anything else (another version, another request id, a record type a
//! responder never sends, an `FCGI_END_REQUEST` too short to hold its body) is a malformed
//! answer, reported with the bytes that made it so.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only FastCGI version there is.
const VERSION: u8 = 1;
/// The id of triage's one request on a connection.
const REQUEST_ID: u16 = 1;
/// A record's header.
pub(crate) const HEADER_LEN: usize = 8;
/// The largest content of one record (its length is 16 bits).
const MAX_CONTENT: usize = 0xffff;

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const RESPONDER: u16 = 1;

/// How a FastCGI server ended a request (`protocolStatus` of `FCGI_END_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// `FCGI_REQUEST_COMPLETE`: the request ran.
    Complete,
    /// `FCGI_CANT_MPX_CONN`: the server does not take several requests on one connection.
    CantMultiplex,
    /// `FCGI_OVERLOADED`: the server is out of a resource (a worker, a connection).
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE`: the server does not play the role asked for.
    UnknownRole,
    /// A protocol status the specification does not define.
    Other(u8),
}

impl EndStatus {
    fn of(code: u8) -> EndStatus {
        match code {
            0 => EndStatus::Complete,
            1 => EndStatus::CantMultiplex,
            2 => EndStatus::Overloaded,
            3 => EndStatus::UnknownRole,
            other => EndStatus::Other(other),
        }
    }

    /// The specification's name of the status.
    pub fn name(self) -> &'static str {
        match self {
            EndStatus::Complete => "FCGI_REQUEST_COMPLETE",
            EndStatus::CantMultiplex => "FCGI_CANT_MPX_CONN",
            EndStatus::Overloaded => "FCGI_OVERLOADED",
            EndStatus::UnknownRole => "FCGI_UNKNOWN_ROLE",
            EndStatus::Other(_) => "an unknown protocol status",
        }
    }
}

/// One record of the server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Output of the script: the CGI response header, then the body. Empty: the end of stdout.
    Stdout(Bytes),
    /// The script's (or the server's) error output.
    Stderr(Bytes),
    /// The request is over.
    End { app_status: u32, status: EndStatus },
}

/// An answer that is not FastCGI as a responder writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong, in words.
    pub reason: String,
    /// The bytes of the offending record (at most [`MALFORMED_HEAD`]), for the detail and the
    /// cause: an HTTP server on the port answers `HTTP/1.1 400 ...`.
    pub head: Bytes,
}

/// How many bytes of a malformed answer are kept.
pub const MALFORMED_HEAD: usize = 256;

/// Reads records from the bytes received so far. [`RecordReader::buffer`] is where the next
/// read goes; [`RecordReader::take`] takes out the records complete in it, without copying
/// their content.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: BytesMut,
}

impl RecordReader {
    /// Room for a read: at least `at_least` bytes more.
    pub fn buffer(&mut self, at_least: usize) -> &mut BytesMut {
        self.buf.reserve(at_least);
        &mut self.buf
    }

    /// Bytes received and not yet taken out as records.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete record, `None` until one is, or what makes the answer malformed.
    pub fn take(&mut self) -> Result<Option<Record>, Malformed> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            // Not even a header yet; but a first byte that is not version 1 is already wrong.
            return match self.buf.first() {
                Some(&version) if version != VERSION => Err(self.malformed(format!(
                    "not a FastCGI record: the first byte is {version:#04x}, not version 1"
                ))),
                _ => Ok(None),
            };
        };
        let version = header[0];
        let kind = header[1];
        let request_id = u16::from_be_bytes([header[2], header[3]]);
        let content = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let padding = usize::from(header[6]);
        if version != VERSION {
            return Err(self.malformed(format!(
                "not a FastCGI record: the first byte is {version:#04x}, not version 1"
            )));
        }
        if request_id != REQUEST_ID {
            return Err(self.malformed(format!(
                "a record of type {kind} for request id {request_id}; triage sent only request 1"
            )));
        }
        if !matches!(kind, STDOUT | STDERR | END_REQUEST) {
            return Err(self.malformed(format!(
                "a record of type {kind}, which a FastCGI responder never sends"
            )));
        }
        if kind == END_REQUEST && content < 8 {
            return Err(self.malformed(format!(
                "FCGI_END_REQUEST with {content} bytes of body instead of 8"
            )));
        }
        if self.buf.len() < HEADER_LEN + content + padding {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(content).freeze();
        self.buf.advance(padding);
        Ok(Some(match kind {
            STDOUT => Record::Stdout(body),
            STDERR => Record::Stderr(body),
            _ => Record::End {
                app_status: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                status: EndStatus::of(body[4]),
            },
        }))
    }

    fn malformed(&self, reason: String) -> Malformed {
        let keep = self.buf.len().min(MALFORMED_HEAD);
        Malformed {
            reason,
            head: Bytes::copy_from_slice(&self.buf[..keep]),
        }
    }
}

/// Appends a record header for `kind` with `content` bytes to follow, and returns its padding.
fn put_header(out: &mut BytesMut, kind: u8, content: usize) -> usize {
    // Padded to a multiple of 8, as the specification recommends (and nginx does).
    let padding = (8 - content % 8) % 8;
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16(REQUEST_ID);
    // Callers never pass more than MAX_CONTENT.
    out.put_u16(content.min(MAX_CONTENT) as u16);
    out.put_u8(padding as u8);
    out.put_u8(0);
    padding
}

/// Appends `content` as records of `kind`, split at the record size; nothing for empty
/// content (a stream's end is [`end_of_stream`]).
fn put_stream(out: &mut BytesMut, kind: u8, content: &[u8]) {
    // A multiple of 8 below the largest content, so that only the last record is padded.
    const CHUNK: usize = MAX_CONTENT - MAX_CONTENT % 8;
    out.reserve(content.len() + (content.len() / CHUNK + 1) * (HEADER_LEN + 8));
    for chunk in content.chunks(CHUNK) {
        let padding = put_header(out, kind, chunk.len());
        out.put_slice(chunk);
        out.put_bytes(0, padding);
    }
}

fn end_of_stream(out: &mut BytesMut, kind: u8) {
    put_header(out, kind, 0);
}

/// `FCGI_BEGIN_REQUEST` for a responder that closes the connection after the request.
pub fn begin_request(out: &mut BytesMut) {
    put_header(out, BEGIN_REQUEST, 8);
    out.put_u16(RESPONDER);
    // No FCGI_KEEP_CONN: one request per connection.
    out.put_u8(0);
    out.put_bytes(0, 5);
}

/// The params, already encoded as name-value pairs ([`put_pair`]), as `FCGI_PARAMS` records
/// and the empty one that ends them.
pub fn params(out: &mut BytesMut, pairs: &[u8]) {
    put_stream(out, PARAMS, pairs);
    end_of_stream(out, PARAMS);
}

/// A piece of the request body as `FCGI_STDIN` records; `end` closes stdin after it.
pub fn stdin(out: &mut BytesMut, body: &[u8], end: bool) {
    put_stream(out, STDIN, body);
    if end {
        end_of_stream(out, STDIN);
    }
}

/// Appends one name-value pair (specification section 3.4): each length in one byte below
/// 128, else in four with the top bit set. Lengths beyond 31 bits cannot be written; the
/// caller bounds what it sends far below that.
pub fn put_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    fn put_length(out: &mut Vec<u8>, length: usize) {
        if length < 128 {
            out.push(length as u8);
        } else {
            let length = (length.min(0x7fff_ffff) as u32) | 0x8000_0000;
            out.extend_from_slice(&length.to_be_bytes());
        }
    }
    put_length(out, name.len());
    put_length(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = vec![1, kind];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        out.push(padding);
        out.push(0);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0, usize::from(padding)));
        out
    }

    fn reader(bytes: &[u8]) -> RecordReader {
        let mut reader = RecordReader::default();
        reader.buffer(bytes.len()).extend_from_slice(bytes);
        reader
    }

    /// Records split anywhere come out whole, in order, padding skipped; END_REQUEST's body
    /// gives the app status and the protocol status.
    #[test]
    fn reads_records_split_anywhere() {
        let mut bytes = record(STDERR, 1, b"PHP message: oops", 7);
        bytes.extend(record(STDOUT, 1, b"Status: 500\r\n\r\n", 1));
        bytes.extend(record(STDOUT, 1, b"", 0));
        bytes.extend(record(END_REQUEST, 1, &[0, 0, 0, 255, 2, 0, 0, 0], 0));
        for split in 0..bytes.len() {
            let mut reader = reader(&bytes[..split]);
            let mut records = Vec::new();
            while let Some(record) = reader.take().expect("well-formed") {
                records.push(record);
            }
            reader.buffer(0).extend_from_slice(&bytes[split..]);
            while let Some(record) = reader.take().expect("well-formed") {
                records.push(record);
            }
            assert_eq!(
                records,
                vec![
                    Record::Stderr(Bytes::from_static(b"PHP message: oops")),
                    Record::Stdout(Bytes::from_static(b"Status: 500\r\n\r\n")),
                    Record::Stdout(Bytes::new()),
                    Record::End {
                        app_status: 255,
                        status: EndStatus::Overloaded
                    },
                ],
                "split at {split}"
            );
            assert_eq!(reader.pending(), 0);
        }
    }

    /// An HTTP answer is malformed from its first byte, with the bytes kept; so are other
    /// request ids, record types a responder never sends, and a short END_REQUEST.
    #[test]
    fn refuses_what_is_not_a_responders_answer() {
        let http = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        let error = reader(&http[..1]).take().expect_err("not FastCGI");
        assert!(error.reason.contains("0x48"), "{}", error.reason);
        let error = reader(http).take().expect_err("not FastCGI");
        assert_eq!(&error.head[..], &http[..]);
        for (bytes, says) in [
            (record(STDOUT, 2, b"x", 0), "request id 2"),
            (record(10, 1, b"", 0), "type 10"),
            (record(END_REQUEST, 1, &[0, 0, 0, 0], 0), "4 bytes"),
        ] {
            let error = reader(&bytes).take().expect_err("malformed");
            assert!(error.reason.contains(says), "{}", error.reason);
        }
    }

    /// What triage writes: BEGIN_REQUEST for a responder without keep-conn, streams split at
    /// the record size and padded to 8, each closed by an empty record; a pair's long lengths
    /// take four bytes with the top bit set.
    #[test]
    fn writes_records_as_the_specification_says() {
        let mut out = BytesMut::new();
        begin_request(&mut out);
        assert_eq!(&out[..], &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let mut out = BytesMut::new();
        let body = vec![7u8; MAX_CONTENT + 10];
        stdin(&mut out, &body, true);
        let mut parsed = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let content = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
            let padding = usize::from(rest[6]);
            assert_eq!(rest[1], STDIN);
            assert_eq!((content + padding) % 8, 0);
            parsed.extend_from_slice(&rest[HEADER_LEN..HEADER_LEN + content]);
            rest = &rest[HEADER_LEN + content + padding..];
            if content == 0 {
                assert!(rest.is_empty(), "the empty record ends stdin");
            }
        }
        assert_eq!(parsed, body);
        let mut pair = Vec::new();
        put_pair(&mut pair, b"A", &[b'v'; 200]);
        assert_eq!(&pair[..5], &[1, 0x80, 0, 0, 200]);
        assert_eq!(pair.len(), 5 + 1 + 200);
    }
}
