//! The app's process and cgroup, sampled once a second on the evidence thread: whether it is
//! alive, its pid and when it (re)started (from `pidfile`, or the oldest process of its cgroup),
//! how often it restarted in the last minute, its memory against its limit (`memory.current`,
//! `memory.max`) and the OOM kills in its cgroup (`memory.events` `oom_kill`).
//!
//! Everything is read from `/proc` and cgroup v2 files, each read bounded; a figure that cannot
//! be read (no such file, cgroup v1, no permission) is `None`, never an error.

use crate::cause::OomKill;
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much of a `/proc` or cgroup file is read: they are a few lines; `cgroup.procs` of a big
/// app is read only up to this.
const MAX_READ: u64 = 64 * 1024;

/// Restarts are counted over this long.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The restarts remembered (more within a minute still count as this many).
const MAX_RESTARTS: usize = 64;

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, which Linux fixes at 100 on
/// every architecture it exports it for (`sysconf(_SC_CLK_TCK)` returns it).
const TICKS_PER_SECOND: u64 = 100;

/// The app's process at one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSample {
    pub at: Option<SystemTime>,
    /// Whether the pidfile's process is running (not a zombie), or the cgroup has a process;
    /// `None` when neither could be read.
    pub alive: Option<bool>,
    pub pid: Option<u32>,
    /// When that process started.
    pub started: Option<SystemTime>,
    /// Changes of the process (another pid, or the same pid started again) in the last minute.
    pub restarts_last_minute: u32,
    pub memory_current_bytes: Option<u64>,
    /// `None` for `max` (no limit) or when unread.
    pub memory_max_bytes: Option<u64>,
    /// The cgroup's `oom_kill` count since it was made.
    pub oom_kills: Option<u64>,
    /// The latest rise of `oom_kills` triage saw.
    pub last_oom_kill: Option<OomKill>,
}

/// Where to read the process from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub pidfile: Option<PathBuf>,
    pub cgroup: Option<PathBuf>,
}

/// What the sampler remembers between samples.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The process last seen: pid and start time in ticks since boot.
    last: Option<(u32, u64)>,
    restarts: VecDeque<SystemTime>,
    oom_kills: Option<u64>,
    last_oom_kill: Option<OomKill>,
}

impl Tracker {
    /// One sample of `sources`, at `now`.
    pub fn sample(&mut self, sources: &Sources, now: SystemTime) -> ProcessSample {
        let cgroup = sources.cgroup.as_deref();
        let from_pidfile = sources
            .pidfile
            .as_deref()
            .and_then(read_bounded)
            .and_then(|text| text.trim().parse::<u32>().ok());
        let procs = cgroup.map(cgroup_pids);
        let pid = from_pidfile.or_else(|| {
            procs
                .as_ref()
                .and_then(|pids| oldest(pids.as_deref().unwrap_or_default()))
        });
        let stat = pid.and_then(process_stat);
        let alive = match (&sources.pidfile, &procs) {
            (Some(_), _) => Some(stat.as_ref().is_some_and(|s| s.state != 'Z')),
            (None, Some(Some(pids))) => Some(!pids.is_empty()),
            (None, Some(None)) | (None, None) => None,
        };
        let current = pid.zip(stat.as_ref().map(|s| s.start_ticks));
        if let (Some(previous), Some(current)) = (self.last, current) {
            if previous != current {
                if self.restarts.len() == MAX_RESTARTS {
                    self.restarts.pop_front();
                }
                self.restarts.push_back(now);
            }
        }
        if current.is_some() {
            self.last = current;
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() > RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        let oom_kills = cgroup
            .and_then(|c| read_bounded(&c.join("memory.events")))
            .and_then(|text| keyed(&text, "oom_kill"));
        if let (Some(before), Some(now_count)) = (self.oom_kills, oom_kills) {
            if now_count > before {
                self.last_oom_kill = Some(OomKill {
                    at: now,
                    from: before,
                    to: now_count,
                });
            }
        }
        if oom_kills.is_some() {
            self.oom_kills = oom_kills;
        }
        ProcessSample {
            at: Some(now),
            alive,
            pid,
            started: stat.and_then(|s| started_at(s.start_ticks)),
            restarts_last_minute: self.restarts.len() as u32,
            memory_current_bytes: cgroup
                .and_then(|c| read_bounded(&c.join("memory.current")))
                .and_then(|t| t.trim().parse().ok()),
            memory_max_bytes: cgroup
                .and_then(|c| read_bounded(&c.join("memory.max")))
                .and_then(|t| t.trim().parse().ok()),
            oom_kills,
            last_oom_kill: self.last_oom_kill,
        }
    }
}

/// A small file's text, at most [`MAX_READ`] bytes of it.
fn read_bounded(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_READ)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The pids in a cgroup (`cgroup.procs`), `None` when it cannot be read.
fn cgroup_pids(cgroup: &Path) -> Option<Vec<u32>> {
    let text = read_bounded(&cgroup.join("cgroup.procs"))?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The process of `pids` that started first: the app's main process (its workers came after).
/// At most the first 256 are looked at.
fn oldest(pids: &[u32]) -> Option<u32> {
    pids.iter()
        .take(256)
        .filter_map(|&pid| process_stat(pid).map(|s| (s.start_ticks, pid)))
        .min()
        .map(|(_, pid)| pid)
}

/// The fields of `/proc/PID/stat` the sampler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    /// Field 22: the start time, in clock ticks since boot.
    start_ticks: u64,
}

fn process_stat(pid: u32) -> Option<Stat> {
    parse_stat(&read_bounded(Path::new(&format!("/proc/{pid}/stat")))?)
}

/// `/proc/PID/stat`: `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so the
/// fields are counted from after its last `)`: the state is field 3, the start time field 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after) = text.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

/// A start time in ticks since boot as a time, from `/proc/stat`'s `btime`.
fn started_at(ticks: u64) -> Option<SystemTime> {
    let stat = read_bounded(Path::new("/proc/stat"))?;
    let boot = keyed(&stat, "btime")?;
    let millis = ticks.saturating_mul(1000) / TICKS_PER_SECOND;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(boot))?
        .checked_add(Duration::from_millis(millis))
}

