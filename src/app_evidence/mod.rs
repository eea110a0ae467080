//! The app's own evidence, per upstream (`[upstreams.NAME.evidence]`): its log files followed
//! and its process and cgroup sampled, on one background thread for all upstreams; what a
//! failure reads of it is a copy of what that thread already gathered, and the failure's report
//! is amended by the thread once its after-window closed.
//!
//! Why the amendment: the app server often writes its line after triage answered (gunicorn's
//! arbiter reaps a SIGKILLed worker some milliseconds to a second later; node writes its heap
//! OOM before it aborts, but the follower only polls every [`POLL`]). So the response carries
//! the cause known at answer time (the lines already read), and the stored report gets the
//! whole window, `log_before` before the failure to `log_after` after it, and the cause the
//! lines decide ([`crate::cause::amend`]). Headers, access line and metrics keep the answer's.
//!
//! Bounds: at most [`config::AppEvidence::MAX_LOG_FILES`] files per upstream, each poll reading
//! at most [`follow::MAX_READ_PER_POLL`] of each, lines cut at [`follow::MAX_LINE`]; a ring of
//! [`RING_LINES`] lines and [`RING_BYTES`] bytes per upstream, none older than [`RING_AGE`];
//! a report keeps at most [`REPORT_LINES`] lines and [`REPORT_BYTES`] bytes; at most
//! [`MAX_PENDING`] amendments wait. Every line is made printable and redacted
//! ([`crate::report::redact_log_line`]) as it is read, before anything else sees it.
//!
//! Reloads: the thread reads the live config's evidence settings at each poll. An upstream
//! whose name and settings are unchanged keeps its followers (their positions), its ring and
//! its process history; a changed one starts afresh (its files followed from their end). So
//! this state outlives a reload here, for the life of the process, rather than in the
//! registry: nothing on the request path needs it but through [`Watcher::watched`].

pub mod follow;
pub mod process;

use crate::cause::{self, AppObserved, LogLine};
use crate::config;
use crate::diagnosis::Diagnosis;
use crate::id::RequestId;
use crate::report::{self, ReportStore};
use arc_swap::ArcSwap;
use follow::Follower;
use process::{ProcessSample, Sources, Tracker};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the log files are polled.
pub const POLL: Duration = Duration::from_millis(200);
/// How often the process and cgroup are sampled (the machine sampler's cadence).
pub const SAMPLE: Duration = crate::machine::INTERVAL;

/// The ring of recent lines of one upstream: bounded in lines, bytes and age (a minute is the
/// longest `log_before`, plus slack).
pub const RING_LINES: usize = 512;
pub const RING_BYTES: usize = 128 * 1024;
pub const RING_AGE: Duration = Duration::from_secs(70);

/// What a report keeps of the window.
pub const REPORT_LINES: usize = 20;
pub const REPORT_BYTES: usize = 8 * 1024;

/// Amendments waiting at most; beyond, the oldest is dropped (its report keeps the answer's).
pub const MAX_PENDING: usize = 1024;

/// The app evidence of every upstream that has some.
#[derive(Default)]
pub struct Watcher {
    watched: ArcSwap<HashMap<String, Arc<Watched>>>,
    pending: Mutex<VecDeque<Pending>>,
}

/// One upstream's evidence: what the thread gathered, for failures to copy.
pub struct Watched {
    pub settings: config::AppEvidence,
    lines: Mutex<Ring>,
    process: ArcSwap<Option<ProcessSample>>,
    /// The thread's own: the followers and the process history (only the thread locks it).
    gathering: Mutex<Gathering>,
}

struct Gathering {
    followers: Vec<Follower>,
    tracker: Tracker,
    sources: Sources,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, line: LogLine) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > RING_LINES || self.bytes > RING_BYTES {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(old) = self.lines.pop_front() {
            self.bytes -= old.text.len();
        }
    }

    fn forget_before(&mut self, oldest: SystemTime) {
        while self.lines.front().is_some_and(|l| l.at < oldest) {
            self.pop();
        }
    }
}

