//! The checks a request passes before it is routed: each refuses a request that the app
//! behind triage could read differently from triage, where that difference lets a client
//! reach what its route does not allow or hide a second request in the first. nginx refuses
//! the same requests with 400.
//!
//! - Body framing ([`check_framing`]): `Transfer-Encoding` is a single `chunked` and never
//!   comes with `Content-Length`; `Content-Length` values are digits and agree, and the app
//!   gets one canonical value.
//! - The host ([`check_host`]): a `Host` (or an HTTP/2 `:authority`) has only the bytes a host
//!   name, IP address or IP literal can have, and a numeric port.
//! - The path ([`normalize_path`]): matched against the routes in normal form (percent-encoded
//!   dots, unreserved characters and slashes decoded, repeated slashes merged as nginx's
//!   `merge_slashes` does, dot-segments resolved as RFC 3986's `remove_dot_segments` does), and
//!   refused when it climbs above `/` or its percent-encoding is broken.
//!
//! Everything here is a pure function of the request, except [`check_request`], which runs
//! the checks on a request and replaces a non-canonical `Content-Length`. A request that fails
//! one is a [`Refusal`], answered 400 `bad_request` with [`Refusal::detail`].

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Version};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::server::ContentLengthRemoved;

/// Why a request is refused. Each is answered 400 `bad_request`, and the client connection is
/// closed after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding` (CL.TE, TE.CL): two parsers that each
    /// pick one read two different requests.
    ContentLengthWithTransferEncoding,
    /// A `Transfer-Encoding` other than one `chunked` field: an app may decode a coding
    /// triage passes through, or read the framing from another field.
    TransferEncodingNotChunked,
    /// `Transfer-Encoding` in an HTTP/1.0 request, which has no chunked framing (RFC 9112
    /// section 6.1).
    TransferEncodingInHttp10,
    /// A `Content-Length` value that is not plain digits (a sign, a space inside, empty) or
    /// does not fit 64 bits.
    ContentLengthInvalid,
    /// `Content-Length` values that differ (`5, 6`, or two lines).
    ContentLengthConflict,
    /// A `Host` or `:authority` with bytes no host name has: a space, a control byte, a byte
    /// above 0x7f, a slash, a quote...
    HostInvalid,
    /// A path whose dot-segments climb above `/` (`/../x`).
    PathAboveRoot,
    /// A `%` in the path not followed by two hex digits.
    PathBadPercentEncoding,
    /// `%00` in the path: an app in C would end the path there.
    PathEncodedNul,
}

impl Refusal {
    #[cfg(test)]
    pub const ALL: [Refusal; 9] = [
        Refusal::ContentLengthWithTransferEncoding,
        Refusal::TransferEncodingNotChunked,
        Refusal::TransferEncodingInHttp10,
        Refusal::ContentLengthInvalid,
        Refusal::ContentLengthConflict,
        Refusal::HostInvalid,
        Refusal::PathAboveRoot,
        Refusal::PathBadPercentEncoding,
        Refusal::PathEncodedNul,
    ];

    /// What was wrong, for `X-Diagnosis-Detail`, the report and the log: fixed text, never
    /// the client's bytes.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            Refusal::TransferEncodingNotChunked => "Transfer-Encoding is not exactly chunked",
            Refusal::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Refusal::ContentLengthInvalid => "Content-Length is not a number",
            Refusal::ContentLengthConflict => "Content-Length values differ",
            Refusal::HostInvalid => "Host is not a valid host name",
            Refusal::PathAboveRoot => "path climbs above / with dot-segments",
            Refusal::PathBadPercentEncoding => "path has a % not followed by two hex digits",
            Refusal::PathEncodedNul => "path has an encoded NUL (%00)",
        }
    }
}

/// What a request's `Content-Length` needs before the request goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLength {
    /// Absent, or one field with one canonical value: forwarded as it is.
    AsSent,
    /// Valid but not in one canonical field (repeated lines, a list of equal values, leading
    /// zeros, spaces): the app gets this one value instead, so it cannot read another.
    Replace(u64),
}

