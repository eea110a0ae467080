//! Property tests: the code that reads what operators, clients and upstreams send, on generated
//! input, checked against what it promises for every input, not just the examples of the unit
//! tests. The config parser never panics and points every error inside the file; the sanitizers'
//! output is bounded, in its alphabet and decodes back to the input; the classifier never panics
//! and bounds its detail.
//!
//! They stand in for coverage-guided fuzzing, which needs a nightly toolchain (cargo-fuzz) or a
//! toolchain of its own (cargo-afl) that the project's machines do not have. Each property runs
//! proptest's default 256 cases (a few seconds in all, in CI too), from a fresh random seed each
//! run; a failure prints the smallest input that fails. `PROPTEST_CASES=100000` runs a longer
//! campaign, `PROPTEST_RNG_SEED=N` repeats one.

use pingora::{Error, ErrorSource, ErrorType};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;
use std::path::Path;
use triage::diagnosis::classify::Progress;
use triage::diagnosis::{classify, diagnose, Facts, Fault, MAX_DETAIL};
use triage::render::text::{
    header_text, html, json_string, push_header_text, push_log_text, sf_string, LogField,
};

/// Proptest's defaults (256 cases, or `PROPTEST_CASES`), without writing regression files into
/// the source tree: a failure's input is printed instead.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The config parser, on TOML-ish text: lines from a grammar of the real sections, keys and
// values, mixed with near misses and garbage, so cases reach the readers and not only the TOML
// syntax check.

/// Every key some reader asks for.
const KEYS: &[&str] = &[
    "http",
    "https",
    "listen",
    "threads",
    "work_stealing",
    "shutdown_timeout",
    "detail",
    "trusted",
    "report_url",
    "nameservers",
    "refresh",
    "level",
    "format",
    "access",
    "error_lines_per_second",
    "max_count",
    "max_bytes",
    "certificates",
    "cert_file",
    "key_file",
    "servers",
    "tls",
    "sni",
    "ca_file",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "total_timeout",
    "host_header",
    "retries",
    "max_fails",
    "fail_timeout",
    "refused_holdoff",
    "health_check",
    "kind",
    "path",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "path_prefix",
    "host",
    "upstream",
    "max_body_size",
    "upstreams",
    "routes",
];

/// Strings some key accepts, and the near misses and hostile values each must refuse. No path
/// here names a file that exists but a device or a directory: the files a config names are
/// opened, and the properties stay hermetic.
const STRINGS: &[&str] = &[
    "",
    "/",
    "/api",
    "/a b",
    "/?q",
    "/café",
    "app",
    "app:80",
    "app:80 weight=3",
    "app:80 weight=0",
    "127.0.0.1:3000",
    "0.0.0.0:8080",
    "[::1]:80",
    "[::1]",
    "localhost:9901",
    "127.0.0.0/8",
    "10.0.0.1/8",
    "::1/128",
    "example.com",
    "EXAMPLE.com:8443",
    "https://example.com",
    "http://x/",
    "30s",
    "250ms",
    "0s",
    "1h",
    "25h",
    "off",
    "9223372036854775807s",
    "18446744073709551615h",
    "tcp",
    "http",
    "all",
    "trusted",
    "none",
    "json",
    "text",
    "info",
    "/dev/zero",
    "/dev/null",
    "/nonexistent/cert.pem",
    "relative.pem",
];

const UPSTREAM_KEYS: &[&str] = &[
    "servers",
    "tls",
    "sni",
    "ca_file",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "total_timeout",
    "host_header",
    "retries",
    "max_fails",
    "fail_timeout",
    "refused_holdoff",
];

