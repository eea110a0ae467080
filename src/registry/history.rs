//! What live traffic taught about one server, kept for as long as the process runs: when it was
//! first seen, its last answer, the failures since then, how often it came back after being
//! unreachable, what is in flight at it, how fast it answered lately, and the last change of its
//! hostname's addresses. The cause of a failure is derived from this (a server that answered a
//! second ago, one that keeps coming back, one whose address just changed).
//!
//! Recording is on the request path: atomics and fixed-size rings only, no lock, no allocation
//! (but when a hostname's addresses change), no formatting. Concurrent records are not ordered
//! against each other: a success racing a failure may lose one of the two from the streak, never
//! more. A [`HistorySnapshot`] copies it out for whoever explains a failure.

use crate::diagnosis::{Diagnosis, Phase};
use arc_swap::ArcSwapOption;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many distinct diagnoses of the current failure streak are kept.
pub const STREAK_DIAGNOSES: usize = 4;
/// How many of the latest response times are kept.
pub const RESPONSE_TIMES: usize = 32;
/// How many of the latest comebacks are kept: [`HistorySnapshot::comebacks`] never exceeds it.
pub const COMEBACKS_KEPT: usize = 16;
/// The window [`HistorySnapshot::comebacks`] counts in.
pub const COMEBACK_WINDOW: Duration = Duration::from_secs(60);
/// How many requests that broke with no answer keep their age, and for how long: a worker
/// timeout shows as several of them at the same age.
pub const BROKEN_KEPT: usize = 8;
pub const BROKEN_WINDOW: Duration = Duration::from_secs(600);

// Every diagnosis fits the byte the streak keeps it in (`index() + 1`, 0 for none).
const _: () = assert!(Diagnosis::COUNT < 255);

/// The history of one server (one upstream's server at one configured address).
#[derive(Debug)]
pub struct ServerHistory {
    first_seen: SystemTime,
    /// The last success, packed: milliseconds since the Unix epoch in the high 48 bits, the
    /// status in the low 16; 0 before the first.
    last_success: AtomicU64,
    /// Failures since the last success. 64 bits: a long outage under load never wraps it.
    streak: AtomicU64,
    /// When the streak's first failure happened (ms since the Unix epoch); 0 without a streak.
    failing_since_ms: AtomicU64,
    /// The streak's distinct diagnoses, one byte each (`index() + 1`, 0 for a free byte).
    streak_diagnoses: AtomicU32,
    /// Whether the streak had a connect-phase failure: the server could not be reached, so the
    /// next success is a comeback.
    streak_unreachable: AtomicBool,
    /// When the latest comebacks happened (ms since the Unix epoch), a ring written at
    /// `comeback_count % COMEBACKS_KEPT`.
    comebacks: [AtomicU64; COMEBACKS_KEPT],
    comeback_count: AtomicU64,
    /// Shared with every [`InFlightToken`], which holds it until it drops.
    in_flight: Arc<AtomicU32>,
    /// The latest response times in microseconds, a ring written at `response_count %
    /// RESPONSE_TIMES`.
    response_times_us: [AtomicU32; RESPONSE_TIMES],
    response_count: AtomicU64,
    /// The address set the server's hostname resolved to when last recorded.
    addresses: ArcSwapOption<Vec<IpAddr>>,
    address_change: ArcSwapOption<AddressChange>,
    /// `(when in seconds since the epoch) << 24 | age in ms` (ages above 4.6 h saturate) of the
    /// last requests that broke with no answer.
    broken: [AtomicU64; BROKEN_KEPT],
    broken_count: AtomicU64,
}

/// A change of the address set a server's hostname resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    /// When triage first used the new set (a request or a health check to the server).
    pub at: SystemTime,
    pub old: Vec<IpAddr>,
    pub new: Vec<IpAddr>,
}

/// A copy of a [`ServerHistory`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySnapshot {
    /// When a config first named the server (the process's first config, or the reload that
    /// added it).
    pub first_seen: SystemTime,
    /// The last final answer: when, and its status.
    pub last_success: Option<(SystemTime, u16)>,
    /// When the current failure streak (failures with no success since) began.
    pub failing_since: Option<SystemTime>,
    /// Failures in the current streak (saturating).
    pub streak: u32,
    /// The distinct diagnoses of the streak, at most [`STREAK_DIAGNOSES`], in the order first
    /// seen.
    pub streak_diagnoses: Vec<Diagnosis>,
    /// Down→up transitions within [`Self::comeback_window`]: successes that ended a streak with
    /// a connect-phase failure in it (at most [`COMEBACKS_KEPT`]).
    pub comebacks: u32,
    pub comeback_window: Duration,
    /// Attempts at the server not finished yet.
    pub in_flight: u32,
    /// The latest successful response times (at most [`RESPONSE_TIMES`]), oldest first.
    pub recent_response_times: Vec<Duration>,
    /// The last change of the hostname's address set, for a server named by hostname.
    pub address_change: Option<AddressChange>,
    /// How long each request that broke with no answer within [`BROKEN_WINDOW`] had been at
    /// the server (at most [`BROKEN_KEPT`]), oldest first.
    pub broken_ages: Vec<Duration>,
}