/// The number after `key` on its line (`oom_kill 3`, `btime 1700000000`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state and start time are read after comm's last `)`, whatever comm holds.
    #[test]
    fn stat_fields_after_comm() {
        let line = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn keyed_numbers() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        assert_eq!(keyed(events, "oom"), Some(2));
        assert_eq!(keyed(events, "missing"), None);
    }

    /// This test's own process through a pidfile: alive, its pid, started before now; the
    /// same process again is no restart, another one is; a pid that is gone is not alive.
    #[test]
    fn samples_a_pidfile() {
        let dir = std::env::temp_dir().join(format!("triage-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pidfile = dir.join("app.pid");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).expect("pidfile");
        let sources = Sources {
            pidfile: Some(pidfile.clone()),
            cgroup: None,
        };
        let mut tracker = Tracker::default();
        let now = SystemTime::now();
        let first = tracker.sample(&sources, now);
        assert_eq!(first.alive, Some(true));
        assert_eq!(first.pid, Some(std::process::id()));
        assert!(first
            .started
            .is_some_and(|s| s <= now + Duration::from_secs(1)));
        assert_eq!(tracker.sample(&sources, now).restarts_last_minute, 0);
        // Another live process: pid 1 (init, or the container's first process).
        std::fs::write(&pidfile, "1\n").expect("pidfile");
        let other = tracker.sample(&sources, now);
        assert_eq!(other.restarts_last_minute, 1);
        // Forgotten after the window.
        let later = tracker.sample(&sources, now + RESTART_WINDOW + Duration::from_secs(1));
        assert_eq!(later.restarts_last_minute, 0);
        std::fs::write(&pidfile, "999999999\n").expect("pidfile");
        assert_eq!(tracker.sample(&sources, now).alive, Some(false));
    }

    /// A rise of oom_kill is remembered with its time; the first reading is only a baseline.
    #[test]
    fn oom_kills_from_memory_events() {
        let cgroup = std::env::temp_dir().join(format!("triage-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).expect("dir");
        std::fs::write(cgroup.join("memory.events"), "oom 0\noom_kill 2\n").expect("events");
        std::fs::write(cgroup.join("memory.current"), "1048576\n").expect("current");
        std::fs::write(cgroup.join("memory.max"), "max\n").expect("max");
        std::fs::write(cgroup.join("cgroup.procs"), "").expect("procs");
        let sources = Sources {
            pidfile: None,
            cgroup: Some(cgroup.clone()),
        };
        let mut tracker = Tracker::default();
        let t0 = SystemTime::now();
        let first = tracker.sample(&sources, t0);
        assert_eq!(first.oom_kills, Some(2));
        assert_eq!(first.last_oom_kill, None);
        assert_eq!(first.alive, Some(false), "an empty cgroup");
        assert_eq!(first.memory_current_bytes, Some(1 << 20));
        assert_eq!(first.memory_max_bytes, None, "max is no limit");
        std::fs::write(cgroup.join("memory.events"), "oom 1\noom_kill 3\n").expect("events");
        let t1 = t0 + Duration::from_secs(1);
        let second = tracker.sample(&sources, t1);
        assert_eq!(
            second.last_oom_kill,
            Some(OomKill {
                at: t1,
                from: 2,
                to: 3
            })
        );
    }
}