/// The tables of the file with the keys each reads: most sections a case writes are one of
/// these with its own keys, so values reach their parsers.
const TABLES: &[(&str, &[&str])] = &[
    ("[listen]", &["http", "https"]),
    (
        "[server]",
        &["threads", "work_stealing", "shutdown_timeout"],
    ),
    ("[admin]", &["listen"]),
    ("[diagnosis]", &["detail", "trusted", "report_url"]),
    ("[resolver]", &["nameservers", "refresh"]),
    (
        "[log]",
        &["level", "format", "access", "error_lines_per_second"],
    ),
    ("[reports]", &["max_count", "max_bytes"]),
    ("[[tls.certificates]]", &["cert_file", "key_file"]),
    ("[upstreams.app]", UPSTREAM_KEYS),
    ("[upstreams.web]", UPSTREAM_KEYS),
    (
        "[upstreams.app.health_check]",
        &[
            "kind",
            "path",
            "interval",
            "timeout",
            "healthy_threshold",
            "unhealthy_threshold",
        ],
    ),
    (
        "[[routes]]",
        &[
            "path_prefix",
            "host",
            "upstream",
            "max_body_size",
            "connect_timeout",
            "read_timeout",
            "write_timeout",
            "total_timeout",
        ],
    ),
];

/// Headers of tables that do not exist, or of the right name with the wrong shape.
const NEAR_MISS_HEADERS: &[&str] = &[
    "[tls]",
    "[upstreams]",
    "[routes]",
    "[[listen]]",
    "[[upstreams.app]]",
];

/// A config that parses, for cases that add to a valid file rather than start from nothing.
const VALID: &str = "[listen]\nhttp = [\"127.0.0.1:8080\"]\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n";

/// `text` as a TOML basic string, every character it may not hold raw escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(STRINGS).prop_map(toml_string),
        // A known string with a character slipped in: a control character, a quote, a space.
        1 => (select(STRINGS), any::<char>()).prop_map(|(s, c)| toml_string(&format!("{s}{c}"))),
        1 => any::<String>().prop_map(|s| toml_string(&s)),
        // Durations of every size and unit, the units operators mistype included.
        1 => (any::<u64>(), select(&["ms", "s", "m", "h", "d", "", "us"][..]))
            .prop_map(|(n, unit)| toml_string(&format!("{n}{unit}"))),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string_value(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (0i64..2000).prop_map(|n| n.to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => select(&["1.5", "nan", "1979-05-27", "0x10", "1_000"][..]).prop_map(str::to_owned),
    ]
}

/// Mostly the scalars and string lists the keys take, sometimes nested arrays and tables.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => scalar(),
        2 => prop::collection::vec(string_value(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => compound(),
    ]
}

fn compound() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((select(KEYS), inner), 0..3).prop_map(|entries| {
                let mut seen = std::collections::HashSet::new();
                let entries: Vec<String> = entries
                    .iter()
                    .filter(|(k, _)| seen.insert(*k))
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                format!("{{ {} }}", entries.join(", "))
            }),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
        1 => any::<String>().prop_map(|s| toml_string(&s)),
        1 => (select(KEYS), select(KEYS)).prop_map(|(a, b)| format!("{a}.{b}")),
    ]
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(TABLES).prop_map(|(header, _)| header.to_owned()),
        1 => select(NEAR_MISS_HEADERS).prop_map(str::to_owned),
        1 => "[a-z]{1,8}".prop_map(|name| format!("[upstreams.{name}]")),
        1 => "[a-z]{1,8}".prop_map(|name| format!("[upstreams.{name}.health_check]")),
        1 => any::<String>().prop_map(|name| format!("[upstreams.{}]", toml_string(&name))),
    ]
}

/// A table: its header and its `key = value` lines.
type Section = (String, Vec<(String, String)>);

fn section() -> impl Strategy<Value = Section> {
    let own_keys = select(TABLES).prop_flat_map(|(header, keys)| {
        let key = prop_oneof![6 => select(keys).prop_map(str::to_owned), 1 => key()];
        (
            Just(header.to_owned()),
            prop::collection::vec((key, value()), 0..8),
        )
    });
    prop_oneof![
        4 => own_keys,
        1 => (header(), prop::collection::vec((key(), value()), 0..8)),
    ]
}

