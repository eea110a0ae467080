//! Failure reports and deploy markers as JSON (for programs and support tooling) and as HTML
//! (readable at a glance).

use crate::app_evidence::process::ProcessSample;
use crate::deploys::Deploy;
use crate::machine::Sample;
use crate::render::text;
use crate::report::{Attempt, Report};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The time of a report or marker as the JSON and the pages show it.
fn time_text(time: std::time::SystemTime) -> String {
    let mut out = String::with_capacity(24);
    text::rfc3339(&mut out, time);
    out
}

/// Milliseconds rounded to the microsecond, as the JSON shows them.
fn json_ms(d: Duration) -> f64 {
    (ms(d) * 1e3).round() / 1e3
}

fn attempt_value(a: &Attempt) -> serde_json::Value {
    let (diagnosis, phase) = a
        .diagnosis
        .map_or(("", ""), |d| (d.token(), d.phase().token()));
    serde_json::json!({
        "address": a.address.as_ref().map(|address| address.to_string()),
        "diagnosis": diagnosis,
        "phase": phase,
        "detail": a.detail,
        "reused_connection": a.reused_connection,
        "connect_ms": a.connect.map(json_ms),
        "response_ms": a.response.map(json_ms),
        "certificate": a.certificate.as_deref().map(certificate_value),
        "dns": a.dns.as_deref().map(|d| serde_json::json!({
            "host": d.host,
            "addresses": d.ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "resolved_at": time_text(d.resolved_at),
        })),
    })
}

/// An upstream's certificate as `{"subject", "issuer", "names", "not_before", "not_after"}`.
fn certificate_value(c: &crate::report::Certificate) -> serde_json::Value {
    serde_json::json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "names": c.names,
        "not_before": time_text(c.not_before),
        "not_after": time_text(c.not_after),
    })
}

/// The machine at a failure, as `{"load1", "cpu_busy_percent", "mem_available_bytes",
/// "mem_total_bytes", "swap_used_bytes", "pressure", "disks": [{"path", "free_bytes",
/// "total_bytes"}]}` (a figure the kernel does not give is null).
fn machine_json(m: &Sample) -> serde_json::Value {
    let disks: Vec<_> = m
        .disks
        .iter()
        .map(|d| {
            serde_json::json!({
                "path": d.path.display().to_string(),
                "free_bytes": d.free_bytes,
                "total_bytes": d.total_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "time": m.at.map(time_text),
        "load1": m.load1,
        "cpu_busy_percent": m.cpu_busy_percent.map(|p| (p * 10.0).round() / 10.0),
        "mem_available_bytes": m.mem_available_bytes,
        "mem_total_bytes": m.mem_total_bytes,
        "swap_used_bytes": m.swap_used_bytes,
        "pressure": {
            "cpu": m.pressure_cpu,
            "memory": m.pressure_memory,
            "io": m.pressure_io,
        },
        "disks": disks,
    })
}

/// The app's process at a failure, as `{"time", "alive", "pid", "started",
/// "restarts_last_minute", "memory_current_bytes", "memory_max_bytes", "oom_kills"}` (a figure
/// that could not be read is null; `memory_max_bytes` null also for no limit).
fn app_process_json(p: &ProcessSample) -> serde_json::Value {
    serde_json::json!({
        "time": p.at.map(time_text),
        "alive": p.alive,
        "pid": p.pid,
        "started": p.started.map(time_text),
        "restarts_last_minute": p.restarts_last_minute,
        "memory_current_bytes": p.memory_current_bytes,
        "memory_max_bytes": p.memory_max_bytes,
        "oom_kills": p.oom_kills,
    })
}

/// A report as a JSON object. A header sent more than once is one member, its values joined
/// with ", " as HTTP combines them (a JSON object has each name once).
fn report_value(r: &Report) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &r.headers {
        match headers.get_mut(name) {
            Some(serde_json::Value::String(earlier)) => {
                earlier.push_str(", ");
                earlier.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), value.as_str().into());
            }
        }
    }
    let attempts: Vec<_> = r.attempts.iter().map(attempt_value).collect();
    let evidence: Vec<_> = r
        .cause
        .evidence
        .iter()
        .map(|e| serde_json::json!({ "source": e.source.token(), "fact": e.fact }))
        .collect();
    serde_json::json!({
        "id": r.id.as_str(),
        "time": time_text(r.time),
        "method": r.method,
        "host": r.host,
        "path": r.path,
        "headers": headers,
        "route": r.route,
        "upstream": r.upstream,
        "status": r.status,
        "diagnosis": r.diagnosis.token(),
        "phase": r.diagnosis.phase().token(),
        "source": r.diagnosis.source().token(),
        "cause": r.cause.cause.token(),
        "hint": r.cause.hint,
        "evidence": evidence,
        "deploy": r.deploy.as_ref().map(deploy_json),
        "machine": r.machine.as_deref().map(machine_json),
        "app_log": r.app_log,
        "app_process": r.app_process.as_ref().map(app_process_json),
        "detail": r.detail,
        "attempts": attempts,
        "bytes_sent_upstream": r.bytes_sent_upstream,
        "bytes_received_upstream": r.bytes_received_upstream,
        "total_ms": json_ms(r.total),
    })
}

