//! From nginx's directives to triage's tables: listeners, certificates, upstreams, routes and
//! the few global settings nginx has an equivalent of, and a note for every directive.
//!
//! Each directive is looked at once, where it takes effect: it is carried over (it becomes a
//! key), equivalent to what triage does anyway (silent, or an info note), or not carried over,
//! which is one warning naming it, saying why and what to do instead. A block that is not
//! carried over (a regex `location`, an `if`, a location nginx served from files) is one
//! warning for the block and what it holds.
//!
//! The mapping, as README's "Coming from nginx" table: a `server`'s `listen`s become `[listen]`
//! addresses (`ssl` ones `https`, with the server's `ssl_certificate` pair in
//! `[[tls.certificates]]`); each `location` that proxies (`proxy_pass`, directly or through
//! `try_files ... @named`) becomes a `[[routes]]` entry per `server_name` (the default server's
//! routes name no host, so they take any host, as nginx's default server does), with its
//! `client_max_body_size` and timeouts; `proxy_pass` names an `upstream` block or an address,
//! which becomes an `[upstreams.NAME]` table. A PHP site (a regex location matching `.php`
//! with `fastcgi_pass`) becomes a FastCGI upstream with the server's `root` and `index` and
//! the front controller, routed from `/`.

use super::emit::{Key, Table, Value};
use super::parse::{Directive, Place};
use crate::config::ServerAddr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The directive is not carried over: the converted config behaves differently.
    Warning,
    /// The directive needs nothing in triage (it is its default, or has no meaning there).
    Info,
}

/// What the conversion says about one directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub at: Place,
    /// The directive as written (shortened).
    pub directive: String,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Level::Warning => write!(
                f,
                "warning: {}: {}: not carried over ({})",
                self.at, self.directive, self.message
            ),
            Level::Info => write!(f, "info: {}: {}: {}", self.at, self.directive, self.message),
        }
    }
}

/// The converted configuration: its tables and the notes.
#[derive(Debug, Default)]
pub struct Mapped {
    pub tables: Vec<Table>,
    pub notes: Vec<Note>,
}

/// Maps the directives of a whole configuration (the main file, includes read in place).
/// `prefix` is what relative certificate and root paths are relative to, as in nginx.
pub fn map(directives: &[Directive], prefix: &Path) -> Mapped {
    let mut mapper = Mapper {
        prefix: prefix.to_path_buf(),
        ..Mapper::default()
    };
    mapper.main(directives);
    mapper.finish()
}

/// A setting inherited from `http` to `server` to `location`, with where it was written.
type Inherited<T> = Option<(T, Place)>;

/// The settings a location inherits.
#[derive(Debug, Clone, Default)]
struct Scope {
    max_body_size: Inherited<u64>,
    /// proxy_connect/read/send_timeout, as triage durations.
    proxy_timeouts: [Inherited<String>; 3],
    /// fastcgi_connect/read/send_timeout.
    fastcgi_timeouts: [Inherited<String>; 3],
    root: Inherited<String>,
    index: Inherited<Vec<String>>,
    /// `proxy_set_header Host "literal"`.
    host_header: Inherited<String>,
    /// `fastcgi_param NAME literal`.
    params: Vec<(String, String, Place)>,
    ssl_certificate: Inherited<String>,
    ssl_certificate_key: Inherited<String>,
}

const TIMEOUT_KEYS: [&str; 3] = ["connect_timeout", "read_timeout", "write_timeout"];
/// The longest connect_timeout and read/write_timeout triage takes (TIMEOUT and WAIT).
const TIMEOUT_MAX_MS: [u128; 3] = [3_600_000, 86_400_000, 86_400_000];

/// An upstream server's `max_fails` and `fail_timeout` (in ms), as written.
type FailureSettings = (Option<u64>, Option<u128>);

/// An nginx `upstream` block, as read.
#[derive(Debug, Clone)]
struct UpstreamBlock {
    name: String,
    servers: Vec<String>,
    /// max_fails and fail_timeout, as triage keys.
    keys: Vec<Key>,
    at: Place,
    used: bool,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An `upstream` block, by its index.
    Block(usize),
    /// One address (`proxy_pass http://127.0.0.1:3000`, `fastcgi_pass unix:/run/php.sock`).
    Address(String),
}

