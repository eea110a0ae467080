//! Failure reports and deploy markers as JSON (for programs and support tooling) and as HTML
//! (readable at a glance).

use crate::deploys::Deploy;
use crate::render::text;
use crate::report::{Attempt, Report};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn field(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    text::json_string(out, value);
}

fn opt_ms(out: &mut String, name: &str, value: Option<Duration>) {
    match value {
        Some(d) => {
            let _ = write!(out, "\"{name}\":{:.3}", ms(d));
        }
        None => {
            let _ = write!(out, "\"{name}\":null");
        }
    }
}

fn attempt_json(out: &mut String, a: &Attempt) {
    out.push('{');
    match a.address {
        Some(addr) => field(out, "address", &addr.to_string()),
        None => out.push_str("\"address\":null"),
    }
    out.push(',');
    let (token, phase) = a
        .diagnosis
        .map_or(("", ""), |d| (d.token(), d.phase().token()));
    field(out, "diagnosis", token);
    out.push(',');
    field(out, "phase", phase);
    out.push(',');
    field(out, "detail", &a.detail);
    let _ = write!(out, ",\"reused_connection\":{},", a.reused_connection);
    opt_ms(out, "connect_ms", a.connect);
    out.push(',');
    opt_ms(out, "response_ms", a.response);
    out.push('}');
}

fn report_json_into(out: &mut String, r: &Report) {
    out.push('{');
    field(out, "id", r.id.as_str());
    out.push_str(",\"time\":\"");
    text::rfc3339(out, r.time);
    out.push_str("\",");
    field(out, "method", &r.method);
    out.push(',');
    field(out, "host", &r.host);
    out.push(',');
    field(out, "path", &r.path);
    out.push_str(",\"headers\":{");
    for (i, (name, value)) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, name, value);
    }
    out.push_str("},");
    field(out, "route", &r.route);
    out.push(',');
    field(out, "upstream", &r.upstream);
    let _ = write!(out, ",\"status\":{},", r.status);
    field(out, "diagnosis", r.diagnosis.token());
    out.push(',');
    field(out, "phase", r.diagnosis.phase().token());
    out.push(',');
    field(out, "source", r.diagnosis.source().token());
    out.push(',');
    field(out, "hint", r.diagnosis.hint());
    out.push(',');
    field(out, "detail", &r.detail);
    out.push_str(",\"attempts\":[");
    for (i, a) in r.attempts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        attempt_json(out, a);
    }
    let _ = write!(
        out,
        "],\"bytes_sent_upstream\":{},\"bytes_received_upstream\":{},\"total_ms\":{:.3}}}",
        r.bytes_sent_upstream,
        r.bytes_received_upstream,
        ms(r.total)
    );
}

/// One report as a JSON object.
pub fn report_json(r: &Report) -> String {
    let mut out = String::with_capacity(1024);
    report_json_into(&mut out, r);
    out
}

