//! Bounded shutdown: whatever the listeners, health checks or background loops are doing, a
//! signal ends the process in a known time.
//!
//! Pingora handles the signals itself (SIGINT: quick; SIGTERM: graceful; SIGQUIT: hand the
//! listening sockets to a new binary, then graceful), but nothing bounds what follows: it joins
//! every runtime, and a runtime whose task never yields never finishes shutting down (the
//! accept loop spinning on "runtime is shutting down" errors did that, for 11 minutes, until
//! the disk was full of its log lines). And on SIGTERM it always sleeps the whole grace period,
//! even with nothing left to finish.
//!
//! [`Signals`] receives the same signals for Pingora and, with each, starts a watchdog thread
//! that ends the process:
//! - SIGINT: after [`QUICK_EXIT`], if Pingora has not exited by then;
//! - SIGTERM: as soon as no request is in flight ([`InFlight`]), or when the grace period
//!   (`[server] shutdown_timeout`) ends, whichever comes first;
//! - SIGQUIT: as SIGTERM, once Pingora's pause for the new binary to take the sockets is over.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a SIGINT may take before the watchdog ends the process.
pub const QUICK_EXIT: Duration = Duration::from_secs(1);
/// Pingora's pause after handing the listening sockets to a new binary (its `CLOSE_TIMEOUT`),
/// during which both processes accept: the drain starts after it.
const UPGRADE_HANDOVER: Duration = Duration::from_secs(5);
/// Time after SIGTERM before an idle process may exit: Pingora stops the accept loops and
/// closes idle keep-alive connections, and a request already read reaches the proxy.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the watchdog looks at the requests in flight.
const POLL: Duration = Duration::from_millis(20);

/// The requests in flight: counted from the moment the proxy takes a request (its context is
/// made) until that context is dropped, on every path (answered, failed, client gone).
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

/// One request in flight; dropping it ends that request's count.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    /// Counts one more request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What runs just before the process exits, on every way out (the pid file's removal).
pub type AtExit = Arc<dyn Fn() + Send + Sync>;

/// The shutdown signals, for Pingora's main loop, each arming the watchdog.
pub struct Signals {
    in_flight: Arc<InFlight>,
    grace: Duration,
    at_exit: AtExit,
}

impl Signals {
    /// `grace` bounds the drain after SIGTERM (and after SIGQUIT's hand-over); `at_exit` runs
    /// before the watchdog ends the process.
    pub fn new(in_flight: Arc<InFlight>, grace: Duration, at_exit: AtExit) -> Signals {
        Signals {
            in_flight,
            grace,
            at_exit,
        }
    }
}

/// What the watchdog waits for before it ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// Exit at this time, whatever is in flight.
    Quick { at: Duration },
    /// From `drain_from` on, exit once nothing is in flight; exit at `at` at the latest.
    Drain { drain_from: Duration, at: Duration },
}

impl Deadline {
    fn of(signal: &ShutdownSignal, grace: Duration) -> Deadline {
        match signal {
            ShutdownSignal::FastShutdown => Deadline::Quick { at: QUICK_EXIT },
            ShutdownSignal::GracefulTerminate => Deadline::Drain {
                drain_from: SETTLE,
                at: grace.max(SETTLE),
            },
            ShutdownSignal::GracefulUpgrade => Deadline::Drain {
                drain_from: UPGRADE_HANDOVER + SETTLE,
                at: UPGRADE_HANDOVER.saturating_add(grace.max(SETTLE)),
            },
        }
    }

    /// Whether to exit now, `elapsed` after the signal with `in_flight` requests.
    fn reached(&self, elapsed: Duration, in_flight: usize) -> bool {
        match *self {
            Deadline::Quick { at } => elapsed >= at,
            Deadline::Drain { drain_from, at } => {
                elapsed >= at || (elapsed >= drain_from && in_flight == 0)
            }
        }
    }
}

/// Ends the process when `deadline` is reached, from a thread of its own (the runtimes may be
/// the ones that are stuck), running `at_exit` first.
fn arm_watchdog(deadline: Deadline, in_flight: Arc<InFlight>, at_exit: AtExit) {
    let signalled = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("shutdown watchdog".to_owned())
        .spawn(move || loop {
            let elapsed = signalled.elapsed();
            let count = in_flight.count();
            if deadline.reached(elapsed, count) {
                match deadline {
                    Deadline::Quick { .. } => {
                        tracing::warn!("still running {elapsed:.1?} after SIGINT; exiting now")
                    }
                    Deadline::Drain { .. } if count == 0 => {
                        tracing::info!("no request in flight; exiting")
                    }
                    Deadline::Drain { .. } => tracing::warn!(
                        "{count} requests still in flight {elapsed:.1?} after the signal \
                         ([server] shutdown_timeout); exiting now"
                    ),
                }
                at_exit();
                std::process::exit(0);
            }
            std::thread::sleep(POLL);
        });
    if let Err(e) = spawned {
        // Pingora's own shutdown still runs; only its bound is lost.
        tracing::error!("cannot start the shutdown watchdog: {e}");
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (mut quit, mut terminate, mut interrupt) = match streams {
            (Ok(quit), Ok(terminate), Ok(interrupt)) => (quit, terminate, interrupt),
            (quit, terminate, interrupt) => {
                let error = [quit.err(), terminate.err(), interrupt.err()]
                    .into_iter()
                    .flatten()
                    .next()
                    .map_or_else(String::new, |e| e.to_string());
                tracing::error!("cannot listen for SIGQUIT, SIGTERM and SIGINT: {error}");
                // Without them the process runs until it is killed.
                return std::future::pending().await;
            }
        };
        let signal = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = terminate.recv() => ShutdownSignal::GracefulTerminate,
            _ = interrupt.recv() => ShutdownSignal::FastShutdown,
        };
        arm_watchdog(
            Deadline::of(&signal, self.grace),
            Arc::clone(&self.in_flight),
            Arc::clone(&self.at_exit),
        );
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn interrupt_exits_after_the_quick_bound_whatever_is_in_flight() {
        let deadline = Deadline::of(&ShutdownSignal::FastShutdown, GRACE);
        assert!(!deadline.reached(Duration::from_millis(999), 0));
        assert!(deadline.reached(QUICK_EXIT, 7));
    }

    #[test]
    fn terminate_exits_once_drained_after_settling_or_at_the_grace_period() {
        let deadline = Deadline::of(&ShutdownSignal::GracefulTerminate, GRACE);
        assert!(!deadline.reached(Duration::from_millis(50), 0), "settling");
        assert!(deadline.reached(SETTLE, 0), "drained");
        assert!(!deadline.reached(Duration::from_secs(9), 1), "draining");
        assert!(deadline.reached(GRACE, 1), "grace period over");
    }

    #[test]
    fn upgrade_drains_only_after_the_handover_pause() {
        let deadline = Deadline::of(&ShutdownSignal::GracefulUpgrade, GRACE);
        assert!(!deadline.reached(Duration::from_secs(4), 0));
        assert!(deadline.reached(UPGRADE_HANDOVER + SETTLE, 0));
        assert!(deadline.reached(UPGRADE_HANDOVER + GRACE, 3));
    }

    #[test]
    fn a_guard_counts_its_request_until_dropped() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(first);
        drop(second);
        assert_eq!(in_flight.count(), 0);
    }
}
