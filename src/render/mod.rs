//! What the client sees: diagnosis headers on every response, and the error response triage
//! writes when it generates the status itself.
//!
//! Everything that depends only on the diagnosis (token, phase, source, hint, the untrusted
//! `Proxy-Status`) is built once into header values at start-up; a request only adds its id and,
//! for trusted clients, its detail.

pub mod page;
pub mod text;

use crate::cause::{Cause, CauseFinding};
use crate::diagnosis::{Diagnosis, Source};
use crate::id::RequestId;
use crate::outcome::Timings;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use pingora::http::{HeaderLine, HeaderLineName, HeaderLines, ResponseHeader};
use std::time::SystemTime;

// triage's header names, parsed once: headers go in under these statics (Pingora's
// `insert_static_header`, a triage patch), so no name is parsed or copied per request.
pub static X_DIAGNOSIS: HeaderName = HeaderName::from_static("x-diagnosis");
pub static X_DIAGNOSIS_PHASE: HeaderName = HeaderName::from_static("x-diagnosis-phase");
pub static X_DIAGNOSIS_SOURCE: HeaderName = HeaderName::from_static("x-diagnosis-source");
pub static X_DIAGNOSIS_ID: HeaderName = HeaderName::from_static("x-diagnosis-id");
pub static X_DIAGNOSIS_HINT: HeaderName = HeaderName::from_static("x-diagnosis-hint");
pub static X_DIAGNOSIS_CAUSE: HeaderName = HeaderName::from_static("x-diagnosis-cause");
pub static X_DIAGNOSIS_UPSTREAM: HeaderName = HeaderName::from_static("x-diagnosis-upstream");
pub static X_DIAGNOSIS_DETAIL: HeaderName = HeaderName::from_static("x-diagnosis-detail");
pub static PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
pub static X_DIAGNOSIS_REPORT: HeaderName = HeaderName::from_static("x-diagnosis-report");
pub static X_DIAGNOSIS_ATTEMPTS: HeaderName = HeaderName::from_static("x-diagnosis-attempts");

/// The name triage gives itself in `Proxy-Status` (RFC 9209 section 2).
const PROXY_NAME: &str = "triage";

/// Header prefix reserved for triage: `X-Diagnosis-*` headers from the client or the upstream
/// are dropped (see [`reserved_headers`]).
pub const RESERVED_PREFIX: &str = "x-diagnosis";

/// The headers in `headers` named with [`RESERVED_PREFIX`]: a client's, dropped before the
/// request goes upstream, and the upstream's, dropped before triage adds its own (so neither
/// can show anyone a forged diagnosis, hint or report link). Empty, without allocating, in the
/// usual case of none.
pub fn reserved_headers(headers: &http::HeaderMap) -> Vec<http::HeaderName> {
    headers
        .keys()
        .filter(|name| name.as_str().starts_with(RESERVED_PREFIX))
        .cloned()
        .collect()
}

/// The header values of one diagnosis, built once.
#[derive(Debug, Clone)]
struct Prepared {
    token: HeaderValue,
    phase: HeaderValue,
    hint: HeaderValue,
    /// `Proxy-Status` without per-request parameters: what an untrusted client gets.
    proxy_status: HeaderValue,
    page: page::Escaped,
}

/// The fields only trusted clients see.
#[derive(Debug, Clone, Copy)]
pub struct Disclosed<'a> {
    /// The upstream's config name, when one was chosen.
    pub upstream: Option<&'a str>,
    /// The address actually tried.
    pub address: Option<text::AddrText>,
    /// The errno text, TLS reason or bytes received.
    pub detail: &'a str,
    pub timings: Timings,
    /// The base URL of the failure reports (the id is appended), when reports are kept.
    pub report_url: Option<&'a str>,
}

