//! What is failing, since when and how often: each upstream's requests and failures over the
//! last hour, in 10-second steps and by cause, and its failures grouped into incidents (a run
//! of failures with no quiet minute in between), for `GET /incidents`.
//!
//! Every finished request counts in its upstream's timeline with a few relaxed atomic adds
//! (no lock: the upstream's timeline is found in a map swapped whole when an upstream is first
//! seen); only a failure takes the incidents' lock. Memory is bounded: 360 steps per upstream
//! and at most [`MAX_INCIDENTS`] incidents, the oldest dropped first.

use crate::cause::Cause;
use crate::deploys::Deploy;
use crate::id::RequestId;
use arc_swap::ArcSwap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One step of a timeline.
pub const STEP: Duration = Duration::from_secs(10);
/// Steps kept: an hour.
pub const STEPS: usize = 360;
/// A failure this long after the last one of its upstream starts a new incident.
pub const QUIET: Duration = Duration::from_secs(60);
/// Incidents kept, all upstreams together.
pub const MAX_INCIDENTS: usize = 200;
/// Upstreams with a timeline, at most (the config's upstreams, across reloads).
const MAX_UPSTREAMS: usize = 1024;

/// One 10-second step: its number (seconds since the epoch / 10), requests, failures by cause.
struct Step {
    number: AtomicU64,
    requests: AtomicU32,
    failures: [AtomicU32; Cause::COUNT],
}

impl Step {
    fn new() -> Step {
        Step {
            number: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            failures: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// This step, emptied first when it still holds an older step's counts. Two requests
    /// racing over the turn of a step may lose a count: a chart can afford that.
    fn at(&self, number: u64) -> &Step {
        let seen = self.number.load(Ordering::Relaxed);
        if seen != number
            && self
                .number
                .compare_exchange(seen, number, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            for failures in &self.failures {
                failures.store(0, Ordering::Relaxed);
            }
        }
        self
    }
}

/// An upstream's last hour.
pub struct Timeline {
    steps: Box<[Step]>,
}

/// A step as the page draws it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepCounts {
    /// The step's start.
    pub start: u64,
    pub requests: u32,
    /// Failures by cause, only the causes with some.
    pub failures: Vec<(Cause, u32)>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            steps: (0..STEPS).map(|_| Step::new()).collect(),
        }
    }

    fn step(&self, at: SystemTime) -> (&Step, u64) {
        let number = seconds(at) / STEP.as_secs();
        (
            self.steps[(number % STEPS as u64) as usize].at(number),
            number,
        )
    }

    /// The last hour's steps ending with the one of `now`, oldest first (empty steps
    /// included, so the page's x axis is time).
    pub fn last_hour(&self, now: SystemTime) -> Vec<StepCounts> {
        let newest = seconds(now) / STEP.as_secs();
        (0..STEPS as u64)
            .rev()
            .map(|back| {
                let number = newest.saturating_sub(back);
                let step = &self.steps[(number % STEPS as u64) as usize];
                let start = number * STEP.as_secs();
                if step.number.load(Ordering::Relaxed) != number || number == 0 {
                    return StepCounts {
                        start,
                        ..StepCounts::default()
                    };
                }
                StepCounts {
                    start,
                    requests: step.requests.load(Ordering::Relaxed),
                    failures: Cause::ALL
                        .iter()
                        .zip(&step.failures)
                        .map(|(&cause, n)| (cause, n.load(Ordering::Relaxed)))
                        .filter(|&(_, n)| n > 0)
                        .collect(),
                }
            })
            .collect()
    }
}

/// Failures of one upstream with no quiet [`QUIET`] in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub upstream: String,
    pub start: SystemTime,
    /// The last failure's time.
    pub last: SystemTime,
    pub failures: u64,
    /// Failures by cause, most frequent first when read through [`Incidents::list`].
    pub causes: Vec<(Cause, u64)>,
    pub first_id: RequestId,
    pub last_id: RequestId,
    /// The deploy marker within the deploy window before the incident started.
    pub deploy: Option<Deploy>,
}

impl Incident {
    /// Over once a quiet minute passed since its last failure.
    pub fn end(&self, now: SystemTime) -> Option<SystemTime> {
        (now.duration_since(self.last).unwrap_or_default() >= QUIET).then_some(self.last)
    }
}

/// Every upstream's timeline and the incidents, for the life of the process (a reload keeps
/// them: they are keyed by upstream name).
#[derive(Default)]
pub struct Incidents {
    timelines: ArcSwap<HashMap<String, Arc<Timeline>>>,
    /// Serializes adding a timeline (rare: an upstream's first request).
    adding: Mutex<()>,
    incidents: Mutex<VecDeque<Incident>>,
}