/// `key = value` lines, leaving out a key already written (TOML refuses it; dotted keys count
/// by their first part).
fn entries(lines: &mut Vec<String>, entries: &[(String, String)]) {
    let mut seen = std::collections::HashSet::new();
    for (key, value) in entries {
        if seen.insert(key.split('.').next().unwrap_or("").to_owned()) {
            lines.push(format!("{key} = {value}"));
        }
    }
}

/// A config as TOML text: top-level keys (only without `prefix`: they must come before any
/// header), then `prefix`, then the sections. A table header already written is left out with
/// its keys (TOML refuses a table defined twice), so most cases get past the syntax check to the
/// readers; `garbage`, when given, is a line inserted at the position given, for syntax errors.
fn document(
    prefix: &str,
    top: &[(String, String)],
    sections: &[Section],
    garbage: Option<(usize, String)>,
) -> String {
    let mut lines = Vec::new();
    if prefix.is_empty() {
        entries(&mut lines, top);
    }
    lines.extend(prefix.lines().map(str::to_owned));
    let mut headers: std::collections::HashSet<String> = lines
        .iter()
        .filter(|l| l.starts_with('['))
        .cloned()
        .collect();
    for (header, keys) in sections {
        if header.starts_with("[[") || headers.insert(header.clone()) {
            lines.push(header.clone());
            entries(&mut lines, keys);
        }
    }
    if let Some((at, garbage)) = garbage {
        lines.insert(at % (lines.len() + 1), garbage);
    }
    lines.join("\n")
}

fn config_text() -> impl Strategy<Value = String> {
    let top = prop::collection::vec((key(), value()), 0..3);
    let sections = prop::collection::vec(section(), 0..8);
    let garbage = prop::option::weighted(
        0.15,
        (
            any::<usize>(),
            prop_oneof!["[^\n]{0,40}", Just("[listen]".to_owned())],
        ),
    );
    (select(&["", VALID][..]), top, sections, garbage)
        .prop_map(|(prefix, top, sections, garbage)| document(prefix, &top, &sections, garbage))
}

proptest! {
    #![proptest_config(config())]

    /// The parser never panics, and every error it reports points inside the text: a line of
    /// it and a column of that line (or just past its end), with a message that writes no
    /// control character to the operator's terminal.
    #[test]
    fn config_errors_point_inside_the_text(text in config_text()) {
        let Err(errors) = triage::config::parse(&text, Path::new("/nonexistent-origin")) else {
            return Ok(());
        };
        let lines: Vec<&str> = text.split('\n').collect();
        prop_assert!(!errors.0.is_empty());
        for error in &errors.0 {
            prop_assert!(
                (1..=lines.len()).contains(&error.line),
                "line {} of {}: {}", error.line, lines.len(), error.message
            );
            let width = lines[error.line - 1].chars().count();
            prop_assert!(
                (1..=width + 1).contains(&error.column),
                "column {} of a line {width} wide: {}", error.column, error.message
            );
            prop_assert!(!error.message.is_empty());
            prop_assert!(
                !error.message.chars().any(char::is_control),
                "a control character in {:?}", error.message
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sanitizers, on arbitrary Unicode and on arbitrary bytes read as text the way triage reads
// an upstream's bytes (lossily).

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..600)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        // Mostly printable, with the characters that matter to each escaper.
        "[ -~\"\\\\<>&'\r\n\t\u{7f}é😀]{0,400}",
    ]
}

/// Decodes push_log_text's escaping: `\xHH` is the byte HH, every other byte itself.
fn decode_log_text(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'\\' {
            let hex = bytes.get(at + 1..at + 4)?;
            if hex[0] != b'x' {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(&hex[1..]).ok()?, 16).ok()?);
            at += 4;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    Some(out)
}

/// Parses an RFC 8941 sf-string (`DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE`, where
/// unescaped is %x20-21 / %x23-5B / %x5D-7E) and returns what it holds; `None` if invalid.
fn parse_sf_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                escaped @ ('"' | '\\') => out.push(escaped),
                _ => return None,
            },
            '"' => return None,
            ' '..='~' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// Undoes html(): the five entities it writes, and nothing else may follow a `&`.
