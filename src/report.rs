//! Failure reports: the full story of a failed request, kept behind its id for `/diagnoses`.
//!
//! Reports live in a ring bounded both by count and by bytes; the oldest goes first, so memory
//! stays flat however long a failure storm lasts. Only failures are stored, so the lock is never
//! taken on the success path. What a report keeps is redacted on the way in ([`Redaction`]):
//! header values only from an allow-list of harmless headers, no query strings, no path
//! parameters, nothing but the path of a Referer.

use crate::app_evidence::process::ProcessSample;
use crate::cause::CauseFinding;
use crate::config::PeerAddr;
use crate::deploys::Deploy;
use crate::diagnosis::{Diagnosis, Fault};
use crate::id::RequestId;
use crate::machine::Sample;
use crate::render::text;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Request headers whose values reports keep, by default: what a request asks for (media types,
/// languages, ranges, conditions, caching), how it travelled (proxies, forwarding, tracing ids)
/// and what sent it (user agent, fetch metadata, client hints). None carries a credential or a
/// session. Every other header keeps its name and has its value replaced by `[redacted]`;
/// `[reports] keep_headers` adds names. Sorted, for the binary search (a test checks).
pub const KEPT_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "b3",
    "cache-control",
    // A CDN's ids and its view of the client, so support can match a CDN's ray id to
    // triage's (Cloudflare, CloudFront, Fastly).
    "cf-connecting-ip",
    "cf-ray",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "dnt",
    "expect",
    "fastly-client-ip",
    "forwarded",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "origin",
    "pragma",
    "priority",
    "range",
    // Kept with its query, fragment, user info and path parameters redacted (`redact_url`).
    "referer",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "te",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "upgrade",
    "upgrade-insecure-requests",
    "user-agent",
    "via",
    "x-amz-cf-id",
    "x-amzn-trace-id",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-spanid",
    "x-b3-traceid",
    "x-correlation-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "x-requested-with",
];

/// Prefixes of further kept headers: the browser's fetch metadata (`sec-fetch-site`, ...)
/// and user-agent client hints (`sec-ch-ua`, `sec-ch-ua-platform`, ...).
pub const KEPT_HEADER_PREFIXES: &[&str] = &["sec-ch-ua", "sec-fetch-"];

/// Headers that carry credentials: never kept, and refused in `[reports] keep_headers`.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
];

/// What stands in for a redacted value.
pub const REDACTED: &str = "[redacted]";

/// One attempt to reach the upstream.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub address: Option<PeerAddr>,
    pub diagnosis: Option<Diagnosis>,
    pub detail: String,
    pub reused_connection: bool,
    pub connect: Option<Duration>,
    pub response: Option<Duration>,
    /// The certificate the server presented, when this attempt made a TLS handshake.
    pub certificate: Option<Arc<Certificate>>,
    /// For a hostname server, the DNS answer the address came from.
    pub dns: Option<Arc<crate::resolve::Addresses>>,
}

/// What a report shows of an upstream's TLS certificate: which one it was, and its validity.
/// The text is the peer's, so it is bounded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Certificate {
    /// The longest subject, issuer or name kept.
    const MAX_TEXT: usize = 256;

    /// From the TLS digest's leaf certificate (pingora-core patch 5).
    pub fn of(peer: &pingora::protocols::tls::PeerCertificate) -> Certificate {
        let bounded = |text: &str| crate::render::text::header_text(text, Self::MAX_TEXT);
        let time = |unix: i64| match u64::try_from(unix) {
            Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            Err(_) => SystemTime::UNIX_EPOCH,
        };
        Certificate {
            subject: bounded(&peer.subject),
            issuer: bounded(&peer.issuer),
            names: peer.names.iter().map(|n| bounded(n)).collect(),
            not_before: time(peer.not_before),
            not_after: time(peer.not_after),
        }
    }
}