impl Incidents {
    fn timeline(&self, upstream: &str) -> Option<Arc<Timeline>> {
        if let Some(timeline) = self.timelines.load().get(upstream) {
            return Some(Arc::clone(timeline));
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.timelines.load_full();
        if let Some(timeline) = current.get(upstream) {
            return Some(Arc::clone(timeline));
        }
        if current.len() >= MAX_UPSTREAMS {
            return None;
        }
        let timeline = Arc::new(Timeline::new());
        let mut next = HashMap::clone(&current);
        next.insert(upstream.to_owned(), Arc::clone(&timeline));
        self.timelines.store(Arc::new(next));
        Some(timeline)
    }

    /// Counts a finished request of `upstream` (a config name: `none` requests are not
    /// counted); a failure also goes into its upstream's incident.
    pub fn record(
        &self,
        upstream: &str,
        at: SystemTime,
        failure: Option<(Cause, RequestId)>,
        deploy: impl FnOnce() -> Option<Deploy>,
    ) {
        let Some(timeline) = self.timeline(upstream) else {
            return;
        };
        let (step, _) = timeline.step(at);
        step.requests.fetch_add(1, Ordering::Relaxed);
        let Some((cause, id)) = failure else {
            return;
        };
        step.failures[cause].fetch_add(1, Ordering::Relaxed);
        let mut incidents = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        let open = incidents
            .iter_mut()
            .rev()
            .find(|i| i.upstream == upstream)
            .filter(|i| at.duration_since(i.last).unwrap_or_default() < QUIET);
        match open {
            Some(incident) => {
                incident.last = incident.last.max(at);
                incident.failures += 1;
                incident.last_id = id;
                match incident.causes.iter_mut().find(|(c, _)| *c == cause) {
                    Some((_, n)) => *n += 1,
                    None => incident.causes.push((cause, 1)),
                }
            }
            None => {
                if incidents.len() >= MAX_INCIDENTS {
                    incidents.pop_front();
                }
                incidents.push_back(Incident {
                    upstream: upstream.to_owned(),
                    start: at,
                    last: at,
                    failures: 1,
                    causes: vec![(cause, 1)],
                    first_id: id,
                    last_id: id,
                    deploy: deploy(),
                });
            }
        }
    }

    /// The incidents, newest first, each one's causes most frequent first.
    pub fn list(&self) -> Vec<Incident> {
        let incidents = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        incidents
            .iter()
            .rev()
            .cloned()
            .map(|mut i| {
                i.causes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
                i
            })
            .collect()
    }

    /// The incident a failure at `at` of `upstream` belongs to.
    pub fn of(&self, upstream: &str, at: SystemTime) -> Option<Incident> {
        let incidents = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        incidents
            .iter()
            .rev()
            .find(|i| i.upstream == upstream && i.start <= at && at <= i.last)
            .cloned()
    }

    /// The upstreams with a timeline, sorted, with their last hour.
    pub fn timelines(&self, now: SystemTime) -> Vec<(String, Vec<StepCounts>)> {
        let mut all: Vec<_> = self
            .timelines
            .load()
            .iter()
            .map(|(name, t)| (name.clone(), t.last_hour(now)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs)
    }

    fn id(text: &str) -> RequestId {
        RequestId::parse(text).expect("id")
    }

    /// A storm of failures with no quiet minute is one incident with its causes counted; a
    /// failure after a quiet minute starts the next; other upstreams have their own.
    #[test]
    fn a_storm_is_one_incident() {
        let incidents = Incidents::default();
        for s in 0..50 {
            let cause = if s % 5 == 0 {
                Cause::AppCrashed
            } else {
                Cause::AppDown
            };
            incidents.record("app", at(s), Some((cause, id("00000000000000aa"))), || None);
        }
        incidents.record("app", at(49), None, || None);
        incidents.record(
            "api",
            at(10),
            Some((Cause::AppError, id("00000000000000bb"))),
            || None,
        );
        incidents.record(
            "app",
            at(200),
            Some((Cause::AppDown, id("00000000000000cc"))),
            || None,
        );
        let list = incidents.list();
        assert_eq!(list.len(), 3);
        let storm = list.iter().find(|i| i.start == at(0)).expect("the storm");
        assert_eq!(storm.failures, 50);
        assert_eq!(
            storm.causes,
            vec![(Cause::AppDown, 40), (Cause::AppCrashed, 10)]
        );
        assert_eq!(storm.end(at(200)), Some(at(49)));
        assert_eq!(list[0].start, at(200), "newest first");
        assert_eq!(list[0].end(at(201)), None, "ongoing");
        assert_eq!(incidents.of("app", at(20)).map(|i| i.start), Some(at(0)));
    }

    /// The timeline counts requests and failures by cause per step, and a step an hour old is
    /// emptied before it is reused.
    #[test]
    fn the_timeline_counts_per_step_and_forgets_the_hour_before() {
        let incidents = Incidents::default();
        for s in 0..10 {
            incidents.record("app", at(s), None, || None);
        }
        incidents.record(
            "app",
            at(5),
            Some((Cause::AppDown, id("00000000000000aa"))),
            || None,
        );
        let hour = &incidents.timelines(at(9))[0].1;
        assert_eq!(hour.len(), STEPS);
        let last = hour.last().expect("a step");
        assert_eq!(
            (last.requests, last.failures.clone()),
            (11, vec![(Cause::AppDown, 1)])
        );
        // An hour later the same slot holds a new step.
        incidents.record("app", at(3600), None, || None);
        let hour = &incidents.timelines(at(3600))[0].1;
        assert_eq!(hour.last().map(|s| s.requests), Some(1));
        assert!(hour[..STEPS - 1].iter().all(|s| s.requests == 0));
    }

    /// At most MAX_INCIDENTS are kept, the oldest dropped.
    #[test]
    fn incidents_are_bounded() {
        let incidents = Incidents::default();
        for n in 0..(MAX_INCIDENTS as u64 + 10) {
            incidents.record(
                "app",
                at(n * 120),
                Some((Cause::AppDown, id("00000000000000aa"))),
                || None,
            );
        }
        let list = incidents.list();
        assert_eq!(list.len(), MAX_INCIDENTS);
        assert_eq!(list.last().map(|i| i.start), Some(at(10 * 120)));
    }
}
