//! The settings a running process fixes at start: listeners and their certificates, worker
//! threads, the limits on client connections, the admin listener, logging, and the
//! failure-report ring.
//!
//! Every key the file may leave out takes its value from the `Default` of its type.

use crate::tls::ServerCertificate;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
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
    /// `[client]`: fixed at start, since Pingora takes them when the listeners start.
    pub client: ClientSettings,
    pub admin: Admin,
    pub log: Log,
    pub reports: Reports,
}

impl BootConfig {
    /// The base URL failure reports are linked at (the id is appended), or `None` when the ring
    /// keeps no reports to link to. By default the reports on the admin listener.
    /// `{instance}` in a configured URL is this process's `[server] instance`, so each
    /// instance of a fleet links to its own reports (`https://{instance}.internal/diagnoses/`).
    pub fn report_url(&self) -> Option<String> {
        (self.reports.max_count > 0).then(|| match &self.reports.url {
            Some(url) => url.replace("{instance}", &self.server.instance),
            None => format!("http://{}/diagnoses/", self.admin.listen),
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
    /// The unix socket a binary upgrade hands the listening sockets over through: the new
    /// process (`--upgrade`) listens on it, the old one sends its sockets to it on SIGQUIT.
    /// Default `/run/triage/upgrade.sock`. Its directory must be writable by triage and by
    /// nobody else, since whoever listens there on SIGQUIT gets the listeners (see
    /// [`crate::rundir`]).
    pub upgrade_socket: PathBuf,
    /// The file triage writes its process id to at start. Default `/run/triage/triage.pid`.
    pub pid_file: PathBuf,
    /// `instance`: this process's name in a fleet, at the start of every request id (see
    /// [`crate::id`]), in `triage_build_info` and in `report_url`'s `{instance}`. 1 to 64 of
    /// `A-Z a-z 0-9 . _ -`; default the host name (its allowed characters), else `triage`.
    pub instance: String,
}

/// The default instance name: the host name, as the kernel has it (a pod's name under
/// Kubernetes), cut to what an instance name may hold.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(crate::id::MAX_INSTANCE)
        .collect();
    if crate::id::valid_instance(&name) {
        name
    } else {
        "triage".to_owned()
    }
}

/// The longest `shutdown_timeout`: a stop that takes longer than this is a hang to a
/// supervisor (systemd's default `TimeoutStopSec` is 90 s).
pub const MAX_SHUTDOWN_TIMEOUT: Duration = super::duration::TIMEOUT.max;

/// The directory of the default `upgrade_socket` and `pid_file`: root-owned `/run`, not the
/// shared `/tmp`, where any local user could take the socket's name first. Under systemd,
/// `RuntimeDirectory=triage` makes it, writable by the service's user only.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/triage";

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: None,
            work_stealing: false,
            shutdown_timeout: Duration::from_secs(10),
            upgrade_socket: Path::new(DEFAULT_RUNTIME_DIR).join("upgrade.sock"),
            pid_file: Path::new(DEFAULT_RUNTIME_DIR).join("triage.pid"),
            instance: default_instance(),
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

/// `[client]`: how long a client may take and how much it may hold, with nginx's defaults, so
/// that no client, however slow or idle, holds a connection and its memory for ever. Enforced
/// for HTTP/1 and HTTP/2 (see [`crate::client`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// The whole request head: from the connection's start for its first request, from the
    /// first byte of a later one (nginx's `client_header_timeout`). Default 60 s; 408
    /// `client_header_timeout` once part of a head arrived, a quiet close before.
    pub header_timeout: Duration,
    /// Between two reads of the request body (nginx's `client_body_timeout`). Default 60 s;
    /// 408 `client_body_timeout`.
    pub body_timeout: Duration,
    /// Idle between two requests of a kept-alive connection, and an HTTP/2 connection without a
    /// request in flight, which then gets a GOAWAY (nginx's `keepalive_timeout`). Default 75 s.
    pub keepalive_timeout: Duration,
    /// Without progress writing to the client (nginx's `send_timeout`). Default 60 s;
    /// `client_send_timeout`, the connection closes.
    pub send_timeout: Duration,
    /// The largest request head (request line and headers; HTTP/2: the decoded header list), as
    /// nginx's `large_client_header_buffers 4 8k`. Default 32 KiB; over it, 431
    /// `request_headers_too_large`.
    pub max_header_bytes: usize,
    /// The most client connections open at once in the process (nginx's `worker_connections`,
    /// for all workers); a connection beyond it is closed as soon as it is accepted. Default
    /// 4,096: an idle connection costs about 107 KiB, one holding an unfinished head of
    /// `max_header_bytes` about 135 KiB (`benches/idle_connections.py`), so clients can hold
    /// at most some 540 MiB at the defaults.
    pub max_connections: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 << 10,
            max_connections: 4096,
        }
    }
}

/// The admin listener: where it listens, the Host names it answers to, and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Default 127.0.0.1:9901.
    pub listen: SocketAddr,
    /// Names (lowercase) and IP addresses (as `Display` writes them) a request's Host may
    /// name besides the listener's own address and `localhost`, e.g. the name a reverse
    /// proxy or a NAT reaches it by. Default none.
    pub hosts: Vec<String>,
    /// `token_file`: the bearer token every endpoint but `/healthz` and `/readyz` requires.
    /// Default none.
    pub token: Option<AdminToken>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901),
            hosts: Vec::new(),
            token: None,
        }
    }
}

/// The admin listener's bearer token, read from `token_file` at load (see `files.rs`). Its
/// `Debug` shows the file, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub path: PathBuf,
    pub(super) secret: Box<str>,
}

impl AdminToken {
    /// The token, for a client of the admin listener (`triage reload`) and for the check.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A token without its file, for the admin listener's unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(secret: &str) -> AdminToken {
        AdminToken {
            path: PathBuf::from("token"),
            secret: secret.into(),
        }
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
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
    /// Request headers (lowercase names) whose values reports keep, on top of the built-in
    /// list of harmless ones ([`crate::report::KEPT_HEADERS`]); every other value is
    /// `[redacted]`. Default none.
    pub keep_headers: Vec<String>,
    /// `export`: where every report is also written, as one JSON line, for a fleet's log store
    /// (Loki, Elasticsearch, via Vector or Fluent Bit). Default none.
    pub export: Option<ReportExport>,
}

/// Where `[reports] export` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportExport {
    /// `"stdout"`: beside the access log, each report a line of its own.
    Stdout,
    /// A file path (relative to the config file's directory), appended to.
    File(PathBuf),
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            max_count: 1000,
            max_bytes: 8 << 20,
            url: None,
            export: None,
            keep_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Whether to write one access-log line per request; default true.
    pub access: bool,
    /// How late a text access line may reach stdout: lines are written many at a time, at
    /// least this often; default 100ms. Zero (`"off"`) writes each line at once, as nginx
    /// does without `buffer=`.
    pub access_flush: Duration,
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
            access_flush: Duration::from_millis(100),
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
