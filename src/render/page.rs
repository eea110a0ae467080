//! The body of an error response triage generates: RFC 9457 problem+json for programs, a small
//! self-contained HTML page for people.
//!
//! The page shows the path of the request (client → triage → upstream) with the broken hop
//! marked, the hint, the id and the time, so a person who hits it can tell at a glance whether
//! the app or the proxy is at fault and has something to quote in a ticket.

use super::text;
use super::{Disclosed, Failure};
use crate::cause::CauseFinding;
use crate::diagnosis::{BrokenHop, ClientOutcome, Diagnosis, Phase};
use bytes::Bytes;

/// Which body a client gets, from its `Accept` header: the one rule for error pages and the
/// admin pages alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Html,
}

impl BodyFormat {
    /// JSON when the client asks for JSON (`application/json`, `application/problem+json` or any
    /// `+json` type) before, or without, asking for HTML; HTML otherwise, browsers and `*/*`
    /// included.
    pub fn from_accept(accept: Option<&[u8]>) -> BodyFormat {
        let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
            return BodyFormat::Html;
        };
        let json = accept.find("json");
        let html = accept.find("text/html");
        match (json, html) {
            (Some(j), Some(h)) if j < h => BodyFormat::Json,
            (Some(_), None) => BodyFormat::Json,
            _ => BodyFormat::Html,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/problem+json",
            BodyFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// A diagnosis's hint escaped once for each body format, and the page's head written once, at
/// startup: on every failure they are then a copy, not an escape and some forty pieces.
#[derive(Debug, Clone)]
pub struct Escaped {
    /// A JSON string literal, quotes included.
    hint_json: String,
    hint_html: String,
    /// The page up to the hint, for the status the diagnosis answers with (none for one whose
    /// upstream's answer passes through); another status writes its own.
    html_head: Option<(http::StatusCode, String)>,
}

impl Escaped {
    pub fn of(diagnosis: Diagnosis) -> Escaped {
        let mut hint_json = String::new();
        text::json_string(&mut hint_json, diagnosis.hint());
        let mut hint_html = String::new();
        text::html(&mut hint_html, diagnosis.hint());
        let html_head = match diagnosis.outcome() {
            ClientOutcome::Generated(status) => {
                let mut head = String::with_capacity(2048);
                push_html_head(&mut head, status, diagnosis);
                Some((status, head))
            }
            ClientOutcome::PassedThrough
            | ClientOutcome::CutBody
            | ClientOutcome::Nothing { .. } => None,
        };
        Escaped {
            hint_json,
            hint_html,
            html_head,
        }
    }
}

/// The body for `failure` in `format`; `escaped` is [`Escaped::of`] its diagnosis.
pub fn render(failure: &Failure<'_>, format: BodyFormat, escaped: &Escaped) -> Bytes {
    let mut out = String::with_capacity(match format {
        // With every detail field, and the hint twice (RFC 9457 `detail`, and `hint`).
        BodyFormat::Json => 1024,
        // The page with every detail row is a little over 2 KiB: no regrowth on the way.
        BodyFormat::Html => 3072,
    });
    match format {
        BodyFormat::Json => json(&mut out, failure, escaped),
        BodyFormat::Html => html(&mut out, failure, escaped),
    }
    Bytes::from(out)
}

fn json(out: &mut String, f: &Failure<'_>, escaped: &Escaped) {
    let d = f.diagnosis;
    out.push_str("{\"type\":\"urn:triage:diagnosis:");
    out.push_str(d.token());
    out.push_str("\",\"title\":");
    text::json_string(out, f.status.canonical_reason().unwrap_or("Error"));
    out.push_str(",\"status\":");
    out.push_str(f.status.as_str());
    out.push_str(",\"detail\":");
    out.push_str(&escaped.hint_json);
    out.push_str(",\"instance\":\"urn:triage:request:");
    out.push_str(f.id.as_str());
    out.push_str("\",\"diagnosis\":\"");
    out.push_str(d.token());
    out.push_str("\",\"phase\":\"");
    out.push_str(d.phase().token());
    out.push_str("\",\"source\":\"");
    out.push_str(d.source().token());
    out.push_str("\",\"hint\":");
    match f.cause {
        Some(cause) => text::json_string(out, visible_hint(f, cause)),
        None => out.push_str(&escaped.hint_json),
    }
    if let Some(cause) = f.cause {
        out.push_str(",\"cause\":\"");
        out.push_str(cause.cause.token());
        out.push('"');
        if f.disclosed.is_some() {
            out.push_str(",\"evidence\":[");
            for (i, e) in cause.evidence.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"source\":\"");
                out.push_str(e.source.token());
                out.push_str("\",\"fact\":");
                text::json_string(out, &e.fact);
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push_str(",\"id\":\"");
    out.push_str(f.id.as_str());
    out.push_str("\",\"time\":\"");
    text::rfc3339(out, f.at);
    out.push('"');
    if let Some(disclosed) = &f.disclosed {
        json_disclosed(out, disclosed, f.id.as_str());
    }
    out.push('}');
}

fn json_disclosed(out: &mut String, disclosed: &Disclosed<'_>, id: &str) {
    if let Some(upstream) = disclosed.upstream {
        out.push_str(",\"upstream\":");
        text::json_string(out, upstream);
    }
    if let Some(address) = &disclosed.address {
        out.push_str(",\"address\":");
        text::json_string(out, address.as_str());
    }
    out.push_str(",\"error\":");
    text::json_string(out, disclosed.detail);
    if let Some(url) = disclosed.report_url {
        out.push_str(",\"report\":");
        // The id is hex: only the URL can need escaping.
        text::json_string(out, url);
        out.pop();
        out.push_str(id);
        out.push('"');
    }
    out.push_str(",\"timings_ms\":{");
    let t = &disclosed.timings;
    if let Some(connect) = t.connect {
        out.push_str("\"connect\":");
        text::push_millis(out, connect);
        out.push(',');
    }
    if let Some(response) = t.response {
        out.push_str("\"upstream\":");
        text::push_millis(out, response);
        out.push(',');
    }
    out.push_str("\"total\":");
    text::push_millis(out, t.total);
    out.push('}');
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:44rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px #0002}\
h1{margin:0 0 .25rem;font-size:1.6rem}.lead{margin:0 0 1.5rem;color:#4a5263}\
.path{display:flex;align-items:center;gap:.5rem;margin:1.5rem 0;font-weight:600}\
.node{padding:.4rem .9rem;border-radius:8px;background:#e7f6ec;border:2px solid #2e9d5b}\
.node.bad{background:#fdecec;border-color:#d33}.node.unknown{background:#eee;border-color:#aaa;color:#666}\
.link{flex:1;text-align:center;color:#2e9d5b}.link.bad{color:#d33;font-size:1.3rem}\
.hint{padding:1rem;background:#fff8e1;border-left:4px solid #f0b400;border-radius:4px}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:1.5rem 0 0}\
dt{color:#6b7385}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}\
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}.evidence{margin:0;padding-left:1.2rem}\
.evidence .source{font-family:ui-monospace,monospace;color:#6b7385}";

fn html(out: &mut String, f: &Failure<'_>, escaped: &Escaped) {
    let d = f.diagnosis;
    match &escaped.html_head {
        Some((status, head)) if *status == f.status => out.push_str(head),
        _ => push_html_head(out, f.status, d),
    }
    match f.cause {
        Some(cause) => text::html(out, visible_hint(f, cause)),
        None => out.push_str(&escaped.hint_html),
    }
    out.push_str("</p>");
    if let (Some(cause), Some(_)) = (f.cause, &f.disclosed) {
        if !cause.evidence.is_empty() {
            out.push_str("<h2>Evidence</h2><ul class=\"evidence\">");
            for e in &cause.evidence {
                out.push_str("<li><span class=\"source\">");
                out.push_str(e.source.token());
                out.push_str("</span> ");
                text::html(out, &e.fact);
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("<dl>");
    plain_row(out, "Diagnosis", d.token());
    if let Some(cause) = f.cause {
        plain_row(out, "Cause", cause.cause.token());
    }
    plain_row(out, "Phase", d.phase().token());
    plain_row(out, "Produced by", d.source().token());
    plain_row(out, "Request id", f.id.as_str());
    out.push_str("<dt>Time</dt><dd>");
    text::rfc3339(out, f.at);
    out.push_str("</dd>");
    if let Some(disclosed) = &f.disclosed {
        if let Some(upstream) = disclosed.upstream {
            row(out, "Upstream", upstream);
        }
        if let Some(address) = &disclosed.address {
            plain_row(out, "Address", address.as_str());
        }
        if !disclosed.detail.is_empty() {
            row(out, "Detail", disclosed.detail);
        }
        out.push_str("<dt>Timings</dt><dd>");
        super::push_server_timing(out, &disclosed.timings);
        out.push_str("</dd>");
        if let Some(url) = disclosed.report_url {
            out.push_str("<dt>Report</dt><dd><a href=\"");
            text::html(out, url);
            out.push_str(f.id.as_str());
            out.push_str("\">");
            text::html(out, url);
            out.push_str(f.id.as_str());
            out.push_str("</a></dd>");
        }
    }
    out.push_str("</dl></main></body></html>\n");
}

/// The page up to where the hint goes: everything that depends only on the status and the
/// diagnosis.
fn push_html_head(out: &mut String, status: http::StatusCode, d: Diagnosis) {
    let reason = status.canonical_reason().unwrap_or("Error");
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    out.push_str("<title>");
    out.push_str(status.as_str());
    out.push(' ');
    out.push_str(reason);
    out.push_str(" · ");
    out.push_str(d.token());
    out.push_str("</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body><main><h1>");
    out.push_str(status.as_str());
    out.push(' ');
    out.push_str(reason);
    out.push_str("</h1>");
    out.push_str("<p class=\"lead\">");
    out.push_str(match d.broken_hop() {
        BrokenHop::ClientToProxy => "The request could not be read.",
        BrokenHop::Proxy => "The proxy could not handle this request.",
        BrokenHop::ProxyToUpstream => "The proxy is fine; the app behind it failed.",
    });
    out.push_str("</p>");
    path(out, d.broken_hop(), d.phase());
    out.push_str("<p class=\"hint\">");
}

fn path(out: &mut String, broken: BrokenHop, phase: Phase) {
    let (client_link, proxy, upstream_link, upstream) = match broken {
        BrokenHop::ClientToProxy => ("link bad", "node", "link", "node unknown"),
        BrokenHop::Proxy => ("link", "node bad", "link", "node unknown"),
        BrokenHop::ProxyToUpstream => ("link", "node", "link bad", "node bad"),
    };
    let mark = |class: &str| if class.contains("bad") { "✕" } else { "→" };
    let parts = [
        "<div class=\"path\" aria-label=\"request path\"><span class=\"node\">client</span><span class=\"",
        client_link,
        "\">",
        mark(client_link),
        "</span><span class=\"",
        proxy,
        "\">triage</span><span class=\"",
        upstream_link,
        "\" title=\"",
        phase.token(),
        "\">",
        mark(upstream_link),
        "</span><span class=\"",
        upstream,
        "\">upstream</span></div>",
    ];
    for part in parts {
        out.push_str(part);
    }
}

/// The cause's hint this client may read: the full one when trusted.
fn visible_hint<'a>(f: &Failure<'_>, cause: &'a CauseFinding) -> &'a str {
    if f.disclosed.is_some() {
        &cause.hint
    } else {
        &cause.public_hint
    }
}

/// A row whose value may hold anything (config names, error text, URLs): escaped.
fn row(out: &mut String, name: &str, value: &str) {
    out.push_str("<dt>");
    out.push_str(name);
    out.push_str("</dt><dd>");
    text::html(out, value);
    out.push_str("</dd>");
}

/// A row whose value triage wrote itself from a fixed alphabet (tokens, hex ids, digits,
/// addresses), which HTML never needs escaped.
fn plain_row(out: &mut String, name: &str, value: &str) {
    out.push_str("<dt>");
    out.push_str(name);
    out.push_str("</dt><dd>");
    out.push_str(value);
    out.push_str("</dd>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RequestId;
    use crate::outcome::Timings;
    use std::time::{Duration, SystemTime};

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

    /// Accept negotiation: JSON only when asked for before HTML; browsers and curl get HTML.
    #[test]
    fn format_from_accept() {
        let cases: [(Option<&str>, BodyFormat); 7] = [
            (None, BodyFormat::Html),
            (Some("*/*"), BodyFormat::Html),
            (Some("application/json"), BodyFormat::Json),
            (Some("application/problem+json"), BodyFormat::Json),
            (
                Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                BodyFormat::Html,
            ),
            (Some("application/json, text/html"), BodyFormat::Json),
            (Some("text/html, application/json"), BodyFormat::Html),
        ];
        for (accept, want) in cases {
            assert_eq!(
                BodyFormat::from_accept(accept.map(str::as_bytes)),
                want,
                "{accept:?}"
            );
        }
    }

    /// The JSON body has the RFC 9457 members and triage's, and no detail for untrusted clients.
    #[test]
    fn json_body_members() {
        let f = failure(None);
        let body = render(&f, BodyFormat::Json, &Escaped::of(f.diagnosis));
        let text = std::str::from_utf8(&body).expect("utf8");
        for member in [
            "\"type\":\"urn:triage:diagnosis:connect_refused\"",
            "\"title\":\"Bad Gateway\"",
            "\"status\":502",
            "\"diagnosis\":\"connect_refused\"",
            "\"phase\":\"connect\"",
            "\"source\":\"proxy\"",
        ] {
            assert!(text.contains(member), "{member} missing in {text}");
        }
        assert!(text.contains(f.id.as_str()));
        assert!(!text.contains("\"cause\""));
    }

    /// Upstream text is escaped in the HTML page, and the broken hop is marked.
    #[test]
    fn html_escapes_detail_and_marks_the_hop() {
        let f = failure(Some(Disclosed {
            upstream: Some("app"),
            address: None,
            detail: "<script>x</script>",
            timings: Timings {
                total: Duration::from_millis(1),
                ..Timings::default()
            },
            report_url: None,
        }));
        let body = render(&f, BodyFormat::Html, &Escaped::of(f.diagnosis));
        let text = std::str::from_utf8(&body).expect("utf8");
        assert!(text.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!text.contains("<script>"));
        assert!(text.contains("<span class=\"link bad\" title=\"connect\">✕</span>"));
        assert!(text.contains("connect_refused"));
    }

    /// The head written once per diagnosis is the head written per failure: for every
    /// diagnosis triage answers itself, the page is the same with it as without it; and a
    /// failure answered with another status than its diagnosis's (a request check's 4xx) gets
    /// a head with that status, not the stored one.
    #[test]
    fn stored_head_is_the_head_written_per_failure() {
        let mut stored = 0;
        for d in Diagnosis::ALL {
            let escaped = Escaped::of(d);
            let Some((status, _)) = &escaped.html_head else {
                continue;
            };
            stored += 1;
            let f = Failure {
                diagnosis: d,
                status: *status,
                ..failure(None)
            };
            let without = Escaped {
                html_head: None,
                ..escaped.clone()
            };
            assert_eq!(
                render(&f, BodyFormat::Html, &escaped),
                render(&f, BodyFormat::Html, &without),
                "{d:?}"
            );
        }
        assert!(stored > 20, "only {stored} diagnoses have a stored head");

        let f = Failure {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            ..failure(None)
        };
        let body = render(&f, BodyFormat::Html, &Escaped::of(f.diagnosis));
        let text = std::str::from_utf8(&body).expect("utf8");
        assert!(text.contains("<title>503 Service Unavailable · connect_refused</title>"));
        assert!(text.contains("<h1>503 Service Unavailable</h1>"));
        assert!(!text.contains("502 Bad Gateway"));
    }
}
