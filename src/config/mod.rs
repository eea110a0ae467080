//! Configuration: the TOML file an operator writes, checked and turned into the typed values the
//! proxy runs on.
//!
//! A broken config should cost one edit, not one restart per mistake, so every problem in a file
//! is reported together, in file order, each with the 1-based line and column of the offending
//! key or value (or of the table header, for a missing key). The document is parsed with
//! `toml_edit`, which keeps byte spans, and walked by hand through `walk::Walker`, which records
//! errors instead of stopping. A TOML syntax error is reported alone, since nothing after it can
//! be read reliably. Nothing here panics on input.

mod addr;
mod cidr;
mod duration;
mod walk;

pub use addr::ServerAddr;
pub use cidr::Cidr;
pub use duration::parse_duration;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use walk::{Schema, Section, Spanned, Walker};

/// One problem in a config file. `line` and `column` are 1-based; both are 0 when the file could
/// not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a config file, sorted by position. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Listen,
    pub server: ServerSettings,
    pub admin: Admin,
    pub diagnosis: DiagnosisPolicy,
    pub resolver: Resolver,
    pub log: Log,
    pub reports: Reports,
    /// Certificates for the `https` listeners, chosen by SNI; the first is the default.
    pub certificates: Vec<Certificate>,
    /// In file order; [`Route::upstream`] indexes into this.
    pub upstreams: Vec<Upstream>,
    /// In file order.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Plain-HTTP listeners, no duplicates. `http` and `https` together have at least one.
    pub http: Vec<SocketAddr>,
    /// TLS listeners (HTTP/1.1 and HTTP/2 by ALPN), served with `tls.certificates`.
    pub https: Vec<SocketAddr>,
}

/// A certificate for the `https` listeners, checked (readable, parsable, key matching) at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How the proxy runs: its worker threads, like nginx's `worker_processes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of the proxy; `None` (the default) means one per CPU the process may use.
    pub threads: Option<usize>,
    /// Whether idle threads take queued work from busy ones. Default false: each connection
    /// stays on the thread that accepted it, like an nginx worker, which costs less per request.
    pub work_stealing: bool,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosisPolicy {
    /// Default [`DetailPolicy::Trusted`].
    pub detail: DetailPolicy,
    /// Default 127.0.0.0/8 and ::1/128.
    pub trusted: Vec<Cidr>,
    /// Base URL of the failure reports, linked from `X-Diagnosis-Report` (trusted clients) and
    /// the error page; the id is appended. Default `http://<admin listen>/diagnoses/`.
    pub report_url: String,
}

/// The bounds of the failure-report ring behind `/diagnoses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    /// Default 1000; 0 keeps no reports.
    pub max_count: usize,
    /// Default 8 MiB.
    pub max_bytes: usize,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Resolved against the config file's directory, and checked to hold a PEM certificate when
    /// the config was loaded. Only ever set when `tls` is true.
    pub ca_file: Option<PathBuf>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// The server accepts a TCP connection.
    Tcp,
    /// `GET path` answers 2xx or 3xx.
    Http { path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lowercased hostname or IPv4 address without a port; `None` matches any host.
    pub host: Option<String>,
    /// Starts with `/`.
    pub path_prefix: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Largest request body accepted, in bytes (nginx's `client_max_body_size`); larger gets
    /// 413 `request_body_too_large`. Default 1 MiB, as nginx.
    pub max_body_size: u64,
    /// Overrides of the upstream's timeouts for this route (e.g. a slow report endpoint).
    pub timeouts: RouteTimeouts,
}

/// A route's own timeouts; `None` keeps the upstream's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub write: Option<Duration>,
    pub total: Option<Duration>,
}

impl Config {
    /// The upstream a route of this config sends to.
    pub fn upstream_of(&self, route: &Route) -> Option<&Upstream> {
        self.upstreams.get(route.upstream)
    }
}

/// Reads and parses the config file at `path`; relative `ca_file`s resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            line: 0,
            column: 0,
            message: format!("cannot read {}: {error}", path.display()),
        }])
    })?;
    parse(&text, path.parent().unwrap_or(Path::new("")))
}