/// Checks how the request's body is framed. `content_length_removed` says that Pingora's
/// parser removed a `Content-Length` because `Transfer-Encoding` was also present (see
/// vendor/pingora-core/PATCHES.md, patch 2).
///
/// `Transfer-Encoding` other than `chunked` is refused with 400 rather than nginx's 501 (which
/// RFC 9112 section 6.1 suggests for a coding the server does not know): either way the body
/// cannot be read and the connection is closed; 400 keeps every framing refusal one
/// `bad_request`, and it is what Pingora's parser already answers for a final coding other
/// than `chunked`.
pub fn check_framing(
    headers: &HeaderMap,
    version: Version,
    content_length_removed: bool,
) -> Result<ContentLength, Refusal> {
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(encoding) = encodings.next() {
        if content_length_removed || headers.contains_key(CONTENT_LENGTH) {
            return Err(Refusal::ContentLengthWithTransferEncoding);
        }
        if version < Version::HTTP_11 {
            return Err(Refusal::TransferEncodingInHttp10);
        }
        let single = encodings.next().is_none();
        if !single || !trim_ows(encoding.as_bytes()).eq_ignore_ascii_case(b"chunked") {
            return Err(Refusal::TransferEncodingNotChunked);
        }
        return Ok(ContentLength::AsSent);
    }
    if content_length_removed {
        // Only removed when Transfer-Encoding was there: refused whatever removed that.
        return Err(Refusal::ContentLengthWithTransferEncoding);
    }
    content_length(headers.get_all(CONTENT_LENGTH).iter())
}

/// Reconciles every `Content-Length` field and list item into one value (RFC 9110 section
/// 8.6 allows a list of equal values); canonical when there is one field with one value
/// written without a leading zero or spaces.
fn content_length<'a>(
    fields: impl Iterator<Item = &'a HeaderValue>,
) -> Result<ContentLength, Refusal> {
    let mut value = None;
    let mut canonical = true;
    for (index, field) in fields.enumerate() {
        canonical &= index == 0;
        for (position, item) in field.as_bytes().split(|&b| b == b',').enumerate() {
            let digits = trim_ows(item);
            let length = parse_digits(digits).ok_or(Refusal::ContentLengthInvalid)?;
            canonical &= position == 0
                && digits.len() == item.len()
                && (digits.len() == 1 || digits.first() != Some(&b'0'));
            match value {
                Some(earlier) if earlier != length => return Err(Refusal::ContentLengthConflict),
                _ => value = Some(length),
            }
        }
    }
    Ok(match value {
        Some(length) if !canonical => ContentLength::Replace(length),
        _ => ContentLength::AsSent,
    })
}

/// A decimal number of plain ASCII digits (no sign, not empty) that fits 64 bits.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Without the optional whitespace (spaces and tabs) around a field value or list item.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Checks a `Host` value or an `:authority` (RFC 3986 section 3.2.2 and 3.2.3): a reg-name
/// (unreserved characters, sub-delims, percent-encoded octets) or an IP literal in brackets,
/// then an optional `:` and digits. An empty value passes (RFC 9110 section 7.2 allows it
/// for a target without an authority; no host-specific route matches it).
pub fn check_host(host: &[u8]) -> Result<(), Refusal> {
    if host.is_empty() {
        return Ok(());
    }
    let after_host = match host.strip_prefix(b"[") {
        Some(literal) => {
            let end = literal
                .iter()
                .position(|&b| b == b']')
                .ok_or(Refusal::HostInvalid)?;
            let (inside, after) = literal.split_at(end);
            let literal_byte = |&b: &u8| is_unreserved(b) || is_sub_delim(b) || b == b':';
            // A zone id is percent-encoded (`%25`, RFC 6874).
            if inside.is_empty() || !all_or_percent_encoded(inside, literal_byte) {
                return Err(Refusal::HostInvalid);
            }
            after.strip_prefix(b"]").unwrap_or(after)
        }
        None => {
            let end = host.iter().position(|&b| b == b':').unwrap_or(host.len());
            let (name, after) = host.split_at(end);
            let name_byte = |&b: &u8| is_unreserved(b) || is_sub_delim(b);
            if name.is_empty() || !all_or_percent_encoded(name, name_byte) {
                return Err(Refusal::HostInvalid);
            }
            after
        }
    };
    match after_host {
        [] => Ok(()),
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Ok(()),
        _ => Err(Refusal::HostInvalid),
    }
}

