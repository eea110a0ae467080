//! Making untrusted text safe for where it goes: header values, RFC 8941 strings, HTML, JSON.
//!
//! Error details come from the network (the upstream's bytes, OS and TLS library messages that
//! quote them); none of it may break a header, a page or a document.

//! The escapers copy runs of bytes that need no escaping in one go: they run for every failure
//! in a storm, and a char at a time cost more than the rest of the page. Splitting a `&str`
//! at an ASCII byte always lands on a char boundary, so the runs stay valid UTF-8.

use crate::config::{PeerAddr, UnixPath};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// The longest detail sent in a header; longer text is cut (on a char boundary) and marked.
pub const MAX_HEADER_TEXT: usize = 256;

/// Printable ASCII only, at most `max` bytes (cut text ends in `...`, within them): no CR/LF or
/// other control bytes can reach a header.
pub fn header_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    push_header_text(&mut out, text, max);
    out
}

/// Appends [`header_text`]`(text, max)` to `out`, copying `text` as is when it already qualifies.
pub fn push_header_text(out: &mut String, text: &str, max: usize) {
    // Folded without an early exit, so that it vectorizes: a hint is a few hundred bytes.
    if text.len() <= max
        && text
            .bytes()
            .fold(true, |printable, b| printable & (b' '..=b'~').contains(&b))
    {
        out.push_str(text);
        return;
    }
    // Every char becomes exactly one byte (non-printables become '?'), so chars count bytes.
    let fits = text.chars().count() <= max;
    // The cut mark counts against `max` too, and is itself cut when `max` is below its length.
    let mark = if fits { "" } else { &"..."[..max.min(3)] };
    out.extend(text.chars().take(max - mark.len()).map(|c| {
        if (' '..='~').contains(&c) {
            c
        } else {
            '?'
        }
    }));
    out.push_str(mark);
}

/// How an access-log field is delimited, which decides what must be escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    /// Between double quotes (request line, referer, user agent): a `"` would end it.
    Quoted,
    /// Bare, ended by a space (`host=...`): a space would end it and start a forged field.
    Bare,
}

/// Appends at most `max` bytes of `text` to `out` escaped as nginx escapes its access log:
/// `"`, `\`, control bytes and non-ASCII bytes as `\xHH` (for a [`LogField::Bare`] field the
/// space too), so nothing a client sends can end a field, forge another or break the line.
/// Longer text is cut and marked `...`; what is appended is at most `4 * max + 3` bytes.
pub fn push_log_text(out: &mut String, text: &str, max: usize, field: LogField) {
    let needs_escape = |b: u8| {
        !(b' '..=b'~').contains(&b)
            || b == b'"'
            || b == b'\\'
            || (b == b' ' && field == LogField::Bare)
    };
    let bytes = &text.as_bytes()[..text.len().min(max)];
    if !bytes.iter().any(|&b| needs_escape(b)) {
        // Only ASCII bytes, so the cut is on a char boundary.
        out.push_str(&text[..bytes.len()]);
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in bytes {
            if needs_escape(b) {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            } else {
                out.push(char::from(b));
            }
        }
    }
    if text.len() > max {
        out.push_str("...");
    }
}

/// Appends `text` to `out`, each ASCII byte for which `escape` gives a replacement replaced by it.
/// `clean` says of eight bytes at once (as a little-endian word) that none has a replacement:
/// those are skipped whole, as nearly all of a page's hints and facts are.
fn escape_into(
    out: &mut String,
    text: &str,
    clean: impl Fn(u64) -> bool,
    escape: impl Fn(u8) -> Option<&'static str>,
) {
    let bytes = text.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            if clean(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        if let Some(replacement) = escape(bytes[i]) {
            out.push_str(&text[run..i]);
            out.push_str(replacement);
            run = i + 1;
        }
        i += 1;
    }
    out.push_str(&text[run..]);
}