/// Parses and checks config text. `origin` is the directory relative `ca_file` paths resolve
/// against (the config file's directory); the `ca_file`s themselves are read here.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    let document = toml_edit::ImDocument::parse(text).map_err(|error| {
        let (line, column) = walk::line_column(text, error.span().map_or(0, |span| span.start));
        let message = error.message().trim().replace('\n', "; ");
        ConfigErrors(vec![ConfigError {
            line,
            column,
            message: format!("invalid TOML: {message}"),
        }])
    })?;
    let mut walker = Walker::new(text);
    let config = read_config(&mut walker, &Section::top(document.as_table()), origin);
    walker.finish(config)
}

const TOP: Schema = Schema {
    keys: &[
        "listen",
        "server",
        "admin",
        "diagnosis",
        "resolver",
        "log",
        "reports",
        "tls",
        "upstreams",
        "routes",
    ],
    required: &["listen", "routes"],
};
const LISTEN: Schema = Schema {
    keys: &["http", "https"],
    required: &[],
};
const TLS: Schema = Schema {
    keys: &["certificates"],
    required: &[],
};
const CERTIFICATE: Schema = Schema {
    keys: &["cert_file", "key_file"],
    required: &["cert_file", "key_file"],
};
const SERVER: Schema = Schema {
    keys: &["threads", "work_stealing"],
    required: &[],
};
const ADMIN: Schema = Schema {
    keys: &["listen"],
    required: &[],
};
const DIAGNOSIS: Schema = Schema {
    keys: &["detail", "trusted", "report_url"],
    required: &[],
};
const RESOLVER: Schema = Schema {
    keys: &["nameservers", "refresh"],
    required: &[],
};
const LOG: Schema = Schema {
    keys: &["level", "format", "access", "error_lines_per_second"],
    required: &[],
};
const REPORTS: Schema = Schema {
    keys: &["max_count", "max_bytes"],
    required: &[],
};
const UPSTREAM: Schema = Schema {
    keys: &[
        "servers",
        "tls",
        "sni",
        "ca_file",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "total_timeout",
        "host_header",
        "retries",
        "max_fails",
        "fail_timeout",
        "refused_holdoff",
        "health_check",
    ],
    required: &["servers"],
};
const HEALTH_CHECK: Schema = Schema {
    keys: &[
        "kind",
        "path",
        "interval",
        "timeout",
        "healthy_threshold",
        "unhealthy_threshold",
    ],
    required: &[],
};
const ROUTE: Schema = Schema {
    keys: &[
        "path_prefix",
        "host",
        "upstream",
        "max_body_size",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "total_timeout",
    ],
    required: &["path_prefix", "upstream"],
};

const DETAIL_POLICIES: &[(&str, DetailPolicy)] = &[
    ("all", DetailPolicy::All),
    ("trusted", DetailPolicy::Trusted),
    ("none", DetailPolicy::None),
];
const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];
const LOG_FORMATS: &[(&str, LogFormat)] = &[("text", LogFormat::Text), ("json", LogFormat::Json)];