/// The full story of one failed request.
#[derive(Debug, Clone)]
pub struct Report {
    pub id: RequestId,
    pub time: SystemTime,
    pub method: String,
    pub host: String,
    /// The path, with any query string replaced by `?[redacted]` and path parameters redacted
    /// ([`redact_path`]).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub route: String,
    pub upstream: String,
    pub diagnosis: Diagnosis,
    pub detail: String,
    /// The likely cause, its hint and its evidence.
    pub cause: Arc<CauseFinding>,
    /// The deploy marker of this upstream within `deploy_window` before the failure, if any.
    pub deploy: Option<Deploy>,
    /// The machine at the failure (its latest sample), if one was taken yet.
    pub machine: Option<Arc<Sample>>,
    /// The lines of the app's log around the failure (`[upstreams.NAME.evidence] log_file`),
    /// redacted ([`redact_log_line`]) and bounded; first those read by the answer, then, once
    /// the after-window closed, the whole window. `None` when the upstream has no log file.
    pub app_log: Option<Vec<String>>,
    /// The app's process (`pidfile`, `systemd_unit`, `cgroup`), if sampled: its latest sample
    /// at the failure, then, once the after-window closed, the one after it (whether the app
    /// survived the failure, and restarted).
    pub app_process: Option<ProcessSample>,
    pub status: u16,
    pub attempts: Vec<Attempt>,
    pub bytes_sent_upstream: u64,
    pub bytes_received_upstream: u64,
    pub total: Duration,
}

impl Report {
    /// A rough size, for the byte bound: the strings plus a fixed overhead per field.
    fn weight(&self) -> usize {
        let strings = self.method.len()
            + self.host.len()
            + self.path.len()
            + self.route.len()
            + self.upstream.len()
            + self.detail.len()
            + self.cause.weight()
            + self
                .app_log
                .iter()
                .flatten()
                .map(|line| line.len() + 24)
                .sum::<usize>()
            + self.deploy.as_ref().map_or(0, |d| d.version.len() + 64)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self
                .attempts
                .iter()
                .map(|a| a.detail.len() + 96)
                .sum::<usize>();
        strings + std::mem::size_of::<Report>()
    }
}

/// `/a;jsessionid=1/b?secret=1` → `/a;jsessionid=[redacted]/b?[redacted]`: the query and
/// the path parameters (see [`redact_path_params`]) redacted.
pub fn redact_path(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        Some((path, _)) => format!("{}?{REDACTED}", redact_path_params(path)),
        None => redact_path_params(path_and_query).into_owned(),
    }
}

/// `/cart;jsessionid=abc/x;v=1` → `/cart;jsessionid=[redacted]/x;v=[redacted]`: the values of
/// a path's `;` parameters (where servlet containers carry the session when cookies are off)
/// redacted, names kept; a parameter without `=` is redacted whole. Borrowed when the path
/// has none, which is the common case: no allocation for the access log.
pub fn redact_path_params(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        let mut parts = segment.split(';');
        out.push_str(parts.next().unwrap_or(""));
        for param in parts {
            out.push(';');
            match param.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                None if param.is_empty() => {}
                None => out.push_str(REDACTED),
            }
        }
    }
    Cow::Owned(out)
}

/// A URL as a report or log keeps it (the Referer): user info, path parameters, query and
/// fragment redacted, so `http://u:p@a/cb;s=1?code=x#t` becomes
/// `http://[redacted]@a/cb;s=[redacted]?[redacted]#[redacted]`. Borrowed when there is
/// nothing to redact.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    if !url.contains(['?', '#', ';', '@']) {
        return Cow::Borrowed(url);
    }
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, _)) => (rest, true),
        None => (url, false),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, true),
        None => (rest, false),
    };
    // `scheme://authority` and the path after it; a relative reference is all path.
    let (scheme, authority, path) = match rest.split_once("://") {
        Some((scheme, after)) => {
            let end = after.find('/').unwrap_or(after.len());
            (Some(scheme), &after[..end], &after[end..])
        }
        None => (None, "", rest),
    };
    let mut out = String::with_capacity(url.len() + 32);
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
        match authority.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str(REDACTED);
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
    }
    out.push_str(&redact_path_params(path));
    if query {
        out.push('?');
        out.push_str(REDACTED);
    }
    if fragment {
        out.push('#');
        out.push_str(REDACTED);
    }
    Cow::Owned(out)
}