/// A failure triage answers itself.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub id: RequestId,
    pub diagnosis: Diagnosis,
    pub status: http::StatusCode,
    pub at: SystemTime,
    /// How many upstream attempts the request made (0 when none was made).
    pub attempts: u32,
    pub disclosed: Option<Disclosed<'a>>,
    /// The likely cause, when one was derived.
    pub cause: Option<&'a CauseFinding>,
}

/// Renders diagnosis headers and error responses.
#[derive(Debug)]
pub struct Renderer {
    /// One per diagnosis, indexed by it.
    prepared: [Prepared; Diagnosis::COUNT],
    /// Each cause's token as a header value, indexed by it.
    cause_tokens: [HeaderValue; Cause::COUNT],
    /// `X-Diagnosis-Source: upstream`, as the line every proxied response gets.
    source_upstream_line: HeaderLine,
    /// `X-Diagnosis-Source: proxy`, as the line every error response triage writes gets.
    source_proxy_line: HeaderLine,
    /// The names of the headers a proxied response gets, each as its line starts.
    names: LineNames,
}

/// The headers triage writes as lines, each name as its line starts
/// (`X-Diagnosis-Id: `), built once.
#[derive(Debug)]
struct LineNames {
    id: HeaderLineName,
    attempts: HeaderLineName,
    diagnosis: HeaderLineName,
    phase: HeaderLineName,
    cause: HeaderLineName,
    hint: HeaderLineName,
    proxy_status: HeaderLineName,
    upstream: HeaderLineName,
    server_timing: HeaderLineName,
    report: HeaderLineName,
    detail: HeaderLineName,
}

impl LineNames {
    fn new() -> LineNames {
        LineNames {
            id: HeaderLineName::new(&X_DIAGNOSIS_ID),
            attempts: HeaderLineName::new(&X_DIAGNOSIS_ATTEMPTS),
            diagnosis: HeaderLineName::new(&X_DIAGNOSIS),
            phase: HeaderLineName::new(&X_DIAGNOSIS_PHASE),
            cause: HeaderLineName::new(&X_DIAGNOSIS_CAUSE),
            hint: HeaderLineName::new(&X_DIAGNOSIS_HINT),
            proxy_status: HeaderLineName::new(&PROXY_STATUS),
            upstream: HeaderLineName::new(&X_DIAGNOSIS_UPSTREAM),
            server_timing: HeaderLineName::new(&SERVER_TIMING),
            report: HeaderLineName::new(&X_DIAGNOSIS_REPORT),
            detail: HeaderLineName::new(&X_DIAGNOSIS_DETAIL),
        }
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let prepared = Diagnosis::ALL.map(|d| {
            let mut proxy_status = String::from(PROXY_NAME);
            if let Some(error) = d.proxy_status_error() {
                proxy_status.push_str("; error=");
                proxy_status.push_str(error.token());
            }
            Prepared {
                token: HeaderValue::from_static(d.token()),
                phase: HeaderValue::from_static(d.phase().token()),
                hint: HeaderValue::from_static(d.hint()),
                proxy_status: header_value(proxy_status),
                page: page::Escaped::of(d),
            }
        });
        Renderer {
            prepared,
            cause_tokens: Cause::ALL.map(|c| HeaderValue::from_static(c.token())),
            source_upstream_line: HeaderLine::new(
                &X_DIAGNOSIS_SOURCE,
                &HeaderValue::from_static(Source::Upstream.token()),
            ),
            source_proxy_line: HeaderLine::new(
                &X_DIAGNOSIS_SOURCE,
                &HeaderValue::from_static(Source::Proxy.token()),
            ),
            names: LineNames::new(),
        }
    }

    fn prepared(&self, diagnosis: Diagnosis) -> &Prepared {
        &self.prepared[diagnosis]
    }

