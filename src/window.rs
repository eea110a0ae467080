//! A per-second counter in one atomic word, for the rate limits on hot paths (the error-log
//! budget, the retry budget): the current second in the high 32 bits, the count in it in the
//! low 32 bits, so reading and counting are one lock-free operation and a new second starts
//! from zero on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Events counted in the current wall-clock second.
#[derive(Debug, Default)]
pub struct SecondWindow(AtomicU64);

/// The wall-clock second, as the window stores it (its low 32 bits).
pub fn current_second() -> u64 {
    second_of(SystemTime::now())
}

/// The second of `at`, as the window stores it: for a caller that has just read the clock.
pub fn second_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() & 0xffff_ffff)
}

impl SecondWindow {
    /// The events counted in `second` so far.
    pub fn get(&self, second: u64) -> u64 {
        let window = self.0.load(Ordering::Relaxed);
        if window >> 32 == second {
            window & 0xffff_ffff
        } else {
            0
        }
    }

    /// Counts one event in `second` if fewer than `limit` were counted in it; whether it was.
    pub fn count_below(&self, second: u64, limit: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let (window_second, count) = (w >> 32, w & 0xffff_ffff);
                if window_second != second {
                    Some((second << 32) | 1).filter(|_| limit > 0)
                } else if count < limit {
                    Some(w + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }

    /// Counts one event in `second`; returns the count in it, this one included. The count
    /// saturates at `u32::MAX` rather than spilling into the second.
    pub fn count(&self, second: u64) -> u64 {
        self.count_below(second, u64::from(u32::MAX));
        self.get(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window counts within its second, starts again at the next, and a limit holds.
    #[test]
    fn counts_per_second_and_holds_a_limit() {
        let window = SecondWindow::default();
        assert_eq!(window.count(7), 1);
        assert_eq!(window.count(7), 2);
        assert_eq!(window.get(7), 2);
        assert_eq!(window.get(8), 0);
        assert_eq!(window.count(8), 1);
        assert!(window.count_below(8, 2));
        assert!(!window.count_below(8, 2));
        assert!(!window.count_below(9, 0), "a zero limit admits nothing");
    }
}
