//! Making untrusted text safe for where it goes: header values, RFC 8941 strings, HTML, JSON.
//!
//! Error details come from the network (the upstream's bytes, OS and TLS library messages that
//! quote them); none of it may break a header, a page or a document.

use std::fmt::Write;

/// The longest detail sent in a header; longer text is cut (on a char boundary) and marked.
pub const MAX_HEADER_TEXT: usize = 256;

/// Printable ASCII only, at most `max` bytes: no CR/LF or other control bytes can reach a header.
pub fn header_text(text: &str, max: usize) -> String {
    // Every char becomes exactly one byte (non-printables become '?'), so chars count bytes.
    let fits = text.chars().count() <= max;
    let keep = if fits { max } else { max.saturating_sub(3) };
    let mut out: String = text
        .chars()
        .take(keep)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    if !fits {
        out.push_str("...");
    }
    out
}

/// An RFC 8941 sf-string (quoted, with `"` and `\` escaped), from already header-safe text.
pub fn sf_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Escapes text for HTML element content and attribute values.
pub fn html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Writes `text` as a JSON string literal.
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_millis()
    );
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