/// Reads the whole file. Every field falls back to its default when absent or invalid, so later
/// sections are still checked; the result is only used when no error was recorded.
fn read_config(w: &mut Walker, top: &Section, origin: &Path) -> Config {
    w.check_keys(top, &TOP);

    let listen = w.section(top, "listen", &LISTEN);
    let http = w.list(&listen, "http", socket_addr).unwrap_or_default();
    let https = w.list(&listen, "https", socket_addr).unwrap_or_default();
    let all_listeners: Vec<_> = http.iter().chain(https.iter()).cloned().collect();
    w.reject_duplicates("listen", &all_listeners);
    if all_listeners.is_empty() && top.has("listen") {
        w.error(
            listen.at,
            "listen: needs at least one address in `http` or `https`",
        );
    }

    let tls = w.section(top, "tls", &TLS);
    let certificates: Vec<Certificate> = w
        .table_array(&tls, "certificates", &CERTIFICATE)
        .into_iter()
        .filter_map(|table| {
            let cert = w.spanned(&table, "cert_file", |text| Ok(origin.join(text)))?;
            let key = w.value(&table, "key_file", |text| Ok(origin.join(text)))?;
            let pair = [(cert.value.clone(), key.clone())];
            if let Err(reason) = crate::tls::SniResolver::load(&pair) {
                w.error(cert.at, format!("certificates: {reason}"));
                return None;
            }
            Some(Certificate {
                cert_file: cert.value,
                key_file: key,
            })
        })
        .collect();
    if !https.is_empty() && certificates.is_empty() && w.error_count() == 0 {
        w.error(
            listen.at,
            "listen.https needs at least one [[tls.certificates]] with cert_file and key_file",
        );
    }

    let server = w.section(top, "server", &SERVER);
    let threads = w.integer(&server, "threads", 1..=1024);
    let work_stealing = w.boolean(&server, "work_stealing");

    let admin = w.section(top, "admin", &ADMIN);
    let admin_listen = w
        .value(&admin, "listen", socket_addr)
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901));

    let diagnosis = w.section(top, "diagnosis", &DIAGNOSIS);
    let detail = w.value(&diagnosis, "detail", |text| one_of(text, DETAIL_POLICIES));
    let trusted = w.list(&diagnosis, "trusted", |text| text.parse::<Cidr>());
    let report_url = w.value(&diagnosis, "report_url", report_url);

    let resolver = w.section(top, "resolver", &RESOLVER);
    let nameservers = w
        .list(&resolver, "nameservers", nameserver)
        .unwrap_or_default();
    let refresh = w.value(&resolver, "refresh", parse_duration);

    let log = w.section(top, "log", &LOG);
    let level = w.value(&log, "level", |text| one_of(text, LOG_LEVELS));
    let format = w.value(&log, "format", |text| one_of(text, LOG_FORMATS));
    let access = w.boolean(&log, "access");
    let error_lines = w.integer(&log, "error_lines_per_second", 0..=1_000_000);

    let reports = w.section(top, "reports", &REPORTS);
    let max_count = w.integer(&reports, "max_count", 0..=10_000_000);
    let max_bytes = w.integer(&reports, "max_bytes", 0..=(1 << 34));

    let upstreams: Vec<Upstream> = w
        .named_sections(top, "upstreams", &UPSTREAM)
        .into_iter()
        .map(|(name, section)| read_upstream(w, name, &section, origin))
        .collect();
    let routes = read_routes(w, top, &upstreams);

    Config {
        listen: Listen {
            http: values(http),
            https: values(https),
        },
        server: ServerSettings {
            threads: threads.map(|n| n as usize),
            work_stealing: work_stealing.unwrap_or(false),
        },
        certificates,
        diagnosis: DiagnosisPolicy {
            detail: detail.unwrap_or(DetailPolicy::Trusted),
            trusted: trusted.map(values).unwrap_or_else(Cidr::loopback),
            report_url: report_url.unwrap_or_else(|| format!("http://{admin_listen}/diagnoses/")),
        },
        admin: Admin {
            listen: admin_listen,
        },
        resolver: Resolver {
            nameservers: values(nameservers),
            refresh: refresh.unwrap_or(Duration::from_secs(30)),
        },
        log: Log {
            level: level.unwrap_or(LogLevel::Info),
            format: format.unwrap_or(LogFormat::Text),
            access: access.unwrap_or(true),
            error_lines_per_second: error_lines.map_or(10, |n| n as u32),
        },
        reports: Reports {
            max_count: max_count.map_or(1000, |n| n as usize),
            max_bytes: max_bytes.map_or(8 << 20, |n| n as usize),
        },
        upstreams,
        routes,
    }
}

