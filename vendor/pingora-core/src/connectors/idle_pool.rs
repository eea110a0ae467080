//! triage patch (PATCHES.md 14): the pool of idle upstream streams, kept without a task per
//! connection.
//!
//! 0.9.1 pools every released stream in `pingora_pool::ConnectionPool` and spawns a task that
//! reads it while it is idle, to drop it as soon as the server closes it or its idle timeout
//! passes; a reuse wakes that task through a oneshot channel and takes the stream back from it
//! under a lock. That is a task, a timer, a oneshot, a `Notify` and two allocations per
//! request on a keep-alive connection. Here a released stream is only put in a list. Whether it
//! is still usable is checked when it is taken (`test_reusable_stream`, which 0.9.1 also does:
//! a read that costs no system call unless the reactor saw the socket readable), and one sweeper
//! task per pool, alive only while the pool holds streams, drops those the server closed and
//! those past their idle timeout once every [`SWEEP_PERIOD`].

use super::{test_reusable_stream, Stream};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper looks at the idle streams: a stream the server closed is dropped
/// (its descriptor freed) at most this late, an idle timeout passes at most this late.
pub(crate) const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// An idle stream and what the pool needs to know about it.
struct Idle {
    stream: Stream,
    since: Instant,
    deadline: Option<Instant>,
}

/// Hashes a reuse key to itself: the key is already a hash (`Peer::reuse_hash`), and the
/// standard map's SipHash of it cost about 140 instructions a lookup, two lookups a request.
#[derive(Default)]
struct ReuseKeyHasher(u64);

impl Hasher for ReuseKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a u64 key; correct (if slow) for anything else.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

#[derive(Default)]
struct Groups {
    /// Idle streams by reuse key, oldest first: a stream is taken from the back (the most
    /// recently used, as nginx's keepalive cache does: the least likely to have met the
    /// server's own idle timeout), evicted and expired from the front.
    by_key: HashMap<u64, VecDeque<Idle>, BuildHasherDefault<ReuseKeyHasher>>,
    len: usize,
    sweeper_running: bool,
}

/// Idle upstream streams, by reuse key, at most `capacity` in all.
pub(crate) struct IdlePool {
    groups: Mutex<Groups>,
    capacity: usize,
    /// The connector's count of idle streams a server sent data on.
    unexpected_data: Arc<AtomicU64>,
}

/// A stream that left the pool without being reused, dropped (closed) outside the lock.
pub(crate) struct Evicted {
    pub(crate) idle_for: Duration,
    _stream: Stream,
}

impl IdlePool {
    pub(crate) fn new(capacity: usize, unexpected_data: Arc<AtomicU64>) -> Self {
        IdlePool {
            groups: Mutex::new(Groups::default()),
            capacity,
            unexpected_data,
        }
    }

    /// The most recently released idle stream under `key`, if any. The caller checks that it
    /// is still usable.
    pub(crate) fn take(&self, key: u64) -> Option<Stream> {
        let mut groups = self.groups.lock();
        let queue = groups.by_key.get_mut(&key)?;
        let idle = queue.pop_back();
        if queue.is_empty() {
            // A key is not kept once empty: the map does not grow with every server ever seen.
            groups.by_key.remove(&key);
        }
        if idle.is_some() {
            groups.len -= 1;
        }
        idle.map(|idle| idle.stream)
    }

    /// Pools `stream` under `key`. When the pool is full, the least recently released stream
    /// (of any key) makes room, and is returned for its caller to report and drop. Starts the
    /// sweeper if it is not running.
    pub(crate) fn put(
        self: &Arc<Self>,
        key: u64,
        stream: Stream,
        idle_timeout: Option<Duration>,
    ) -> Option<Evicted> {
        if self.capacity == 0 {
            return Some(Evicted {
                idle_for: Duration::ZERO,
                _stream: stream,
            });
        }
        let now = Instant::now();
        let idle = Idle {
            stream,
            since: now,
            deadline: idle_timeout.and_then(|t| now.checked_add(t)),
        };
        let mut groups = self.groups.lock();
        let evicted = if groups.len >= self.capacity {
            groups.evict_oldest().map(|old| Evicted {
                idle_for: now.saturating_duration_since(old.since),
                _stream: old.stream,
            })
        } else {
            None
        };
        groups.by_key.entry(key).or_default().push_back(idle);
        groups.len += 1;
        let start_sweeper = !groups.sweeper_running;
        groups.sweeper_running = true;
        drop(groups);
        if start_sweeper {
            pingora_runtime::current_handle().spawn(sweep(Arc::downgrade(self)));
        }
        evicted
    }

    /// Removes the streams the server closed (or sent unexpected data on) and those past their
    /// deadline. Returns them, to be dropped (closed) outside the lock, and whether the sweeper
    /// should go on: the pool still holds streams.
    fn sweep(&self, now: Instant) -> (Vec<Stream>, bool) {
        let mut removed = Vec::new();
        let mut groups = self.groups.lock();
        for queue in groups.by_key.values_mut() {
            for mut idle in std::mem::take(queue) {
                if idle.deadline.map_or(true, |d| d > now)
                    && test_reusable_stream(&mut idle.stream, &self.unexpected_data)
                {
                    queue.push_back(idle);
                } else {
                    removed.push(idle.stream);
                }
            }
        }
        groups.by_key.retain(|_, queue| !queue.is_empty());
        groups.len -= removed.len();
        let go_on = groups.len > 0;
        groups.sweeper_running = go_on;
        (removed, go_on)
    }
}

impl Groups {
    fn evict_oldest(&mut self) -> Option<Idle> {
        // O(keys): eviction happens only with a full pool, and keys are servers.
        let key = self
            .by_key
            .iter()
            .filter_map(|(key, queue)| queue.front().map(|idle| (idle.since, *key)))
            .min()
            .map(|(_, key)| key)?;
        let queue = self.by_key.get_mut(&key)?;
        let oldest = queue.pop_front();
        if queue.is_empty() {
            self.by_key.remove(&key);
        }
        if oldest.is_some() {
            self.len -= 1;
        }
        oldest
    }
}

/// The sweeper: runs while the pool holds streams and the pool is alive.
async fn sweep(pool: Weak<IdlePool>) {
    loop {
        tokio::time::sleep(SWEEP_PERIOD).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let (closed, go_on) = pool.sweep(Instant::now());
        drop(closed);
        if !go_on {
            return;
        }
    }
}