/// One report as a JSON object.
pub fn report_json(r: &Report) -> String {
    report_value(r).to_string()
}

/// Reports, newest first, as `{"diagnoses":[...]}`.
pub fn list_json(reports: &[Arc<Report>]) -> String {
    let reports: Vec<_> = reports.iter().map(|r| report_value(r)).collect();
    serde_json::json!({ "diagnoses": reports }).to_string()
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

pub(super) const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1d2330}\
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
pub fn report_html(r: &Report, incident: Option<&crate::incidents::Incident>) -> String {
    let mut out = String::with_capacity(4096);
    page_start(&mut out, &format!("{} · {}", r.diagnosis.token(), r.id));
    if let Some(incident) = incident {
        out.push_str("<p>Part of an incident of <a href=\"/incidents#");
        text::html(&mut out, &incident.upstream);
        out.push_str("\">");
        text::html(&mut out, &incident.upstream);
        out.push_str("</a> since ");
        text::rfc3339(&mut out, incident.start);
        let _ = write!(out, " ({} failures so far).</p>", incident.failures);
    }
    out.push_str("<p>");
    text::html(&mut out, &r.cause.hint);
    out.push_str("</p>");
    if !r.cause.evidence.is_empty() {
        out.push_str("<h2>Evidence</h2><ul>");
        for e in &r.cause.evidence {
            out.push_str("<li><code>");
            out.push_str(e.source.token());
            out.push_str("</code> ");
            text::html(&mut out, &e.fact);
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("<dl>");
    let deploy = r.deploy.as_ref().map_or_else(
        || "none within the deploy window".to_owned(),
        |d| format!("{} at {}", d.version, time_text(d.time)),
    );
    let machine = r.machine.as_deref().map_or_else(
        || "not sampled yet".to_owned(),
        |m| {
            let mut text = String::new();
            if let Some(load) = m.load1 {
                let _ = write!(text, "load {load:.2}; ");
            }
            if let Some(busy) = m.cpu_busy_percent {
                let _ = write!(text, "CPU {busy:.0} % busy; ");
            }
            if let (Some(a), Some(t)) = (m.mem_available_bytes, m.mem_total_bytes) {
                let _ = write!(text, "memory {} of {} MiB available; ", a >> 20, t >> 20);
            }
            for d in &m.disks {
                let _ = write!(
                    text,
                    "{} {} of {} MiB free; ",
                    d.path.display(),
                    d.free_bytes >> 20,
                    d.total_bytes >> 20
                );
            }
            text.trim_end_matches("; ").to_owned()
        },
    );
    let rows: [(&str, String); 14] = [
        ("Time", time_text(r.time)),
        ("Request", format!("{} {}{}", r.method, r.host, r.path)),
        ("Route", r.route.clone()),
        ("Upstream", r.upstream.clone()),
        ("Status", r.status.to_string()),
        ("Diagnosis", r.diagnosis.token().to_owned()),
        ("Phase", r.diagnosis.phase().token().to_owned()),
        ("Produced by", r.diagnosis.source().token().to_owned()),
        ("Cause", r.cause.cause.token().to_owned()),
        ("Deploy", deploy),
        ("Machine", machine),
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
            a.address.as_ref().map_or("-".to_owned(), |x| x.to_string()),
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
    out.push_str("</table>");
    if let Some(lines) = &r.app_log {
        out.push_str("<h2>The app's log</h2><pre>");
        for line in lines {
            text::html(&mut out, line);
            out.push('\n');
        }
        out.push_str("</pre>");
    }
    if let Some(p) = &r.app_process {
        let _ = write!(
            out,
            "<h2>The app's process</h2><p>{}",
            match p.alive {
                Some(true) => "alive",
                Some(false) => "not running",
                None => "unknown",
            }
        );
        if let Some(pid) = p.pid {
            let _ = write!(out, ", pid {pid}");
        }
        if let Some(started) = p.started {
            let _ = write!(out, ", started {}", time_text(started));
        }
        let _ = write!(
            out,
            ", {} restarts in the last minute",
            p.restarts_last_minute
        );
        if let Some(current) = p.memory_current_bytes {
            let _ = write!(out, ", memory {} MiB", current >> 20);
            if let Some(max) = p.memory_max_bytes {
                let _ = write!(out, " of {} MiB", max >> 20);
            }
        }
        if let Some(kills) = p.oom_kills {
            let _ = write!(out, ", {kills} OOM kills");
        }
        out.push_str("</p>");
    }
    out.push_str("<h2>Request headers</h2><table>");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::Diagnosis;
    use crate::id::RequestId;

    /// A report's JSON, member for member: escapes, nulls, milliseconds to the microsecond,
    /// and a header sent twice as one member with both values.
    #[test]
    fn a_report_as_json() {
        let attempt = |address: Option<&str>, diagnosis, connect, response| Attempt {
            address: address.map(|a| a.parse().unwrap()),
            diagnosis,
            detail: "d".into(),
            reused_connection: diagnosis.is_none(),
            connect,
            response,
            certificate: None,
            dns: None,
        };
        let report = Report {
            id: RequestId::parse("0123456789abcdef").unwrap(),
            time: std::time::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123),
            method: "GET".into(),
            host: "ex\"am\\ple".into(),
            path: "/a?[redacted]".into(),
            headers: vec![
                ("accept".into(), "*/*".into()),
                ("x-a".into(), "[redacted]".into()),
                ("accept".into(), "text/html".into()),
            ],
            route: "/".into(),
            upstream: "app".into(),
            diagnosis: Diagnosis::ConnectRefused,
            detail: "refused \u{0}\u{b}\r".into(),
            cause: Arc::new(crate::cause::without_evidence(Diagnosis::ConnectRefused)),
            deploy: None,
            machine: None,
            app_log: None,
            app_process: None,
            status: 502,
            attempts: vec![
                attempt(
                    Some("127.0.0.1:1"),
                    Some(Diagnosis::ConnectRefused),
                    Some(Duration::from_nanos(412_345)),
                    None,
                ),
                attempt(None, None, None, Some(Duration::from_nanos(1_234_567_891))),
            ],
            bytes_sent_upstream: 17,
            bytes_received_upstream: 0,
            total: Duration::from_millis(12),
        };
        let expected = concat!(
            r#"{"id":"0123456789abcdef","time":"2026-09-21T14:13:20.123Z","method":"GET","#,
            r#""host":"ex\"am\\ple","path":"/a?[redacted]","#,
            r#""headers":{"accept":"*/*, text/html","x-a":"[redacted]"},"#,
            r#""route":"/","upstream":"app","status":502,"diagnosis":"connect_refused","#,
            r#""phase":"connect","source":"proxy","cause":"unknown","#,
            r#""hint":"nothing is listening: the app "#,
            r#"process crashed, is restarting, or the port in the config is wrong; check its "#,
            r#"logs and the port","evidence":[],"deploy":null,"machine":null,"#,
            r#""app_log":null,"app_process":null,"#,
            r#""detail":"refused \u0000\u000b\r","#,
            r#""attempts":[{"address":"127.0.0.1:1","diagnosis":"connect_refused","#,
            r#""phase":"connect","detail":"d","reused_connection":false,"connect_ms":0.412,"#,
            r#""response_ms":null,"certificate":null,"dns":null},{"address":null,"diagnosis":"","phase":"","#,
            r#""detail":"d","reused_connection":true,"connect_ms":null,"response_ms":1234.568,"#,
            r#""certificate":null,"dns":null}],"#,
            r#""bytes_sent_upstream":17,"bytes_received_upstream":0,"total_ms":12.0}"#,
        );
        assert_eq!(report_json(&report), expected);
        assert_eq!(
            list_json(&[Arc::new(report)]),
            format!("{{\"diagnoses\":[{expected}]}}")
        );
        assert_eq!(list_json(&[]), r#"{"diagnoses":[]}"#);
    }
}