fn decode_html(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&#39;", '\''),
        ]
        .into_iter()
        .find(|(entity, _)| rest.starts_with(entity))?;
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    Some(out)
}

proptest! {
    #![proptest_config(config())]

    /// A header value holds printable ASCII only, at most `max` bytes; text that already
    /// qualifies is kept as is, and appending gives the same as building.
    #[test]
    fn header_text_is_printable_and_bounded(text in any_text(), max in 0usize..300) {
        let out = header_text(&text, max);
        prop_assert!(out.len() <= max, "{} bytes for max {max}", out.len());
        prop_assert!(out.bytes().all(|b| (b' '..=b'~').contains(&b)), "{out:?}");
        if text.len() <= max && text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            prop_assert_eq!(&out, &text);
        }
        let mut appended = String::from("x: ");
        push_header_text(&mut appended, &text, max);
        prop_assert_eq!(&appended[3..], out.as_str());
        prop_assert!(http::HeaderValue::from_str(&out).is_ok());
    }

    /// An access-log field holds no `"`, control byte or non-ASCII byte (nor, bare, a space)
    /// unescaped, at most 4 bytes per input byte kept plus the cut mark, and decodes back to
    /// the first `max` bytes of the input.
    #[test]
    fn log_text_is_escaped_and_decodes_back(
        text in any_text(),
        max in 0usize..600,
        bare in any::<bool>(),
    ) {
        let field = if bare { LogField::Bare } else { LogField::Quoted };
        let mut out = String::from("before ");
        push_log_text(&mut out, &text, max, field);
        let out = &out["before ".len()..];
        prop_assert!(out.len() <= 4 * max + 3, "{} bytes for max {max}", out.len());
        prop_assert!(
            out.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'"' || (b == b' ' && !bare)),
            "{out:?}"
        );
        let kept = &text.as_bytes()[..text.len().min(max)];
        let mut expected = kept.to_vec();
        if text.len() > max {
            expected.extend_from_slice(b"...");
        }
        prop_assert_eq!(decode_log_text(out), Some(expected));
    }

    /// What Proxy-Status carries (header text made an sf-string) is a valid RFC 8941 string
    /// that holds exactly that text.
    #[test]
    fn sf_string_is_valid_rfc_8941(text in any_text(), max in 0usize..300) {
        let safe = header_text(&text, max);
        let mut out = String::new();
        sf_string(&mut out, &safe);
        prop_assert_eq!(parse_sf_string(&out), Some(safe));
    }

    /// HTML output holds no raw `<`, `>`, `"` or `'`, every `&` starts an entity, and it
    /// decodes back to the input.
    #[test]
    fn html_escapes_markup(text in any_text()) {
        let mut out = String::new();
        html(&mut out, &text);
        prop_assert!(!out.contains(['<', '>', '"', '\'']), "{out:?}");
        prop_assert_eq!(decode_html(&out), Some(text));
    }

    /// A JSON string literal parses back, with serde_json, to exactly the input.
    #[test]
    fn json_string_round_trips(text in any_text()) {
        let mut out = String::new();
        json_string(&mut out, &text);
        let parsed: Result<String, _> = serde_json::from_str(&out);
        prop_assert_eq!(parsed.ok(), Some(text));
    }
}

// ---------------------------------------------------------------------------------------------
// The classifier, on every Pingora error type, source and shape of cause chain.