fn read_upstream(
    w: &mut Walker,
    name: Spanned<String>,
    table: &Section,
    origin: &Path,
) -> Upstream {
    let name_is_valid = (1..=64).contains(&name.value.len())
        && name
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_is_valid {
        let message = format!(
            "upstream name `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -, since it is used as a metric label and a header value",
            name.value
        );
        w.error(name.at, message);
    }

    let weighted = w
        .non_empty_list(table, "servers", server_with_weight)
        .unwrap_or_default();
    let servers: Vec<Spanned<ServerAddr>> = weighted
        .iter()
        .map(|s| Spanned {
            value: s.value.0.clone(),
            at: s.at,
        })
        .collect();
    let weights = weighted.iter().map(|s| s.value.1).collect();
    w.reject_duplicates("servers", &servers);
    let tls = w.boolean(table, "tls").unwrap_or(false);
    let sni = w.spanned(table, "sni", addr::hostname);
    let ca_file = w.spanned(table, "ca_file", |text| Ok(origin.join(text)));
    if !tls {
        for (key, at) in [
            ("sni", sni.as_ref().map(|v| v.at)),
            ("ca_file", ca_file.as_ref().map(|v| v.at)),
        ] {
            if let Some(at) = at {
                w.error(at, format!("{key}: only applies with tls = true"));
            }
        }
    } else if let Some(ca_file) = &ca_file {
        if let Err(message) = check_ca_file(&ca_file.value) {
            w.error(ca_file.at, format!("ca_file: {message}"));
        }
    }

    let mut timeout = |key, default| {
        w.value(table, key, parse_duration)
            .unwrap_or(Duration::from_secs(default))
    };
    let connect_timeout = timeout("connect_timeout", 5);
    let read_timeout = timeout("read_timeout", 60);
    let write_timeout = timeout("write_timeout", 60);
    let fail_timeout = timeout("fail_timeout", 10);
    let refused_holdoff = w
        .value(table, "refused_holdoff", |text| match text {
            "off" => Ok(Duration::ZERO),
            _ => parse_duration(text),
        })
        .unwrap_or(Duration::from_millis(100));
    let total_timeout = w.value(table, "total_timeout", parse_duration);
    let host_header = w.value(table, "host_header", host_header);
    let retries = w.integer(table, "retries", 0..=10).map_or(1, |n| n as u32);
    let max_fails = w
        .integer(table, "max_fails", 0..=1000)
        .map_or(3, |n| n as u32);
    let health_check = if table.has("health_check") {
        let section = w.section(table, "health_check", &HEALTH_CHECK);
        let check = read_health_check(w, &section);
        if tls && matches!(check.kind, HealthCheckKind::Http { .. }) {
            w.error(
                section.at,
                "health_check: HTTP checks of a TLS upstream are not supported yet; use kind = \"tcp\"",
            );
        }
        Some(check)
    } else {
        None
    };

    Upstream {
        name: name.value,
        servers: values(servers),
        tls,
        sni: sni.map(|v| v.value),
        ca_file: ca_file.map(|v| v.value),
        connect_timeout,
        read_timeout,
        write_timeout,
        total_timeout,
        weights,
        host_header,
        retries,
        max_fails,
        fail_timeout,
        refused_holdoff,
        health_check,
    }
}

fn read_health_check(w: &mut Walker, table: &Section) -> HealthCheck {
    let kind = w.value(table, "kind", |text| {
        one_of(text, &[("tcp", false), ("http", true)])
    });
    let path = w.value(table, "path", path_prefix);
    let kind = match (kind, path) {
        (Some(true), path) => HealthCheckKind::Http {
            path: path.unwrap_or_else(|| "/".to_owned()),
        },
        (_, Some(path)) => HealthCheckKind::Http { path },
        (Some(false) | None, None) => HealthCheckKind::Tcp,
    };
    let mut duration =
        |key, default: Duration| w.value(table, key, parse_duration).unwrap_or(default);
    let interval = duration("interval", Duration::from_secs(5));
    let timeout = duration("timeout", Duration::from_secs(2));
    let mut threshold =
        |key, default: u32| w.integer(table, key, 1..=100).map_or(default, |n| n as u32);
    HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold: threshold("healthy_threshold", 2),
        unhealthy_threshold: threshold("unhealthy_threshold", 3),
    }
}

/// `addr` or `addr weight=N` (as nginx's `server addr weight=N;`), N from 1 to 1000.
fn server_with_weight(text: &str) -> Result<(ServerAddr, u32), String> {
    let mut parts = text.split_whitespace();
    let addr = parts.next().unwrap_or("").parse::<ServerAddr>()?;
    let weight = match parts.next() {
        None => 1,
        Some(option) => {
            let n = option
                .strip_prefix("weight=")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    format!("`{option}`: expected weight=N with N from 1 to 1000 after the address")
                })?;
            n
        }
    };
    if let Some(extra) = parts.next() {
        return Err(format!("`{extra}`: only `weight=N` may follow the address"));
    }
    Ok((addr, weight))
}

/// A Host header value: a hostname, optionally with a port.
fn host_header(text: &str) -> Result<String, String> {
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => text,
    };
    addr::hostname(host)?;
    Ok(text.to_ascii_lowercase())
}

