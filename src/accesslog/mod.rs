//! The access log: one line per request that explains itself, and error lines that cannot flood.
//!
//! In text format a line is the combined log format nginx users know, followed by triage's own
//! `key=value` fields (id, route, upstream, source, diagnosis, phase, timings); in JSON format the
//! same fields are JSON members. A failure also gets an error-level line, at most
//! `error_lines_per_second` of them; the lines a storm suppresses are counted and the count is
//! reported by the next line that gets through (nginx writes ~60 MB of error log in 20 s of
//! failure storm).
//!
//! Text lines are written many at a time ([`batches`]); JSON lines and error lines go through
//! `tracing`, each at once.

pub mod batches;

use crate::config::{Log, LogFormat};
use crate::outcome::Outcome;
use crate::render::text::{self, push_log_text, LogField};
use crate::window::{current_second, SecondWindow};
use batches::Batches;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the process's text access lines go: batched, written at least every `access_flush`,
/// when there are any to write (access on, text format); otherwise unbatched, with no flusher
/// thread.
pub fn lines_for(log: &Log) -> Arc<Batches> {
    let text_lines = log.access && matches!(log.format, LogFormat::Text);
    Batches::stdout(if text_lines {
        log.access_flush
    } else {
        Duration::ZERO
    })
}

/// Writes access lines and rate-limited error lines.
pub struct AccessLog {
    format: LogFormat,
    enabled: bool,
    limiter: RateLimiter,
    lines: Arc<Batches>,
}

impl AccessLog {
    /// `lines` is where text lines go (the process's, which its exit flushes).
    pub fn new(
        format: LogFormat,
        enabled: bool,
        error_lines_per_second: u32,
        lines: Arc<Batches>,
    ) -> AccessLog {
        AccessLog {
            format,
            enabled,
            limiter: RateLimiter::new(error_lines_per_second),
            lines,
        }
    }

