//! What the cause derivation reads about one failure: the attempt, the server's past, a
//! deploy marker, a probe, and the thresholds, as plain values the proxy fills in.

use crate::config::PeerAddr;
use crate::diagnosis::Diagnosis;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// What the server's history in this process says, as the cause reads it.
#[derive(Debug, Clone, Default)]
pub struct ServerPast {
    /// When triage first had this server in its config.
    pub first_seen: Option<SystemTime>,
    /// The last final answer: when, and its status.
    pub last_success: Option<(SystemTime, u16)>,
    /// The start of the current failure streak (failures with no answer since).
    pub failing_since: Option<SystemTime>,
    /// Failures in the current streak.
    pub failures: u32,
    /// Times the server came back (answered after failing to accept connections) within
    /// `comeback_window`.
    pub comebacks: u32,
    pub comeback_window: Duration,
    /// Requests in flight at the server when this one failed (this one included).
    pub in_flight: u32,
    /// The server's recent successful response times, oldest first.
    pub recent_response_times: Vec<Duration>,
    /// The last change of the hostname's addresses: when, from, to.
    pub address_change: Option<(SystemTime, Vec<IpAddr>, Vec<IpAddr>)>,
    /// How long each recent request that broke with no answer had been in flight (this one
    /// excluded), newest last.
    pub broken_ages: Vec<Duration>,
}

/// What a one-off look at the failed address found, after the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No probe ran (rate-limited, or nothing to decide).
    NotRun,
    /// A plain connect was refused: nothing listens any more.
    Refused,
    /// A plain connect was accepted: something still listens.
    Accepted,
    /// A TLS ClientHello got a TLS answer: the port speaks TLS.
    SpeaksTls,
    /// An FCGI_GET_VALUES got a FastCGI answer: the port speaks FastCGI (and, at a FastCGI
    /// server, a worker was free to answer it).
    SpeaksFastcgi,
    /// A connect was accepted, but an FCGI_GET_VALUES got no answer in `waited`: no worker of
    /// the FastCGI server was free to read it.
    FastcgiBusy { waited: Duration },
}

/// A deploy marker, as the cause reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployMark {
    pub version: String,
    pub time: SystemTime,
}

/// The thresholds the cause uses (`[causes]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A failure of a reused connection sooner than this after sending is the stale keep-alive
    /// race; later, the app had the request.
    pub stale_race: Duration,
    /// Failures within this long after a deploy marker are the deploy's.
    pub deploy_window: Duration,
    /// An address change this recent may explain a failure.
    pub address_window: Duration,
    /// Comebacks within the window that make a crash loop.
    pub crash_loop_comebacks: u32,
    /// Requests in flight at one server from which a timeout is overload.
    pub overload_in_flight: u32,
    /// How long triage keeps an idle pooled connection.
    pub pool_idle: Duration,
    /// CPU busy from which the host is saturated.
    pub host_cpu_busy_percent: u32,
    /// Available memory below this share of the total: the host is out of memory.
    pub host_memory_available_percent: u32,
    /// A disk with less than this share free is full.
    pub host_disk_free_percent: u32,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            stale_race: Duration::from_millis(250),
            deploy_window: Duration::from_secs(600),
            address_window: Duration::from_secs(600),
            crash_loop_comebacks: 2,
            overload_in_flight: 64,
            pool_idle: Duration::from_secs(60),
            host_cpu_busy_percent: 95,
            host_memory_available_percent: 5,
            host_disk_free_percent: 2,
        }
    }
}

/// The machine at the failure, as the cause reads it (see `crate::machine`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostState {
    pub cpu_busy_percent: Option<f64>,
    pub mem_available_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    /// Each sampled disk: path, free bytes, total bytes.
    pub disks: Vec<(String, u64, u64)>,
}

/// Everything `derive` reads about one failure.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub diagnosis: Diagnosis,
    /// The request's id, for hints that point at the app's log.
    pub id: &'a str,
    /// The address that failed.
    pub address: Option<PeerAddr>,
    /// The upstream's hostname, when it is configured by name.
    pub host: Option<&'a str>,
    pub upstream_tls: bool,
    /// Whether the failed attempt reused a pooled connection.
    pub reused: bool,
    /// How long ago that reused connection was opened, when known.
    pub connection_age: Option<Duration>,
    /// How long the request had been in flight at the server when it broke.
    pub age: Option<Duration>,
    pub path: &'a str,
    /// The read timeout that expired, for a response timeout.
    pub read_timeout: Duration,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    /// The first bytes of the app's body, when it answered with an error.
    pub body_start: &'a [u8],
    pub past: Option<&'a ServerPast>,
    pub deploy: Option<&'a DeployMark>,
    /// The machine at the failure, when it was sampled.
    pub machine: Option<&'a HostState>,
    pub probe: Probe,
    pub now: SystemTime,
    pub thresholds: Thresholds,
    /// What a FastCGI upstream's attempt adds; `None` for an HTTP upstream.
    pub fastcgi: Option<FastcgiObserved<'a>>,
    /// The app's own evidence (`[upstreams.NAME.evidence]`), when the upstream has some.
    pub app: Option<&'a AppObserved>,
}

/// One line of the app's log, as triage read it: when it arrived, and its text (sanitized and
/// bounded by the follower). Shared, so a failure's copy of a window is a count per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    pub text: std::sync::Arc<str>,
}

/// A rise of the `oom_kill` counter of the app's cgroup (`memory.events`): the kernel's OOM
/// killer killed a process in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomKill {
    /// When the sampler saw the counter rise.
    pub at: SystemTime,
    pub from: u64,
    pub to: u64,
}

/// What the app's own evidence shows around a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppObserved {
    /// The app log's lines in the window around the failure, oldest first.
    pub lines: Vec<LogLine>,
    /// The latest OOM kill in the app's cgroup within the window.
    pub oom_kill: Option<OomKill>,
    /// When the app's process last (re)started, when that is within the last minute.
    pub restarted: Option<SystemTime>,
}

/// The facts of an attempt at a FastCGI server.
#[derive(Debug, Clone, Copy)]
pub struct FastcgiObserved<'a> {
    /// The upstream's `root`, as sent to the server.
    pub root: &'a str,
    /// The `SCRIPT_FILENAME` sent.
    pub script_filename: &'a str,
    /// Whether triage found the script under root on its own disk (the front controller).
    pub script_on_disk: bool,
    /// The start of what the server wrote to stderr.
    pub stderr: &'a [u8],
}
