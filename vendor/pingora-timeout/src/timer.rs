// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Lightweight timer for systems with high rate of operations with timeout
//! associated with them
//!
//! Users don't need to interact with this module.
//!
//! The idea is to bucket timers into finite time slots so that operations that
//! start and end quickly don't have to create their own timers all the time
//!
//! Benchmark:
//! - create 7.809622ms total, 78ns avg per iteration
//! - drop: 1.348552ms total, 13ns avg per iteration
//!
//! tokio timer:
//! - create 34.317439ms total, 343ns avg per iteration
//! - drop: 10.694154ms total, 106ns avg per iteration

use parking_lot::RwLock;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;
use tokio::sync::Notify;

const RESOLUTION_MS: u64 = 10;
const RESOLUTION_DURATION: Duration = Duration::from_millis(RESOLUTION_MS);

// triage patch (PATCHES.md 3): time points are whole milliseconds in a u64 (585 million years
// after the manager's zero), not a u128: a u128 remainder is a library call at every
// registration. `raw` 0 (a zero timeout at the manager's first millisecond) rounds up to the
// first slot instead of underflowing.
// round to the NEXT timestamp based on the resolution
#[inline]
fn round_to(raw: u64, resolution: u64) -> u64 {
    let raw = raw.max(1);
    raw - 1 + resolution - (raw - 1) % resolution
}
// millisecond resolution as most
#[derive(PartialEq, PartialOrd, Eq, Ord, Clone, Copy, Debug)]
struct Time(u64);

impl From<u64> for Time {
    fn from(raw_ms: u64) -> Self {
        Time(round_to(raw_ms, RESOLUTION_MS))
    }
}

