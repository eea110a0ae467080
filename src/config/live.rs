//! The settings a reload replaces: the disclosure policy, DNS resolution, upstreams and routes.
//!
//! Every key the file may leave out takes its value from the `Default` of its type. Upstreams
//! and routes have keys the file must give (`servers`; `path_prefix` and `upstream`): their
//! defaults are placeholders the reader always replaces.

use super::{Cidr, ServerAddr};
use pingora::protocols::tls::CaType;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a reload replaces: who sees details, how hostnames resolve, the upstreams and the routes.
/// The proxy's state is built from this alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    pub diagnosis: DiagnosisPolicy,
    pub resolver: Resolver,
    /// In file order; [`Route::upstream`] indexes into this.
    pub upstreams: Vec<Upstream>,
    /// In file order.
    pub routes: Vec<Route>,
}

impl LiveConfig {
    /// The upstream a route of this config sends to.
    pub fn upstream_of(&self, route: &Route) -> Option<&Upstream> {
        self.upstreams.get(route.upstream)
    }

    /// The largest `retries` of any upstream. The config a process starts with fixes, from this,
    /// Pingora's bound on attempts per request, which no reload can raise.
    pub fn most_retries(&self) -> u32 {
        self.upstreams.iter().map(|u| u.retries).max().unwrap_or(0)
    }
}

/// Who sees the detailed fields of a diagnosis, and how long a deploy stays a suspect. (Its
/// `report_url` is the report ring's, in [`Reports::url`](super::Reports::url).)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosisPolicy {
    /// Default [`DetailPolicy::Trusted`].
    pub detail: DetailPolicy,
    /// Default 127.0.0.0/8 and ::1/128.
    pub trusted: Vec<Cidr>,
    /// How long after a deploy marker (`POST /deploys`) a failure of the upstream names that
    /// deploy; default 10m.
    pub deploy_window: Duration,
    /// A reused pooled connection that fails sooner than this after the request went out is
    /// the stale keep-alive race (retried); later, the app had the request (never retried);
    /// default 250ms.
    pub stale_race: Duration,
    /// Requests in flight at one server from which a timeout there is `overloaded`; default 64.
    pub overload_in_flight: u32,
    /// Comebacks (answers after refusals) within a minute that make refusals a `crash_loop`;
    /// default 2.
    pub crash_loop_comebacks: u32,
    /// How recent an upstream hostname's address change must be to explain a failure
    /// (`address_changed`); default 10m.
    pub address_window: Duration,
    /// The disks whose free space is sampled for the cause (`host_disk_full`); default `/`.
    pub host_disks: Vec<std::path::PathBuf>,
    /// The machine's CPU busy at or above this at a failure is `host_cpu_saturated`; 0: never;
    /// default 95.
    pub host_cpu_busy_percent: u32,
    /// Available memory below this share of the total at a failure is `host_out_of_memory`;
    /// default 5.
    pub host_memory_available_percent: u32,
    /// A sampled disk with less than this share free at a failure is `host_disk_full`;
    /// default 2.
    pub host_disk_free_percent: u32,
}

impl Default for DiagnosisPolicy {
    fn default() -> Self {
        DiagnosisPolicy {
            detail: DetailPolicy::Trusted,
            trusted: Cidr::loopback(),
            deploy_window: Duration::from_secs(600),
            stale_race: Duration::from_millis(250),
            overload_in_flight: 64,
            crash_loop_comebacks: 2,
            address_window: Duration::from_secs(600),
            host_disks: vec![std::path::PathBuf::from("/")],
            host_cpu_busy_percent: 95,
            host_memory_available_percent: 5,
            host_disk_free_percent: 2,
        }
    }
}

/// Which clients see the detailed fields of a diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailPolicy {
    All,
    Trusted,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// Empty (the default) means the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// How often upstream hostnames are re-resolved; default 30s.
    pub refresh: Duration,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            nameservers: Vec::new(),
            refresh: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Matches `[A-Za-z0-9_-]{1,64}`, so it is safe as a metric label and a header value.
    pub name: String,
    /// At least one, no duplicates.
    pub servers: Vec<ServerAddr>,
    pub tls: bool,
    /// Lowercased; only ever set when `tls` is true.
    pub sni: Option<String>,
    /// The CAs the upstream's certificate is verified against instead of the system's. Only ever
    /// set when `tls` is true.
    pub ca_file: Option<CaFile>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// A bound on the whole exchange with the upstream, from the request's arrival to the end
    /// of the response body; `None` (default): only the per-wait timeouts apply.
    pub total_timeout: Option<Duration>,
    /// The weight of each server, parallel to `servers` (`"addr weight=3"`; default 1).
    pub weights: Vec<u32>,
    /// Rewrites the `Host` header sent upstream; `None` (default) passes the client's through.
    pub host_header: Option<String>,
    /// How many more servers a request may try after a connect-phase failure; default 1.
    pub retries: u32,
    /// Passive ejection, as nginx's `max_fails`: after this many consecutive failures a server is
    /// taken out of rotation for `fail_timeout`; 0 disables it. Default 3. As in nginx, an
    /// upstream with a single server never ejects it.
    pub max_fails: u32,
    /// How long an ejected server stays out; default 10s.
    pub fail_timeout: Duration,
    /// After a server refuses a connection (nothing listens on its port), how long requests
    /// are answered `connect_refused` without connecting to it again, or sent to another
    /// server; default 100ms. Zero (`"off"`) connects for every request, as nginx does.
    pub refused_holdoff: Duration,
    /// Active health checks; `None` (default) means servers are only judged by live traffic.
    pub health_check: Option<HealthCheck>,
    /// `protocol = "fastcgi"`: the servers speak FastCGI (PHP-FPM), with these settings;
    /// `None` (default, `protocol = "http"`): they speak HTTP.
    pub fastcgi: Option<Fastcgi>,
    /// `[upstreams.NAME.evidence]`: the app's own log and process, read in the background for
    /// the causes and reports of its failures; `None` (default): none is read.
    pub evidence: Option<AppEvidence>,
}