    /// Adds the headers every response proxied from the upstream carries: the id and the source,
    /// and `X-Diagnosis-Attempts` after a retry. With a diagnosis (the app answered 5xx, or
    /// refused an upgrade) also its token, phase and hint and a `Proxy-Status` entry with
    /// `received-status`, after any the upstream sent.
    pub fn decorate_upstream_response(
        &self,
        resp: &mut ResponseHeader,
        id: RequestId,
        diagnosis: Option<Diagnosis>,
        attempts: u32,
        disclosed: Option<&Disclosed<'_>>,
        cause: Option<&CauseFinding>,
    ) -> pingora::Result<()> {
        // The diagnosis headers are triage's alone; the app's own `Proxy-Status` entries stay
        // (RFC 9209: each intermediary appends its own).
        for name in reserved_headers(&resp.headers) {
            resp.remove_header(&name);
        }
        let status = resp.status.as_u16();
        // Written after the app's headers as lines, not inserted into the map: nothing reads
        // them back, and a map insert and its serialization cost ~600 instructions a header
        // on every proxied response (pingora-http patch 5).
        let lines = resp.appended_lines_mut();
        let n = &self.names;
        push_value(lines, &n.id, id.as_str().as_bytes());
        lines.push_line(&self.source_upstream_line);
        if attempts > 1 {
            self.push_attempts(lines, attempts);
        }
        if let Some(diagnosis) = diagnosis {
            let p = self.prepared(diagnosis);
            push_value(lines, &n.diagnosis, p.token.as_bytes());
            push_value(lines, &n.phase, p.phase.as_bytes());
            self.push_cause_and_hint(lines, p, cause, disclosed.is_some());
            let mut proxy_status = String::with_capacity(64);
            // The entry built at start-up, with this response's parameters after it.
            proxy_status.push_str(p.proxy_status.to_str().unwrap_or(PROXY_NAME));
            proxy_status.push_str("; received-status=");
            proxy_status.push_str(itoa_status(status).as_str());
            if let Some(address) = disclosed.and_then(|d| d.address) {
                proxy_status.push_str("; next-hop=");
                text::sf_string(&mut proxy_status, address.as_str());
            }
            push_value(lines, &n.proxy_status, proxy_status.as_bytes());
        }
        if let Some(disclosed) = disclosed {
            let mut buf = String::with_capacity(128);
            let report_of = diagnosis.map(|_| id);
            self.push_disclosed(lines, disclosed, None, report_of, &mut buf);
        }
        Ok(())
    }

    /// `X-Diagnosis-Cause` and its hint (the full one for a trusted client), or without a
    /// cause the diagnosis's own hint.
    fn push_cause_and_hint(
        &self,
        lines: &mut HeaderLines,
        p: &Prepared,
        cause: Option<&CauseFinding>,
        trusted: bool,
    ) {
        match cause {
            Some(cause) => {
                push_value(
                    lines,
                    &self.names.cause,
                    self.cause_tokens[cause.cause].as_bytes(),
                );
                let hint = cause_hint(cause, trusted);
                push_value(lines, &self.names.hint, hint.as_bytes());
            }
            None => push_value(lines, &self.names.hint, p.hint.as_bytes()),
        }
    }

    /// `X-Diagnosis-Attempts`.
    fn push_attempts(&self, lines: &mut HeaderLines, attempts: u32) {
        let mut digits = String::with_capacity(10);
        text::push_decimal(&mut digits, u64::from(attempts));
        push_value(lines, &self.names.attempts, digits.as_bytes());
    }

    /// What only a trusted client gets after `Proxy-Status`: `X-Diagnosis-Upstream`, the
    /// detail (when given), `Server-Timing`, and the report's URL for the failure of
    /// `report_of` (when reports are kept). `buf` is scratch for the per-request values.
    fn push_disclosed(
        &self,
        lines: &mut HeaderLines,
        disclosed: &Disclosed<'_>,
        detail: Option<&str>,
        report_of: Option<RequestId>,
        buf: &mut String,
    ) {
        let n = &self.names;
        if let Some(upstream) = disclosed.upstream {
            buf.clear();
            push_upstream_value(buf, upstream, disclosed);
            push_value(lines, &n.upstream, buf.as_bytes());
        }
        if let Some(detail) = detail {
            push_value(lines, &n.detail, detail.as_bytes());
        }
        buf.clear();
        push_server_timing(buf, &disclosed.timings);
        push_value(lines, &n.server_timing, buf.as_bytes());
        if let (Some(url), Some(id)) = (disclosed.report_url, report_of) {
            buf.clear();
            buf.push_str(url);
            buf.push_str(id.as_str());
            push_value(lines, &n.report, buf.as_bytes());
        }
    }