/// A triage upstream to emit, and what makes it distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UpstreamPlan {
    name: String,
    source: Source,
    tls: bool,
    host_header: Option<String>,
    fastcgi: Option<FastcgiPlan>,
    comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FastcgiPlan {
    root: String,
    index: String,
    params: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct RoutePlan {
    host: Option<String>,
    path_prefix: String,
    upstream: String,
    keys: Vec<Key>,
    comment: String,
}

/// One `listen`, as triage takes it.
#[derive(Debug, Clone)]
struct Listener {
    addr: SocketAddr,
    tls: bool,
}

#[derive(Debug, Default)]
struct Mapper {
    prefix: PathBuf,
    notes: Vec<Note>,
    blocks: Vec<UpstreamBlock>,
    upstreams: Vec<UpstreamPlan>,
    routes: Vec<RoutePlan>,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    certificates: Vec<(String, String, Place)>,
    /// [client], [server], [resolver] keys: (table, key, first place).
    globals: Vec<(&'static str, Key, Place)>,
    /// `root`/`index`/`ssl_certificate*` written at http or server level, which are carried
    /// over only if something uses them: warned at the end unless used.
    pending: Vec<(Place, String, &'static str)>,
    used: Vec<Place>,
    first_server: Option<Place>,
}

/// A location's modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Prefix,
    /// `^~`: a prefix that stops regex matching; triage has no regexes, so a prefix.
    PrefixOnly,
    Exact,
    Regex,
    Named,
}

/// The facts of one server block the locations need.
struct ServerFacts {
    hosts: Vec<String>,
    is_default: bool,
    label: String,
    /// The FastCGI upstream of a PHP site (from its `location ~ \.php$`).
    php: Option<(String, Place)>,
    named: Vec<Directive>,
}

impl Mapper {
    fn note(&mut self, level: Level, d: &Directive, message: impl Into<String>) {
        self.notes.push(Note {
            level,
            at: d.at.clone(),
            directive: d.written(),
            message: message.into(),
        });
    }

    fn warn(&mut self, d: &Directive, message: impl Into<String>) {
        self.note(Level::Warning, d, message);
    }

    fn info(&mut self, d: &Directive, message: impl Into<String>) {
        self.note(Level::Info, d, message);
    }

    fn main(&mut self, directives: &[Directive]) {
        // A file of server blocks alone (a sites-available file, a guide's snippet) is read
        // as the inside of an http block, where nginx includes it.
        const MAIN_ONLY: [&str; 14] = [
            "http",
            "events",
            "user",
            "worker_processes",
            "worker_cpu_affinity",
            "pid",
            "worker_shutdown_timeout",
            "error_log",
            "load_module",
            "daemon",
            "master_process",
            "stream",
            "mail",
            "worker_rlimit_nofile",
        ];
        if directives
            .iter()
            .any(|d| d.name == "server" || d.name == "upstream")
        {
            let (main, http): (Vec<Directive>, Vec<Directive>) = directives
                .iter()
                .cloned()
                .partition(|d| MAIN_ONLY.contains(&d.name.as_str()));
            self.main(&main);
            self.http_block(&http);
            return;
        }
        for d in directives {
            match d.name.as_str() {
                "http" => {
                    let block = d.block.clone().unwrap_or_default();
                    self.http_block(&block);
                }
                "events" => {
                    for inner in d.block.iter().flatten() {
                        match inner.name.as_str() {
                            "worker_connections" => self.info(
                                inner,
                                "per worker; triage's [client] max_connections (default 4096) bounds the whole process",
                            ),
                            "multi_accept" | "accept_mutex" | "use" => self.info(
                                inner,
                                "connection accepting is Pingora's own; nothing to set",
                            ),
                            _ => self.warn(inner, "no equivalent in triage"),
                        }
                    }
                }
                "user" => self.info(
                    d,
                    "triage runs as the user that starts it: set User= in its systemd unit",
                ),
                "worker_processes" | "worker_cpu_affinity" => self.info(
                    d,
                    "[server] threads defaults to one per CPU, as worker_processes auto",
                ),
                "pid" => self.info(d, "[server] pid_file (default /run/triage/triage.pid)"),
                "worker_shutdown_timeout" => {
                    self.global_duration(d, "server", "shutdown_timeout", 0);
                }
                "error_log" => self.warn(
                    d,
                    "triage logs to stdout, with the diagnosis of each failure",
                ),
                "include" => self.built_in_include(d),
                "load_module" => self.warn(d, "nginx modules have no equivalent"),
                "daemon" | "master_process" => {
                    self.info(d, "triage runs in the foreground, under a supervisor")
                }
                "stream" | "mail" => self.warn(d, "triage proxies HTTP only"),
                "worker_rlimit_nofile" => self.info(
                    d,
                    "triage raises its open-file limit for [client] max_connections itself",
                ),
                _ => self.common(d, &mut Scope::default(), "main"),
            }
        }
    }

    fn http_block(&mut self, directives: &[Directive]) {
        // Upstreams first: a proxy_pass may name one written after it.
        for d in directives.iter().filter(|d| d.name == "upstream") {
            self.upstream_block(d);
        }
        let mut scope = Scope::default();
        for d in directives {
            if d.name != "server" && d.name != "upstream" {
                self.common(d, &mut scope, "http");
            }
        }
        let servers: Vec<&Directive> = directives.iter().filter(|d| d.name == "server").collect();
        let default_index = servers
            .iter()
            .position(|s| {
                s.block.iter().flatten().any(|d| {
                    d.name == "listen"
                        && d.args
                            .iter()
                            .any(|a| a == "default_server" || a == "default")
                })
            })
            .unwrap_or(0);
        // Which listeners each server that routes something was on.
        let mut routed_on: Vec<(&Directive, Vec<SocketAddr>)> = Vec::new();
        for (index, server) in servers.iter().enumerate() {
            let routes_before = self.routes.len();
            let listeners = self.server(server, scope.clone(), index == default_index);
            if self.routes.len() > routes_before {
                routed_on.push((server, listeners));
            }
        }
        // triage's routes answer on every listener: a server's port is not part of them.
        let all: Vec<SocketAddr> = self.http.iter().chain(&self.https).copied().collect();
        for (server, listeners) in routed_on {
            let others: Vec<String> = all
                .iter()
                .filter(|a| !listeners.contains(a))
                .map(|a| a.to_string())
                .collect();
            if !others.is_empty() {
                self.warn(
                    server,
                    format!(
                        "its listen addresses: triage's routes answer on every listener, so its routes also answer on {}",
                        others.join(", ")
                    ),
                );
            }
        }
        if servers.is_empty() {
            self.first_server = directives.first().map(|d| d.at.clone());
        }
    }

    /// An `include` nginx ships whose content is built into triage.
    fn built_in_include(&mut self, d: &Directive) {
        let name = d.args.first().map(String::as_str).unwrap_or("");
        let file = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        match file {
            "fastcgi_params" | "fastcgi.conf" | "fastcgi-php.conf" => self.info(
                d,
                "triage sends nginx's FastCGI params (and SCRIPT_FILENAME, PATH_INFO) itself",
            ),
            "proxy_params" => self.info(
                d,
                "triage passes Host and sets X-Real-IP, X-Forwarded-For and X-Forwarded-Proto itself",
            ),
            "mime.types" => self.info(d, "triage serves no static files but a PHP site's, which it types itself"),
            _ => self.warn(d, "not read"),
        }
    }

    fn upstream_block(&mut self, d: &Directive) {
        let name = d.args.first().cloned().unwrap_or_default();
        let mut servers = Vec::new();
        let mut failure_settings: Vec<FailureSettings> = Vec::new();
        for inner in d.block.iter().flatten() {
            match inner.name.as_str() {
                "server" => {
                    if let Some((server, settings)) = self.upstream_server(inner) {
                        servers.push(server);
                        failure_settings.push(settings);
                    }
                }
                "keepalive" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time" => {
                    self.info(inner, "triage keeps idle connections to upstreams itself")
                }
                "least_conn" | "ip_hash" | "hash" | "random" | "least_time" => self.warn(
                    inner,
                    "triage takes turns by weight (smooth weighted round robin); no other balancing",
                ),
                "zone" => self.info(inner, "triage's upstream state is shared by all its threads"),
                _ => self.warn(inner, "no equivalent in a triage upstream"),
            }
        }
        let mut keys = Vec::new();
        // nginx's max_fails and fail_timeout are per server; triage's per upstream.
        if let Some(first) = failure_settings.first().copied() {
            if failure_settings.iter().any(|s| *s != first) {
                self.warn(
                    d,
                    "its servers' max_fails/fail_timeout differ; triage has one pair per upstream: the first server's is kept",
                );
            }
            match first {
                (Some(0), _) | (_, Some(0)) => keys.push(Key::commented(
                    "max_fails",
                    Value::Int(0),
                    "nginx's max_fails=0 or fail_timeout=0: never ejected".to_owned(),
                )),
                (max_fails, fail_timeout) => {
                    if let Some(n) = max_fails {
                        keys.push(Key::new("max_fails", Value::Int(n.min(1000))));
                    }
                    if let Some(ms) = fail_timeout.filter(|ms| *ms <= TIMEOUT_MAX_MS[0]) {
                        keys.push(Key::new("fail_timeout", Value::Str(written_ms(ms))));
                    }
                }
            }
        }
        self.blocks.push(UpstreamBlock {
            name,
            servers,
            keys,
            at: d.at.clone(),
            used: false,
        });
    }

    /// `server ADDR [weight=N] [max_fails=N] [fail_timeout=T] ...;` of an upstream block: the
    /// server as triage writes it, and its max_fails and fail_timeout (ms).
    fn upstream_server(&mut self, d: &Directive) -> Option<(String, FailureSettings)> {
        let Some(addr) = d.args.first() else {
            self.warn(d, "a server without an address");
            return None;
        };
        let Some(addr) = server_addr(addr, 80) else {
            self.warn(
                d,
                "not an address triage can connect to (ip:port, hostname:port or unix:/path)",
            );
            return None;
        };
        let mut weight = 1;
        let mut max_fails = None;
        let mut fail_timeout = None;
        let mut dropped = Vec::new();
        for option in &d.args[1..] {
            if let Some(n) = option.strip_prefix("weight=") {
                match n.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => weight = n,
                    _ => dropped.push(option.clone()),
                }
            } else if let Some(n) = option.strip_prefix("max_fails=") {
                match n.parse::<u64>() {
                    Ok(n) => max_fails = Some(n),
                    Err(_) => dropped.push(option.clone()),
                }
            } else if let Some(t) = option.strip_prefix("fail_timeout=") {
                match nginx_time_ms(t) {
                    Some(ms) => fail_timeout = Some(ms),
                    None => dropped.push(option.clone()),
                }
            } else if option == "resolve" {
                // triage re-resolves hostnames in the background anyway.
            } else if option == "backup" || option == "down" {
                self.warn(
                    d,
                    format!("`{option}`: triage has no {option} servers; leave it out or list it as a server"),
                );
                return None;
            } else {
                dropped.push(option.clone());
            }
        }
        if !dropped.is_empty() {
            self.warn(
                d,
                format!(
                    "`{}`: only weight, max_fails and fail_timeout are carried over",
                    dropped.join(" ")
                ),
            );
        }
        let server = match weight {
            1 => addr,
            n => format!("{addr} weight={n}"),
        };
        Some((server, (max_fails, fail_timeout)))
    }

    /// Maps one server block; returns the addresses it listens on.
    fn server(
        &mut self,
        server: &Directive,
        mut scope: Scope,
        is_default: bool,
    ) -> Vec<SocketAddr> {
        if self.first_server.is_none() {
            self.first_server = Some(server.at.clone());
        }
        let directives = server.block.clone().unwrap_or_default();
        let mut hosts = Vec::new();
        let mut names_written = Vec::new();
        let mut listeners = Vec::new();
        for d in &directives {
            match d.name.as_str() {
                "listen" => {
                    if let Some(listener) = self.listen(d) {
                        listeners.push(listener);
                    }
                }
                "server_name" => {
                    for name in &d.args {
                        names_written.push(name.clone());
                        match route_host(name) {
                            Ok(Some(host)) => {
                                if !hosts.contains(&host) {
                                    hosts.push(host);
                                }
                            }
                            Ok(None) => {}
                            Err(why) => self.warn(d, format!("`{name}`: {why}")),
                        }
                    }
                }
                "location" | "if" => {}
                _ => self.common(d, &mut scope, "server"),
            }
        }
        if listeners.is_empty() {
            // nginx's default: *:80 (as root).
            listeners.push(Listener {
                addr: SocketAddr::from(([0, 0, 0, 0], 80)),
                tls: false,
            });
        }
        let label = match names_written.first() {
            Some(_) => format!("server_name {}", names_written.join(" ")),
            None => "server without server_name".to_owned(),
        };
        if listeners.iter().any(|l| l.tls) {
            self.certificate(server, &scope);
        }
        for listener in &listeners {
            let list = if listener.tls {
                &mut self.https
            } else {
                &mut self.http
            };
            if !list.contains(&listener.addr) {
                list.push(listener.addr);
            }
        }
        let named: Vec<Directive> = directives
            .iter()
            .filter(|d| d.name == "location" && location_match(d).0 == Match::Named)
            .cloned()
            .collect();
        let mut facts = ServerFacts {
            hosts,
            is_default,
            label,
            php: None,
            named,
        };
        facts.php = self.php_site(&directives, &scope, &facts);
        let mut routed_root = false;
        for d in &directives {
            match d.name.as_str() {
                "location" => {
                    routed_root |= self.location(d, &scope, &facts);
                }
                "if" => self.warn(
                    d,
                    "`if` blocks are not carried over, nor what they hold: triage routes by host and path prefix",
                ),
                _ => {}
            }
        }
        for named in &facts.named {
            if !self.used.contains(&named.at) {
                self.warn(
                    named,
                    "a named location that no carried-over location's try_files falls back to",
                );
            }
        }
        if let (Some((php, at)), false) = (&facts.php, routed_root) {
            let keys = self.route_keys(&scope, true);
            self.add_routes(
                &facts,
                "/",
                php,
                keys,
                &at.clone(),
                "the PHP site's front controller",
            );
        }
        listeners.iter().map(|l| l.addr).collect()
    }

    /// `ssl_certificate` and `ssl_certificate_key` of a server with an `ssl` listener.
    fn certificate(&mut self, server: &Directive, scope: &Scope) {
        let (Some((cert, cert_at)), Some((key, key_at))) =
            (&scope.ssl_certificate, &scope.ssl_certificate_key)
        else {
            self.warn(
                server,
                "an ssl listener without ssl_certificate and ssl_certificate_key: without any certificate its https listener is left out; add it with its [[tls.certificates]]",
            );
            return;
        };
        if cert.contains('$') || key.contains('$') {
            self.warn(
                server,
                "certificate paths with variables: list each certificate in [[tls.certificates]] (chosen by SNI)",
            );
            return;
        }
        self.used.push(cert_at.clone());
        self.used.push(key_at.clone());
        let cert = self.absolute(cert);
        let key = self.absolute(key);
        if !self
            .certificates
            .iter()
            .any(|(c, k, _)| *c == cert && *k == key)
        {
            self.certificates.push((cert, key, cert_at.clone()));
        }
    }

    /// A path as nginx reads it: relative to the prefix.
    fn absolute(&self, path: &str) -> String {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.display().to_string();
        }
        let joined = self.prefix.join(path);
        let absolute = match joined.is_absolute() {
            true => joined,
            false => std::env::current_dir()
                .map(|dir| dir.join(&joined))
                .unwrap_or(joined),
        };
        absolute.display().to_string()
    }

    fn listen(&mut self, d: &Directive) -> Option<Listener> {
        let Some(addr) = d.args.first() else {
            self.warn(d, "listen without an address");
            return None;
        };
        let Some(addr) = listen_addr(addr) else {
            self.warn(
                d,
                "triage listens on ip:port addresses (a hostname other than localhost, or a unix socket, is not one)",
            );
            return None;
        };
        let mut tls = false;
        let mut http2 = false;
        let mut dropped = Vec::new();
        for option in &d.args[1..] {
            match option.as_str() {
                "ssl" => tls = true,
                "default_server" | "default" => {}
                // HTTP/2 by ALPN on https listeners; socket options Pingora sets its own way.
                "http2" => http2 = true,
                "bind" | "deferred" | "reuseport" => {}
                o if o.starts_with("ipv6only=") || o.starts_with("backlog=") => {}
                other => dropped.push(other.to_owned()),
            }
        }
        if http2 && !tls {
            dropped.push(
                "http2 (on a plain listener: triage's HTTP/2 is by ALPN on https)".to_owned(),
            );
        }
        if !dropped.is_empty() {
            self.warn(
                d,
                format!(
                    "`{}`: triage's listeners take an address only",
                    dropped.join(" ")
                ),
            );
        }
        Some(Listener { addr, tls })
    }

    /// The FastCGI upstream of a PHP site: a regex location matching `.php` with a
    /// `fastcgi_pass`, served with the server's root and index. Its directives are looked
    /// at here, once.
    fn php_site(
        &mut self,
        directives: &[Directive],
        scope: &Scope,
        facts: &ServerFacts,
    ) -> Option<(String, Place)> {
        let php_location = directives.iter().find(|d| {
            d.name == "location"
                && location_match(d).0 == Match::Regex
                && location_match(d).1.contains(".php")
                && d.block.iter().flatten().any(|i| i.name == "fastcgi_pass")
        })?;
        let mut inner_scope = scope.clone();
        let mut pass = None;
        for d in php_location.block.iter().flatten() {
            match d.name.as_str() {
                "fastcgi_pass" => pass = Some(d.clone()),
                "fastcgi_param" => self.fastcgi_param(d, &mut inner_scope),
                "fastcgi_index" => {
                    if inner_scope.index.is_none() {
                        inner_scope.index = Some((d.args.clone(), d.at.clone()));
                    }
                }
                "fastcgi_split_path_info" => {
                    self.info(d, "triage splits PATH_INFO after the script's .php itself")
                }
                "try_files" => self.info(
                    d,
                    "the front controller runs a .php script only when it exists under root",
                ),
                "include" => self.built_in_include(d),
                _ => self.common(d, &mut inner_scope, "location"),
            }
        }
        let pass = pass?;
        let Some(target) = pass.args.first() else {
            self.warn(&pass, "fastcgi_pass without an address");
            return None;
        };
        let source = match self.blocks.iter().position(|b| b.name == *target) {
            Some(index) => Source::Block(index),
            None => match server_addr(target, 9000) {
                Some(addr) if !target.contains('$') => Source::Address(addr),
                _ => {
                    self.warn(&pass, "not an address or upstream triage can connect to");
                    return None;
                }
            },
        };
        let root = match &inner_scope.root {
            Some((root, at)) => {
                self.used.push(at.clone());
                if root.contains('$') {
                    self.warn(
                        php_location,
                        "its root has variables: set the FastCGI upstream's root by hand",
                    );
                }
                self.absolute(root)
            }
            // nginx's default root: html under the prefix.
            None => self.absolute("html"),
        };
        let root = root.trim_end_matches('/').to_owned();
        let index = match &inner_scope.index {
            Some((names, at)) => {
                self.used.push(at.clone());
                names
                    .iter()
                    .find(|n| n.ends_with(".php"))
                    .or(names.first())
                    .cloned()
                    .unwrap_or_else(|| "index.php".to_owned())
            }
            None => "index.php".to_owned(),
        };
        let params: Vec<(String, String)> = inner_scope
            .params
            .iter()
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect();
        let fastcgi = FastcgiPlan {
            root,
            index,
            params,
        };
        let comment = format!(
            "{}: {} in {} ({})",
            php_location.at,
            php_location.written(),
            facts.label,
            pass.written()
        );
        self.info(
            php_location,
            "a FastCGI upstream with the front controller, routed from /",
        );
        let name = self.upstream_for(
            source,
            false,
            inner_scope.host_header.clone().map(|h| h.0),
            Some(fastcgi),
            comment,
        );
        Some((name, php_location.at.clone()))
    }

    fn location(&mut self, d: &Directive, scope: &Scope, facts: &ServerFacts) -> bool {
        let (kind, path) = location_match(d);
        match kind {
            // Looked at once the server's other locations are: see `server`.
            Match::Named => return false,
            Match::Regex => {
                if facts.php.as_ref().is_some_and(|(_, at)| *at == d.at) {
                    return false;
                }
                let only_denies = d.block.iter().flatten().all(|i| {
                    (i.name == "deny" && i.args == ["all"])
                        || i.name == "access_log"
                        || i.name == "log_not_found"
                });
                if facts.php.is_some() && only_denies && path.contains("/\\.") {
                    self.info(
                        d,
                        "the front controller never serves dotfiles (/.env, /.git/, /.htaccess)",
                    );
                    return false;
                }
                self.warn(
                    d,
                    format!(
                        "a regex location, with the {} directive(s) it holds: triage routes by path prefix",
                        d.block.iter().flatten().count()
                    ),
                );
                return false;
            }
            Match::Prefix | Match::PrefixOnly | Match::Exact => {}
        }
        let mut scope = scope.clone();
        let block = d.block.clone().unwrap_or_default();
        let proxy_pass = block.iter().find(|i| i.name == "proxy_pass").cloned();
        let fallback = block
            .iter()
            .find(|i| i.name == "try_files")
            .and_then(|t| t.args.last())
            .and_then(|last| last.strip_prefix('@'))
            .and_then(|name| {
                facts
                    .named
                    .iter()
                    .find(|n| location_match(n).1 == name)
                    .cloned()
            });
        let named_pass = fallback.as_ref().and_then(|n| {
            n.block
                .iter()
                .flatten()
                .find(|i| i.name == "proxy_pass")
                .cloned()
        });
        let pass = proxy_pass.clone().or(named_pass.clone());
        if pass.is_none() {
            // Served by nginx itself: files, a redirect, a denial.
            if facts.php.is_some() && php_compatible(&block) {
                for inner in &block {
                    match inner.name.as_str() {
                        "try_files" => {
                            let falls_back = inner
                                .args
                                .last()
                                .is_some_and(|a| a.starts_with("/index.php"));
                            if falls_back {
                                // Equivalent: the front controller.
                            } else {
                                self.warn(
                                    inner,
                                    "the front controller serves files under root, runs .php scripts, and runs index.php for the rest",
                                );
                            }
                        }
                        "log_not_found" => {}
                        _ => self.common(inner, &mut scope, "location"),
                    }
                }
                return false;
            }
            let why = match facts.php.is_some() {
                true => "served by nginx itself; here the PHP site's front controller answers it",
                false => "served by nginx itself (files, a redirect or a denial), with what it holds; triage serves no files: requests to it go to the route of a shorter prefix",
            };
            self.warn(d, why);
            return false;
        }
        let Some(pass) = pass else { return false };
        // The named location's directives apply; the try_files's files first part does not.
        if let Some(named) = &fallback {
            if named_pass.is_some() && proxy_pass.is_none() {
                self.used.push(named.at.clone());
                for inner in named.block.iter().flatten() {
                    self.proxy_directive(inner, &mut scope);
                }
            }
        }
        for inner in &block {
            match inner.name.as_str() {
                "try_files" if named_pass.is_some() && proxy_pass.is_none() => self.warn(
                    inner,
                    "triage serves no files: every request goes to the app",
                ),
                "location" => {
                    // A nested location: its own route, with this one's settings.
                    self.location(inner, &scope, facts);
                }
                _ => self.proxy_directive(inner, &mut scope),
            }
        }
        let Some(upstream) = self.proxy_upstream(&pass, &scope, &path, kind) else {
            return false;
        };
        if kind == Match::Exact {
            self.info(
                d,
                "an exact location becomes a path prefix: it also takes the paths below it",
            );
        }
        let keys = self.route_keys(&scope, false);
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || !path.is_ascii() {
            self.warn(
                d,
                "the path is not one a route can take (an absolute path of printable ASCII)",
            );
            return false;
        }
        let what = d.written();
        self.add_routes(facts, &path, &upstream, keys, &d.at, &what);
        path == "/"
    }

    /// A directive of a proxying location (or the named location it falls back to).
    fn proxy_directive(&mut self, d: &Directive, scope: &mut Scope) {
        match d.name.as_str() {
            // Read by proxy_upstream.
            "proxy_pass" => {}
            _ => self.common(d, scope, "location"),
        }
    }

    /// The triage upstream a proxy_pass sends to.
    fn proxy_upstream(
        &mut self,
        pass: &Directive,
        scope: &Scope,
        path: &str,
        kind: Match,
    ) -> Option<String> {
        let Some(url) = pass.args.first() else {
            self.warn(pass, "proxy_pass without a URL");
            return None;
        };
        if url.contains('$') {
            self.warn(
                pass,
                "a URL with variables: name the upstream it reaches by hand",
            );
            return None;
        }
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => {
                self.warn(pass, "only http:// and https:// upstreams are carried over");
                return None;
            }
        };
        let (authority, uri) = match rest.strip_prefix("unix:") {
            // http://unix:/path/to.sock:/uri
            Some(socket) => match socket.split_once(':') {
                Some((path, uri)) => (format!("unix:{path}"), uri.to_owned()),
                None => (format!("unix:{socket}"), String::new()),
            },
            None => match rest.find('/') {
                Some(slash) => (rest[..slash].to_owned(), rest[slash..].to_owned()),
                None => (rest.to_owned(), String::new()),
            },
        };
        let same_path = uri == path && kind != Match::Exact;
        if !(uri.is_empty() || same_path) {
            self.warn(
                pass,
                format!(
                    "the URI `{uri}` (which nginx puts in place of the location's `{path}`): triage passes the path unchanged"
                ),
            );
        }
        let source = match self.blocks.iter().position(|b| b.name == authority) {
            Some(index) => Source::Block(index),
            None => match server_addr(&authority, if tls { 443 } else { 80 }) {
                Some(addr) => Source::Address(addr),
                None => {
                    self.warn(pass, "not an address or upstream triage can connect to");
                    return None;
                }
            },
        };
        let comment = format!("{}: {}", pass.at, pass.written());
        let host_header = scope.host_header.clone().map(|h| h.0);
        Some(self.upstream_for(source, tls, host_header, None, comment))
    }

    /// The name of the triage upstream for `source` with these settings: an existing one, or
    /// a new one.
    fn upstream_for(
        &mut self,
        source: Source,
        tls: bool,
        host_header: Option<String>,
        fastcgi: Option<FastcgiPlan>,
        comment: String,
    ) -> String {
        let existing = self.upstreams.iter().find(|u| {
            u.source == source
                && u.tls == tls
                && u.host_header == host_header
                && u.fastcgi == fastcgi
        });
        if let Some(existing) = existing {
            return existing.name.clone();
        }
        let base = match &source {
            Source::Block(index) => {
                self.blocks[*index].used = true;
                upstream_name(&self.blocks[*index].name)
            }
            Source::Address(_) if fastcgi.is_some() => "php".to_owned(),
            Source::Address(_) => "app".to_owned(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.upstreams.iter().any(|u| u.name == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.upstreams.push(UpstreamPlan {
            name: name.clone(),
            source,
            tls,
            host_header,
            fastcgi,
            comment,
        });
        name
    }

    fn route_keys(&mut self, scope: &Scope, fastcgi: bool) -> Vec<Key> {
        let mut keys = Vec::new();
        if let Some((size, at)) = &scope.max_body_size {
            keys.push(Key::commented(
                "max_body_size",
                Value::Int(*size),
                format!("client_max_body_size, {at}"),
            ));
        }
        let timeouts = match fastcgi {
            true => &scope.fastcgi_timeouts,
            false => &scope.proxy_timeouts,
        };
        for (key, timeout) in TIMEOUT_KEYS.iter().zip(timeouts) {
            if let Some((value, at)) = timeout {
                keys.push(Key::commented(
                    key,
                    Value::Str(value.clone()),
                    at.to_string(),
                ));
            }
        }
        keys
    }

    fn add_routes(
        &mut self,
        facts: &ServerFacts,
        path: &str,
        upstream: &str,
        keys: Vec<Key>,
        at: &Place,
        what: &str,
    ) {
        let hosts: Vec<Option<String>> = match (facts.is_default, facts.hosts.is_empty()) {
            (true, _) | (false, true) => vec![None],
            (false, false) => facts.hosts.iter().cloned().map(Some).collect(),
        };
        let default_note = match (facts.is_default, facts.hosts.is_empty()) {
            (true, false) => format!(
                " (the default server: its routes take any host, {} included)",
                facts.hosts.join(", ")
            ),
            _ => String::new(),
        };
        for host in hosts {
            let taken = self
                .routes
                .iter()
                .any(|r| r.host == host && r.path_prefix == path);
            if taken {
                self.notes.push(Note {
                    level: Level::Warning,
                    at: at.clone(),
                    directive: what.to_owned(),
                    message: format!(
                        "{} with path {path} is routed already, by an earlier server",
                        host.as_deref().unwrap_or("any host")
                    ),
                });
                continue;
            }
            self.routes.push(RoutePlan {
                host,
                path_prefix: path.to_owned(),
                upstream: upstream.to_owned(),
                keys: keys.clone(),
                comment: format!("{at}: {what} in {}{default_note}", facts.label),
            });
        }
    }

    fn fastcgi_param(&mut self, d: &Directive, scope: &mut Scope) {
        let [name, value, ..] = d.args.as_slice() else {
            self.warn(d, "fastcgi_param needs a name and a value");
            return;
        };
        const BUILT_IN: [&str; 22] = [
            "SCRIPT_FILENAME",
            "PATH_INFO",
            "QUERY_STRING",
            "REQUEST_METHOD",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "SCRIPT_NAME",
            "REQUEST_URI",
            "DOCUMENT_URI",
            "DOCUMENT_ROOT",
            "SERVER_PROTOCOL",
            "REQUEST_SCHEME",
            "HTTPS",
            "GATEWAY_INTERFACE",
            "SERVER_SOFTWARE",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "SERVER_ADDR",
            "SERVER_PORT",
            "SERVER_NAME",
            "REDIRECT_STATUS",
            "PATH_TRANSLATED",
        ];
        if value.contains('$') {
            if BUILT_IN.contains(&name.as_str()) && name != "PATH_TRANSLATED" {
                // triage sends it, with the value nginx's fastcgi_params gives it.
                return;
            }
            self.warn(d, "a param with variables: triage sends nginx's fastcgi_params set, and literal params");
            return;
        }
        let valid = (1..=128).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid || value.chars().any(char::is_control) {
            self.warn(d, "not a param name triage takes (letters, digits, _)");
            return;
        }
        scope.params.retain(|(n, _, _)| n != name);
        scope
            .params
            .push((name.clone(), value.clone(), d.at.clone()));
    }

    /// A directive that may appear at http, server or location level (and a few only at
    /// the main level): its setting goes into `scope` for what it encloses, or its note.
    fn common(&mut self, d: &Directive, scope: &mut Scope, level: &str) {
        let arg = d.args.first().cloned().unwrap_or_default();
        match d.name.as_str() {
            "client_max_body_size" => match nginx_size(&arg) {
                Some(0) => scope.max_body_size = Some((1 << 40, d.at.clone())),
                Some(n) if n <= 1 << 40 => scope.max_body_size = Some((n, d.at.clone())),
                _ => self.warn(d, "not a size triage takes (at most 1 TiB)"),
            },
            "proxy_connect_timeout" | "proxy_read_timeout" | "proxy_send_timeout" | "fastcgi_connect_timeout"
            | "fastcgi_read_timeout" | "fastcgi_send_timeout" => {
                let which = match d.name.rsplit('_').nth(1) {
                    Some("connect") => 0,
                    Some("read") => 1,
                    _ => 2,
                };
                match nginx_time_ms(&arg).filter(|ms| (1..=TIMEOUT_MAX_MS[which]).contains(ms)) {
                    Some(ms) => {
                        let timeouts = match d.name.starts_with("fastcgi") {
                            true => &mut scope.fastcgi_timeouts,
                            false => &mut scope.proxy_timeouts,
                        };
                        timeouts[which] = Some((written_ms(ms), d.at.clone()));
                    }
                    None => self.warn(d, "not a duration triage takes here (1ms to 1h for connect, 24h for read and send)"),
                }
            }
            "proxy_set_header" => self.proxy_set_header(d, scope),
            "fastcgi_param" => self.fastcgi_param(d, scope),
            "proxy_http_version" if arg == "1.1" => {}
            "proxy_http_version" => self.warn(d, "triage speaks HTTP/1.1 to upstreams"),
            "proxy_redirect" if arg == "off" => {}
            "proxy_redirect" => self.warn(d, "triage never rewrites the app's Location headers"),
            "proxy_buffering" | "proxy_request_buffering" | "proxy_max_temp_file_size"
            | "proxy_buffers" | "proxy_buffer_size" | "proxy_busy_buffers_size" | "fastcgi_buffers"
            | "fastcgi_buffer_size" | "fastcgi_busy_buffers_size" | "fastcgi_buffering" => self.info(
                d,
                "triage streams bodies both ways without buffering them to disk",
            ),
            "proxy_cache_bypass" | "proxy_no_cache" => self.info(d, "triage caches nothing"),
            "proxy_next_upstream" | "proxy_next_upstream_tries" | "fastcgi_next_upstream" => self.info(
                d,
                "retries = 1 (default): connect-phase failures go to another server",
            ),
            "proxy_ssl_verify" | "proxy_ssl_server_name" => self.info(
                d,
                "an upstream with tls = true always verifies the certificate and sends SNI",
            ),
            "proxy_ssl_trusted_certificate" | "proxy_ssl_name" => self.warn(
                d,
                "set ca_file (or sni) on the upstream by hand",
            ),
            "fastcgi_index" | "fastcgi_split_path_info" => self.info(d, "only means something in a PHP location"),
            "fastcgi_intercept_errors" | "proxy_intercept_errors" => self.warn(
                d,
                "the app's error responses pass through; triage answers its own failures with its diagnosis pages",
            ),
            "root" | "index" => {
                let message = match d.name.as_str() {
                    "root" => "triage serves no static files (but a PHP site's, under its FastCGI upstream's root)",
                    _ => "triage serves no directory indexes (but a PHP site's index)",
                };
                if level == "location" {
                    self.warn(d, message);
                } else {
                    if d.name == "root" {
                        scope.root = Some((arg.clone(), d.at.clone()));
                    } else {
                        scope.index = Some((d.args.clone(), d.at.clone()));
                    }
                    self.pending.push((d.at.clone(), d.written(), message));
                }
            }
            "ssl_certificate" | "ssl_certificate_key" => {
                let value = Some((arg.clone(), d.at.clone()));
                if d.name == "ssl_certificate" {
                    scope.ssl_certificate = value;
                } else {
                    scope.ssl_certificate_key = value;
                }
                self.pending.push((
                    d.at.clone(),
                    d.written(),
                    "no ssl listener uses it",
                ));
            }
            "ssl_protocols" => {
                let modern = d.args.iter().all(|p| p == "TLSv1.2" || p == "TLSv1.3");
                let message = "triage offers TLS 1.2 and 1.3 (rustls), never older versions";
                match modern {
                    true => self.info(d, message),
                    false => self.warn(d, message),
                }
            }
            "ssl_prefer_server_ciphers" | "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" => {
                self.info(d, "rustls's defaults: modern suites only, server order, resumption")
            }
            "ssl_ciphers" | "ssl_dhparam" | "ssl_ecdh_curve" | "ssl_stapling" | "ssl_stapling_verify"
            | "ssl_trusted_certificate" | "ssl_client_certificate" | "ssl_verify_client" | "ssl" => {
                self.warn(d, "triage's TLS is rustls with its defaults; no setting for this")
            }
            "http2" => self.info(d, "HTTP/2 by ALPN on every https listener"),
            "keepalive_timeout" => {
                if arg == "0" {
                    self.warn(d, "triage always allows keep-alive (keepalive_timeout is at least 1ms)");
                } else {
                    self.global_duration(d, "client", "keepalive_timeout", 0);
                }
            }
            "client_header_timeout" => self.global_duration(d, "client", "header_timeout", 0),
            "client_body_timeout" => self.global_duration(d, "client", "body_timeout", 0),
            "send_timeout" => self.global_duration(d, "client", "send_timeout", 0),
            "large_client_header_buffers" => {
                let count = arg.parse::<u64>().ok();
                let size = d.args.get(1).and_then(|s| nginx_size(s));
                match count.zip(size).map(|(c, s)| c.saturating_mul(s)) {
                    Some(bytes) if (1024..=1 << 20).contains(&bytes) => {
                        self.global(d, "client", Key::new("max_header_bytes", Value::Int(bytes)))
                    }
                    _ => self.warn(d, "[client] max_header_bytes takes 1024 to 1048576 bytes"),
                }
            }
            "resolver" => self.resolver(d),
            "resolver_timeout" => self.info(d, "triage resolves in the background, never on a request"),
            "access_log" => self.warn(
                d,
                match arg.as_str() {
                    "off" => "triage logs every request (to stdout); [log] access = false turns the whole log off",
                    _ => "triage's access log goes to stdout, in combined format with the diagnosis ([log] format)",
                },
            ),
            "log_format" => self.warn(d, "triage's access log is combined format plus its fields, or JSON"),
            "error_log" => self.warn(d, "triage logs to stdout, with the diagnosis of each failure"),
            "log_not_found" => self.info(d, "triage logs no missing files"),
            "sendfile" | "tcp_nopush" | "tcp_nodelay" | "types_hash_max_size" | "types_hash_bucket_size"
            | "server_names_hash_bucket_size" | "server_names_hash_max_size" | "default_type" | "aio"
            | "directio" | "open_file_cache" | "output_buffers" | "server_name_in_redirect"
            | "port_in_redirect" | "absolute_redirect" => self.info(d, "tuning of nginx's own file serving or tables; nothing to set"),
            "server_tokens" => self.info(d, "triage's answers name no version"),
            "include" => self.built_in_include(d),
            "gzip" | "gzip_vary" | "gzip_proxied" | "gzip_comp_level" | "gzip_buffers" | "gzip_http_version"
            | "gzip_types" | "gzip_min_length" | "gzip_disable" | "gzip_static" | "brotli" => {
                if d.name == "gzip" && arg == "off" {
                    return;
                }
                self.warn(d, "triage compresses nothing: let the app compress its answers")
            }
            "add_header" | "more_set_headers" | "expires" | "charset" | "etag" => self.warn(
                d,
                "triage adds no response headers but its own: set them in the app",
            ),
            "error_page" => self.warn(
                d,
                "triage answers its own failures with a page naming the diagnosis; the app's error pages pass through",
            ),
            "return" | "rewrite" => self.warn(
                d,
                "triage has no redirects or rewrites: make the app answer them",
            ),
            "try_files" => self.warn(d, "triage serves no files"),
            "allow" | "deny" => self.warn(d, "triage has no access rules: filter by address in front of it or in the app"),
            "auth_basic" | "auth_basic_user_file" | "auth_request" => self.warn(d, "triage has no authentication"),
            "limit_req" | "limit_req_zone" | "limit_conn" | "limit_conn_zone" | "limit_rate" => {
                self.warn(d, "triage has no rate limits")
            }
            "set" | "map" | "geo" | "split_clients" => self.warn(d, "triage has no variables"),
            "if" => self.warn(
                d,
                "`if` blocks are not carried over, nor what they hold: triage routes by host and path prefix",
            ),
            "proxy_cache" | "proxy_cache_path" | "proxy_cache_valid" | "proxy_cache_key" | "fastcgi_cache"
            | "fastcgi_cache_path" | "fastcgi_cache_key" | "fastcgi_cache_valid" => self.warn(d, "triage caches nothing"),
            "alias" | "autoindex" => self.warn(d, "triage serves no static files"),
            "fastcgi_pass" => self.warn(d, "only a regex location for .php scripts becomes a FastCGI upstream"),
            "proxy_pass" => self.warn(d, "proxy_pass only counts in a prefix location"),
            "fastcgi_hide_header" | "proxy_hide_header" | "proxy_pass_header" | "fastcgi_pass_header"
            | "proxy_ignore_headers" => self.warn(d, "triage passes the app's response headers as they are"),
            "underscores_in_headers" | "ignore_invalid_headers" => self.info(
                d,
                "triage never passes a header with `_` in its name to a FastCGI app",
            ),
            _ => self.warn(d, format!("no equivalent in triage (at {level} level)")),
        }
    }

    fn proxy_set_header(&mut self, d: &Directive, scope: &mut Scope) {
        let [name, value, ..] = d.args.as_slice() else {
            self.warn(d, "proxy_set_header needs a name and a value");
            return;
        };
        let built_in: &[&str] = match name.to_ascii_lowercase().as_str() {
            "host" => &["$host", "$http_host"],
            "x-forwarded-for" => &["$proxy_add_x_forwarded_for", "$remote_addr"],
            "x-real-ip" => &["$remote_addr"],
            "x-forwarded-proto" => &["$scheme"],
            "x-forwarded-host" => &["$host", "$http_host", "$server_name"],
            "x-request-id" => &["$request_id"],
            "upgrade" => &["$http_upgrade"],
            "connection" => &["upgrade", "$connection_upgrade", ""],
            _ => &[],
        };
        if built_in.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            return;
        }
        if name.eq_ignore_ascii_case("host") && !value.contains('$') && valid_host_header(value) {
            scope.host_header = Some((value.to_ascii_lowercase(), d.at.clone()));
            return;
        }
        self.warn(
            d,
            "triage sets Host (passed through, or host_header), X-Forwarded-For/-Proto/-Host, X-Real-IP and X-Request-Id itself, and no other request header",
        );
    }

    fn resolver(&mut self, d: &Directive) {
        let mut nameservers = Vec::new();
        let mut refresh = None;
        for arg in &d.args {
            if let Some(valid) = arg.strip_prefix("valid=") {
                refresh = nginx_time_ms(valid).filter(|ms| (50..=3_600_000).contains(ms));
            } else if let Ok(ip) = arg.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                nameservers.push(SocketAddr::new(ip, 53).to_string());
            } else if let Ok(addr) = arg.parse::<SocketAddr>() {
                nameservers.push(addr.to_string());
            } else if arg.starts_with("ipv6=")
                || arg.starts_with("ipv4=")
                || arg.starts_with("status_zone=")
            {
            } else {
                self.warn(
                    d,
                    format!("`{arg}`: triage takes nameservers as ip or ip:port"),
                );
                return;
            }
        }
        self.global(
            d,
            "resolver",
            Key::new("nameservers", Value::List(nameservers)),
        );
        if let Some(ms) = refresh {
            self.globals.push((
                "resolver",
                Key::new("refresh", Value::Str(written_ms(ms))),
                d.at.clone(),
            ));
        }
    }

    /// A [client]/[server] duration: one value for the whole process.
    fn global_duration(
        &mut self,
        d: &Directive,
        table: &'static str,
        key: &'static str,
        arg: usize,
    ) {
        let text = d.args.get(arg).cloned().unwrap_or_default();
        match nginx_time_ms(&text).filter(|ms| (1..=3_600_000).contains(ms)) {
            Some(ms) => self.global(d, table, Key::new(key, Value::Str(written_ms(ms)))),
            None => self.warn(d, format!("[{table}] {key} takes 1ms to 1h")),
        }
    }

    /// A key of a process-wide table: the first value written wins, a different one later is
    /// warned.
    fn global(&mut self, d: &Directive, table: &'static str, key: Key) {
        let earlier = self
            .globals
            .iter()
            .find(|(t, k, _)| *t == table && k.name == key.name)
            .map(|(_, k, at)| (k.value.clone(), at.clone()));
        match earlier {
            Some((value, _)) if value == key.value => {}
            Some((_, at)) => self.warn(
                d,
                format!(
                    "triage has one [{table}] {} for the whole process: the value of {at} is kept",
                    key.name
                ),
            ),
            None => self.globals.push((table, key, d.at.clone())),
        }
    }

    fn finish(mut self) -> Mapped {
        for (at, written, message) in std::mem::take(&mut self.pending) {
            if !self.used.contains(&at) {
                self.notes.push(Note {
                    level: Level::Warning,
                    at,
                    directive: written,
                    message: message.to_owned(),
                });
            }
        }
        for block in self.blocks.clone() {
            if !block.used {
                self.notes.push(Note {
                    level: Level::Warning,
                    at: block.at.clone(),
                    directive: format!("upstream {}", block.name),
                    message: "no carried-over proxy_pass or fastcgi_pass uses it".to_owned(),
                });
            }
        }
        if self.routes.is_empty() {
            let at = self.first_server.clone().unwrap_or(Place {
                file: std::sync::Arc::from(Path::new("-")),
                line: 0,
                column: 0,
            });
            self.notes.push(Note {
                level: Level::Warning,
                at,
                directive: "(the whole configuration)".to_owned(),
                message: "it proxies nothing (nginx served files or redirects itself); triage needs a route: the converted config routes / to a placeholder upstream `app` at 127.0.0.1:3000, which you point at your app".to_owned(),
            });
            let name = self.upstream_for(
                Source::Address("127.0.0.1:3000".to_owned()),
                false,
                None,
                None,
                "a placeholder: nginx's configuration proxied nothing".to_owned(),
            );
            self.routes.push(RoutePlan {
                host: None,
                path_prefix: "/".to_owned(),
                upstream: name,
                keys: Vec::new(),
                comment: "a placeholder: nginx's configuration proxied nothing".to_owned(),
            });
        }
        // nginx refuses an ssl listener without a certificate; triage too: the listener goes
        // (its server was warned).
        if self.certificates.is_empty() && !self.https.is_empty() {
            self.https.clear();
        }
        if self.http.is_empty() && self.https.is_empty() {
            self.http.push(SocketAddr::from(([0, 0, 0, 0], 80)));
        }
        let tables = self.tables();
        Mapped {
            tables,
            notes: self.notes,
        }
    }

    fn tables(&mut self) -> Vec<Table> {
        let mut tables = Vec::new();
        let addrs = |list: &[SocketAddr]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        // An address both plain and TLS (two servers disagreeing) is kept as TLS.
        let https = self.https.clone();
        self.http.retain(|a| !https.contains(a));
        let mut listen = vec![Key::new("http", Value::List(addrs(&self.http)))];
        if !self.https.is_empty() {
            listen.push(Key::new("https", Value::List(addrs(&self.https))));
        }
        tables.push(Table {
            header: "[listen]".to_owned(),
            comments: vec!["nginx's listen directives (HTTP/2 by ALPN on https)".to_owned()],
            keys: listen,
        });
        for (cert, key, at) in &self.certificates {
            tables.push(Table {
                header: "[[tls.certificates]]".to_owned(),
                comments: vec![format!("{at}: ssl_certificate and ssl_certificate_key")],
                keys: vec![
                    Key::new("cert_file", Value::Str(cert.clone())),
                    Key::new("key_file", Value::Str(key.clone())),
                ],
            });
        }
        for table in ["server", "client", "resolver"] {
            let keys: Vec<Key> = self
                .globals
                .iter()
                .filter(|(t, _, _)| *t == table)
                .map(|(_, key, at)| Key {
                    comment: Some(at.to_string()),
                    ..key.clone()
                })
                .collect();
            if !keys.is_empty() {
                tables.push(Table {
                    header: format!("[{table}]"),
                    comments: Vec::new(),
                    keys,
                });
            }
        }
        for upstream in &self.upstreams {
            let mut keys = Vec::new();
            let mut comments = vec![upstream.comment.clone()];
            match &upstream.source {
                Source::Block(index) => {
                    let block = &self.blocks[*index];
                    comments.push(format!("{}: upstream {}", block.at, block.name));
                    keys.push(Key::new("servers", Value::List(block.servers.clone())));
                    keys.extend(block.keys.iter().cloned());
                }
                Source::Address(addr) => {
                    keys.push(Key::new("servers", Value::List(vec![addr.clone()])))
                }
            }
            if upstream.tls {
                keys.push(Key::new("tls", Value::Bool(true)));
            }
            if let Some(host) = &upstream.host_header {
                keys.push(Key::new("host_header", Value::Str(host.clone())));
            }
            if let Some(fastcgi) = &upstream.fastcgi {
                keys.push(Key::new("protocol", Value::Str("fastcgi".to_owned())));
                keys.push(Key::commented(
                    "root",
                    Value::Str(fastcgi.root.clone()),
                    "the document root as php-fpm sees it".to_owned(),
                ));
                keys.push(Key::commented(
                    "index",
                    Value::Str(fastcgi.index.clone()),
                    "with the front controller (the default): try_files $uri $uri/ /index.php"
                        .to_owned(),
                ));
                if !fastcgi.params.is_empty() {
                    keys.push(Key::new("params", Value::Map(fastcgi.params.clone())));
                }
            }
            tables.push(Table {
                header: format!("[upstreams.{}]", upstream.name),
                comments,
                keys,
            });
        }
        for route in &self.routes {
            let mut keys = Vec::new();
            if let Some(host) = &route.host {
                keys.push(Key::new("host", Value::Str(host.clone())));
            }
            keys.push(Key::new(
                "path_prefix",
                Value::Str(route.path_prefix.clone()),
            ));
            keys.push(Key::new("upstream", Value::Str(route.upstream.clone())));
            keys.extend(route.keys.iter().cloned());
            tables.push(Table {
                header: "[[routes]]".to_owned(),
                comments: vec![route.comment.clone()],
                keys,
            });
        }
        tables
    }
}