/// Words that mark a secret in a log line's `name=value`, `name: value` or `"name": value`
/// (matched in the lowercased name): its value is redacted, as a report redacts the value of
/// every header not known to be harmless. Broad on purpose: a name that only looks like one
/// (`monkey=`) loses its value, which costs less than a secret kept.
const SECRET_NAMES: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "cookie",
    "session",
    "credential",
    "signature",
];

/// Schemes whose next word is a credential (`Authorization: Bearer abc`).
const CREDENTIAL_SCHEMES: &[&str] = &["bearer", "basic", "digest", "token"];

fn names_a_secret(name: &str) -> bool {
    let name = name
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '{' || c == ',')
        .to_ascii_lowercase();
    !name.is_empty() && SECRET_NAMES.iter().any(|word| name.contains(word))
}

/// A line of the app's log as a report keeps it: URLs with [`redact_url`] (no query, fragment,
/// user info or path parameters), request targets with [`redact_path`], and the value after a name that marks a secret
/// (`password=...`, `"api_key": "..."`, `Authorization: Bearer ...`) replaced by `[redacted]`.
pub fn redact_log_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    // Whether the previous word asks for this one to be redacted.
    let mut secret_next = false;
    for (index, word) in line.split(' ').enumerate() {
        if index > 0 {
            out.push(' ');
        }
        if word.is_empty() {
            continue;
        }
        let redact_this = std::mem::take(&mut secret_next);
        let lower = word.to_ascii_lowercase();
        if redact_this {
            out.push_str(REDACTED);
            secret_next = CREDENTIAL_SCHEMES.contains(&lower.as_str());
            continue;
        }
        if CREDENTIAL_SCHEMES.contains(&lower.as_str()) && index > 0 {
            out.push_str(word);
            secret_next = true;
            continue;
        }
        if word.contains("://") {
            out.push_str(&redact_url(word));
            continue;
        }
        // A request target in an access line (`GET /login?password=x`): as reports keep paths.
        if word.starts_with('/') && word.contains(['?', ';']) {
            out.push_str(&redact_path(word));
            continue;
        }
        // `name=value` or `name:value` in one word; `name:` or `name=` alone asks for the next.
        match word.find(['=', ':']) {
            Some(at) if names_a_secret(&word[..at]) => {
                out.push_str(&word[..=at]);
                if at + 1 < word.len() {
                    out.push_str(REDACTED);
                } else {
                    secret_next = true;
                }
            }
            Some(_) | None => out.push_str(word),
        }
    }
    out
}

/// Which request header values a report keeps: [`KEPT_HEADERS`], the
/// [`KEPT_HEADER_PREFIXES`], and `[reports] keep_headers`. Built once at start.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// `[reports] keep_headers`, lowercase.
    extra: Vec<Box<str>>,
}

impl Redaction {
    /// `keep_headers`: lowercase names kept on top of the built-in list (the config refuses
    /// credentials; they are refused here again, so no caller can keep them).
    pub fn new(keep_headers: &[String]) -> Redaction {
        Redaction {
            extra: keep_headers
                .iter()
                .filter(|name| !CREDENTIAL_HEADERS.contains(&name.as_str()))
                .map(|name| name.as_str().into())
                .collect(),
        }
    }

    /// Whether a report keeps the value of the header `lowercase_name`.
    pub fn keeps(&self, lowercase_name: &str) -> bool {
        KEPT_HEADERS.binary_search(&lowercase_name).is_ok()
            || KEPT_HEADER_PREFIXES
                .iter()
                .any(|prefix| lowercase_name.starts_with(prefix))
            || self.extra.iter().any(|name| **name == *lowercase_name)
    }

    /// A request header as a report keeps it: the name lowercased; the value made printable
    /// and bounded when the header is kept (a Referer with [`redact_url`]), else `[redacted]`.
    pub fn header(&self, name: &str, value: &[u8]) -> (String, String) {
        let lower = name.to_ascii_lowercase();
        let value = if !self.keeps(&lower) {
            REDACTED.to_owned()
        } else {
            let value = String::from_utf8_lossy(value);
            let value = match lower.as_str() {
                "referer" => redact_url(&value),
                _ => value,
            };
            text::header_text(&value, text::MAX_HEADER_TEXT)
        };
        (lower, value)
    }
}