fn error_type() -> impl Strategy<Value = ErrorType> {
    use ErrorType::*;
    prop_oneof![
        select(vec![
            ConnectTimedout,
            ConnectRefused,
            ConnectNoRoute,
            TLSWantX509Lookup,
            TLSHandshakeFailure,
            TLSHandshakeTimedout,
            InvalidCert,
            HandshakeError,
            ConnectError,
            BindError,
            AcceptError,
            SocketError,
            ConnectProxyFailure,
            InvalidHTTPHeader,
            H1Error,
            H2Error,
            H2Downgrade,
            InvalidH2,
            ReadError,
            WriteError,
            ReadTimedout,
            WriteTimedout,
            ConnectionClosed,
            FileOpenError,
            FileCreateError,
            FileReadError,
            FileWriteError,
            InternalError,
            UnknownError,
            Custom("InvalidChunk"),
            CustomCode("custom", 7),
        ]),
        any::<u16>().prop_map(HTTPStatus),
    ]
}

fn error_source() -> impl Strategy<Value = ErrorSource> {
    select(vec![
        ErrorSource::Upstream,
        ErrorSource::Downstream,
        ErrorSource::Internal,
        ErrorSource::Unset,
    ])
}

fn progress() -> impl Strategy<Value = Progress> {
    select(vec![
        Progress::Started,
        Progress::Connecting,
        Progress::Connected,
        Progress::ResponseHeaders,
        Progress::ResponseStarted,
    ])
}

/// Context text: short arbitrary text, the wordings the classifier looks for, or a long run
/// (up to 512 KiB, built by repetition so generating it stays cheap).
fn context() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        2 => any_text().prop_map(Some),
        1 => select(vec![
            "Response header larger than 1048575",
            "buf: \\x16\\x03\\x01\\x02\\x00",
            "buf: \\x15\\x03\\x03\\x00\\x02",
            "while reading response headers, bytes already read: 0",
            "invalid peer certificate: Expired",
            "invalid peer certificate: UnknownIssuer",
            "received corrupt message of type InvalidContentType",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => ("[ -~é]{1,8}", 0usize..65_536)
            .prop_map(|(unit, count)| Some(format!("buf: {}", unit.repeat(count)))),
    ]
}

/// What a cause chain can hold: nothing, an `io::Error` by errno or kind, an HTTP/2 error, a
/// TLS library error, or further Pingora errors (nested up to three deep).
#[derive(Debug, Clone)]
enum Cause {
    Errno(i32),
    Kind(std::io::ErrorKind, String),
    H2(u32),
    Rustls(String),
    Nested(Box<Shape>),
}

#[derive(Debug, Clone)]
struct Shape {
    etype: ErrorType,
    source: ErrorSource,
    context: Option<String>,
    cause: Option<Cause>,
}

fn io_kind() -> impl Strategy<Value = std::io::ErrorKind> {
    use std::io::ErrorKind::*;
    select(vec![
        ConnectionRefused,
        ConnectionReset,
        ConnectionAborted,
        NotConnected,
        BrokenPipe,
        TimedOut,
        UnexpectedEof,
        InvalidData,
        Other,
    ])
}

fn shape() -> impl Strategy<Value = Shape> {
    let leaf_cause = prop_oneof![
        (0i32..200).prop_map(Cause::Errno),
        (io_kind(), "[ -~]{0,20}").prop_map(|(kind, text)| Cause::Kind(kind, text)),
        any::<u32>().prop_map(Cause::H2),
        "[ -~]{0,40}".prop_map(Cause::Rustls),
    ];
    let leaf = (
        error_type(),
        error_source(),
        context(),
        prop::option::of(leaf_cause.clone()),
    )
        .prop_map(|(etype, source, context, cause)| Shape {
            etype,
            source,
            context,
            cause,
        });
    leaf.prop_recursive(3, 4, 1, move |inner| {
        (
            error_type(),
            error_source(),
            context(),
            prop_oneof![
                leaf_cause.clone().prop_map(Some),
                inner.prop_map(|shape| Some(Cause::Nested(Box::new(shape)))),
            ],
        )
            .prop_map(|(etype, source, context, cause)| Shape {
                etype,
                source,
                context,
                cause,
            })
    })
}