/// Each byte of `word` repeated in every byte of a word.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// Whether no byte of `word` is one of `bytes` (the classic SWAR zero-byte test on
/// `word ^ splat(b)`, exact for every byte value).
fn word_lacks(word: u64, bytes: &[u8]) -> bool {
    const HIGH: u64 = splat(0x80);
    const LOW: u64 = !HIGH;
    bytes.iter().all(|&b| {
        let x = word ^ splat(b);
        // A byte of `x` is zero exactly when its high bit is clear in both `x` and
        // `(x & LOW) + LOW` (no carry into the high bit from the low seven).
        ((x & LOW).wrapping_add(LOW) | x) & HIGH == HIGH
    })
}

/// Whether every byte of `word` is at least `floor` (at most 0x80).
fn word_at_least(word: u64, floor: u8) -> bool {
    const HIGH: u64 = splat(0x80);
    const LOW: u64 = !HIGH;
    // Bytes with the high bit set are at least 0x80; for the others, adding 0x80 - floor
    // to the low seven bits carries into the high bit exactly when the byte is >= floor.
    let add = splat(0x80 - floor);
    ((word & LOW).wrapping_add(add) | word) & HIGH == HIGH
}

/// An RFC 8941 sf-string (quoted, with `"` and `\` escaped), from already header-safe text.
pub fn sf_string(out: &mut String, text: &str) {
    out.push('"');
    escape_into(
        out,
        text,
        |w| word_lacks(w, b"\"\\"),
        |b| match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            _ => None,
        },
    );
    out.push('"');
}

/// Escapes text for HTML element content and attribute values.
pub fn html(out: &mut String, text: &str) {
    escape_into(
        out,
        text,
        |w| word_lacks(w, b"&<>\"'"),
        |b| match b {
            b'&' => Some("&amp;"),
            b'<' => Some("&lt;"),
            b'>' => Some("&gt;"),
            b'"' => Some("&quot;"),
            b'\'' => Some("&#39;"),
            _ => None,
        },
    );
}

/// Writes `text` as a JSON string literal.
pub fn json_string(out: &mut String, text: &str) {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    out.push('"');
    let clean = |w| word_lacks(w, b"\"\\") && word_at_least(w, 0x20);
    escape_into(out, text, clean, |b| match b {
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        b if b < 0x20 => Some(CONTROL[usize::from(b)]),
        _ => None,
    });
    out.push('"');
}

/// The decimal digits of `n`, right-aligned in the array, and where they start.
fn decimal_digits(n: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    (digits, at)
}

