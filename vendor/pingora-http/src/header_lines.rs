// triage patch (PATCHES.md 5): this whole file.

//! Header lines written after a header map's, as they are.
//!
//! A proxy adds headers to every response that nothing reads back before they are written
//! (triage: its `X-Diagnosis-*` and `Server-Timing` headers). Inserting each into the
//! `http` header map hashes its name, probes the index, pushes an entry, and then the
//! HTTP/1 writer walks the map to title-case and copy it again: about 600 instructions a
//! header. Written here instead, a header is its bytes, copied once more when the header
//! block is written. The map does not show these lines: they are for headers the writer
//! adds last.

use bytes::BufMut;
use http::header::{HeaderName, HeaderValue};
use pingora_error::{Error, ErrorType::*, Result};

/// `Name: value\r\n` lines, each name in Title-Case and each value valid as a
/// [`HeaderValue`], in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderLines {
    wire: Vec<u8>,
}

/// One header line built ahead of time, for a header whose name and value never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    wire: Box<[u8]>,
}

/// A header name as a line starts, `Name: ` in Title-Case, built ahead of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLineName {
    wire: Box<[u8]>,
}

impl HeaderLineName {
    pub fn new(name: &HeaderName) -> Self {
        let mut wire = Vec::with_capacity(name.as_str().len() + 2);
        crate::put_title_case_and_delimiter(&mut wire, name);
        HeaderLineName {
            wire: wire.into_boxed_slice(),
        }
    }
}

/// The room the first line reserves: enough for a proxy's few headers, so that pushing
/// them does not grow the buffer line by line.
const FIRST_RESERVE: usize = 256;

impl HeaderLine {
    /// The line `name: value`, with the name in Title-Case.
    pub fn new(name: &HeaderName, value: &HeaderValue) -> Self {
        let mut wire = Vec::with_capacity(name.as_str().len() + value.len() + 4);
        crate::put_title_case_and_delimiter(&mut wire, name);
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
        HeaderLine {
            wire: wire.into_boxed_slice(),
        }
    }
}

/// The bytes a [`HeaderValue`] may hold: visible ASCII, obs-text and tab, no CR, LF or NUL.
#[inline]
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether every byte may be in a header value. Eight bytes at a time: a word with no byte
/// under 0x20 and none equal to 0x7f is valid as a whole (values are short, and nearly always
/// valid); a word with one is checked a byte at a time (a tab is valid).
#[inline]
fn is_value(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        // A byte under 0x20 (its high bit clear, and under 0x20 after the subtraction), or
        // a byte equal to 0x7f (zero after the xor): flagged in its high bit.
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        let x = w ^ (ONES * 0x7f);
        let delete = x.wrapping_sub(ONES) & !x & HIGHS;
        if (below_space | delete) != 0 && !word.iter().all(|&b| is_value_byte(b)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| is_value_byte(b))
}

