//! The machine triage runs on, sampled in the background once a second: load, CPU busy, memory,
//! swap, pressure stalls and the free space of the configured disks. triage usually runs on the
//! app's own host, so a CPU pinned at 100 %, memory exhausted or a full disk at the moment of a
//! failure is evidence of its cause.
//!
//! Sampling reads `/proc` and calls `statvfs` on a thread of its own, never on the request path;
//! a failure only copies the latest sample. The last minute is kept in a ring.

use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often the machine is sampled, and how many samples are kept (a minute).
pub const INTERVAL: Duration = Duration::from_secs(1);
const KEPT: usize = 60;

/// One disk's space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// The machine at one moment. A figure the kernel does not give is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub at: Option<SystemTime>,
    pub load1: Option<f64>,
    /// Share of CPU time not idle since the previous sample, all CPUs together.
    pub cpu_busy_percent: Option<f64>,
    pub mem_available_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
    /// `some avg10` of `/proc/pressure/{cpu,memory,io}`: the share of the last 10 s in which
    /// some task waited for that resource.
    pub pressure_cpu: Option<f64>,
    pub pressure_memory: Option<f64>,
    pub pressure_io: Option<f64>,
    pub disks: Vec<Disk>,
}

/// The latest sample and the last minute of them.
#[derive(Default)]
pub struct Machine {
    latest: ArcSwap<Sample>,
    recent: Mutex<VecDeque<Arc<Sample>>>,
}

impl Machine {
    /// The latest sample (empty until the first one).
    pub fn latest(&self) -> Arc<Sample> {
        self.latest.load_full()
    }

    /// The samples of the last minute, oldest first.
    pub fn recent(&self) -> Vec<Arc<Sample>> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn store(&self, sample: Sample) {
        let sample = Arc::new(sample);
        self.latest.store(Arc::clone(&sample));
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back(sample);
        }
    }

    /// Samples the machine every [`INTERVAL`] on a thread of its own, for the life of the
    /// process; `disks` says, at each sample, which paths to measure (the live config's).
    pub fn start(self: &Arc<Self>, disks: impl Fn() -> Vec<PathBuf> + Send + 'static) {
        let machine = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("machine-sampler".into())
            .spawn(move || {
                let mut cpu = read_cpu_times();
                loop {
                    std::thread::sleep(INTERVAL);
                    let now = read_cpu_times();
                    machine.store(sample(cpu, now, &disks()));
                    cpu = now;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the machine sampler: reports have no machine state");
        }
    }
}

/// CPU time (busy, total) in clock ticks, from the first line of `/proc/stat`.
fn read_cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    cpu_times(stat.lines().next()?)
}

fn cpu_times(line: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal...: idle and iowait are not busy.
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn sample(before: Option<(u64, u64)>, now: Option<(u64, u64)>, disks: &[PathBuf]) -> Sample {
    let cpu_busy_percent = match (before, now) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some((b1.saturating_sub(b0)) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => None,
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| meminfo_kib(&meminfo, key).map(|k| k * 1024);
    let swap_used_bytes = match (kib("SwapTotal:"), kib("SwapFree:")) {
        (Some(total), Some(free)) => Some(total.saturating_sub(free)),
        _ => None,
    };
    Sample {
        at: Some(SystemTime::now()),
        load1: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        cpu_busy_percent,
        mem_available_bytes: kib("MemAvailable:"),
        mem_total_bytes: kib("MemTotal:"),
        swap_used_bytes,
        pressure_cpu: pressure("cpu"),
        pressure_memory: pressure("memory"),
        pressure_io: pressure("io"),
        disks: disks.iter().filter_map(|p| disk(p.as_path())).collect(),
    }
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `some avg10` of `/proc/pressure/<resource>`, where the kernel has PSI.
fn pressure(resource: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
    some_avg10(&text)
}

fn some_avg10(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

fn disk(path: &std::path::Path) -> Option<Disk> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let block = stat.fragment_size() as u64;
    Some(Disk {
        path: path.to_path_buf(),
        free_bytes: (stat.blocks_available() as u64).saturating_mul(block),
        total_bytes: (stat.blocks() as u64).saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy time is everything but idle and iowait.
    #[test]
    fn cpu_line() {
        assert_eq!(
            cpu_times("cpu  100 0 50 800 50 0 0 0 0 0"),
            Some((150, 1000))
        );
        assert_eq!(cpu_times("intr 1 2"), None);
    }

    #[test]
    fn meminfo_and_pressure() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(1000));
        assert_eq!(meminfo_kib(meminfo, "SwapFree:"), None);
        let psi = "some avg10=50.77 avg60=30.55 avg300=29.49 total=2657149789\nfull avg10=0.00";
        assert_eq!(some_avg10(psi), Some(50.77));
    }

    /// A sample of this machine has its memory and the root disk.
    #[test]
    fn samples_this_machine() {
        let s = sample(read_cpu_times(), read_cpu_times(), &[PathBuf::from("/")]);
        assert!(s.mem_total_bytes.is_some_and(|t| t > 0));
        assert_eq!(s.disks.len(), 1);
        assert!(s.disks[0].total_bytes >= s.disks[0].free_bytes);
        let machine = Machine::default();
        for _ in 0..(KEPT + 5) {
            machine.store(s.clone());
        }
        assert_eq!(machine.recent().len(), KEPT);
    }
}
