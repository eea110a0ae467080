//! Failure reports: the full story of a failed request, kept behind its id for `/diagnoses`.
//!
//! Reports live in a ring bounded both by count and by bytes; the oldest goes first, so memory
//! stays flat however long a failure storm lasts. Only failures are stored, so the lock is never
//! taken on the success path. What a report keeps is redacted on the way in: no query strings,
//! no credentials or cookies.

use crate::diagnosis::{Diagnosis, Fault};
use crate::id::RequestId;
use crate::render::text;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Request headers whose values never go into a report.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
];

/// What stands in for a redacted value.
pub const REDACTED: &str = "[redacted]";

/// One attempt to reach the upstream.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub address: Option<SocketAddr>,
    pub diagnosis: Option<Diagnosis>,
    pub detail: String,
    pub reused_connection: bool,
    pub connect: Option<Duration>,
    pub response: Option<Duration>,
}

/// The full story of one failed request.
#[derive(Debug, Clone)]
pub struct Report {
    pub id: RequestId,
    pub time: SystemTime,
    pub method: String,
    pub host: String,
    /// The path, with any query string replaced by `?[redacted]`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub route: String,
    pub upstream: String,
    pub diagnosis: Diagnosis,
    pub detail: String,
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

/// `/path?secret=1` → `/path?[redacted]`.
pub fn redact_path(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        Some((path, _)) => format!("{path}?{REDACTED}"),
        None => path_and_query.to_owned(),
    }
}

/// A request header as a report keeps it: sensitive values replaced, the rest made printable and
/// bounded.
pub fn redact_header(name: &str, value: &[u8]) -> (String, String) {
    let lower = name.to_ascii_lowercase();
    let value = if SENSITIVE_HEADERS.contains(&lower.as_str()) {
        REDACTED.to_owned()
    } else {
        text::header_text(&String::from_utf8_lossy(value), text::MAX_HEADER_TEXT)
    };
    (lower, value)
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

    fn insert(&mut self, report: Arc<Report>, weight: usize) {
        if self.max_count == 0 || weight > self.max_bytes {
            return;
        }
        while self.reports.len() >= self.max_count || self.bytes + weight > self.max_bytes {
            match self.reports.pop_front() {
                Some(old) => self.bytes -= old.weight(),
                None => break,
            }
        }
        self.bytes += weight;
        self.reports.push_back(report);
    }
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
        }
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
    /// Returns the count stored in both.
    pub fn insert(&self, report: Report) -> usize {
        let weight = report.weight();
        let ring = self.ring_for(report.diagnosis.fault());
        ring.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::new(report), weight);
        self.len()
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

    /// Query strings and credentials never reach a report.
    #[test]
    fn redaction() {
        assert_eq!(redact_path("/login?password=hunter2"), "/login?[redacted]");
        assert_eq!(redact_path("/plain"), "/plain");
        assert_eq!(
            redact_header("Authorization", b"Bearer abc"),
            ("authorization".into(), REDACTED.into())
        );
        assert_eq!(
            redact_header("Cookie", b"session=1"),
            ("cookie".into(), REDACTED.into())
        );
        assert_eq!(
            redact_header("User-Agent", b"curl/8\r\n"),
            ("user-agent".into(), "curl/8??".into())
        );
    }
}