    /// The complete error response for a failure triage answers itself.
    pub fn failure_response(
        &self,
        failure: &Failure<'_>,
        format: page::BodyFormat,
    ) -> pingora::Result<(ResponseHeader, Bytes)> {
        let p = self.prepared(failure.diagnosis);
        let body = page::render(failure, format, &p.page);
        // Built as plain `http` parts, converted at the end (no case map): the names are
        // lowercase constants, and Pingora's `insert_header` would parse and copy each name
        // again, on a path that runs once per failure in a storm. The map holds what Pingora
        // reads back (the body's framing); triage's own headers are lines after it
        // (pingora-http patch 5).
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = failure.status;
        let headers = &mut parts.headers;
        headers.reserve(3);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        let mut resp = ResponseHeader::from(parts);
        let lines = resp.appended_lines_mut();
        let n = &self.names;
        push_value(lines, &n.diagnosis, p.token.as_bytes());
        push_value(lines, &n.phase, p.phase.as_bytes());
        lines.push_line(&self.source_proxy_line);
        push_value(lines, &n.id, failure.id.as_str().as_bytes());
        self.push_cause_and_hint(lines, p, failure.cause, failure.disclosed.is_some());
        if failure.attempts > 0 {
            self.push_attempts(lines, failure.attempts);
        }
        match &failure.disclosed {
            None => push_value(lines, &n.proxy_status, p.proxy_status.as_bytes()),
            Some(disclosed) => {
                // Every per-request value is written into one buffer, then each line copies
                // its slice of it: one allocation for all of them.
                let mut buf = String::with_capacity(512);
                let detail_text = (!disclosed.detail.is_empty())
                    .then(|| text::header_text(disclosed.detail, text::MAX_HEADER_TEXT));
                // Safe: built from a static token.
                buf.push_str(p.proxy_status.to_str().unwrap_or(PROXY_NAME));
                if let Some(detail_text) = &detail_text {
                    buf.push_str("; details=");
                    text::sf_string(&mut buf, detail_text);
                }
                if let Some(address) = &disclosed.address {
                    buf.push_str("; next-hop=");
                    text::sf_string(&mut buf, address.as_str());
                }
                push_value(lines, &n.proxy_status, buf.as_bytes());
                self.push_disclosed(
                    lines,
                    disclosed,
                    detail_text.as_deref(),
                    Some(failure.id),
                    &mut buf,
                );
            }
        }
        Ok((resp, body))
    }
}

/// Adds a header line whose value was made header-safe by construction; one that is not
/// (a bug) reads `invalid` rather than failing the response.
fn push_value(lines: &mut HeaderLines, name: &HeaderLineName, value: &[u8]) {
    if lines.push(name, value).is_err() {
        let _ = lines.push(name, b"invalid");
    }
}

/// The upstream's name and the address tried, as `X-Diagnosis-Upstream` shows them.
fn push_upstream_value(out: &mut String, upstream: &str, disclosed: &Disclosed<'_>) {
    out.push_str(upstream);
    if let Some(address) = &disclosed.address {
        out.push(' ');
        out.push_str(address.as_str());
    }
}