/// Counts an attempt as in flight at its server until dropped.
#[derive(Debug)]
pub struct InFlightToken(Arc<AtomicU32>);

impl Drop for InFlightToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Whether two address sets hold the same addresses. The same order (the resolver's cached
/// answer, read by every request until the next refresh) is compared without allocating.
fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    if a == b {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

impl Default for ServerHistory {
    fn default() -> Self {
        ServerHistory::new(SystemTime::now())
    }
}

impl ServerHistory {
    /// A history with nothing in it yet, of a server first seen at `first_seen`.
    pub fn new(first_seen: SystemTime) -> ServerHistory {
        ServerHistory {
            first_seen,
            last_success: AtomicU64::new(0),
            streak: AtomicU64::new(0),
            failing_since_ms: AtomicU64::new(0),
            streak_diagnoses: AtomicU32::new(0),
            streak_unreachable: AtomicBool::new(false),
            comebacks: std::array::from_fn(|_| AtomicU64::new(0)),
            comeback_count: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU32::new(0)),
            response_times_us: std::array::from_fn(|_| AtomicU32::new(0)),
            response_count: AtomicU64::new(0),
            addresses: ArcSwapOption::empty(),
            address_change: ArcSwapOption::empty(),
            broken: std::array::from_fn(|_| AtomicU64::new(0)),
            broken_count: AtomicU64::new(0),
        }
    }

    /// An answer with a final status arrived `at` (`response_time`: from the request sent to
    /// the response header). Ends the failure streak; a streak in which the server could not
    /// be reached ends in a comeback.
    pub fn record_success(&self, status: u16, response_time: Option<Duration>, at: SystemTime) {
        let now = millis_since_epoch(at);
        self.last_success
            .store((now << 16) | u64::from(status), Ordering::Relaxed);
        if let Some(time) = response_time {
            let micros = u32::try_from(time.as_micros()).unwrap_or(u32::MAX);
            let slot = self.response_count.fetch_add(1, Ordering::Relaxed) as usize;
            self.response_times_us[slot % RESPONSE_TIMES].store(micros, Ordering::Relaxed);
        }
        // The common case, no streak, costs one load.
        if self.streak.load(Ordering::Relaxed) == 0 || self.streak.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        self.failing_since_ms.store(0, Ordering::Relaxed);
        self.streak_diagnoses.store(0, Ordering::Relaxed);
        if self.streak_unreachable.swap(false, Ordering::Relaxed) {
            let slot = self.comeback_count.fetch_add(1, Ordering::Relaxed) as usize;
            self.comebacks[slot % COMEBACKS_KEPT].store(now, Ordering::Relaxed);
        }
    }

    /// An attempt at the server failed, whoever's fault it was: it extends the streak, and its
    /// diagnosis is kept among the streak's.
    pub fn record_failure(&self, diagnosis: Diagnosis) {
        if self.streak.fetch_add(1, Ordering::Relaxed) == 0 {
            self.failing_since_ms
                .store(millis_since_epoch(SystemTime::now()), Ordering::Relaxed);
        }
        if diagnosis.phase() == Phase::Connect && !self.streak_unreachable.load(Ordering::Relaxed) {
            self.streak_unreachable.store(true, Ordering::Relaxed);
        }
        // Below 255 by the taxonomy's size (asserted at compile time), so it fits a byte.
        let code = diagnosis.index() as u32 + 1;
        // Read first: a streak repeating its diagnoses writes nothing.
        let _ = self
            .streak_diagnoses
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |kept| {
                for byte in 0..STREAK_DIAGNOSES {
                    match (kept >> (byte * 8)) & 0xff {
                        0 => return Some(kept | (code << (byte * 8))),
                        held if held == code => return None,
                        _ => {}
                    }
                }
                None
            });
    }

    /// A request broke with no answer after `age` at the server (its connection reset or
    /// closed mid-request).
    pub fn record_broken(&self, age: Duration) {
        let age_ms = u64::try_from(age.as_millis())
            .unwrap_or(u64::MAX)
            .min(0xff_ffff);
        let packed = ((millis_since_epoch(SystemTime::now()) / 1000) << 24) | age_ms;
        let slot = self.broken_count.fetch_add(1, Ordering::Relaxed) as usize;
        self.broken[slot % BROKEN_KEPT].store(packed, Ordering::Relaxed);
    }

    /// An attempt at the server begins; it counts as in flight until the token drops.
    pub fn request_started(&self) -> InFlightToken {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightToken(Arc::clone(&self.in_flight))
    }

    /// The addresses the server's hostname resolved to, as a request or a check is about to
    /// use them: a set other than the last one recorded is an address change.
    pub fn record_address(&self, addresses: &[IpAddr]) {
        let known = self.addresses.load();
        if known.as_deref().is_some_and(|known| known == addresses) {
            return;
        }
        let previous = self.addresses.swap(Some(Arc::new(addresses.to_vec())));
        match previous {
            // The same set in another order: only the order is remembered.
            Some(old) if same_addresses(&old, addresses) => {}
            Some(old) => self.address_change.store(Some(Arc::new(AddressChange {
                at: SystemTime::now(),
                old: old.to_vec(),
                new: addresses.to_vec(),
            }))),
            None => {}
        }
    }

    /// The ages of the requests that broke within [`BROKEN_WINDOW`] before `now_ms`, oldest
    /// first.
    fn broken_ages(&self, now_ms: u64) -> Vec<Duration> {
        let window_ms = u64::try_from(BROKEN_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let count = self.broken_count.load(Ordering::Relaxed);
        let kept = count.min(BROKEN_KEPT as u64);
        (count - kept..count)
            .map(|i| self.broken[i as usize % BROKEN_KEPT].load(Ordering::Relaxed))
            .filter(|&packed| {
                packed != 0 && now_ms.saturating_sub((packed >> 24) * 1000) <= window_ms
            })
            .map(|packed| Duration::from_millis(packed & 0xff_ffff))
            .collect()
    }

    /// The history as it stands at `now` (which the comeback window ends at).
    pub fn snapshot(&self, now: SystemTime) -> HistorySnapshot {
        let last_success = match self.last_success.load(Ordering::Relaxed) {
            0 => None,
            packed => Some((from_millis(packed >> 16), (packed & 0xffff) as u16)),
        };
        let streak = self.streak.load(Ordering::Relaxed);
        let failing_since = match (streak, self.failing_since_ms.load(Ordering::Relaxed)) {
            (0, _) | (_, 0) => None,
            (_, ms) => Some(from_millis(ms)),
        };
        let kept = self.streak_diagnoses.load(Ordering::Relaxed);
        let streak_diagnoses = if streak == 0 {
            Vec::new()
        } else {
            (0..STREAK_DIAGNOSES)
                .map(|byte| ((kept >> (byte * 8)) & 0xff) as usize)
                .take_while(|&code| code != 0)
                .filter_map(|code| Diagnosis::ALL.get(code - 1).copied())
                .collect()
        };
        let now_ms = millis_since_epoch(now);
        let window_ms = u64::try_from(COMEBACK_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let recorded = self.comeback_count.load(Ordering::Relaxed);
        let comebacks = self.comebacks[..recorded.min(COMEBACKS_KEPT as u64) as usize]
            .iter()
            .map(|at| at.load(Ordering::Relaxed))
            .filter(|&at| at != 0 && now_ms.saturating_sub(at) <= window_ms)
            .count() as u32;
        let count = self.response_count.load(Ordering::Relaxed);
        let kept_times = count.min(RESPONSE_TIMES as u64);
        let recent_response_times = (count - kept_times..count)
            .map(|i| {
                let micros =
                    self.response_times_us[i as usize % RESPONSE_TIMES].load(Ordering::Relaxed);
                Duration::from_micros(u64::from(micros))
            })
            .collect();
        HistorySnapshot {
            first_seen: self.first_seen,
            last_success,
            failing_since,
            streak: u32::try_from(streak).unwrap_or(u32::MAX),
            streak_diagnoses,
            comebacks,
            comeback_window: COMEBACK_WINDOW,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            recent_response_times,
            address_change: self.address_change.load_full().map(|c| (*c).clone()),
            broken_ages: self.broken_ages(now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(history: &ServerHistory) -> HistorySnapshot {
        history.snapshot(SystemTime::now())
    }

    /// Broken requests keep their ages, newest last, at most BROKEN_KEPT of them.
    #[test]
    fn broken_ages_are_kept() {
        let history = ServerHistory::default();
        for ms in 0..(BROKEN_KEPT as u64 + 3) {
            history.record_broken(Duration::from_millis(1000 + ms));
        }
        let ages = snapshot(&history).broken_ages;
        assert_eq!(ages.len(), BROKEN_KEPT);
        assert_eq!(
            ages.last(),
            Some(&Duration::from_millis(1000 + BROKEN_KEPT as u64 + 2))
        );
    }

    /// A fresh history holds nothing but when the server was first seen.
    #[test]
    fn starts_empty() {
        let seen = SystemTime::now();
        let s = ServerHistory::new(seen).snapshot(seen);
        assert_eq!(s.first_seen, seen);
        assert_eq!(
            (
                s.last_success,
                s.failing_since,
                s.streak,
                s.comebacks,
                s.in_flight
            ),
            (None, None, 0, 0, 0)
        );
        assert!(s.streak_diagnoses.is_empty() && s.recent_response_times.is_empty());
        assert_eq!(s.address_change, None);
        assert_eq!(s.comeback_window, COMEBACK_WINDOW);
    }

    /// Failures make a streak with its start, its count and its distinct diagnoses (at most
    /// four, in the order first seen); a success ends it and is remembered with its status.
    #[test]
    fn a_streak_counts_failures_until_a_success() {
        let h = ServerHistory::default();
        let before = SystemTime::now() - Duration::from_millis(1);
        for d in [
            Diagnosis::ConnectionReset,
            Diagnosis::ConnectionReset,
            Diagnosis::ResponseTimeout,
            Diagnosis::ClientClosed,
            Diagnosis::InvalidResponse,
            Diagnosis::ConnectionClosed,
            Diagnosis::ResponseTimeout,
        ] {
            h.record_failure(d);
        }
        let s = snapshot(&h);
        assert_eq!(s.streak, 7);
        assert!(s.failing_since.is_some_and(|t| t >= before));
        assert_eq!(
            s.streak_diagnoses,
            [
                Diagnosis::ConnectionReset,
                Diagnosis::ResponseTimeout,
                Diagnosis::ClientClosed,
                Diagnosis::InvalidResponse
            ]
        );
        h.record_success(503, None, SystemTime::now());
        let s = snapshot(&h);
        assert_eq!((s.streak, s.failing_since), (0, None));
        assert!(s.streak_diagnoses.is_empty());
        assert!(s
            .last_success
            .is_some_and(|(at, status)| at >= before && status == 503));
        assert_eq!(s.comebacks, 0, "the server was reachable all along");
        h.record_failure(Diagnosis::BodyReset);
        assert_eq!(snapshot(&h).streak_diagnoses, [Diagnosis::BodyReset]);
    }

    /// A success after a streak with a connect-phase failure in it is a comeback; one after a
    /// streak of other failures is not; comebacks are counted within the window only.
    #[test]
    fn comebacks_are_counted_in_their_window() {
        let h = ServerHistory::default();
        for _ in 0..3 {
            h.record_failure(Diagnosis::ConnectionReset);
            h.record_failure(Diagnosis::ConnectRefused);
            h.record_success(200, None, SystemTime::now());
        }
        h.record_failure(Diagnosis::ResponseTimeout);
        h.record_success(200, None, SystemTime::now());
        h.record_success(200, None, SystemTime::now());
        let now = SystemTime::now();
        assert_eq!(h.snapshot(now).comebacks, 3);
        assert_eq!(h.snapshot(now + COMEBACK_WINDOW / 2).comebacks, 3);
        let later = now + COMEBACK_WINDOW + Duration::from_secs(1);
        assert_eq!(h.snapshot(later).comebacks, 0);
    }

    /// The rings keep their last entries only: 32 response times, oldest first, and at most 16
    /// comebacks however many there were.
    #[test]
    fn rings_are_bounded() {
        let h = ServerHistory::default();
        for ms in 1..=100u64 {
            h.record_success(200, Some(Duration::from_millis(ms)), SystemTime::now());
        }
        h.record_success(200, None, SystemTime::now());
        let times = snapshot(&h).recent_response_times;
        let want: Vec<_> = (69..=100).map(Duration::from_millis).collect();
        assert_eq!(times, want);
        for _ in 0..40 {
            h.record_failure(Diagnosis::ConnectTimeout);
            h.record_success(200, None, SystemTime::now());
        }
        assert_eq!(snapshot(&h).comebacks, COMEBACKS_KEPT as u32);
    }

    /// An attempt is in flight until its token drops.
    #[test]
    fn in_flight_until_the_token_drops() {
        let h = ServerHistory::default();
        let first = h.request_started();
        let second = h.request_started();
        assert_eq!(snapshot(&h).in_flight, 2);
        drop(first);
        assert_eq!(snapshot(&h).in_flight, 1);
        drop(second);
        assert_eq!(snapshot(&h).in_flight, 0);
    }

    /// The first addresses are no change, the same set in another order neither; another set
    /// is, with the old and new sets.
    #[test]
    fn address_changes_are_noticed() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "::1".parse().expect("ip");
        let h = ServerHistory::default();
        h.record_address(&[a, b]);
        h.record_address(&[a, b]);
        h.record_address(&[b, a]);
        assert_eq!(snapshot(&h).address_change, None);
        let before = SystemTime::now() - Duration::from_millis(1);
        h.record_address(&[c]);
        let change = snapshot(&h).address_change.expect("a change");
        assert_eq!((change.old, change.new), (vec![b, a], vec![c]));
        assert!(change.at >= before);
    }
}