/// One bounded ring of reports: the oldest goes first when either bound would be passed.
struct Ring {
    reports: VecDeque<Arc<Report>>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Ring {
    fn new(max_count: usize, max_bytes: usize) -> Ring {
        Ring {
            reports: VecDeque::with_capacity(max_count.min(4096)),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// Stores `report`, evicting the oldest until both bounds hold; returns how many it evicted.
    fn insert(&mut self, report: Arc<Report>, weight: usize) -> usize {
        if self.max_count == 0 || weight > self.max_bytes {
            return 0;
        }
        let mut evicted = 0;
        while self.reports.len() >= self.max_count || self.bytes + weight > self.max_bytes {
            match self.reports.pop_front() {
                Some(old) => {
                    self.bytes -= old.weight();
                    evicted += 1;
                }
                None => break,
            }
        }
        self.bytes += weight;
        self.reports.push_back(report);
        evicted
    }
}

/// What storing a report did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Reports stored in both rings now.
    pub stored: usize,
    /// Reports evicted to make room for this one.
    pub evicted: usize,
}

/// The share of `[reports]` bounds given to the ring of client-caused failures.
const CLIENT_RING_SHARE: usize = 16;

/// The bounded store of recent failure reports, in two rings: the failures of the upstream and
/// triage (bounded by `[reports] max_count` and `max_bytes`), and a ring a sixteenth that size
/// for the client's own failures ([`Fault::Client`]: bad requests, unrouted paths, bodies over
/// the limit, clients gone), so a client sending those by the thousand cannot push the
/// upstream's failures out.
pub struct ReportStore {
    upstream: Mutex<Ring>,
    client: Mutex<Ring>,
    /// `[reports] export`, when configured: each stored report is also queued for writing.
    export: Option<crate::export::Exporter>,
}

impl ReportStore {
    pub fn new(max_count: usize, max_bytes: usize) -> ReportStore {
        let share = |bound: usize| match bound {
            0 => 0,
            bound => (bound / CLIENT_RING_SHARE).max(1),
        };
        ReportStore {
            upstream: Mutex::new(Ring::new(max_count, max_bytes)),
            client: Mutex::new(Ring::new(share(max_count), share(max_bytes))),
            export: None,
        }
    }

    /// The same, each report also exported (see [`crate::export`]).
    pub fn with_export(mut self, export: crate::export::Exporter) -> ReportStore {
        self.export = Some(export);
        self
    }

    /// The ring for reports of this fault.
    fn ring_for(&self, fault: Fault) -> &Mutex<Ring> {
        match fault {
            Fault::Client => &self.client,
            Fault::Server | Fault::App | Fault::Proxy => &self.upstream,
        }
    }

    /// Both rings, locked. A poisoned lock only means another thread panicked mid-insert; the
    /// ring is still consistent enough to keep serving reports.
    fn rings(&self) -> [MutexGuard<'_, Ring>; 2] {
        [&self.upstream, &self.client].map(|ring| ring.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stores a report in its ring, evicting that ring's oldest until both its bounds hold.
    pub fn insert(&self, report: Report) -> Inserted {
        let weight = report.weight();
        let ring = self.ring_for(report.diagnosis.fault());
        let report = Arc::new(report);
        if let Some(export) = &self.export {
            export.send(Arc::clone(&report));
        }
        let evicted = ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(report, weight);
        Inserted {
            stored: self.len(),
            evicted,
        }
    }

    pub fn len(&self) -> usize {
        self.rings().iter().map(|ring| ring.reports.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the stored reports account for.
    pub fn bytes(&self) -> usize {
        self.rings().iter().map(|ring| ring.bytes).sum()
    }

    /// Replaces the report `id`, if still stored, by `change` of it (the app's evidence once
    /// its after-window closed). `change` runs without the lock; the ring is locked only to
    /// swap the report in, and not at all if it was evicted meanwhile. The ring's byte bound
    /// holds after the swap (the oldest reports go first, never the amended one).
    pub fn amend(&self, id: RequestId, change: impl FnOnce(&Report) -> Report) {
        let Some(stored) = self.get(id) else {
            return;
        };
        let amended = Arc::new(change(&stored));
        let weight = amended.weight();
        let mut ring = self
            .ring_for(stored.diagnosis.fault())
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(slot) = ring.reports.iter().position(|r| Arc::ptr_eq(r, &stored)) else {
            return;
        };
        let old = std::mem::replace(&mut ring.reports[slot], amended);
        ring.bytes = ring.bytes - old.weight() + weight;
        while ring.bytes > ring.max_bytes && ring.reports.len() > 1 {
            match ring.reports.front() {
                Some(front) if front.id == id => break,
                Some(_) => {
                    if let Some(evicted) = ring.reports.pop_front() {
                        ring.bytes -= evicted.weight();
                    }
                }
                None => break,
            }
        }
    }

    /// The report with this id, if still stored.
    pub fn get(&self, id: RequestId) -> Option<Arc<Report>> {
        self.rings()
            .iter()
            .find_map(|ring| ring.reports.iter().rev().find(|r| r.id == id).cloned())
    }

    /// Up to `limit` reports, newest first, that pass `keep`.
    pub fn recent(&self, limit: usize, keep: impl Fn(&Report) -> bool) -> Vec<Arc<Report>> {
        let mut recent: Vec<Arc<Report>> = self
            .rings()
            .iter()
            .flat_map(|ring| {
                ring.reports
                    .iter()
                    .rev()
                    .filter(|r| keep(r))
                    .take(limit)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        // Each ring's part is newest first; a stable sort keeps that order among equal times.
        recent.sort_by_key(|report| std::cmp::Reverse(report.time));
        recent.truncate(limit);
        recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(detail_len: usize) -> Report {
        Report {
            id: RequestId::next(),
            time: SystemTime::now(),
            method: "GET".into(),
            host: "example".into(),
            path: "/".into(),
            headers: vec![],
            route: "/".into(),
            upstream: "app".into(),
            diagnosis: Diagnosis::ConnectRefused,
            detail: "x".repeat(detail_len),
            cause: Arc::new(crate::cause::without_evidence(Diagnosis::ConnectRefused)),
            deploy: None,
            machine: None,
            app_log: None,
            app_process: None,
            status: 502,
            attempts: vec![],
            bytes_sent_upstream: 0,
            bytes_received_upstream: 0,
            total: Duration::ZERO,
        }
    }

    /// The count bound evicts the oldest report first.
    #[test]
    fn count_bound_evicts_oldest() {
        let store = ReportStore::new(3, usize::MAX);
        let ids: Vec<_> = (0..5)
            .map(|_| {
                let r = report(10);
                let id = r.id;
                store.insert(r);
                id
            })
            .collect();
        assert_eq!(store.len(), 3);
        assert!(store.get(ids[0]).is_none());
        assert!(store.get(ids[1]).is_none());
        assert!(store.get(ids[4]).is_some());
        let newest_first: Vec<_> = store.recent(10, |_| true).iter().map(|r| r.id).collect();
        assert_eq!(newest_first, vec![ids[4], ids[3], ids[2]]);
        // Storing one more into the full ring evicts exactly one, the oldest.
        assert_eq!(
            store.insert(report(10)),
            Inserted {
                stored: 3,
                evicted: 1
            }
        );
    }

    /// Client-caused failures by the thousand evict only each other: the upstream's reports
    /// stay, and the client's ring holds a sixteenth of the bounds.
    #[test]
    fn client_noise_cannot_push_out_upstream_failures() {
        let store = ReportStore::new(32, usize::MAX);
        let upstream = report(10);
        let (upstream_id, first) = (upstream.id, upstream.time);
        store.insert(upstream);
        let mut last_client = None;
        for later in 1..=1000 {
            let mut noise = report(10);
            noise.diagnosis = Diagnosis::NoRoute;
            noise.time = first + Duration::from_millis(later);
            last_client = Some(noise.id);
            store.insert(noise);
        }
        assert!(store.get(upstream_id).is_some());
        assert!(store.get(last_client.expect("an id")).is_some());
        assert_eq!(store.len(), 1 + 2);
        let newest_first: Vec<_> = store.recent(10, |_| true).iter().map(|r| r.id).collect();
        assert_eq!(newest_first.len(), 3);
        assert_eq!(newest_first[0], last_client.expect("an id"));
        assert_eq!(newest_first[2], upstream_id);
    }

    /// The byte bound holds however many reports arrive.
    #[test]
    fn byte_bound_holds() {
        let one = report(1000).weight();
        let store = ReportStore::new(1_000_000, one * 10);
        for _ in 0..10_000 {
            store.insert(report(1000));
            assert!(store.bytes() <= one * 10);
        }
        assert_eq!(store.len(), 10);
    }

    /// An amended report replaces the stored one, its weight accounted for; an evicted one is
    /// not brought back.
    #[test]
    fn amend_replaces_in_place() {
        let store = ReportStore::new(10, usize::MAX);
        let r = report(10);
        let id = r.id;
        store.insert(r);
        let before = store.bytes();
        store.amend(id, |stored| {
            let mut amended = stored.clone();
            amended.app_log = Some(vec!["x".repeat(100)]);
            amended
        });
        let amended = store.get(id).expect("still stored");
        assert_eq!(amended.app_log.as_ref().map(Vec::len), Some(1));
        assert_eq!(store.bytes(), before + 100 + 24);
        assert_eq!(store.len(), 1);
        let small = ReportStore::new(1, usize::MAX);
        let gone = report(10);
        let gone_id = gone.id;
        small.insert(gone);
        small.insert(report(10));
        small.amend(gone_id, |stored| stored.clone());
        assert!(small.get(gone_id).is_none());
    }

    /// Secrets in a log line are redacted like header values: after a name that marks one, in
    /// URLs' queries and user info, after an auth scheme; the rest of the line stays.
    #[test]
    fn log_lines_lose_their_secrets() {
        for (line, expected) in [
            (
                "login failed for bob password=hunter2 from 10.0.0.1",
                "login failed for bob password=[redacted] from 10.0.0.1",
            ),
            (
                "{\"user\": \"bob\", \"api_key\": \"k-123\"}",
                "{\"user\": \"bob\", \"api_key\": [redacted]",
            ),
            (
                "Authorization: Bearer abc.def",
                "Authorization: [redacted] [redacted]",
            ),
            (
                "GET https://u:pw@api.example/cb?code=secret done",
                "GET https://[redacted]@api.example/cb?[redacted] done",
            ),
            ("sent header Bearer xyz", "sent header Bearer [redacted]"),
            (
                "10.0.0.1 GET /login?password=x;y HTTP/1.1",
                "10.0.0.1 GET /login?[redacted] HTTP/1.1",
            ),
            (
                "Worker (pid:312) was sent SIGKILL! Perhaps out of memory?",
                "Worker (pid:312) was sent SIGKILL! Perhaps out of memory?",
            ),
            (
                "SESSION_ID=abc; theme=dark",
                "SESSION_ID=[redacted] theme=dark",
            ),
        ] {
            assert_eq!(redact_log_line(line), expected, "{line}");
        }
    }

    /// Query strings and path parameters never reach a report.
    #[test]
    fn paths_lose_their_query_and_parameters() {
        assert_eq!(redact_path("/login?password=hunter2"), "/login?[redacted]");
        assert_eq!(redact_path("/plain"), "/plain");
        assert_eq!(
            redact_path("/x;jsessionid=abc/y;v=1;flag?q=1"),
            "/x;jsessionid=[redacted]/y;v=[redacted];[redacted]?[redacted]"
        );
        assert_eq!(redact_path("/a;/b"), "/a;/b");
        assert!(matches!(redact_path_params("/no/params"), Cow::Borrowed(_)));
    }

    /// A Referer keeps its scheme, host and path; user info, path parameters, query and
    /// fragment are redacted.
    #[test]
    fn urls_keep_only_where_they_point() {
        assert_eq!(
            redact_url("http://a/cb?code=secret"),
            "http://a/cb?[redacted]"
        );
        assert_eq!(
            redact_url("https://u:pw@shop.example:8443/cart;jsessionid=abc?x=1#tok"),
            "https://[redacted]@shop.example:8443/cart;jsessionid=[redacted]?[redacted]#[redacted]"
        );
        assert_eq!(redact_url("https://a.example"), "https://a.example");
        assert!(matches!(redact_url("https://a/b/c"), Cow::Borrowed(_)));
        assert_eq!(redact_url("/relative;s=1"), "/relative;s=[redacted]");
    }

    /// Only allow-listed headers keep their values: credentials, API keys, cloud tokens and
    /// session ids under any name are redacted; harmless headers stay readable.
    #[test]
    fn header_values_are_kept_by_allow_list() {
        let redaction = Redaction::default();
        for (name, value) in [
            ("Authorization", "Bearer abc"),
            ("Cookie", "session=1"),
            ("api-key", "k-123"),
            ("x-access-token", "t-123"),
            ("X-Amz-Security-Token", "FwoGZX"),
            ("x-goog-api-key", "AIza"),
            ("x-session-id", "s-123"),
            ("x-anything-new", "v"),
        ] {
            assert_eq!(
                redaction.header(name, value.as_bytes()),
                (name.to_ascii_lowercase(), REDACTED.into()),
                "{name}"
            );
        }
        for (name, value) in [
            ("Accept", "text/html"),
            ("x-request-id", "r-1"),
            ("traceparent", "00-abc-def-01"),
            ("sec-fetch-site", "cross-site"),
            ("sec-ch-ua-platform", "\"Linux\""),
        ] {
            assert_eq!(
                redaction.header(name, value.as_bytes()),
                (name.to_ascii_lowercase(), value.to_owned()),
                "{name}"
            );
        }
        assert_eq!(
            redaction.header("User-Agent", b"curl/8\r\n"),
            ("user-agent".into(), "curl/8??".into())
        );
        assert_eq!(
            redaction.header("Referer", b"http://a/cb?code=secret"),
            ("referer".into(), "http://a/cb?[redacted]".into())
        );
    }

    /// `[reports] keep_headers` adds names to the list, but never a credential.
    #[test]
    fn keep_headers_adds_names_but_no_credentials() {
        let redaction = Redaction::new(&["x-tenant".to_owned(), "authorization".to_owned()]);
        assert_eq!(
            redaction.header("X-Tenant", b"blue"),
            ("x-tenant".into(), "blue".into())
        );
        assert_eq!(
            redaction.header("Authorization", b"Bearer abc"),
            ("authorization".into(), REDACTED.into())
        );
        assert!(redaction.keeps("accept"), "the built-in list stays");
    }

    /// The comma-separated names (maybe in backticks) between `start` and the next `.` in
    /// `doc`, read as one line of text (comment marks and line breaks dropped).
    fn documented_list(doc: &str, start: &str) -> Vec<String> {
        let flat = doc
            .lines()
            .map(|line| line.trim().trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ");
        let from = flat.find(start).expect("the list's start") + start.len();
        let list = &flat[from..];
        let end = list.find('.').expect("the list's end");
        list[..end]
            .split(',')
            .map(|name| name.trim().trim_matches('`').to_owned())
            .collect()
    }

    /// README and conf/triage.toml list exactly the headers whose values reports keep.
    #[test]
    fn the_docs_list_the_kept_headers() {
        let mut kept: Vec<String> = KEPT_HEADERS.iter().map(|n| n.to_string()).collect();
        kept.extend(KEPT_HEADER_PREFIXES.iter().map(|p| format!("{p}*")));
        kept.sort();
        for (doc, start) in [
            (
                include_str!("../README.md"),
                "The headers whose values a report keeps:",
            ),
            (
                include_str!("../conf/triage.toml"),
                "which carry no credential or session:",
            ),
        ] {
            let mut listed = documented_list(doc, start);
            listed.sort();
            assert_eq!(listed, kept, "{start}");
        }
    }

    /// The allow-list is sorted (it is binary-searched) and lowercase (names are compared
    /// lowercased), and holds no credential header.
    #[test]
    fn kept_headers_are_sorted_lowercase_and_credential_free() {
        assert!(KEPT_HEADERS.windows(2).all(|pair| pair[0] < pair[1]));
        for name in KEPT_HEADERS.iter().chain(KEPT_HEADER_PREFIXES) {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(!CREDENTIAL_HEADERS.contains(name), "{name}");
        }
    }
}