impl HeaderLines {
    /// Whether no line was pushed.
    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }

    /// Adds `name: value`. A value that is no valid [`HeaderValue`] is refused (nothing is
    /// added).
    pub fn push(&mut self, name: &HeaderLineName, value: &[u8]) -> Result<()> {
        if !is_value(value) {
            return Error::e_explain(InvalidHTTPHeader, "invalid header value");
        }
        self.reserve_first();
        self.wire.extend_from_slice(&name.wire);
        self.wire.extend_from_slice(value);
        self.wire.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Adds `name` and the value `write` appends to the buffer it is given. A value that is
    /// no valid [`HeaderValue`] is refused (nothing is added).
    pub fn push_with(
        &mut self,
        name: &HeaderLineName,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        self.reserve_first();
        let line_start = self.wire.len();
        self.wire.extend_from_slice(&name.wire);
        let value_start = self.wire.len();
        write(&mut self.wire);
        if !is_value(&self.wire[value_start..]) {
            self.wire.truncate(line_start);
            return Error::e_explain(InvalidHTTPHeader, "invalid header value");
        }
        self.wire.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Adds a line built ahead of time.
    pub fn push_line(&mut self, line: &HeaderLine) {
        self.reserve_first();
        self.wire.extend_from_slice(&line.wire);
    }

    #[inline]
    fn reserve_first(&mut self) {
        if self.wire.capacity() == 0 {
            self.wire.reserve(FIRST_RESERVE);
        }
    }

    /// The lines as HTTP/1 writes them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.wire
    }

    /// Writes the lines in HTTP/1 wire format.
    pub fn write_h1(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.wire);
    }

    /// Each line as a name and a value (for HTTP/2, whose header block is built from a map).
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.wire
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_suffix(b"\r"))
            .filter_map(|line| {
                let at = line.windows(2).position(|w| w == b": ")?;
                let name = HeaderName::from_bytes(&line[..at]).ok()?;
                let value = HeaderValue::from_bytes(&line[at + 2..]).ok()?;
                Some((name, value))
            })
    }

    /// Adds the lines to `map` (after its own entries for the same names).
    pub fn append_to(&self, map: &mut crate::HMap) {
        for (name, value) in self.iter() {
            map.append(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_title_case_name_and_value() {
        let mut lines = HeaderLines::default();
        assert!(lines.is_empty());
        lines
            .push(
                &HeaderLineName::new(&HeaderName::from_static("x-diagnosis-id")),
                b"abc",
            )
            .unwrap();
        lines.push_line(&HeaderLine::new(
            &HeaderName::from_static("x-diagnosis-source"),
            &HeaderValue::from_static("upstream"),
        ));
        lines
            .push_with(
                &HeaderLineName::new(&HeaderName::from_static("server-timing")),
                |out| out.extend_from_slice(b"total;dur=1.5"),
            )
            .unwrap();
        assert_eq!(
            lines.as_bytes(),
            b"X-Diagnosis-Id: abc\r\nX-Diagnosis-Source: upstream\r\nServer-Timing: total;dur=1.5\r\n"
        );
        let parsed: Vec<_> = lines.iter().collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].0, "x-diagnosis-id");
        assert_eq!(parsed[0].1, "abc");
        assert_eq!(parsed[2].1, "total;dur=1.5");
    }

    #[test]
    fn invalid_values_are_refused_and_leave_nothing() {
        let mut lines = HeaderLines::default();
        let name = HeaderLineName::new(&HeaderName::from_static("x-a"));
        for bad in [&b"a\r\nInjected: 1"[..], b"a\nb", b"nul\0", b"del\x7f"] {
            assert!(lines.push(&name, bad).is_err());
            assert!(lines.is_empty(), "{bad:?}");
        }
        lines.push(&name, b"tab\tand obs-text \xff").unwrap();
        assert_eq!(lines.iter().count(), 1);
    }

    /// On HTTP/1 the lines follow the map's headers; a clone keeps them as lines (not twice);
    /// the parts HTTP/2 writes from have them in the map, after the map's own.
    #[test]
    fn response_writes_lines_after_the_map() {
        let mut resp = crate::ResponseHeader::build(200, None).unwrap();
        resp.append_header("Proxy-Status", "app").unwrap();
        let proxy_status = HeaderName::from_static("proxy-status");
        resp.appended_lines_mut()
            .push(&HeaderLineName::new(&proxy_status), b"triage")
            .unwrap();
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"Proxy-Status: app\r\nProxy-Status: triage\r\n");
        let copy = resp.clone();
        assert_eq!(copy.headers.len(), 1);
        assert_eq!(copy.appended_lines(), resp.appended_lines());
        let parts = resp.as_owned_parts();
        let all: Vec<_> = parts.headers.get_all(&proxy_status).iter().collect();
        assert_eq!(all, ["app", "triage"]);
        let parts = http::response::Parts::from(resp);
        assert_eq!(parts.headers.get_all(&proxy_status).iter().count(), 2);
    }

    /// The word-at-a-time check agrees with the byte rule, for every byte in every position
    /// of values of every length up to 24.
    #[test]
    fn value_check_agrees_with_the_byte_rule() {
        for len in 1..=24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    assert_eq!(
                        is_value(&value),
                        value.iter().all(|&b| is_value_byte(b)),
                        "{len} {at} {b:#x}"
                    );
                }
            }
        }
        assert!(is_value(b""));
    }
}