impl From<Duration> for Time {
    fn from(d: Duration) -> Self {
        Time(round_to(millis(d), RESOLUTION_MS))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Time {
    pub fn not_after(&self, ts: u64) -> bool {
        self.0 <= ts
    }
}

// triage patch (PATCHES.md 3): a slot's `Notify` and fired flag in one allocation, so a stub
// is one `Arc` (one reference count to raise and drop), not two.
struct Slot {
    notify: Notify,
    fired: AtomicBool,
}

/// the stub for waiting for a timer to be expired.
pub struct TimerStub(Arc<Slot>);

impl TimerStub {
    /// Wait for the timer to expire.
    pub async fn poll(self) {
        // triage patch (PATCHES.md 3): the `Notified` is made before the flag is read. Made
        // after it, as in 0.9.1, a slot fired between the two was missed: `notify_waiters`
        // wakes only the `Notified` futures that exist when it runs, so the stub waited for
        // ever.
        let notified = self.0.notify.notified();
        if self.0.fired.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

struct Timer(Arc<Slot>);

impl Timer {
    pub fn new() -> Self {
        Timer(Arc::new(Slot {
            notify: Notify::new(),
            fired: AtomicBool::new(false),
        }))
    }

    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn subscribe(&self) -> TimerStub {
        TimerStub(self.0.clone())
    }
}

// triage patch (PATCHES.md 3): the slots this thread registered last, by manager. Timers are
// armed at a high rate with a few distinct durations, so most registrations land in a slot
// the same thread registered in a moment ago: this finds it without the slots' lock and
// their ordered map. A slot already fired is never handed out from here.
const RECENT_SLOTS: usize = 4;

thread_local! {
    static RECENT: RefCell<[Option<(u64, Time, Arc<Slot>)>; RECENT_SLOTS]> =
        const { RefCell::new([const { None }; RECENT_SLOTS]) };
}

/// Each manager's id for the slots a thread remembers (an address could be reused).
static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(0);

/// The object that holds all the timers registered to it.
pub struct TimerManager {
    // each thread insert into its local timer tree to avoid lock contention
    timers: ThreadLocal<RwLock<BTreeMap<Time, Timer>>>,
    zero: Instant, // the reference zero point of Timestamp
    // Start a new clock thread if this is -1 or staled. The clock thread should keep updating this
    clock_watchdog: AtomicI64,
    paused: AtomicBool,
    id: u64,
}

// Consider the clock thread is dead after it fails to update the thread in DELAYS_SEC
const DELAYS_SEC: i64 = 2; // TODO: make sure this value is larger than RESOLUTION_DURATION

impl Default for TimerManager {
    fn default() -> Self {
        TimerManager {
            timers: ThreadLocal::new(),
            zero: Instant::now(),
            clock_watchdog: AtomicI64::new(-DELAYS_SEC),
            paused: AtomicBool::new(false),
            id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl TimerManager {
    /// Create a new [TimerManager]
    pub fn new() -> Self {
        Self::default()
    }

    // This thread sleeps for a resolution time and then fires all the timers that are due to fire
    pub(crate) fn clock_thread(&self) {
        loop {
            std::thread::sleep(RESOLUTION_DURATION);
            let now = Instant::now() - self.zero;
            self.clock_watchdog
                .store(now.as_secs() as i64, Ordering::Relaxed);
            if self.is_paused_for_fork() {
                // just stop acquiring the locks, waiting for fork to happen
                continue;
            }
            let now = millis(now);
            // iterate through the timer tree for all threads
            for thread_timer in self.timers.iter() {
                let mut timers = thread_timer.write();
                // Fire all timers until now
                loop {
                    let key_to_remove = timers.iter().next().and_then(|(k, _)| {
                        if k.not_after(now) {
                            Some(*k)
                        } else {
                            None
                        }
                    });
                    if let Some(k) = key_to_remove {
                        let timer = timers.remove(&k);
                        // safe to unwrap, the key is from iter().next()
                        timer.unwrap().fire();
                    } else {
                        break;
                    }
                    // TODO: break if too many timers are fired to avoid blocking this thread
                    // for too long
                }
                // write lock drops here
            }
        }
    }

    // False if the clock is already started
    // If true, the caller must start the clock thread next
    #[cfg(test)]
    pub(crate) fn should_i_start_clock(&self) -> bool {
        self.should_i_start_clock_at(self.since_zero())
    }

    // triage patch (PATCHES.md 3): the same check against a time already read, so a timer's
    // registration reads the clock once for the check and for its slot.
    pub(crate) fn should_i_start_clock_at(&self, since_zero: Duration) -> bool {
        let Err(prev) = self.is_clock_running_at(since_zero) else {
            return false;
        };
        let now = since_zero.as_secs() as i64;
        let res =
            self.clock_watchdog
                .compare_exchange(prev, now, Ordering::SeqCst, Ordering::SeqCst);
        res.is_ok()
    }

    // Ok(()) if clock is running (watch dog is within DELAYS_SEC of now)
    // Err(time) if watch do stopped at `time`
    #[cfg(test)]
    pub(crate) fn is_clock_running(&self) -> Result<(), i64> {
        self.is_clock_running_at(self.since_zero())
    }

    fn is_clock_running_at(&self, since_zero: Duration) -> Result<(), i64> {
        let now = since_zero.as_secs() as i64;
        let prev = self.clock_watchdog.load(Ordering::SeqCst);
        if now < prev + DELAYS_SEC {
            Ok(())
        } else {
            Err(prev)
        }
    }

    /// The time since this manager's zero point, the clock its slots are kept in.
    pub(crate) fn since_zero(&self) -> Duration {
        Instant::now().saturating_duration_since(self.zero)
    }

    /// Register a timer.
    ///
    /// When the timer expires, the [TimerStub] will be notified.
    pub fn register_timer(&self, duration: Duration) -> TimerStub {
        self.register_timer_at(self.since_zero(), duration)
    }

    /// [Self::register_timer()] with the time since this manager's zero already read.
    pub(crate) fn register_timer_at(&self, since_zero: Duration, duration: Duration) -> TimerStub {
        if self.is_paused_for_fork() {
            // Return a dummy TimerStub that will trigger right away.
            // This is fine assuming pause_for_fork() is called right before fork().
            // The only possible register_timer() is from another thread which will
            // be entirely lost after fork()
            // TODO: buffer these register calls instead (without a lock)
            let timer = Timer::new();
            timer.fire();
            return timer.subscribe();
        }
        let now: Time = since_zero.saturating_add(duration).into();
        if let Some(stub) = self.recent_slot(now) {
            return stub;
        }
        let stub = {
            let timers = self.timers.get_or(|| RwLock::new(BTreeMap::new())).read();
            timers.get(&now).map(Timer::subscribe)
        }; // drop read lock
        let stub = stub.unwrap_or_else(|| {
            let timer = Timer::new();
            let mut timers = self.timers.get_or(|| RwLock::new(BTreeMap::new())).write();
            // Usually we check if another thread has insert the same node before we get the write lock,
            // but because only this thread will insert anything to its local timers tree, there
            // is no possible race that can happen. The only other thread is the clock thread who
            // only removes timer from the tree
            let stub = timer.subscribe();
            timers.insert(now, timer);
            stub
        });
        self.remember_slot(now, &stub);
        stub
    }

    /// A slot for `at` this thread registered in a moment ago, if not fired yet.
    fn recent_slot(&self, at: Time) -> Option<TimerStub> {
        RECENT.with(|recent| {
            let recent = recent.try_borrow().ok()?;
            recent.iter().flatten().find_map(|(id, time, slot)| {
                (*id == self.id && *time == at && !slot.fired.load(Ordering::SeqCst))
                    .then(|| TimerStub(slot.clone()))
            })
        })
    }

    /// Remembers `stub`'s slot in place of this thread's earliest remembered one.
    fn remember_slot(&self, at: Time, stub: &TimerStub) {
        RECENT.with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                return;
            };
            let replaced = recent
                .iter_mut()
                .min_by_key(|entry| entry.as_ref().map(|(_, time, _)| *time));
            if let Some(replaced) = replaced {
                *replaced = Some((self.id, at, stub.0.clone()));
            }
        });
    }

    fn is_paused_for_fork(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pause the timer for fork()
    ///
    /// Because RwLock across fork() is undefined behavior, this function makes sure that no one
    /// holds any locks.
    ///
    /// This function should be called right before fork().
    pub fn pause_for_fork(&self) {
        self.paused.store(true, Ordering::SeqCst);
        // wait for everything to get out of their locks
        std::thread::sleep(RESOLUTION_DURATION * 2);
    }

    /// Unpause the timer after fork()
    ///
    /// This function should be called right after fork().
    pub fn unpause(&self) {
        self.paused.store(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_round() {
        assert_eq!(round_to(30, 10), 30);
        assert_eq!(round_to(31, 10), 40);
        assert_eq!(round_to(29, 10), 30);
    }

    #[test]
    fn test_time() {
        let t: Time = 128.into(); // t will round to 130
        assert_eq!(t, Duration::from_millis(130).into());
        assert!(!t.not_after(128));
        assert!(!t.not_after(129));
        assert!(t.not_after(130));
        assert!(t.not_after(131));
    }

    #[tokio::test]
    async fn test_timer_manager() {
        let tm_a = Arc::new(TimerManager::new());
        let tm = tm_a.clone();
        std::thread::spawn(move || tm_a.clock_thread());

        let now = Instant::now();
        let t1 = tm.register_timer(Duration::from_secs(1));
        let t2 = tm.register_timer(Duration::from_secs(1));
        t1.poll().await;
        assert_eq!(now.elapsed().as_secs(), 1);
        let now = Instant::now();
        t2.poll().await;
        // t2 fired along t1 so no extra wait time
        assert_eq!(now.elapsed().as_secs(), 0);
    }

    #[test]
    fn test_timer_manager_start_check() {
        let tm = Arc::new(TimerManager::new());
        assert!(tm.should_i_start_clock());
        assert!(!tm.should_i_start_clock());
        assert!(tm.is_clock_running().is_ok());
    }

    #[test]
    fn test_timer_manager_watchdog() {
        let tm = Arc::new(TimerManager::new());
        assert!(tm.should_i_start_clock());
        assert!(!tm.should_i_start_clock());

        // we don't actually start the clock thread, sleep for the watchdog to expire
        std::thread::sleep(Duration::from_secs(DELAYS_SEC as u64 + 1));
        assert!(tm.is_clock_running().is_err());
        assert!(tm.should_i_start_clock());
    }

    // triage patch (PATCHES.md 3): registrations in one slot share it, whether this thread
    // remembers the slot or finds it in the map; a slot already fired is not handed out again.
    #[tokio::test]
    async fn test_registrations_share_a_slot_until_it_fires() {
        let tm_a = Arc::new(TimerManager::new());
        let tm = tm_a.clone();
        std::thread::spawn(move || tm_a.clock_thread());

        let at = Duration::from_millis(10);
        let t1 = tm.register_timer_at(Duration::ZERO, at);
        let t2 = tm.register_timer_at(Duration::ZERO, at);
        assert!(Arc::ptr_eq(&t1.0, &t2.0));
        // Forgotten by this thread (more slots registered since), found in the map.
        for later in 1..=RECENT_SLOTS as u64 {
            tm.register_timer_at(Duration::ZERO, at + RESOLUTION_DURATION * later as u32);
        }
        let t3 = tm.register_timer_at(Duration::ZERO, at);
        assert!(Arc::ptr_eq(&t1.0, &t3.0));
        t1.poll().await;
        let t4 = tm.register_timer_at(Duration::ZERO, at);
        assert!(!Arc::ptr_eq(&t2.0, &t4.0), "a fired slot handed out again");
        t4.poll().await; // the new slot is due: fired at the clock's next tick
    }

    // triage patch (PATCHES.md 3): a thread's remembered slots are its manager's: a slot of
    // another manager at the same time is never handed out (the clock of the other one would
    // fire it).
    #[tokio::test]
    async fn test_remembered_slots_are_per_manager() {
        let ticking = Arc::new(TimerManager::new());
        let clock = ticking.clone();
        std::thread::spawn(move || clock.clock_thread());
        let stopped = TimerManager::new(); // no clock thread: its timers never fire

        let at = Duration::from_millis(10);
        let fired = ticking.register_timer_at(Duration::ZERO, at);
        let never = stopped.register_timer_at(Duration::ZERO, at);
        assert!(!Arc::ptr_eq(&fired.0, &never.0));
        fired.poll().await;
        let waited = tokio::time::timeout(Duration::from_millis(100), never.poll()).await;
        assert!(waited.is_err(), "a stopped manager's timer fired");
    }

    #[tokio::test]
    async fn test_timer_manager_pause() {
        let tm_a = Arc::new(TimerManager::new());
        let tm = tm_a.clone();
        std::thread::spawn(move || tm_a.clock_thread());

        let now = Instant::now();
        let t1 = tm.register_timer(Duration::from_secs(2));
        tm.pause_for_fork();
        // no actual fork happen, we just test that pause and unpause work

        // any timer in this critical section is timed out right away
        let t2 = tm.register_timer(Duration::from_secs(2));
        t2.poll().await;
        assert_eq!(now.elapsed().as_secs(), 0);

        std::thread::sleep(Duration::from_secs(1));
        tm.unpause();
        t1.poll().await;
        assert_eq!(now.elapsed().as_secs(), 2);
    }
}