/// A report to amend once its after-window closed.
struct Pending {
    report: RequestId,
    watched: Arc<Watched>,
    diagnosis: Diagnosis,
    /// The failure's time, and how long its request had been in flight.
    at: SystemTime,
    age: Option<Duration>,
    due: Instant,
}

impl Watched {
    fn new(settings: config::AppEvidence) -> Watched {
        let followers = settings
            .log_files
            .iter()
            .map(|path| Follower::new(path.clone()))
            .collect();
        let sources = Sources {
            pidfile: settings.pidfile.clone(),
            cgroup: settings.cgroup.clone(),
        };
        Watched {
            settings,
            lines: Mutex::new(Ring::default()),
            process: ArcSwap::from_pointee(None),
            gathering: Mutex::new(Gathering {
                followers,
                tracker: Tracker::default(),
                sources,
            }),
        }
    }

    fn has_process(&self) -> bool {
        self.settings.pidfile.is_some() || self.settings.cgroup.is_some()
    }

    /// The lines that arrived within `from..=to`, oldest first: a copy, under a lock held only
    /// for it.
    fn lines_between(&self, from: SystemTime, to: SystemTime) -> Vec<LogLine> {
        let ring = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        ring.lines
            .iter()
            .filter(|l| l.at >= from && l.at <= to)
            .cloned()
            .collect()
    }

    /// The latest process sample, if one was taken.
    pub fn process(&self) -> Option<ProcessSample> {
        self.process.load().as_ref().clone()
    }

    /// What a failure at `at` sees of the app, with the lines up to `to` (now, at answer time;
    /// the end of the after-window, for the amendment).
    fn observe(&self, at: SystemTime, to: SystemTime) -> AppObserved {
        let from = at.checked_sub(self.settings.log_before).unwrap_or(at);
        let process = self.process();
        // The counter is sampled once a [`SAMPLE`]: a kill just before the failure is seen up
        // to that long after it.
        let oom_kill = process
            .as_ref()
            .and_then(|p| p.last_oom_kill)
            .filter(|k| k.at >= from && k.at <= to + SAMPLE);
        let restarted = process.as_ref().and_then(|p| p.started).filter(|started| {
            at.duration_since(*started).unwrap_or_default() <= process::RESTART_WINDOW
        });
        AppObserved {
            lines: self.lines_between(from, to),
            oom_kill,
            restarted,
        }
    }

    /// What the failure at `at` sees now: the lines read so far. Never I/O: a copy.
    pub fn at_failure(&self, at: SystemTime) -> AppObserved {
        self.observe(at, SystemTime::now())
    }

    /// One poll of the files (and, when `sample`, of the process), by the thread.
    fn gather(&self, now: SystemTime, sample: bool) {
        let mut gathering = self.gathering.lock().unwrap_or_else(|p| p.into_inner());
        let mut read = Vec::new();
        for follower in &mut gathering.followers {
            follower.poll(&mut |raw: &[u8]| {
                if let Some(text) = log_text(raw) {
                    read.push(LogLine {
                        at: now,
                        text: text.into(),
                    });
                }
            });
        }
        if !read.is_empty() || sample {
            let mut ring = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            for line in read {
                ring.push(line);
            }
            ring.forget_before(now.checked_sub(RING_AGE).unwrap_or(now));
        }
        if sample && self.has_process() {
            let Gathering {
                tracker, sources, ..
            } = &mut *gathering;
            let sampled = tracker.sample(sources, now);
            self.process.store(Arc::new(Some(sampled)));
        }
    }
}

/// A line as the evidence keeps it: valid UTF-8 (invalid bytes replaced), tabs as spaces, other
/// control characters dropped, trailing space trimmed, redacted; `None` when nothing is left.
fn log_text(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let printable: String = text
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let trimmed = printable.trim_end();
    (!trimmed.is_empty()).then(|| report::redact_log_line(trimmed))
}

