//! Which server of an upstream gets the next attempt, and which servers are out.
//!
//! Servers take turns in proportion to their weight. A server is out of rotation while an active
//! health check has it down, or for `fail_timeout` after `max_fails` consecutive failed requests
//! (passive ejection, as nginx does) that the server caused: the proxy records only failures
//! whose diagnosis [counts against it](crate::diagnosis::Diagnosis::counts_against_upstream),
//! so nothing a client does ejects a server. A server that refused a connection is, for a moment
//! (`refused_holdoff`), answered for without connecting: nothing listens there, and a failure
//! storm should not cost a connect per request. The request path only reads atomics: no lock is
//! taken to pick a server.
//!
//! A [`Server`] outlives the configs that name it: the [registry](crate::registry) keeps it
//! while any config does, so a reload during an outage leaves a server that failed its checks
//! or was ejected out of rotation. A [`Balancer`] is one config's view of its servers: its
//! parameters (weights, `max_fails`, `fail_timeout`, `refused_holdoff`, whether there are
//! health checks) decide what the shared state means for that config.

use crate::config::{self, ServerAddr};
use crate::diagnosis::Diagnosis;
use crate::registry::ServerHistory;
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The outcome of the last active health check of a server.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub at: SystemTime,
    /// `None` when the check passed.
    pub diagnosis: Option<Diagnosis>,
    pub detail: String,
}

/// One server and what is known of its health, for as long as a config names it.
#[derive(Debug)]
pub struct Server {
    pub addr: ServerAddr,
    /// The label value for metrics: the address as written in the config.
    pub label: String,
    /// Up according to active health checks (true until a check says otherwise).
    checked_up: AtomicBool,
    check_streak: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the process epoch until which the server is ejected; 0 if not.
    ejected_until_ms: AtomicU64,
    /// When the server last refused a connection (ms since the process epoch), and until when
    /// requests are answered without connecting to it; 0 when it has not refused since its
    /// last answer.
    refused_at_ms: AtomicU64,
    refused_until_ms: AtomicU64,
    pub last_check: ArcSwapOption<CheckResult>,
    /// What live traffic taught about it, for the cause of a failure.
    pub history: ServerHistory,
}

/// The time base for ejection deadlines, so they fit in an atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Server {
    /// A server seen for the first time: up, never failed.
    pub fn new(addr: ServerAddr) -> Server {
        Server {
            label: addr.to_string(),
            addr,
            checked_up: AtomicBool::new(true),
            check_streak: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            refused_at_ms: AtomicU64::new(0),
            refused_until_ms: AtomicU64::new(0),
            last_check: ArcSwapOption::empty(),
            history: ServerHistory::default(),
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    pub fn is_checked_up(&self) -> bool {
        self.checked_up.load(Ordering::Relaxed)
    }

    /// Forgets what health checks said: a config without them judges by live traffic alone,
    /// and checks added again later start from up.
    fn forget_checks(&self) {
        self.checked_up.store(true, Ordering::Relaxed);
        self.check_streak.store(0, Ordering::Relaxed);
        self.last_check.store(None);
    }

    /// Ends a passive ejection and its failure count: for a config that does not eject.
    fn forget_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(0, Ordering::Relaxed);
    }

    /// Whether the server refused a connection less than the hold-off ago. The clock is read
    /// only when it has refused at all, so the success path pays one atomic load.
    pub fn is_held_off(&self) -> bool {
        let until = self.refused_until_ms.load(Ordering::Relaxed);
        until != 0 && until > now_ms()
    }

    /// How long ago the server refused a connection, and how long the hold-off still runs.
    pub fn refusal(&self) -> Option<(Duration, Duration)> {
        let at = self.refused_at_ms.load(Ordering::Relaxed);
        let until = self.refused_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = now_ms();
        Some((
            Duration::from_millis(now.saturating_sub(at)),
            Duration::from_millis(until.saturating_sub(now)),
        ))
    }
}

/// What changed in a server's availability, for logs and the health gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    WentDown,
    CameUp,
}

/// The servers of one upstream and their rotation, under one config.
#[derive(Debug)]
pub struct Balancer {
    /// Shared with the registry, and with every other config that names them.
    pub servers: Vec<Arc<Server>>,
    /// Server indexes, each repeated by its weight and interleaved, walked by `next`.
    rotation: Vec<usize>,
    next: AtomicU64,
    max_fails: u32,
    fail_timeout: Duration,
    refused_holdoff: Duration,
    /// Whether the upstream has active health checks; without, what checks of an earlier
    /// config said does not count.
    checked: bool,
}