/// Whether every byte passes `allowed` or is part of a `%` and two hex digits.
fn all_or_percent_encoded(bytes: &[u8], allowed: impl Fn(&u8) -> bool) -> bool {
    let mut rest = bytes;
    while let Some((first, tail)) = rest.split_first() {
        rest = match (first, tail) {
            (b'%', [high, low, after @ ..])
                if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
            {
                after
            }
            (b, _) if allowed(b) => tail,
            _ => return false,
        };
    }
    true
}

/// RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 section 2.2.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// How a path is matched and what the app gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathCheck {
    /// Already in normal form: matched and forwarded as sent (the common case; nothing is
    /// allocated).
    AsSent,
    /// No dot-segments, but percent-encoded unreserved characters or slashes, or repeated
    /// slashes: matched in this normal form, forwarded as sent. Without dot-segments no
    /// reading of the path leaves the segments it was matched on, and an app that keeps `%2F`
    /// inside a segment (`/projects/group%2Fname`) still gets it, as behind nginx.
    Matched(String),
    /// Dot-segments (`.` and `..`, as they are or percent-encoded): matched and forwarded in
    /// this normal form, so the app gets the very path its route allowed, however it would
    /// have resolved the dots, decoded `%2F` or merged slashes itself.
    Resolved(String),
}

impl PathCheck {
    /// The path to match the routes against, given the path as sent.
    pub fn matching<'a>(&'a self, sent: &'a str) -> &'a str {
        match self {
            PathCheck::AsSent => sent,
            PathCheck::Matched(normal) | PathCheck::Resolved(normal) => normal,
        }
    }

    /// The request target for the app when it is not the client's: the resolved path, then
    /// the query as sent.
    pub fn upstream_target(&self, query: Option<&str>) -> Option<String> {
        match self {
            PathCheck::AsSent | PathCheck::Matched(_) => None,
            PathCheck::Resolved(path) => Some(match query {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            }),
        }
    }
}

/// The normal form of a path, as nginx computes it before matching `location`s: percent-
/// encoded unreserved characters and `/` decoded (other encoded bytes stay encoded, `%25`
/// too, so nothing is decoded twice), runs of `/` merged into one, then `.` and `..`
/// segments resolved. A path that is not absolute (`*`) is left as it is.
pub fn normalize_path(path: &str) -> Result<PathCheck, Refusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || !may_need_normalizing(bytes) {
        return Ok(PathCheck::AsSent);
    }
    let decoded = decode_for_matching(bytes)?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dot_segments = false;
    // Whether the last segment leaves a directory: "/a/", "/a/." and "/a/b/.." all end in "/".
    let mut ends_with_slash = false;
    for segment in decoded.get(1..).unwrap_or_default().split(|&b| b == b'/') {
        ends_with_slash = true;
        match segment {
            b"" => {}
            b"." => dot_segments = true,
            b".." => {
                dot_segments = true;
                if kept.pop().is_none() {
                    return Err(Refusal::PathAboveRoot);
                }
            }
            _ => {
                kept.push(segment);
                ends_with_slash = false;
            }
        }
    }
    let mut normal = Vec::with_capacity(decoded.len());
    for segment in kept {
        normal.push(b'/');
        normal.extend_from_slice(segment);
    }
    if ends_with_slash || normal.is_empty() {
        normal.push(b'/');
    }
    // Split only at '/' and decoded only to ASCII: what was UTF-8 still is.
    let normal = String::from_utf8(normal)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(if dot_segments {
        PathCheck::Resolved(normal)
    } else if normal == path {
        PathCheck::AsSent
    } else {
        PathCheck::Matched(normal)
    })
}

/// Whether the path has anything normalizing could change: a `%`, a `//`, or a segment that
/// starts with a dot.
fn may_need_normalizing(path: &[u8]) -> bool {
    path.contains(&b'%')
        || path
            .windows(2)
            .any(|pair| pair[0] == b'/' && matches!(pair[1], b'/' | b'.'))
}