/// A location's modifier and path (or regex, or name).
fn location_match(d: &Directive) -> (Match, String) {
    let args = &d.args;
    match args.as_slice() {
        [modifier, path] => {
            let kind = match modifier.as_str() {
                "=" => Match::Exact,
                "^~" => Match::PrefixOnly,
                "~" | "~*" => Match::Regex,
                _ => Match::Prefix,
            };
            (kind, path.clone())
        }
        [path] => {
            if let Some(rest) = path.strip_prefix('=') {
                (Match::Exact, rest.to_owned())
            } else if let Some(rest) = path.strip_prefix("^~") {
                (Match::PrefixOnly, rest.to_owned())
            } else if let Some(rest) = path.strip_prefix("~*").or(path.strip_prefix('~')) {
                (Match::Regex, rest.to_owned())
            } else if let Some(name) = path.strip_prefix('@') {
                (Match::Named, name.to_owned())
            } else {
                (Match::Prefix, path.clone())
            }
        }
        _ => (Match::Regex, args.join(" ")),
    }
}

/// Whether a static location of a PHP site holds only what the front controller does anyway
/// (try_files, log_not_found) or what is warned one by one (access_log, expires, ...).
fn php_compatible(block: &[Directive]) -> bool {
    block.iter().all(|d| {
        matches!(
            d.name.as_str(),
            "try_files"
                | "log_not_found"
                | "access_log"
                | "expires"
                | "add_header"
                | "allow"
                | "deny"
                | "index"
        )
    })
}