impl Balancer {
    /// The rotation of `cfg`'s servers, whose state (`servers`, parallel to `cfg.servers`) may
    /// have been kept from an earlier config.
    pub fn new(cfg: &config::Upstream, servers: Vec<Arc<Server>>) -> Balancer {
        // As nginx: a lone server is never ejected. There is nowhere else to send the request,
        // and its own failure (connect_refused, ...) says more than no_healthy_upstream would.
        let max_fails = if servers.len() > 1 { cfg.max_fails } else { 0 };
        let checked = cfg.health_check.is_some();
        // What this config would never have said about a kept server is forgotten. An
        // earlier config's requests still in flight may record it again for a moment, which
        // `is_available` ignores just as well.
        for server in &servers {
            if !checked {
                server.forget_checks();
            }
            if max_fails == 0 {
                server.forget_failures();
            }
        }
        Balancer {
            rotation: interleave(&cfg.weights, servers.len()),
            servers,
            next: AtomicU64::new(0),
            max_fails,
            fail_timeout: cfg.fail_timeout,
            refused_holdoff: cfg.refused_holdoff,
            checked,
        }
    }

    /// Whether server `index` is in rotation under this config: up by its health checks (if
    /// the upstream has them) and not ejected (if it ejects at all).
    pub fn is_available(&self, index: usize) -> bool {
        self.servers.get(index).is_some_and(|server| {
            (!self.checked || server.is_checked_up())
                && (self.max_fails == 0 || !server.is_ejected())
        })
    }

    /// The next available server whose bit is not set in `tried` (bit i = server i), if any.
    /// A server already tried by this request is taken only when no other is available, so a
    /// single-server upstream can still retry a stale pooled connection.
    pub fn pick(&self, tried: u64) -> Option<usize> {
        let len = self.rotation.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let mut fallback = None;
        for step in 0..len {
            let index = self.rotation[(start + step) % len];
            if !self.is_available(index) || self.servers[index].is_held_off() {
                continue;
            }
            if index < 64 && tried & (1 << index) != 0 {
                fallback.get_or_insert(index);
                continue;
            }
            return Some(index);
        }
        fallback
    }

    /// When [Self::pick] finds no server: one in rotation that is only held off after a
    /// refusal, whose request is then answered `connect_refused` without connecting.
    pub fn held_off(&self) -> Option<usize> {
        (0..self.servers.len()).find(|&i| self.is_available(i) && self.servers[i].is_held_off())
    }

    /// Whether a server other than those in `tried` is available for a retry.
    pub fn has_untried(&self, tried: u64) -> bool {
        self.servers.iter().enumerate().any(|(i, s)| {
            self.is_available(i) && !s.is_held_off() && (i >= 64 || tried & (1 << i) == 0)
        })
    }

    /// Server `index` refused a connection: nothing listens there. For the hold-off, requests
    /// go to other servers, or are answered without connecting when there is none.
    pub fn record_refused(&self, index: usize) {
        let Some(server) = self.servers.get(index) else {
            return;
        };
        if self.refused_holdoff.is_zero() {
            return;
        }
        let now = now_ms();
        let holdoff = u64::try_from(self.refused_holdoff.as_millis()).unwrap_or(u64::MAX);
        server.refused_at_ms.store(now, Ordering::Relaxed);
        server
            .refused_until_ms
            .store(now.saturating_add(holdoff).max(1), Ordering::Relaxed);
    }

    /// A request to server `index` failed in a way that counts against it.
    pub fn record_failure(&self, index: usize) -> Transition {
        let Some(server) = self.servers.get(index) else {
            return Transition::None;
        };
        if self.max_fails == 0 {
            return Transition::None;
        }
        let failures = server.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.max_fails && !server.is_ejected() {
            server.consecutive_failures.store(0, Ordering::Relaxed);
            let fail_timeout = u64::try_from(self.fail_timeout.as_millis()).unwrap_or(u64::MAX);
            let until = now_ms().saturating_add(fail_timeout);
            server.ejected_until_ms.store(until, Ordering::Relaxed);
            return Transition::WentDown;
        }
        Transition::None
    }