fn build(shape: &Shape) -> Box<Error> {
    let mut error = match &shape.cause {
        None => Error::new(shape.etype.clone()),
        Some(cause) => {
            let cause: Box<dyn std::error::Error + Send + Sync> = match cause {
                Cause::Errno(errno) => Box::new(std::io::Error::from_raw_os_error(*errno)),
                Cause::Kind(kind, text) => Box::new(std::io::Error::new(*kind, text.clone())),
                Cause::H2(reason) => Box::new(h2::Error::from(h2::Reason::from(*reason))),
                Cause::Rustls(text) => Box::new(rustls::Error::General(text.clone())),
                Cause::Nested(inner) => Box::new(build(inner)),
            };
            Error::because(shape.etype.clone(), "", cause)
        }
    };
    error.context = shape.context.clone().map(Into::into);
    error.esource = shape.source.clone();
    error
}

proptest! {
    #![proptest_config(config())]

    /// The classifier never panics, whatever the error, its cause chain and the request's
    /// progress; its detail is at most MAX_DETAIL bytes; `diagnose` agrees with `classify`;
    /// and an error on the client's side is never blamed on the upstream.
    #[test]
    fn classifier_is_total_and_bounded(
        shape in shape(),
        progress in progress(),
        upstream_tls in any::<bool>(),
        unix_socket in any::<bool>(),
        upgrade in any::<bool>(),
        request_unsent in any::<bool>(),
        client_reset in prop::option::of(any::<u32>()),
    ) {
        let error = build(&shape);
        let facts = Facts {
            error: &error,
            progress,
            upstream_tls,
            unix_socket,
            upgrade,
            request_unsent,
            client_reset: client_reset.map(h2::Reason::from),
        };
        let finding = classify(&facts);
        prop_assert!(finding.detail.len() <= MAX_DETAIL, "{} bytes", finding.detail.len());
        prop_assert_eq!(diagnose(&facts), finding.diagnosis);
        if shape.source == ErrorSource::Downstream {
            prop_assert_eq!(finding.diagnosis.fault(), Fault::Client, "{:?}", finding.diagnosis);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Pingora's socket address text (written without the formatter for IPv4, a triage patch
    /// of pingora-core, PATCHES.md 13) is std's, for every address and port: it is the text of
    /// every failed connect's error and of a peer in Pingora's log lines.
    #[test]
    fn pingora_socket_address_text_is_std(octets in any::<[u8; 4]>(), port in any::<u16>(),
                                          v6 in any::<[u16; 8]>()) {
        let v4 = std::net::SocketAddr::from((octets, port));
        let pingora_v4 = pingora::protocols::l4::socket::SocketAddr::Inet(v4);
        prop_assert_eq!(pingora_v4.to_string(), v4.to_string());
        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::from(v6), port));
        let pingora_v6 = pingora::protocols::l4::socket::SocketAddr::Inet(v6);
        prop_assert_eq!(pingora_v6.to_string(), v6.to_string());
    }
}

/// What a test does to a header block, for [`header_names_keep_their_case_on_the_wire`].
#[derive(Debug, Clone)]
enum HeaderOp {
    Append(String),
    Insert(String),
    InsertStatic(usize),
    AppendStatic(usize),
    Remove(usize),
}

/// Names in the standard set and out of it, sent in any case.
const HEADER_NAMES: [&str; 7] = [
    "host",
    "content-type",
    "x-forwarded-for",
    "etag",
    "x-a",
    "www-authenticate",
    // Longer than the 64 bytes pingora-http titles at a time, with a word starting right
    // after the boundary (its `-` is the 64th byte).
    "x-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-boundary-name",
];