fn read_routes(w: &mut Walker, top: &Section, upstreams: &[Upstream]) -> Vec<Route> {
    let mut routes: Vec<Spanned<Route>> = Vec::new();
    for table in w.table_array(top, "routes", &ROUTE) {
        let errors_before = w.error_count();
        let path_prefix = w.value(&table, "path_prefix", path_prefix);
        let host = w.value(&table, "host", route_host);
        let upstream = w.value(&table, "upstream", |name| upstream_index(upstreams, name));
        let max_body_size = w
            .integer(&table, "max_body_size", 0..=(1 << 40))
            .unwrap_or(1 << 20);
        let timeouts = RouteTimeouts {
            connect: w.value(&table, "connect_timeout", parse_duration),
            read: w.value(&table, "read_timeout", parse_duration),
            write: w.value(&table, "write_timeout", parse_duration),
            total: w.value(&table, "total_timeout", parse_duration),
        };
        let (Some(path_prefix), Some(upstream)) = (path_prefix, upstream) else {
            continue;
        };
        // A route with any mistake is left out of the duplicate check, so one mistake is not
        // reported twice.
        if w.error_count() > errors_before {
            continue;
        }
        let route = Route {
            host,
            path_prefix,
            upstream,
            max_body_size,
            timeouts,
        };
        let earlier = routes
            .iter()
            .find(|r| r.value.host == route.host && r.value.path_prefix == route.path_prefix);
        if let Some(earlier) = earlier {
            let host = route
                .host
                .as_deref()
                .map_or("any host".to_owned(), |h| format!("host `{h}`"));
            let message = format!(
                "duplicate route: {host} with path_prefix `{}` is already routed on line {}",
                route.path_prefix,
                w.line_of(earlier.at)
            );
            w.error(table.at, message);
            continue;
        }
        routes.push(Spanned {
            value: route,
            at: table.at,
        });
    }
    values(routes)
}

fn values<T>(spanned: Vec<Spanned<T>>) -> Vec<T> {
    spanned.into_iter().map(|s| s.value).collect()
}

fn one_of<T: Clone>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(value.clone()),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("`{text}` is not one of: {}", names.join(", ")))
        }
    }
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not a socket address; expected ip:port, like 0.0.0.0:8080 or [::]:8080"
        )
    })
}

/// An http(s) URL; the report id is appended, so a trailing `/` is added when missing.
fn report_url(text: &str) -> Result<String, String> {
    let valid = (text.starts_with("http://") || text.starts_with("https://"))
        && text.len() > "https://".len()
        && text.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if !valid {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    Ok(if text.ends_with('/') {
        text.to_owned()
    } else {
        format!("{text}/")
    })
}

fn nameserver(text: &str) -> Result<SocketAddr, String> {
    match socket_addr(text)? {
        addr if addr.port() == 0 => Err(format!("`{text}` has port 0; DNS is usually on port 53")),
        addr => Ok(addr),
    }
}

fn path_prefix(text: &str) -> Result<String, String> {
    match text.starts_with('/') {
        true => Ok(text.to_owned()),
        false => Err(format!("`{text}` must start with /")),
    }
}

/// Route hosts are compared against the Host header's name, so a scheme, path or port here could
/// never match; saying so beats a route that silently never fires.
fn route_host(text: &str) -> Result<String, String> {
    if text.contains("://") {
        Err(format!(
            "`{text}` must be a bare hostname, without a scheme"
        ))
    } else if text.contains('/') {
        Err(format!("`{text}` must be a bare hostname, without a path"))
    } else if text.contains(':') {
        Err(format!("`{text}` must be a bare hostname, without a port"))
    } else if text.parse::<Ipv4Addr>().is_ok() {
        Ok(text.to_owned())
    } else {
        addr::hostname(text)
    }
}

fn upstream_index(upstreams: &[Upstream], name: &str) -> Result<usize, String> {
    if let Some(index) = upstreams.iter().position(|u| u.name == name) {
        return Ok(index);
    }
    let defined: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    Err(match defined.is_empty() {
        true => format!("no upstream named `{name}`; no [upstreams.NAME] tables are defined"),
        false => format!(
            "no upstream named `{name}`; defined: {}",
            defined.join(", ")
        ),
    })
}

fn check_ca_file(path: &Path) -> Result<(), String> {
    const MARKER: &[u8] = b"-----BEGIN CERTIFICATE-----";
    let contents =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    match contents
        .windows(MARKER.len())
        .any(|window| window == MARKER)
    {
        true => Ok(()),
        false => Err(format!(
            "{} holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests;