/// The lines a report keeps of a window: the well-known ones always (a cause may quote them),
/// then the newest others, within [`REPORT_LINES`] and [`REPORT_BYTES`]; in their order.
pub fn report_lines(lines: &[LogLine]) -> Vec<String> {
    let mut keep = vec![false; lines.len()];
    let (mut count, mut bytes) = (0, 0);
    let known = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| cause::signs::sign_of(&l.text).is_some());
    let others = lines
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, l)| cause::signs::sign_of(&l.text).is_none());
    for (index, line) in known.rev().chain(others) {
        if count == REPORT_LINES || bytes + line.text.len() > REPORT_BYTES {
            continue;
        }
        keep[index] = true;
        count += 1;
        bytes += line.text.len();
    }
    lines
        .iter()
        .zip(keep)
        .filter(|(_, kept)| *kept)
        .map(|(l, _)| l.text.to_string())
        .collect()
}

impl Watcher {
    /// The evidence of the upstream `name`, if it has any: a map lookup, no lock.
    pub fn watched(&self, name: &str) -> Option<Arc<Watched>> {
        self.watched.load().get(name).cloned()
    }

    /// Makes the watched set the one `settings` (each upstream's name and evidence) describe,
    /// keeping what is unchanged.
    fn configure(&self, settings: &[(String, config::AppEvidence)]) {
        let current = self.watched.load();
        let unchanged = settings.len() == current.len()
            && settings.iter().all(|(name, s)| {
                current
                    .get(name)
                    .is_some_and(|watched| watched.settings == *s)
            });
        if unchanged {
            return;
        }
        let next: HashMap<String, Arc<Watched>> = settings
            .iter()
            .map(|(name, s)| {
                let kept = current
                    .get(name)
                    .filter(|watched| watched.settings == *s)
                    .cloned();
                let watched = kept.unwrap_or_else(|| Arc::new(Watched::new(s.clone())));
                (name.clone(), watched)
            })
            .collect();
        self.watched.store(Arc::new(next));
    }

    /// Asks for the report `report` of a failure at `at` to be amended once the upstream's
    /// after-window closed (and the follower has read it).
    pub fn amend_later(
        &self,
        report: RequestId,
        watched: Arc<Watched>,
        diagnosis: Diagnosis,
        at: SystemTime,
        age: Option<Duration>,
    ) {
        let mut wait = watched.settings.log_after + POLL * 2;
        if watched.has_process() {
            wait = wait.max(watched.settings.log_after + SAMPLE + POLL);
        }
        let pending = Pending {
            report,
            watched,
            diagnosis,
            at,
            age,
            due: Instant::now() + wait,
        };
        let mut queue = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_PENDING {
            queue.pop_front();
        }
        queue.push_back(pending);
    }

    /// The amendments due by `now`, taken out of the queue.
    fn due(&self, now: Instant) -> Vec<Pending> {
        let mut queue = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if queue.front().is_none() {
            return Vec::new();
        }
        let (due, waiting): (Vec<_>, Vec<_>) = queue.drain(..).partition(|p| p.due <= now);
        queue.extend(waiting);
        due
    }