static STATIC_NAMES: [http::HeaderName; 3] = [
    http::header::CONTENT_TYPE,
    http::HeaderName::from_static("x-forwarded-for"),
    http::HeaderName::from_static("x-diagnosis-id"),
];

fn header_op() -> impl Strategy<Value = HeaderOp> {
    let cased =
        (0..HEADER_NAMES.len(), any::<u32>(), any::<bool>()).prop_map(|(i, mask, title)| {
            let name = HEADER_NAMES[i];
            let mut starts_word = true;
            name.chars()
                .enumerate()
                .map(|(n, c)| {
                    // Half the names in Title-Case, the others in any case.
                    let upper = if title {
                        starts_word
                    } else {
                        mask & (1 << (n % 32)) != 0
                    };
                    starts_word = c == '-';
                    if upper {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect::<String>()
        });
    prop_oneof![
        4 => cased.clone().prop_map(HeaderOp::Append),
        2 => cased.prop_map(HeaderOp::Insert),
        1 => (0..STATIC_NAMES.len()).prop_map(HeaderOp::InsertStatic),
        1 => (0..STATIC_NAMES.len()).prop_map(HeaderOp::AppendStatic),
        1 => (0..HEADER_NAMES.len()).prop_map(HeaderOp::Remove),
    ]
}

fn title_case(name: &str) -> String {
    let mut starts_word = true;
    name.chars()
        .map(|c| {
            let out = if starts_word {
                c.to_ascii_uppercase()
            } else {
                c
            };
            starts_word = c == '-';
            out
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// A header block written to the wire (what goes upstream, and to the client) has every
    /// name in the case it was added in, in the header map's order, whatever the mix of cases:
    /// pingora-http keeps no case map while every name is in Title-Case and makes one when a
    /// name is not (a triage patch, PATCHES.md 3), and the bytes are those of 0.9.1's two
    /// parallel maps, modelled here as one map of (case, value). Clones write the same bytes.
    #[test]
    fn header_names_keep_their_case_on_the_wire(ops in prop::collection::vec(header_op(), 0..12)) {
        let mut req = pingora::http::RequestHeader::build("GET", b"/", None).expect("request");
        let mut model: http::HeaderMap<(String, String)> = http::HeaderMap::default();
        for (i, op) in ops.iter().enumerate() {
            let value = format!("v{i}");
            match op {
                HeaderOp::Append(name) => {
                    req.append_header(name.clone(), value.as_str()).expect("append");
                    let key = http::HeaderName::try_from(name.as_str()).expect("name");
                    model.append(key, (name.clone(), value));
                }
                HeaderOp::Insert(name) => {
                    req.insert_header(name.clone(), value.as_str()).expect("insert");
                    let key = http::HeaderName::try_from(name.as_str()).expect("name");
                    model.insert(key, (name.clone(), value));
                }
                HeaderOp::InsertStatic(n) => {
                    let name = &STATIC_NAMES[*n];
                    req.insert_static_header(name, http::HeaderValue::from_str(&value).expect("value"))
                        .expect("insert");
                    model.insert(name.clone(), (title_case(name.as_str()), value));
                }
                HeaderOp::AppendStatic(n) => {
                    let name = &STATIC_NAMES[*n];
                    req.append_static_header(name, http::HeaderValue::from_str(&value).expect("value"))
                        .expect("append");
                    model.append(name.clone(), (title_case(name.as_str()), value));
                }
                HeaderOp::Remove(n) => {
                    req.remove_header(HEADER_NAMES[*n]);
                    model.remove(HEADER_NAMES[*n]);
                }
            }
        }
        let expected: String = model
            .iter()
            .map(|(_, (case, value))| format!("{case}: {value}\r\n"))
            .collect();
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        prop_assert_eq!(String::from_utf8_lossy(&wire), expected.as_str());
        let mut cloned = Vec::new();
        req.clone().header_to_h1_wire(&mut cloned);
        prop_assert_eq!(cloned, wire);
    }
}