    /// A request to server `index` got a final response (`status`, after `response_time`):
    /// the server works, and its history says so.
    pub fn record_success(
        &self,
        index: usize,
        status: u16,
        response_time: Option<Duration>,
        at: SystemTime,
    ) {
        if let Some(server) = self.servers.get(index) {
            server.history.record_success(status, response_time, at);
            if server.consecutive_failures.load(Ordering::Relaxed) != 0 {
                server.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if server.refused_until_ms.load(Ordering::Relaxed) != 0 {
                server.refused_until_ms.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Applies an active health check result to server `index`, with the thresholds.
    pub fn record_check(
        &self,
        index: usize,
        result: CheckResult,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Transition {
        let Some(server) = self.servers.get(index) else {
            return Transition::None;
        };
        let passed = result.diagnosis.is_none();
        server.last_check.store(Some(Arc::new(result)));
        let was_up = server.is_checked_up();
        if passed == was_up {
            server.check_streak.store(0, Ordering::Relaxed);
            return Transition::None;
        }
        let streak = server.check_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if was_up {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if streak < threshold {
            return Transition::None;
        }
        server.check_streak.store(0, Ordering::Relaxed);
        server.checked_up.store(passed, Ordering::Relaxed);
        if passed {
            // A server the checks bring back also gets a clean slate from passive ejection.
            server.ejected_until_ms.store(0, Ordering::Relaxed);
            Transition::CameUp
        } else {
            Transition::WentDown
        }
    }
}

/// Smooth weighted order: `[3, 1]` gives `[0, 0, 1, 0]`, not `[0, 0, 0, 1]`, so a heavy server's
/// turns are spread out (the nginx smooth weighted round-robin sequence).
fn interleave(weights: &[u32], servers: usize) -> Vec<usize> {
    let weights: Vec<i64> = (0..servers)
        .map(|i| i64::from(weights.get(i).copied().unwrap_or(1).max(1)))
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; servers];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        order.push(best);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(n: usize, weights: &[u32], max_fails: u32) -> config::Upstream {
        config::Upstream {
            servers: (0..n)
                .map(|i| ServerAddr::Ip(format!("127.0.0.1:{}", 1000 + i).parse().expect("addr")))
                .collect(),
            weights: weights.to_vec(),
            max_fails,
            fail_timeout: Duration::from_secs(60),
            refused_holdoff: Duration::from_secs(60),
            ..config::Upstream::default()
        }
    }

    fn fresh_servers(cfg: &config::Upstream) -> Vec<Arc<Server>> {
        cfg.servers
            .iter()
            .map(|addr| Arc::new(Server::new(addr.clone())))
            .collect()
    }

    fn balancer(n: usize, weights: &[u32], max_fails: u32) -> Balancer {
        let cfg = upstream(n, weights, max_fails);
        Balancer::new(&cfg, fresh_servers(&cfg))
    }

    fn checked(mut cfg: config::Upstream) -> config::Upstream {
        cfg.health_check = Some(config::HealthCheck::default());
        cfg
    }

    fn check(diagnosis: Option<Diagnosis>) -> CheckResult {
        CheckResult {
            at: SystemTime::now(),
            diagnosis,
            detail: String::new(),
        }
    }

    /// Weights give turns in proportion, spread out smoothly.
    #[test]
    fn smooth_weighted_order() {
        assert_eq!(interleave(&[3, 1], 2), vec![0, 0, 1, 0]);
        assert_eq!(interleave(&[1, 1, 1], 3), vec![0, 1, 2]);
        let b = balancer(2, &[3, 1], 0);
        let picks: Vec<_> = (0..8).filter_map(|_| b.pick(0)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
    }

    /// After max_fails consecutive failures a server leaves the rotation; a success resets the
    /// count.
    #[test]
    fn passive_ejection() {
        let b = balancer(2, &[1, 1], 2);
        assert_eq!(b.record_failure(0), Transition::None);
        b.record_success(0, 200, None, SystemTime::now());
        assert_eq!(b.record_failure(0), Transition::None);
        assert_eq!(b.record_failure(0), Transition::WentDown);
        for _ in 0..4 {
            assert_eq!(b.pick(0), Some(1));
        }
    }

    /// A server that refused is skipped for the hold-off while another can take the request;
    /// alone, it is reported held off instead of picked; an answer from it ends the hold-off.
    #[test]
    fn refused_server_is_held_off() {
        let b = balancer(2, &[1, 1], 0);
        b.record_refused(0);
        assert!(b.servers[0].is_held_off());
        for _ in 0..4 {
            assert_eq!(b.pick(0), Some(1));
        }
        assert!(!b.has_untried(0b10), "a held-off server is no retry target");
        b.record_refused(1);
        assert_eq!(b.pick(0), None);
        assert_eq!(b.held_off(), Some(0));
        let (ago, left) = b.servers[1].refusal().expect("refused");
        assert!(ago < Duration::from_secs(5) && left > Duration::from_secs(50));
        b.record_success(0, 200, None, SystemTime::now());
        assert!(!b.servers[0].is_held_off());
        assert_eq!(b.pick(0), Some(0));
    }

    /// The hold-off ends by itself, and a zero hold-off never starts one.
    #[test]
    fn holdoff_expires_and_can_be_off() {
        let mut cfg = upstream(1, &[1], 0);
        cfg.refused_holdoff = Duration::from_millis(20);
        let short = Balancer::new(&cfg, fresh_servers(&cfg));
        short.record_refused(0);
        assert_eq!(short.pick(0), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(short.pick(0), Some(0));
        cfg.refused_holdoff = Duration::ZERO;
        let off = Balancer::new(&cfg, fresh_servers(&cfg));
        off.record_refused(0);
        assert_eq!(off.pick(0), Some(0));
        assert_eq!(off.held_off(), None);
    }

    /// A lone server is never ejected, however often it fails.
    #[test]
    fn lone_server_is_never_ejected() {
        let b = balancer(1, &[1], 1);
        for _ in 0..5 {
            assert_eq!(b.record_failure(0), Transition::None);
        }
        assert_eq!(b.pick(0), Some(0));
    }

    /// A retry avoids the server already tried, unless it is the only one available.
    #[test]
    fn retry_avoids_tried_servers() {
        let b = balancer(2, &[1, 1], 0);
        for _ in 0..4 {
            assert_eq!(b.pick(0b01), Some(1));
        }
        let single = balancer(1, &[1], 0);
        assert_eq!(single.pick(0b1), Some(0));
        assert!(!single.has_untried(0b1));
        assert!(b.has_untried(0b01));
    }

    /// Health checks take a server down and bring it back only after their thresholds.
    #[test]
    fn health_check_thresholds() {
        let cfg = checked(upstream(1, &[1], 0));
        let b = Balancer::new(&cfg, fresh_servers(&cfg));
        let fail = || check(Some(Diagnosis::ConnectRefused));
        let pass = || check(None);
        assert_eq!(b.record_check(0, fail(), 2, 2), Transition::None);
        assert_eq!(b.record_check(0, fail(), 2, 2), Transition::WentDown);
        assert_eq!(b.pick(0), None);
        assert_eq!(b.record_check(0, pass(), 2, 2), Transition::None);
        assert_eq!(b.record_check(0, pass(), 2, 2), Transition::CameUp);
        assert_eq!(b.pick(0), Some(0));
    }

    /// A balancer of a new config over the same servers (a reload) keeps them as they were:
    /// the ejected one and the one down by its checks stay out of rotation, and a success
    /// recorded through either balancer reaches the same history.
    #[test]
    fn a_new_config_keeps_the_servers_state() {
        let cfg = checked(upstream(3, &[1, 1, 1], 1));
        let servers = fresh_servers(&cfg);
        let old = Balancer::new(&cfg, servers.clone());
        assert_eq!(old.record_failure(0), Transition::WentDown);
        assert_eq!(
            old.record_check(1, check(Some(Diagnosis::ConnectRefused)), 1, 1),
            Transition::WentDown
        );
        let mut changed = cfg.clone();
        changed.weights = vec![2, 2, 1];
        let new = Balancer::new(&changed, servers);
        assert!(!new.is_available(0) && !new.is_available(1) && new.is_available(2));
        for _ in 0..5 {
            assert_eq!(new.pick(0), Some(2));
        }
        new.record_success(2, 200, None, SystemTime::now());
        let history = old.servers[2].history.snapshot(SystemTime::now());
        assert_eq!(history.last_success.map(|(_, status)| status), Some(200));
    }

    /// A config without health checks does not hold an earlier config's checks against a
    /// server (and forgets them, so checks added back start from up); one that does not eject
    /// ends an earlier config's ejection.
    #[test]
    fn a_new_config_without_checks_or_ejection_forgets_them() {
        let cfg = checked(upstream(2, &[1, 1], 1));
        let servers = fresh_servers(&cfg);
        let old = Balancer::new(&cfg, servers.clone());
        old.record_check(0, check(Some(Diagnosis::ConnectRefused)), 1, 1);
        old.record_failure(1);
        assert!(!old.is_available(0) && !old.is_available(1));
        let mut unchecked = cfg.clone();
        unchecked.health_check = None;
        let new = Balancer::new(&unchecked, servers.clone());
        assert!(new.is_available(0) && !new.is_available(1));
        assert!(servers[0].is_checked_up() && servers[0].last_check.load().is_none());
        // The old config's check loop may still be running a moment after the reload.
        old.record_check(0, check(Some(Diagnosis::ConnectRefused)), 1, 1);
        assert!(new.is_available(0));
        let mut no_ejection = unchecked.clone();
        no_ejection.max_fails = 0;
        let newer = Balancer::new(&no_ejection, servers.clone());
        assert!(newer.is_available(1) && !servers[1].is_ejected());
    }
}