/// The path with its percent-encoded unreserved characters and slashes decoded.
fn decode_for_matching(path: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut rest = path;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            decoded.push(byte);
            rest = tail;
            continue;
        }
        let [high, low, after @ ..] = tail else {
            return Err(Refusal::PathBadPercentEncoding);
        };
        let (Some(h), Some(l)) = (hex_value(*high), hex_value(*low)) else {
            return Err(Refusal::PathBadPercentEncoding);
        };
        match h << 4 | l {
            0 => return Err(Refusal::PathEncodedNul),
            octet if is_unreserved(octet) || octet == b'/' => decoded.push(octet),
            _ => decoded.extend_from_slice(&[byte, *high, *low]),
        }
        rest = after;
    }
    Ok(decoded)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Runs every check on a request about to be routed: its framing, then its host, then its
/// path. A non-canonical `Content-Length` is replaced by its one value. Returns how to match
/// and forward the path.
pub fn check_request(req: &mut RequestHeader) -> Result<PathCheck, Refusal> {
    let removed = req.extensions.get::<ContentLengthRemoved>().is_some();
    if let ContentLength::Replace(length) = check_framing(&req.headers, req.version, removed)? {
        req.insert_header(CONTENT_LENGTH, length)
            .map_err(|_| Refusal::ContentLengthInvalid)?;
    }
    if let Some(host) = req.headers.get(HOST) {
        check_host(host.as_bytes())?;
    }
    if let Some(authority) = req.uri.authority() {
        check_host(authority.as_str().as_bytes())?;
    }
    // The path as parsed: Pingora's HTTP/1 parser refuses a target that is not UTF-8, so this
    // is the client's path byte for byte.
    normalize_path(req.uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn headers(fields: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn framing(fields: &[(&'static str, &str)]) -> Result<ContentLength, Refusal> {
        check_framing(&headers(fields), Version::HTTP_11, false)
    }

    /// One canonical Content-Length, or none, passes as it is; equal values in any spelling
    /// become one value; anything else is refused.
    #[test]
    fn content_length_is_one_canonical_value() {
        use ContentLength::{AsSent, Replace};
        assert_eq!(framing(&[]), Ok(AsSent));
        assert_eq!(framing(&[("content-length", "5")]), Ok(AsSent));
        assert_eq!(framing(&[("content-length", "0")]), Ok(AsSent));
        for same in [
            &[("content-length", "5"), ("content-length", "5")][..],
            &[("content-length", "5, 5")],
            &[("content-length", "5,5,5")],
            &[("content-length", "05")],
            &[("content-length", " 5 ")],
            &[("content-length", "5"), ("content-length", "5, 5")],
        ] {
            assert_eq!(framing(same), Ok(Replace(5)), "{same:?}");
        }
        assert_eq!(framing(&[("content-length", "00")]), Ok(Replace(0)));
        for invalid in [
            "+5",
            "-5",
            "5 5",
            "",
            "5,",
            "0x5",
            "5.0",
            "18446744073709551616",
        ] {
            assert_eq!(
                framing(&[("content-length", invalid)]),
                Err(Refusal::ContentLengthInvalid),
                "{invalid:?}"
            );
        }
        assert_eq!(
            framing(&[("content-length", "18446744073709551615")]),
            Ok(AsSent)
        );
        for differing in [
            &[("content-length", "5, 6")][..],
            &[("content-length", "5"), ("content-length", "6")],
        ] {
            assert_eq!(
                framing(differing),
                Err(Refusal::ContentLengthConflict),
                "{differing:?}"
            );
        }
    }

    /// Transfer-Encoding passes only as one `chunked` field (any case, optional whitespace),
    /// in HTTP/1.1, without Content-Length, and without a Content-Length Pingora removed.
    #[test]
    fn transfer_encoding_is_one_chunked() {
        for chunked in ["chunked", "Chunked", " CHUNKED\t"] {
            assert_eq!(
                framing(&[("transfer-encoding", chunked)]),
                Ok(ContentLength::AsSent),
                "{chunked:?}"
            );
        }
        for other in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "chunked, identity")],
            &[("transfer-encoding", "identity")],
            &[("transfer-encoding", "xchunked")],
            &[("transfer-encoding", "chunked;q=1")],
            &[("transfer-encoding", "")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("transfer-encoding", "identity"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            assert_eq!(
                framing(other),
                Err(Refusal::TransferEncodingNotChunked),
                "{other:?}"
            );
        }
        for both in [
            &[("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[("transfer-encoding", "chunked"), ("content-length", "0")],
            &[("transfer-encoding", "gzip"), ("content-length", "x")],
        ] {
            assert_eq!(
                framing(both),
                Err(Refusal::ContentLengthWithTransferEncoding),
                "{both:?}"
            );
        }
        let chunked = headers(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            check_framing(&chunked, Version::HTTP_11, true),
            Err(Refusal::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            check_framing(&HeaderMap::new(), Version::HTTP_11, true),
            Err(Refusal::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            check_framing(&chunked, Version::HTTP_10, false),
            Err(Refusal::TransferEncodingInHttp10)
        );
    }

    /// Host names, addresses and IP literals pass, with or without a port; spaces, control
    /// bytes, bytes above 0x7f, slashes, quotes, userinfo and broken ports do not.
    #[test]
    fn host_has_only_host_bytes() {
        for good in [
            "",
            "localhost",
            "shop.example",
            "shop.example:8080",
            "shop.example:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1%25eth0]:80",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "my_host.internal",
            "caf%C3%A9.example",
        ] {
            assert_eq!(check_host(good.as_bytes()), Ok(()), "{good:?}");
        }
        for bad in [
            &b"local host"[..],
            b"local\thost",
            b"local\x01host",
            b"local\x7fhost",
            b"local\xffhost",
            b"local/host",
            b"local\\host",
            b"local\"host",
            b"<script>",
            b"user@host",
            b"a%zzb",
            b"a%2",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::1]:80x",
            b"[::1 ]",
            b"host:80x",
            b"host:80:80",
            b":8080",
            b" localhost",
        ] {
            assert_eq!(
                check_host(bad),
                Err(Refusal::HostInvalid),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Paths already in normal form, and paths that only look as if they were not, are left
    /// alone; encoded unreserved characters and slashes and repeated slashes change only
    /// what is matched; dot-segments change what is matched and forwarded.
    #[test]
    fn paths_normalize_as_nginx_matches_them() {
        use PathCheck::{AsSent, Matched, Resolved};
        let cases: &[(&str, PathCheck)] = &[
            ("/", AsSent),
            ("/public/a", AsSent),
            ("/public/a%20b", AsSent),
            ("/.well-known/x", AsSent),
            ("/a/.../b", AsSent),
            ("/a/..b/.c", AsSent),
            ("/%252e%252e/x", AsSent),
            ("*", AsSent),
            ("", AsSent),
            ("/%70ublic/x", Matched("/public/x".into())),
            ("/%7Euser", Matched("/~user".into())),
            ("//a//b//", Matched("/a/b/".into())),
            ("/a%2Fb", Matched("/a/b".into())),
            ("/a%2fb%2F", Matched("/a/b/".into())),
            ("/a%2E", Matched("/a.".into())),
            ("/a/./b", Resolved("/a/b".into())),
            ("/a/../b", Resolved("/b".into())),
            ("/a/b/..", Resolved("/a/".into())),
            ("/a/b/.", Resolved("/a/b/".into())),
            ("/.", Resolved("/".into())),
            ("/a/..", Resolved("/".into())),
            ("/./", Resolved("/".into())),
            ("/public/%2e%2e/secret", Resolved("/secret".into())),
            ("/public/%2E%2E/x", Resolved("/x".into())),
            ("/public/.%2e/x", Resolved("/x".into())),
            ("/public/..%2fsecret", Resolved("/secret".into())),
            (
                "/public/./../admin/delete",
                Resolved("/admin/delete".into()),
            ),
            ("/public/./a/../b", Resolved("/public/b".into())),
            ("/public//../secret", Resolved("/secret".into())),
            ("/a/%3F/../b%3f", Resolved("/a/b%3f".into())),
            ("/caf%c3%a9/./x", Resolved("/caf%c3%a9/x".into())),
            ("/café/../x", Resolved("/x".into())),
            ("/café/./x", Resolved("/café/x".into())),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize_path(path).as_ref(), Ok(expected), "{path:?}");
        }
        for above in [
            "/..",
            "/../x",
            "/a/../..",
            "/%2e%2e",
            "/a/%2e%2e%2f%2E%2E/x",
            "//..",
        ] {
            assert_eq!(
                normalize_path(above),
                Err(Refusal::PathAboveRoot),
                "{above:?}"
            );
        }
        for broken in ["/%", "/%2", "/%zz", "/%g0", "/a%2/b", "/100%"] {
            assert_eq!(
                normalize_path(broken),
                Err(Refusal::PathBadPercentEncoding),
                "{broken:?}"
            );
        }
        assert_eq!(normalize_path("/a%00b"), Err(Refusal::PathEncodedNul));
    }

    /// Only a resolved path changes what the app gets; the query goes with it as sent.
    #[test]
    fn upstream_target_is_the_resolved_path_and_the_query() {
        let resolved = PathCheck::Resolved("/public/b".into());
        assert_eq!(resolved.matching("/public/a/../b"), "/public/b");
        assert_eq!(
            resolved.upstream_target(Some("x=../y")),
            Some("/public/b?x=../y".into())
        );
        assert_eq!(resolved.upstream_target(None), Some("/public/b".into()));
        let matched = PathCheck::Matched("/public/x".into());
        assert_eq!(matched.matching("/%70ublic/x"), "/public/x");
        assert_eq!(matched.upstream_target(Some("q")), None);
        assert_eq!(PathCheck::AsSent.matching("/a"), "/a");
        assert_eq!(PathCheck::AsSent.upstream_target(None), None);
    }

    /// On a parsed request: a list of equal lengths becomes one field, and each kind of check
    /// runs (framing, Host, path).
    #[test]
    fn check_request_runs_every_check() {
        let mut req = RequestHeader::build("POST", b"/a/./b", None).expect("request");
        req.append_header("Content-Length", "5, 5").expect("header");
        req.append_header("Host", "shop.example").expect("header");
        assert_eq!(
            check_request(&mut req),
            Ok(PathCheck::Resolved("/a/b".into()))
        );
        let lengths: Vec<_> = req.headers.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, [&HeaderValue::from_static("5")]);

        let mut bad_host = RequestHeader::build("GET", b"/", None).expect("request");
        bad_host.append_header("Host", "a b").expect("header");
        assert_eq!(check_request(&mut bad_host), Err(Refusal::HostInvalid));

        let mut removed = RequestHeader::build("POST", b"/", None).expect("request");
        removed
            .append_header("Transfer-Encoding", "chunked")
            .expect("header");
        removed.extensions_mut().insert(ContentLengthRemoved);
        assert_eq!(
            check_request(&mut removed),
            Err(Refusal::ContentLengthWithTransferEncoding)
        );

        let mut above = RequestHeader::build("GET", b"/../x", None).expect("request");
        assert_eq!(check_request(&mut above), Err(Refusal::PathAboveRoot));
    }

    /// Details are short distinct ASCII lines, safe in a header as they are.
    #[test]
    fn details_are_distinct_short_ascii() {
        let details: HashSet<_> = Refusal::ALL.iter().map(|r| r.detail()).collect();
        assert_eq!(details.len(), Refusal::ALL.len());
        for detail in details {
            assert!(detail.len() <= 80, "{detail}");
            assert!(
                detail.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{detail}"
            );
        }
    }

    /// The README's "Requests triage refuses" table has one row per refusal, first cell its
    /// detail, and no other rows.
    #[test]
    fn readme_lists_every_refusal() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### Requests triage refuses")
            .expect("README has the section");
        let section = &readme[start..];
        let end = section[4..].find("\n#").map_or(section.len(), |i| i + 4);
        let rows: Vec<&str> = section[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .collect();
        for refusal in Refusal::ALL {
            let prefix = format!("| `{}` |", refusal.detail());
            assert!(
                rows.iter().any(|row| row.starts_with(&prefix)),
                "README has no row for {refusal:?}"
            );
        }
        assert_eq!(rows.len(), Refusal::ALL.len(), "{rows:#?}");
    }
}