    /// Gathers for every watched upstream every [`POLL`] and amends the reports that are due,
    /// on a thread of its own for the life of the process; `settings` gives, at each poll, the
    /// live config's evidence settings.
    pub fn start(
        self: &Arc<Self>,
        reports: Arc<ReportStore>,
        settings: impl Fn() -> Vec<(String, config::AppEvidence)> + Send + 'static,
    ) {
        let watcher = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("app-evidence".into())
            .spawn(move || {
                let mut last_sample: Option<Instant> = None;
                loop {
                    watcher.configure(&settings());
                    let tick = Instant::now();
                    let sample = last_sample.is_none_or(|t| tick.duration_since(t) >= SAMPLE);
                    if sample {
                        last_sample = Some(tick);
                    }
                    let now = SystemTime::now();
                    for watched in watcher.watched.load().values() {
                        watched.gather(now, sample);
                    }
                    for pending in watcher.due(Instant::now()) {
                        amend(&reports, &pending);
                    }
                    std::thread::sleep(POLL);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the app evidence thread: reports have no app log");
        }
    }
}

/// Amends one report with its whole window: the lines, and the cause they decide.
fn amend(reports: &ReportStore, pending: &Pending) {
    let watched = &pending.watched;
    let to = pending.at + watched.settings.log_after;
    let app = watched.observe(pending.at, to);
    reports.amend(pending.report, |stored| {
        let mut amended = stored.clone();
        if !watched.settings.log_files.is_empty() {
            amended.app_log = Some(report_lines(&app.lines));
        }
        // The process as the window closed: whether it survived the failure, and restarted.
        if let Some(process) = watched.process() {
            amended.app_process = Some(process);
        }
        if let Some(found) = cause::amend(
            &stored.cause,
            pending.diagnosis,
            &app,
            pending.at,
            pending.age,
        ) {
            amended.cause = Arc::new(found);
        }
        amended
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            at: SystemTime::UNIX_EPOCH,
            text: text.into(),
        }
    }

    /// A report keeps the newest lines within its bounds, and a well-known line however old.
    #[test]
    fn report_lines_are_bounded_and_keep_the_known_ones() {
        let mut lines = vec![line(
            "Worker (pid:3) was sent SIGKILL! Perhaps out of memory?",
        )];
        lines.extend((0..50).map(|i| line(&format!("request {i}"))));
        let kept = report_lines(&lines);
        assert_eq!(kept.len(), REPORT_LINES);
        assert!(kept[0].contains("SIGKILL"), "{kept:?}");
        assert_eq!(kept[REPORT_LINES - 1], "request 49");
        let big: Vec<LogLine> = (0..20).map(|_| line(&"x".repeat(1000))).collect();
        let kept = report_lines(&big);
        assert!(kept.iter().map(String::len).sum::<usize>() <= REPORT_BYTES);
        assert_eq!(kept.len(), 8);
    }

    /// Lines are made printable and redacted as they are read.
    #[test]
    fn lines_are_cleaned_as_read() {
        assert_eq!(
            log_text(b"a\tb\x1b[31m red\xff  \r").as_deref(),
            Some("a b[31m red\u{fffd}")
        );
        assert_eq!(log_text(b"   \r"), None);
        let redacted = log_text(b"login password=hunter2 ok").expect("a line");
        assert!(!redacted.contains("hunter2"), "{redacted}");
    }

    /// The ring holds its bounds in lines, bytes and age.
    #[test]
    fn ring_is_bounded() {
        let mut ring = Ring::default();
        let t0 = SystemTime::now();
        for i in 0..(RING_LINES + 10) {
            ring.push(LogLine {
                at: t0,
                text: format!("{i}").into(),
            });
        }
        assert_eq!(ring.lines.len(), RING_LINES);
        for _ in 0..300 {
            ring.push(LogLine {
                at: t0,
                text: "y".repeat(1024).into(),
            });
        }
        assert!(ring.bytes <= RING_BYTES);
        ring.forget_before(t0 + Duration::from_secs(1));
        assert!(ring.lines.is_empty());
        assert_eq!(ring.bytes, 0);
    }

    /// A reload with the same settings keeps an upstream's state; changed settings start it
    /// afresh; an upstream no longer configured is dropped.
    #[test]
    fn configure_keeps_what_is_unchanged() {
        let watcher = Watcher::default();
        let settings = |file: &str| config::AppEvidence {
            log_files: vec![file.into()],
            pidfile: None,
            cgroup: None,
            log_before: Duration::from_secs(5),
            log_after: Duration::from_secs(1),
        };
        watcher.configure(&[("app".into(), settings("/tmp/a.log"))]);
        let first = watcher.watched("app").expect("watched");
        watcher.configure(&[
            ("app".into(), settings("/tmp/a.log")),
            ("other".into(), settings("/tmp/b.log")),
        ]);
        assert!(Arc::ptr_eq(&first, &watcher.watched("app").expect("kept")));
        watcher.configure(&[("app".into(), settings("/tmp/c.log"))]);
        assert!(!Arc::ptr_eq(
            &first,
            &watcher.watched("app").expect("renewed")
        ));
        assert!(watcher.watched("other").is_none());
    }
}