    /// Writes the access line, and for a failure the error line if the rate allows.
    pub fn write(&self, entry: &Outcome<'_>) {
        let failed = entry.is_failure();
        if self.enabled {
            match self.format {
                // Written piece by piece into this thread's batch: through `tracing` a line cost
                // a second timestamp and level prefix, and more CPU than the rest of triage's
                // work on a request.
                LogFormat::Text => self.lines.append(|line| {
                    push_combined_line(line, entry);
                    line.push('\n');
                }),
                LogFormat::Json => tracing::info!(
                    target: "access",
                    id = entry.id.as_str(),
                    client = entry.client.map(tracing::field::display),
                    method = entry.method,
                    host = entry.host,
                    path = entry.path,
                    status = entry.status,
                    bytes_sent = entry.bytes_sent,
                    user_agent = entry.user_agent,
                    route = entry.route_label,
                    upstream = entry.upstream_name,
                    address = entry.address.map(tracing::field::display),
                    source = entry.source().token(),
                    diagnosis = entry.diagnosis().map_or("", |d| d.token()),
                    phase = entry.diagnosis().map_or("", |d| d.phase().token()),
                    cause = entry.cause.map_or("", |c| c.cause.token()),
                    detail = entry.detail(),
                    attempts = entry.attempts,
                    reused = entry.reused,
                    connect_ms = entry.timings.connect.map(millis),
                    upstream_ms = entry.timings.response.map(millis),
                    total_ms = millis(entry.timings.total),
                ),
            }
        }
        if failed {
            if let Some(suppressed) = self.limiter.admit() {
                tracing::error!(
                    target: "diagnosis",
                    id = entry.id.as_str(),
                    upstream = entry.upstream_name,
                    address = entry.address.map(tracing::field::display),
                    diagnosis = entry.diagnosis().map_or("", |d| d.token()),
                    phase = entry.diagnosis().map_or("", |d| d.phase().token()),
                    cause = entry.cause.map_or("", |c| c.cause.token()),
                    hint = entry.cause.map_or("", |c| c.hint.as_str()),
                    detail = entry.detail(),
                    suppressed,
                    "upstream failure"
                );
            }
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Appends the combined line of `e` to `out`:
/// `client - - [time] "METHOD path HTTP/1.1" status bytes "referer" "agent" key=value...`.
/// Written piece by piece: the formatter machinery costs several times what the line's few
/// numbers need.
fn push_combined_line(out: &mut String, e: &Outcome<'_>) {
    match e.client {
        Some(ip) => out.push_str(text::AddrText::ip(ip).as_str()),
        None => out.push('-'),
    }
    out.push_str(" - - [");
    text::rfc3339(out, e.time);
    out.push_str("] \"");
    out.push_str(e.method);
    out.push(' ');
    push_log_text(out, e.path, 1024, LogField::Quoted);
    out.push(' ');
    out.push_str(e.version);
    out.push_str("\" ");
    text::push_decimal(out, u64::from(e.status));
    out.push(' ');
    text::push_decimal(out, e.bytes_sent as u64);
    out.push_str(" \"");
    push_log_text(out, e.referer, 256, LogField::Quoted);
    out.push_str("\" \"");
    push_log_text(out, e.user_agent, 256, LogField::Quoted);
    out.push_str("\" id=");
    out.push_str(e.id.as_str());
    out.push_str(" host=");
    push_log_text(out, e.host, 256, LogField::Bare);
    out.push_str(" route=");
    out.push_str(or_dash(e.route_label));
    out.push_str(" upstream=");
    out.push_str(or_dash(e.upstream_name));
    out.push_str(" source=");
    out.push_str(e.source().token());
    if let Some(address) = e.address {
        out.push_str(" address=");
        out.push_str(text::AddrText::peer(address).as_str());
    }
    if let Some(diagnosis) = e.diagnosis() {
        out.push_str(" diagnosis=");
        out.push_str(diagnosis.token());
        out.push_str(" phase=");
        out.push_str(diagnosis.phase().token());
        if let Some(cause) = e.cause {
            out.push_str(" cause=");
            out.push_str(cause.cause.token());
        }
    }
    out.push_str(" attempts=");
    text::push_decimal(out, u64::from(e.attempts));
    out.push_str(if e.reused {
        " reused=true"
    } else {
        " reused=false"
    });
    if let Some(connect) = e.timings.connect {
        out.push_str(" connect_ms=");
        text::push_millis(out, connect);
    }
    if let Some(upstream) = e.timings.response {
        out.push_str(" upstream_ms=");
        text::push_millis(out, upstream);
    }
    out.push_str(" total_ms=");
    text::push_millis(out, e.timings.total);
    if !e.detail().is_empty() {
        out.push_str(" detail=");
        text::sf_string(out, &text::header_text(e.detail(), text::MAX_HEADER_TEXT));
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Admits at most `per_second` events per wall-clock second, lock-free, and counts the rest.
pub struct RateLimiter {
    per_second: u64,
    window: SecondWindow,
    suppressed: AtomicU64,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second: u64::from(per_second),
            window: SecondWindow::default(),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when the event may be logged, `n` being the events suppressed since the last one
    /// admitted; `None` when it must be dropped (and is counted).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(current_second())
    }

    fn admit_at(&self, second: u64) -> Option<u64> {
        if self.window.count_below(second, self.per_second) {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::{Diagnosis, Finding};
    use crate::id::RequestId;
    use crate::outcome::Timings;
    use std::time::UNIX_EPOCH;

    /// Within one second only `per_second` events pass; the next second reports the rest.
    #[test]
    fn rate_limiter_counts_what_it_drops() {
        let limiter = RateLimiter::new(3);
        let passed: Vec<_> = (0..10).map(|_| limiter.admit_at(100)).collect();
        assert_eq!(passed.iter().filter(|p| p.is_some()).count(), 3);
        assert_eq!(limiter.admit_at(101), Some(7));
        assert_eq!(limiter.admit_at(101), Some(0));
    }

    /// A zero rate admits nothing and keeps counting.
    #[test]
    fn zero_rate_admits_nothing() {
        let limiter = RateLimiter::new(0);
        for second in 0..5 {
            assert_eq!(limiter.admit_at(second), None);
        }
        assert_eq!(limiter.suppressed.load(Ordering::Relaxed), 5);
    }

    /// A client cannot end a field or forge one: `"` and `\\` in quoted fields, a space in a
    /// bare one, control and non-ASCII bytes anywhere are written `\\xHH`, as nginx does.
    #[test]
    fn client_text_cannot_forge_fields() {
        let mut line = String::new();
        push_log_text(&mut line, "x\" status=200 \"\\é", 256, LogField::Quoted);
        assert_eq!(line, "x\\x22 status=200 \\x22\\x5C\\xC3\\xA9");
        line.clear();
        push_log_text(&mut line, "a.test upstream=evil", 256, LogField::Bare);
        assert_eq!(line, "a.test\\x20upstream=evil");
        line.clear();
        push_log_text(&mut line, "abcdef", 4, LogField::Bare);
        assert_eq!(line, "abcd...");
    }

    /// The text line is combined-log first, then triage's fields, with untrusted text made safe.
    #[test]
    fn combined_line_shape() {
        let finding = Finding {
            diagnosis: Diagnosis::ConnectRefused,
            detail: "Connection refused (os error 111)".to_owned(),
        };
        let entry = Outcome {
            id: RequestId::parse("0123456789abcdef").expect("id"),
            time: UNIX_EPOCH,
            client: Some("127.0.0.1".parse().expect("ip")),
            method: "GET",
            path: "/x\n",
            version: "HTTP/1.1",
            host: "example",
            referer: "",
            user_agent: "curl/8",
            route: Some(0),
            route_label: "/",
            upstream: Some(0),
            upstream_name: "app",
            address: None,
            status: 502,
            finding: Some(&finding),
            cause: None,
            attempts: 1,
            reused: false,
            timings: Timings {
                connect: None,
                response: None,
                total: Duration::from_micros(1500),
            },
            bytes_sent: 10,
        };
        let mut line = String::new();
        push_combined_line(&mut line, &entry);
        assert_eq!(
            line,
            "127.0.0.1 - - [1970-01-01T00:00:00.000Z] \"GET /x\\x0A HTTP/1.1\" 502 10 \"\" \"curl/8\" \
             id=0123456789abcdef host=example route=/ upstream=app source=proxy \
             diagnosis=connect_refused phase=connect attempts=1 reused=false total_ms=1.500 \
             detail=\"Connection refused (os error 111)\""
        );
    }
}