/// Reports, newest first, as `{"diagnoses":[...]}`.
pub fn list_json(reports: &[Arc<Report>]) -> String {
    let mut out = String::with_capacity(256 + reports.len() * 1024);
    out.push_str("{\"diagnoses\":[");
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        report_json_into(&mut out, r);
    }
    out.push_str("]}");
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1d2330}\
table{border-collapse:collapse}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:left}\
code,td.mono{font-family:ui-monospace,monospace}.bad{color:#c22;font-weight:600}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:#6b7385}dd{margin:0}";

fn page_start(out: &mut String, title: &str) {
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    text::html(out, title);
    out.push_str("</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body><h1>");
    text::html(out, title);
    out.push_str("</h1>");
}

/// Recent failures as a table, newest first.
pub fn list_html(reports: &[Arc<Report>]) -> String {
    let mut out = String::with_capacity(1024 + reports.len() * 256);
    page_start(&mut out, "Recent failures");
    out.push_str("<p>Newest first. Filter with <code>?upstream=NAME</code> and <code>?diagnosis=TOKEN</code>; JSON with <code>?format=json</code>.</p>");
    out.push_str("<table><tr><th>time</th><th>id</th><th>status</th><th>diagnosis</th><th>phase</th><th>upstream</th><th>request</th></tr>");
    for r in reports {
        out.push_str("<tr><td class=\"mono\">");
        text::rfc3339(&mut out, r.time);
        let _ = write!(
            out,
            "</td><td class=\"mono\"><a href=\"/diagnoses/{id}\">{id}</a></td><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td>",
            r.status,
            r.diagnosis.token(),
            r.diagnosis.phase().token(),
            id = r.id,
        );
        text::html(&mut out, &r.upstream);
        out.push_str("</td><td class=\"mono\">");
        text::html(&mut out, &r.method);
        out.push(' ');
        text::html(&mut out, &r.host);
        text::html(&mut out, &r.path);
        out.push_str("</td></tr>");
    }
    out.push_str("</table></body></html>\n");
    out
}

/// One report, readable at a glance.
pub fn report_html(r: &Report) -> String {
    let mut out = String::with_capacity(4096);
    page_start(&mut out, &format!("{} · {}", r.diagnosis.token(), r.id));
    out.push_str("<p>");
    text::html(&mut out, r.diagnosis.hint());
    out.push_str("</p><dl>");
    let mut time = String::new();
    text::rfc3339(&mut time, r.time);
    let rows: [(&str, String); 11] = [
        ("Time", time),
        ("Request", format!("{} {}{}", r.method, r.host, r.path)),
        ("Route", r.route.clone()),
        ("Upstream", r.upstream.clone()),
        ("Status", r.status.to_string()),
        ("Diagnosis", r.diagnosis.token().to_owned()),
        ("Phase", r.diagnosis.phase().token().to_owned()),
        ("Produced by", r.diagnosis.source().token().to_owned()),
        ("Detail", r.detail.clone()),
        (
            "Bytes",
            format!(
                "{} sent upstream, {} received",
                r.bytes_sent_upstream, r.bytes_received_upstream
            ),
        ),
        ("Total", format!("{:.3} ms", ms(r.total))),
    ];
    for (name, value) in rows {
        out.push_str("<dt>");
        out.push_str(name);
        out.push_str("</dt><dd>");
        text::html(&mut out, &value);
        out.push_str("</dd>");
    }
    out.push_str("</dl><h2>Attempts</h2><table><tr><th>#</th><th>address</th><th>diagnosis</th><th>detail</th><th>reused</th><th>connect</th><th>response</th></tr>");
    for (i, a) in r.attempts.iter().enumerate() {
        let fmt_ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.3} ms", ms(d)));
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"bad\">{}</td><td class=\"mono\">",
            i + 1,
            a.address.map_or("-".to_owned(), |x| x.to_string()),
            a.diagnosis.map_or("", |d| d.token()),
        );
        text::html(&mut out, &a.detail);
        let _ = write!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.reused_connection,
            fmt_ms(a.connect),
            fmt_ms(a.response)
        );
    }
    out.push_str("</table><h2>Request headers</h2><table>");
    for (name, value) in &r.headers {
        out.push_str("<tr><td class=\"mono\">");
        text::html(&mut out, name);
        out.push_str("</td><td class=\"mono\">");
        text::html(&mut out, value);
        out.push_str("</td></tr>");
    }
    out.push_str("</table></body></html>\n");
    out
}

/// The time of a report or marker as the JSON and the pages show it.
fn time_text(time: std::time::SystemTime) -> String {
    let mut out = String::with_capacity(24);
    text::rfc3339(&mut out, time);
    out
}

/// One deploy marker as `{"upstream", "version", "time"}`; `upstream` null for all upstreams.
pub fn deploy_json(deploy: &Deploy) -> serde_json::Value {
    serde_json::json!({
        "upstream": deploy.upstream,
        "version": deploy.version,
        "time": time_text(deploy.time),
    })
}

/// Markers, newest first, as `{"deploys":[...]}`.
pub fn deploys_json(deploys: &[Deploy]) -> String {
    let deploys: Vec<_> = deploys.iter().map(deploy_json).collect();
    serde_json::json!({ "deploys": deploys }).to_string()
}

/// Deploy markers as a table, newest first.
pub fn deploys_html(deploys: &[Deploy]) -> String {
    let mut out = String::with_capacity(1024 + deploys.len() * 128);
    page_start(&mut out, "Deploys");
    out.push_str("<p>Newest first. Record one with <code>triage deployed -c FILE [--upstream NAME] [--version V]</code> or <code>POST /deploys</code>; JSON with <code>?format=json</code>.</p>");
    out.push_str("<table><tr><th>time</th><th>upstream</th><th>version</th></tr>");
    for deploy in deploys {
        out.push_str("<tr><td class=\"mono\">");
        text::rfc3339(&mut out, deploy.time);
        out.push_str("</td><td>");
        match &deploy.upstream {
            Some(upstream) => text::html(&mut out, upstream),
            None => out.push_str("<em>all</em>"),
        }
        out.push_str("</td><td class=\"mono\">");
        text::html(&mut out, &deploy.version);
        out.push_str("</td></tr>");
    }
    out.push_str("</table></body></html>\n");
    out
}
