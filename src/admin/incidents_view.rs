//! `GET /incidents`: each upstream's last hour as a chart drawn by triage (inline SVG: no
//! script, no external asset, so it works on an air-gapped admin network and under a strict
//! Content-Security-Policy), its incidents marked and linked to their first report, and the
//! incidents as a table; or, with `?format=json`, `{"incidents": [...]}`.

use crate::cause::Cause;
use crate::incidents::{Incident, StepCounts, STEP, STEPS};
use crate::render::text;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Chart size, in SVG user units: one column of [`COLUMN`] per step.
const COLUMN: u32 = 2;
const WIDTH: u32 = STEPS as u32 * COLUMN;
const HEIGHT: u32 = 120;

/// A cause's colour on the chart: fixed per cause (its index into a palette), so one cause
/// keeps its colour across charts and reloads.
fn colour(cause: Cause) -> &'static str {
    const PALETTE: [&str; 10] = [
        "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#1f77b4",
        "#7f7f7f", "#2ca02c",
    ];
    PALETTE[cause.index() % PALETTE.len()]
}

fn time_text(at: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    text::rfc3339(&mut out, at);
    out
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The incidents as JSON: `{"incidents": [{"upstream", "start", "end", "failures", "causes",
/// "first_id", "last_id", "deploy"}]}`, newest first; `end` is null while it goes on, `causes`
/// an object of counts, most frequent first.
pub fn json(incidents: &[Incident], now: SystemTime) -> String {
    let list: Vec<serde_json::Value> = incidents
        .iter()
        .map(|i| {
            let mut causes = serde_json::Map::new();
            for (cause, n) in &i.causes {
                causes.insert(cause.token().to_owned(), serde_json::Value::from(*n));
            }
            serde_json::json!({
                "upstream": i.upstream,
                "start": time_text(i.start),
                "end": i.end(now).map(time_text),
                "failures": i.failures,
                "causes": causes,
                "first_id": i.first_id.as_str(),
                "last_id": i.last_id.as_str(),
                "deploy": i.deploy.as_ref().map(|d| serde_json::json!({
                    "version": d.version,
                    "time": time_text(d.time),
                })),
            })
        })
        .collect();
    serde_json::json!({ "incidents": list }).to_string()
}

/// The page: per upstream its chart, then every incident in a table.
pub fn html(
    timelines: &[(String, Vec<StepCounts>)],
    incidents: &[Incident],
    now: SystemTime,
    style: &str,
) -> String {
    let mut out = String::with_capacity(16_384 + timelines.len() * 24_576);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Incidents</title><style>");
    out.push_str(style);
    out.push_str(".chart{display:block;max-width:100%;height:auto;background:#fafbfc;border:1px solid #ddd}\
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}");
    out.push_str("</style></head><body><h1>Incidents</h1>");
    let _ = write!(
        out,
        "<p>Each upstream's last hour in {}-second steps: requests in grey, failures coloured by \
         cause; an incident (failures with no quiet minute between them) is shaded and links to its \
         first report. JSON with <code>?format=json</code>.</p>",
        STEP.as_secs()
    );
    if timelines.is_empty() {
        out.push_str("<p>No request has reached an upstream yet.</p>");
    }
    for (upstream, steps) in timelines {
        out.push_str("<h2 id=\"");
        text::html(&mut out, upstream);
        out.push_str("\">");
        text::html(&mut out, upstream);
        out.push_str("</h2>");
        chart(&mut out, upstream, steps, incidents, now);
    }
    out.push_str(
        "<h2>All incidents</h2><table><tr><th>upstream</th><th>start</th><th>end</th>\
<th>failures</th><th>causes</th><th>deploy before</th><th>reports</th></tr>",
    );
    for i in incidents {
        out.push_str("<tr><td>");
        text::html(&mut out, &i.upstream);
        out.push_str("</td><td class=\"mono\">");
        text::rfc3339(&mut out, i.start);
        out.push_str("</td><td class=\"mono\">");
        match i.end(now) {
            Some(end) => text::rfc3339(&mut out, end),
            None => out.push_str("<span class=\"bad\">ongoing</span>"),
        }
        let _ = write!(out, "</td><td>{}</td><td>", i.failures);
        for (n, (cause, count)) in i.causes.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "<code>{}</code> {count}", cause.token());
        }
        out.push_str("</td><td>");
        if let Some(deploy) = &i.deploy {
            text::html(&mut out, &deploy.version);
            out.push_str(" at ");
            text::rfc3339(&mut out, deploy.time);
        }
        let _ = write!(
            out,
            "</td><td><a href=\"/diagnoses/{0}\">first</a> · <a href=\"/diagnoses/{1}\">last</a></td></tr>",
            i.first_id, i.last_id
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

/// One upstream's chart: a bar per step, scaled to the hour's busiest step.
fn chart(
    out: &mut String,
    upstream: &str,
    steps: &[StepCounts],
    incidents: &[Incident],
    now: SystemTime,
) {
    let busiest = steps.iter().map(|s| s.requests).max().unwrap_or(0).max(1);
    let scale =
        |n: u32| (f64::from(n) / f64::from(busiest) * f64::from(HEIGHT)).min(f64::from(HEIGHT));
    let first = steps.first().map_or(0, |s| s.start);
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"requests and failures of "
    );
    text::html(out, upstream);
    out.push_str(" over the last hour\">");
    // Incidents first, under the bars.
    let span = STEP.as_secs() * STEPS as u64;
    for i in incidents.iter().filter(|i| i.upstream == upstream) {
        let start = seconds(i.start);
        let end = seconds(i.end(now).unwrap_or(now));
        if end < first || start > first + span {
            continue;
        }
        let x = start.saturating_sub(first) / STEP.as_secs() * u64::from(COLUMN);
        let width = (end.saturating_sub(first.max(start)) / STEP.as_secs() + 1) * u64::from(COLUMN);
        let _ = write!(
            out,
            "<a href=\"/diagnoses/{}\"><rect class=\"incident\" x=\"{x}\" y=\"0\" width=\"{width}\" \
             height=\"{HEIGHT}\" fill=\"#fdecec\"><title>",
            i.first_id
        );
        let _ = write!(out, "{} failures from ", i.failures);
        text::rfc3339(out, i.start);
        out.push_str("</title></rect></a>");
    }
    for (n, step) in steps.iter().enumerate() {
        let x = n as u32 * COLUMN;
        if step.requests > 0 {
            let h = scale(step.requests);
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{:.1}\" width=\"{COLUMN}\" height=\"{h:.1}\" fill=\"#c8ccd4\"/>",
                f64::from(HEIGHT) - h
            );
        }
        let mut top = f64::from(HEIGHT);
        for &(cause, count) in &step.failures {
            let h = scale(count);
            top -= h;
            let _ = write!(
                out,
                "<rect class=\"failure\" x=\"{x}\" y=\"{top:.1}\" width=\"{COLUMN}\" height=\"{h:.1}\" fill=\"{}\"><title>{count} {} at ",
                colour(cause),
                cause.token()
            );
            text::rfc3339(out, UNIX_EPOCH + std::time::Duration::from_secs(step.start));
            out.push_str("</title></rect>");
        }
    }
    out.push_str("</svg><p class=\"legend\">");
    let mut seen: Vec<Cause> = steps
        .iter()
        .flat_map(|s| s.failures.iter().map(|(c, _)| *c))
        .collect();
    seen.sort_by_key(|c| c.index());
    seen.dedup();
    let _ = write!(out, "busiest step: {busiest} requests");
    for cause in seen {
        let _ = write!(
            out,
            "<span style=\"background:{}\"></span><code>{}</code>",
            colour(cause),
            cause.token()
        );
    }
    out.push_str("</p>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RequestId;
    use crate::incidents::Incidents;
    use std::time::Duration;

    /// The page draws a chart per upstream with its failures coloured by cause and the
    /// incident linked to its first report; the JSON lists the incident with its causes.
    #[test]
    fn the_page_and_the_json() {
        let incidents = Incidents::default();
        let now = SystemTime::now();
        let id = RequestId::parse("00000000000000aa").expect("id");
        for s in 0..30u64 {
            let at = now - Duration::from_secs(60 - s);
            incidents.record("app", at, None, || None);
            incidents.record("app", at, Some((Cause::AppDown, id)), || None);
        }
        let list = incidents.list();
        let page = html(&incidents.timelines(now), &list, now, "");
        assert!(page.contains("<svg class=\"chart\""), "{page}");
        assert!(page.contains("<rect class=\"incident\""), "{page}");
        assert!(
            page.contains("<a href=\"/diagnoses/00000000000000aa\">"),
            "{page}"
        );
        assert!(page.contains(&format!("fill=\"{}\"", colour(Cause::AppDown))));
        let value: serde_json::Value = serde_json::from_str(&json(&list, now)).expect("JSON");
        let first = &value["incidents"][0];
        assert_eq!(first["upstream"], "app");
        assert_eq!(first["failures"], 30);
        assert_eq!(first["causes"]["app_down"], 30);
        assert!(first["end"].is_null(), "ongoing: {value}");
    }
}