/// A `listen` address as a socket address: `80`, `*:80`, `127.0.0.1:8080`, `[::]:80`,
/// `localhost:80`, `[::1]`.
fn listen_addr(text: &str) -> Option<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || text.starts_with('[') => {
            match port.parse::<u16>() {
                Ok(port) => (host, port),
                Err(_) => (text, 80),
            }
        }
        _ => (text, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host {
        "*" => Some(SocketAddr::from(([0, 0, 0, 0], port))),
        "localhost" => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port)),
    }
}

/// An upstream server's address as triage writes it (`default_port` when nginx's has none),
/// if triage can connect to it.
fn server_addr(text: &str, default_port: u16) -> Option<String> {
    let text = text.trim_end_matches('/');
    let with_port = match text.parse::<ServerAddr>() {
        Ok(addr) => return Some(addr.to_string()),
        Err(_) if text.starts_with("unix:") => return None,
        Err(_) => format!("{text}:{default_port}"),
    };
    let bracketed = match with_port.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]:{default_port}"),
        Err(_) => with_port,
    };
    bracketed.parse::<ServerAddr>().ok().map(|a| a.to_string())
}

/// A `server_name` as a route's host: `Ok(None)` for the names that match nothing in
/// particular (`_`, `""`), an error for what a route cannot match (wildcards, regexes).
fn route_host(name: &str) -> Result<Option<String>, String> {
    if name.is_empty() || name == "_" {
        return Ok(None);
    }
    if name.starts_with('~') {
        return Err("a regex server name: add a route per host it matches".to_owned());
    }
    if name.contains('*') || name.starts_with('.') {
        return Err(
            "a wildcard server name: triage routes exact host names; add a route per host"
                .to_owned(),
        );
    }
    if name.contains('$') {
        return Err("a server name with variables".to_owned());
    }
    match format!("{name}:1").parse::<ServerAddr>() {
        Ok(ServerAddr::Host { host, .. }) => Ok(Some(host)),
        Ok(ServerAddr::Ip(addr)) if addr.is_ipv4() => Ok(Some(addr.ip().to_string())),
        _ => Err("not a host name a route can take".to_owned()),
    }
}

/// Whether `text` is a Host triage's `host_header` takes: a hostname, optionally with a port.
fn valid_host_header(text: &str) -> bool {
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => text,
    };
    matches!(
        format!("{host}:1").parse::<ServerAddr>(),
        Ok(ServerAddr::Host { .. })
    )
}

/// A triage upstream name from an nginx one: `[A-Za-z0-9_-]`, at most 64 characters.
fn upstream_name(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        clean.push_str("upstream");
    }
    clean
}

/// nginx's time syntax (`30`, `500ms`, `1m30s`, `1h`, `2d`) in milliseconds.
pub fn nginx_time_ms(text: &str) -> Option<u128> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 12 {
            return None;
        }
        let number: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(scale)?)?;
    }
    Some(total)
}

/// Milliseconds as triage writes a duration: the largest unit that divides it.
fn written_ms(ms: u128) -> String {
    match ms {
        _ if ms > 0 && ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms > 0 && ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms > 0 && ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// nginx's size syntax (`1024`, `8k`, `13m`, `4G`) in bytes.
pub fn nginx_size(text: &str) -> Option<u64> {
    let (number, scale) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(scale)
}