/// `Server-Timing` (W3C) with durations in milliseconds.
fn push_server_timing(out: &mut String, t: &Timings) {
    if let Some(connect) = t.connect {
        out.push_str("connect;dur=");
        text::push_millis(out, connect);
        out.push_str(", ");
    }
    if let Some(response) = t.response {
        out.push_str("upstream;dur=");
        text::push_millis(out, response);
        out.push_str(", ");
    }
    out.push_str("total;dur=");
    text::push_millis(out, t.total);
}

/// A header value from text that was made header-safe by construction (printable ASCII).
/// The cause's hint as a header value: the full one for a trusted client, the public one for
/// anyone else; sanitized and bounded, since a hint can quote the request's path.
fn cause_hint(cause: &CauseFinding, trusted: bool) -> String {
    let hint = if trusted {
        &cause.hint
    } else {
        &cause.public_hint
    };
    text::header_text(hint, text::MAX_HEADER_TEXT)
}

fn header_value(text: String) -> HeaderValue {
    header_value_bytes(Bytes::from(text))
}

fn header_value_bytes(bytes: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A three-digit status as text, without going through the formatter.
fn itoa_status(status: u16) -> StatusText {
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    StatusText(digits)
}

struct StatusText([u8; 3]);

impl StatusText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(disclosed: Option<Disclosed<'static>>) -> Failure<'static> {
        Failure {
            id: RequestId::next(),
            diagnosis: Diagnosis::ConnectRefused,
            status: http::StatusCode::BAD_GATEWAY,
            at: SystemTime::now(),
            attempts: 1,
            disclosed,
            cause: None,
        }
    }

    fn header<'a>(resp: &'a ResponseHeader, name: &str) -> Option<&'a str> {
        resp.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The response as a client gets it: the lines triage appends join the map, after its
    /// own entries (as HTTP/2 writes it; HTTP/1 writes the same
    /// order, checked by `decorated_wire_is_map_then_lines`).
    fn as_sent(resp: &ResponseHeader) -> ResponseHeader {
        ResponseHeader::from(resp.as_owned_parts())
    }

    /// The discriminant of every diagnosis is its index in `ALL`, which the table relies on.
    #[test]
    fn all_is_in_declaration_order() {
        for (i, d) in Diagnosis::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{}", d.token());
        }
    }

    /// An untrusted client gets the token, phase, source, hint and id, and no detail.
    #[test]
    fn untrusted_failure_has_no_detail() {
        let r = Renderer::new();
        let f = failure(None);
        let (resp, body) = r
            .failure_response(&f, page::BodyFormat::Json)
            .expect("render");
        let resp = as_sent(&resp);
        assert_eq!(resp.status.as_u16(), 502);
        assert_eq!(header(&resp, "x-diagnosis"), Some("connect_refused"));
        assert_eq!(header(&resp, "x-diagnosis-phase"), Some("connect"));
        assert_eq!(header(&resp, "x-diagnosis-source"), Some("proxy"));
        assert_eq!(header(&resp, "x-diagnosis-id"), Some(f.id.as_str()));
        assert_eq!(
            header(&resp, "proxy-status"),
            Some("triage; error=connection_refused")
        );
        assert!(header(&resp, "x-diagnosis-detail").is_none());
        assert!(header(&resp, "x-diagnosis-upstream").is_none());
        assert!(header(&resp, "server-timing").is_none());
        assert_eq!(
            header(&resp, "content-length"),
            Some(body.len().to_string().as_str())
        );
    }

    /// A trusted client also gets the detail, sanitized, in its own header and in Proxy-Status.
    #[test]
    fn trusted_failure_has_sanitized_detail() {
        let r = Renderer::new();
        let f = failure(Some(Disclosed {
            upstream: Some("app"),
            address: Some(text::AddrText::new("127.0.0.1:3000".parse().expect("addr"))),
            detail: "Connection refused\r\nX-Evil: \"1\"",
            timings: Timings {
                connect: None,
                response: None,
                total: std::time::Duration::from_millis(3),
            },
            report_url: Some("http://127.0.0.1:9901/diagnoses/"),
        }));
        let (resp, _) = r
            .failure_response(&f, page::BodyFormat::Html)
            .expect("render");
        let resp = as_sent(&resp);
        assert_eq!(
            header(&resp, "x-diagnosis-detail"),
            Some("Connection refused??X-Evil: \"1\"")
        );
        assert_eq!(
            header(&resp, "proxy-status"),
            Some(
                r#"triage; error=connection_refused; details="Connection refused??X-Evil: \"1\""; next-hop="127.0.0.1:3000""#
            )
        );
        assert_eq!(
            header(&resp, "x-diagnosis-upstream"),
            Some("app 127.0.0.1:3000")
        );
        assert_eq!(header(&resp, "server-timing"), Some("total;dur=3.000"));
        assert_eq!(
            header(&resp, "x-diagnosis-report"),
            Some(format!("http://127.0.0.1:9901/diagnoses/{}", f.id).as_str())
        );
    }

    /// An upstream 5xx keeps the upstream's Proxy-Status entry first and adds triage's after it.
    #[test]
    fn upstream_5xx_appends_proxy_status() {
        let r = Renderer::new();
        let mut resp = ResponseHeader::build(503, None).expect("build");
        resp.append_header("proxy-status", "app-lb; error=destination_unavailable")
            .expect("append");
        r.decorate_upstream_response(
            &mut resp,
            RequestId::next(),
            Some(Diagnosis::UpstreamStatus),
            1,
            None,
            None,
        )
        .expect("decorate");
        let resp = as_sent(&resp);
        let entries: Vec<_> = resp
            .headers
            .get_all("proxy-status")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            entries,
            [
                "app-lb; error=destination_unavailable",
                "triage; received-status=503"
            ]
        );
        assert_eq!(header(&resp, "x-diagnosis"), Some("upstream_status"));
        assert_eq!(header(&resp, "x-diagnosis-source"), Some("upstream"));
    }

    /// A successful response carries only the id and the source.
    #[test]
    fn success_carries_id_and_source_only() {
        let r = Renderer::new();
        let mut resp = ResponseHeader::build(200, None).expect("build");
        r.decorate_upstream_response(&mut resp, RequestId::next(), None, 1, None, None)
            .expect("decorate");
        let resp = as_sent(&resp);
        assert!(header(&resp, "x-diagnosis-id").is_some());
        assert_eq!(header(&resp, "x-diagnosis-source"), Some("upstream"));
        assert!(header(&resp, "x-diagnosis").is_none());
        assert!(header(&resp, "proxy-status").is_none());
    }

    /// On HTTP/1 a decorated response is the upstream's headers, then triage's, each name in
    /// Title-Case; an upstream's own `X-Diagnosis-*` header is dropped, and a trusted
    /// client's timing and upstream lines carry what it was told.
    #[test]
    fn decorated_wire_is_map_then_lines() {
        let r = Renderer::new();
        let mut resp = ResponseHeader::build(200, None).expect("build");
        resp.append_header("Content-Type", "text/plain")
            .expect("append");
        resp.append_header("x-diagnosis-id", "forged")
            .expect("append");
        let id = RequestId::next();
        let disclosed = Disclosed {
            upstream: Some("app"),
            address: "127.0.0.1:8080"
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(text::AddrText::new),
            detail: "",
            report_url: None,
            timings: Timings {
                connect: None,
                response: None,
                total: std::time::Duration::from_millis(3),
            },
        };
        r.decorate_upstream_response(&mut resp, id, None, 2, Some(&disclosed), None)
            .expect("decorate");
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8(wire).expect("ascii"),
            format!(
                "Content-Type: text/plain\r\nX-Diagnosis-Id: {id}\r\nX-Diagnosis-Source: upstream\r\n\
                 X-Diagnosis-Attempts: 2\r\nX-Diagnosis-Upstream: app 127.0.0.1:8080\r\n\
                 Server-Timing: total;dur=3.000\r\n"
            )
        );
    }
}