/// `[upstreams.NAME.evidence]`: where the app's own evidence is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppEvidence {
    /// `log_file`: 1 to [`AppEvidence::MAX_LOG_FILES`] absolute paths, no duplicates; may be
    /// empty when a process source is given.
    pub log_files: Vec<PathBuf>,
    /// `pidfile`: the app's pid, to see whether it is alive and when it (re)started.
    pub pidfile: Option<PathBuf>,
    /// The app's cgroup v2 directory, from `cgroup` or `systemd_unit`
    /// (`/sys/fs/cgroup/system.slice/UNIT`).
    pub cgroup: Option<PathBuf>,
    /// `log_before`: the lines written this long before a failure go into its report.
    pub log_before: Duration,
    /// `log_after`: and those written this long after it; the report is amended once it passed.
    pub log_after: Duration,
}

impl AppEvidence {
    pub const MAX_LOG_FILES: usize = 8;
    pub const DEFAULT_LOG_BEFORE: Duration = Duration::from_secs(5);
    pub const DEFAULT_LOG_AFTER: Duration = Duration::from_secs(1);
    /// Where systemd puts the cgroups of system units (cgroup v2, the unified hierarchy).
    pub const SYSTEMD_SLICE: &'static str = "/sys/fs/cgroup/system.slice";
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            name: String::new(),
            servers: Vec::new(),
            tls: false,
            sni: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            total_timeout: None,
            weights: Vec::new(),
            host_header: None,
            retries: 1,
            max_fails: 3,
            fail_timeout: Duration::from_secs(10),
            refused_holdoff: Duration::from_millis(100),
            health_check: None,
            fastcgi: None,
            evidence: None,
        }
    }
}

/// How requests become FastCGI requests for an upstream of `protocol = "fastcgi"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fastcgi {
    /// The document root as the FastCGI server sees it, absolute, without a trailing `/`:
    /// `SCRIPT_FILENAME` is this followed by the script's path.
    pub root: String,
    /// The script a path ending in `/` runs, and the front controller: a file name without
    /// `/`; default `index.php`.
    pub index: String,
    /// Extra FastCGI params (nginx's `fastcgi_param`), in file order; each replaces the param
    /// triage would send under the same name.
    pub params: Vec<(String, String)>,
    /// The front controller (nginx's `try_files $uri $uri/ /index.php?$query_string`): files
    /// under `root` that are not PHP scripts are served from disk, anything else runs `index`.
    /// Default true.
    pub front_controller: bool,
    /// With the front controller: `root` with every symlink resolved, when it was a directory
    /// on this machine as the config was loaded (else each request looks again). A file is
    /// served or run only when its own resolved path is under this one.
    pub local_root: Option<PathBuf>,
}

impl Fastcgi {
    /// The script a path ending in `/` runs when the file names none.
    pub const DEFAULT_INDEX: &'static str = "index.php";
}

/// A `ca_file`, resolved against the config file's directory and read when the config was loaded.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    /// Its certificates, as Pingora's peer options take them.
    pub certs: Arc<CaType>,
}

/// An active health check of every server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Time between checks of one server; default 5s.
    pub interval: Duration,
    /// How long one check may take; default 2s.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server back; default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a server down; default 3.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: HealthCheckKind::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// The server accepts a TCP connection.
    Tcp,
    /// `GET path` answers 2xx or 3xx.
    Http { path: String },
}

impl HealthCheckKind {
    /// The path an HTTP check asks for when the file names none.
    pub const DEFAULT_PATH: &'static str = "/";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lowercased hostname or IPv4 address without a port; `None` matches any host.
    pub host: Option<String>,
    /// Starts with `/`.
    pub path_prefix: String,
    /// Index into [`LiveConfig::upstreams`].
    pub upstream: usize,
    /// Largest request body accepted, in bytes (nginx's `client_max_body_size`); larger gets
    /// 413 `request_body_too_large`. Default 1 MiB, as nginx.
    pub max_body_size: u64,
    /// Overrides of the upstream's timeouts for this route (e.g. a slow report endpoint).
    pub timeouts: RouteTimeouts,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            host: None,
            path_prefix: "/".to_owned(),
            upstream: 0,
            max_body_size: 1 << 20,
            timeouts: RouteTimeouts::default(),
        }
    }
}

/// A route's own timeouts; `None` keeps the upstream's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub write: Option<Duration>,
    pub total: Option<Duration>,
}