/// Appends `n` in decimal, without the formatter's machinery.
pub fn push_decimal(out: &mut String, n: u64) {
    let (digits, at) = decimal_digits(n);
    // A digit at a time: for the few digits of a status, a size or a time, cheaper than
    // checking them as UTF-8 and copying them as a string.
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Appends a duration in milliseconds with three decimals (microseconds), e.g. `12.345`.
pub fn push_millis(out: &mut String, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    push_decimal(out, micros / 1000);
    let frac = micros % 1000;
    out.push('.');
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

/// The longest address text: a unix socket's `unix:` and path, 112 bytes. The longest socket
/// address, `[ffff:...:255.255.255.255%4294967295]:65535`, is 64.
const ADDR_TEXT_CAPACITY: usize = "unix:".len() + UnixPath::MAX_LEN;

/// A socket address as text, formatted once per failure on the stack and then reused by every
/// header and page field that shows it. Printing a `SocketAddr` through `Display` costs more
/// than all the rest of an error response's headers.
#[derive(Clone, Copy)]
pub struct AddrText {
    len: u8,
    buf: [u8; ADDR_TEXT_CAPACITY],
}

impl AddrText {
    fn empty() -> AddrText {
        AddrText {
            len: 0,
            buf: [0; ADDR_TEXT_CAPACITY],
        }
    }

    pub fn new(addr: SocketAddr) -> AddrText {
        let mut text = AddrText::empty();
        match addr {
            SocketAddr::V4(v4) => {
                text.push_ipv4(*v4.ip());
                text.push(b":");
                text.push_decimal(u32::from(v4.port()));
            }
            SocketAddr::V6(_) => {
                // Rare enough for the formatter; it always fits.
                let _ = write!(text, "{addr}");
            }
        }
        text
    }

    /// The address an attempt went to, as `Display` prints it: `ip:port` or `unix:/path`.
    pub fn peer(addr: &PeerAddr) -> AddrText {
        match addr {
            PeerAddr::Inet(addr) => AddrText::new(*addr),
            PeerAddr::Unix(path) => {
                let mut text = AddrText::empty();
                // Always fits: the config bounds the path.
                text.push(b"unix:");
                text.push(path.as_str().as_bytes());
                text
            }
        }
    }

    /// An IP address alone, as `Display` prints it.
    pub fn ip(ip: std::net::IpAddr) -> AddrText {
        let mut text = AddrText::empty();
        match ip {
            std::net::IpAddr::V4(v4) => text.push_ipv4(v4),
            std::net::IpAddr::V6(_) => {
                let _ = write!(text, "{ip}");
            }
        }
        text
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    fn push_ipv4(&mut self, ip: std::net::Ipv4Addr) {
        // Written into a local buffer and appended with one copy: every request formats its
        // client's address, and a copy per octet and dot cost more than the digits.
        let mut text = [0u8; "255.255.255.255".len()];
        let mut len = 0;
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                text[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                text[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            text[len] = b'0' + octet % 10;
            len += 1;
        }
        self.push(&text[..len]);
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        let at = usize::from(self.len);
        match self.buf.get_mut(at..at + bytes.len()) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                self.len += bytes.len() as u8;
                true
            }
            None => false,
        }
    }

    fn push_decimal(&mut self, n: u32) {
        let (digits, at) = decimal_digits(u64::from(n));
        self.push(&digits[at..]);
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(std::fmt::Error)
        }
    }
}

impl std::fmt::Debug for AddrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for AddrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-11-23T19:49:57.123Z`, without a date library.
pub fn rfc3339(out: &mut String, at: std::time::SystemTime) {
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, secs_of_day) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Fixed width, written in place: one push per time stamp, on every access log line.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0..4, u64::try_from(year.clamp(0, 9999)).unwrap_or(0)),
        (5..7, month as u64),
        (8..10, day as u64),
        (11..13, secs_of_day / 3600),
        (14..16, secs_of_day / 60 % 60),
        (17..19, secs_of_day % 60),
        (20..23, u64::from(since_epoch.subsec_millis())),
    ];
    for (range, mut value) in fields {
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // Safe: ASCII digits and separators.
    out.push_str(std::str::from_utf8(&text).unwrap_or("1970-01-01T00:00:00.000Z"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// CR, LF and other control or non-ASCII characters never survive into a header value.
    #[test]
    fn header_text_strips_controls_and_bounds_length() {
        assert_eq!(
            header_text("evil\r\nSet-Cookie: x\u{7f}é", 100),
            "evil??Set-Cookie: x??"
        );
        let long = "a".repeat(1000);
        let cut = header_text(&long, 50);
        assert_eq!(cut.len(), 50);
        assert!(cut.ends_with("..."));
        assert_eq!(header_text("short", 50), "short");
        // The cut mark counts against the bound, even a bound shorter than the mark.
        assert_eq!(header_text("abcdef", 4), "a...");
        assert_eq!(header_text("abcdef", 2), "..");
        assert_eq!(header_text("abcdef", 0), "");
    }

    /// Quotes and backslashes are escaped inside an sf-string.
    #[test]
    fn sf_string_escapes() {
        let mut out = String::new();
        sf_string(&mut out, r#"a "b" \c"#);
        assert_eq!(out, r#""a \"b\" \\c""#);
    }

    /// HTML and JSON escaping neutralise markup and control characters.
    #[test]
    fn html_and_json_escape() {
        let mut out = String::new();
        html(&mut out, "<script>alert('x')</script>&");
        assert_eq!(out, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;");
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}");
        assert_eq!(out, r#""a\"b\\c\nd\u0001""#);
    }

    /// The eight-byte checks agree with the byte-at-a-time ones for every byte value at every
    /// position of a word.
    #[test]
    fn word_checks_are_exact() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut bytes = *b"abcdefgh";
                bytes[at] = b;
                let word = u64::from_le_bytes(bytes);
                assert_eq!(
                    word_lacks(word, b"&<>\"'"),
                    !b"&<>\"'".contains(&b),
                    "{b} at {at}"
                );
                assert_eq!(word_at_least(word, 0x20), b >= 0x20, "{b} at {at}");
            }
        }
    }

    /// Escapes are found wherever they fall against the 8-byte words that are skipped
    /// whole: at each offset of a text longer than a few chunks, and in its tail.
    #[test]
    fn escapes_at_every_offset_of_long_text() {
        for len in [15, 16, 17, 40, 64] {
            for at in 0..=len {
                // A two-byte char first, so that the chunks do not start on char boundaries.
                let mut text = String::from("é") + &"a".repeat(len);
                text.insert(at + 2, '<');
                let mut out = String::new();
                html(&mut out, &text);
                assert_eq!(out, text.replace('<', "&lt;"), "len {len}, at {at}");
            }
        }
        let text = "x".repeat(31) + r"\" + &"y".repeat(20) + "\"";
        let mut out = String::new();
        sf_string(&mut out, &text);
        assert_eq!(
            out,
            format!(r#""{}\\{}\"""#, "x".repeat(31), "y".repeat(20))
        );
    }

    /// Runs between escapes survive intact, multi-byte UTF-8 included, at both ends.
    #[test]
    fn escapes_keep_the_text_between() {
        let mut out = String::new();
        html(&mut out, "é<ü>ß");
        assert_eq!(out, "é&lt;ü&gt;ß");
        let mut out = String::new();
        json_string(&mut out, "\u{7}tab\there\u{1f}");
        assert_eq!(out, r#""\u0007tab\there\u001f""#);
        let mut out = String::new();
        sf_string(&mut out, "plain");
        assert_eq!(out, "\"plain\"");
    }

    /// Durations print as milliseconds with microsecond precision; numbers as plain decimals.
    #[test]
    fn millis_and_decimals() {
        let cases = [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(1), "0.001"),
            (Duration::from_nanos(1_234_567_890), "1234.567"),
            (Duration::from_secs(60), "60000.000"),
        ];
        for (duration, want) in cases {
            let mut out = String::new();
            push_millis(&mut out, duration);
            assert_eq!(out, want);
        }
        for n in [0, 7, 10, 65535, u64::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    /// Socket addresses print exactly as `Display` prints them, the longest IPv6 form included.
    #[test]
    fn addr_text_matches_display() {
        let cases = [
            "0.0.0.0:0",
            "127.0.0.1:3000",
            "255.255.255.255:65535",
            "10.0.99.100:1",
            "1.22.103.4:80",
            "[::1]:8080",
            "[::ffff:192.0.2.128]:443",
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535",
        ];
        for case in cases {
            let addr: SocketAddr = match case.parse() {
                Ok(addr) => addr,
                Err(_) => SocketAddr::V6(std::net::SocketAddrV6::new(
                    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                        .parse()
                        .unwrap(),
                    65535,
                    0,
                    u32::MAX,
                )),
            };
            assert_eq!(AddrText::new(addr).as_str(), addr.to_string(), "{case}");
            assert_eq!(AddrText::ip(addr.ip()).as_str(), addr.ip().to_string());
            let peer = PeerAddr::Inet(addr);
            assert_eq!(AddrText::peer(&peer).as_str(), peer.to_string());
        }
        // The longest unix socket path the config takes fits whole.
        let longest = format!("unix:/{}", "s".repeat(UnixPath::MAX_LEN - 1));
        let peer: PeerAddr = longest.parse().unwrap();
        assert_eq!(AddrText::peer(&peer).as_str(), longest);
    }

    /// Known instants format as RFC 3339, leap years included.
    #[test]
    fn rfc3339_known_dates() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_795_463_397, "2026-11-23T19:49:57.000Z"),
        ];
        for (secs, want) in cases {
            let mut out = String::new();
            rfc3339(&mut out, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(out, want);
        }
    }
}
