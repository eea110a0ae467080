//! The settings a running process fixes at start: listeners and their certificates, worker
//! threads, the admin listener, logging, and the failure-report ring.
//!
//! Every key the file may leave out takes its value from the `Default` of its type.

use crate::tls::ServerCertificate;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// What a running process fixes when it starts: its listeners and their certificates, its
/// threads, the admin listener, logging, and the report ring. A reload that changes any of it
/// says which sections need a restart, and the running values stay in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootConfig {
    pub listen: Listen,
    /// Certificates for the `https` listeners, chosen by SNI; the first is the default.
    pub certificates: Vec<Certificate>,
    pub server: ServerSettings,
    pub admin: Admin,
    pub log: Log,
    pub reports: Reports,
}

impl BootConfig {
    /// The base URL failure reports are linked at (the id is appended), or `None` when the ring
    /// keeps no reports to link to. By default the reports on the admin listener.
    pub fn report_url(&self) -> Option<String> {
        (self.reports.max_count > 0).then(|| {
            self.reports
                .url
                .clone()
                .unwrap_or_else(|| format!("http://{}/diagnoses/", self.admin.listen))
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listen {
    /// Plain-HTTP listeners, no duplicates. `http` and `https` together have at least one.
    pub http: Vec<SocketAddr>,
    /// TLS listeners (HTTP/1.1 and HTTP/2 by ALPN), served with `tls.certificates`.
    pub https: Vec<SocketAddr>,
}

/// A certificate for the `https` listeners, read and checked (parsable, key matching) at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// What the two files hold, ready to serve.
    pub loaded: ServerCertificate,
}

/// How the proxy runs: its worker threads, like nginx's `worker_processes`, and how it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of the proxy; `None` (the default) means one per CPU the process may use.
    pub threads: Option<usize>,
    /// Whether idle threads take queued work from busy ones. Default false: each connection
    /// stays on the thread that accepted it, like an nginx worker, which costs less per request.
    pub work_stealing: bool,
    /// How long SIGTERM lets requests in flight finish before the process exits (it exits
    /// as soon as none is left). Default 10 s, at most [`MAX_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
}

/// The longest `shutdown_timeout`: a stop that takes longer than this is a hang to a
/// supervisor (systemd's default `TimeoutStopSec` is 90 s).
pub const MAX_SHUTDOWN_TIMEOUT: Duration = super::duration::TIMEOUT.max;

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: None,
            work_stealing: false,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerSettings {
    /// The worker threads to start: the configured count, else one per usable CPU.
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Default 127.0.0.1:9901.
    pub listen: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901),
        }
    }
}

/// The failure-report ring behind `/diagnoses`: its bounds, and where its reports are linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    /// Default 1000, at most a million; 0 keeps no reports.
    pub max_count: usize,
    /// Default 8 MiB, at most 1 GiB.
    pub max_bytes: usize,
    /// `[diagnosis] report_url`: the base URL of the reports, linked from `X-Diagnosis-Report`
    /// (trusted clients) and the error page; `None` (default) means the admin listener's
    /// `/diagnoses/`. See [`BootConfig::report_url`].
    pub url: Option<String>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            max_count: 1000,
            max_bytes: 8 << 20,
            url: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Whether to write one access-log line per request; default true.
    pub access: bool,
    /// At most this many error-level failure lines per second; the rest are counted and the
    /// count is reported in the next line. Default 10.
    pub error_lines_per_second: u32,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: LogLevel::default(),
            format: LogFormat::default(),
            access: true,
            error_lines_per_second: 10,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name as written in the config, which is also what `tracing` filters accept.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
