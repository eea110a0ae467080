//! The readers: one function per table of the file, turning it into the typed values.
//!
//! Each key is named once, where it is read; the [`Table`] it is read from counts it as known,
//! so whatever a reader does not ask for is an unknown key. Readers ask for their keys in the
//! order the docs list them, which is the order an unknown-key message lists them in. A key the
//! file leaves out, or gets wrong, takes the `Default` of its type, so later tables are still
//! checked; the result is only used when no error was recorded.
//!
//! Every value is bounded by the parser a reader gives it: a duration key takes
//! `duration(TIMEOUT | WAIT | INTERVAL)` (never bare `parse_duration`), an integer key its range,
//! a file key `named_file(origin, text)` (a regular file of at most 1 MiB, read bounded); every
//! string is already checked by [`Table`] (length, control characters).

use super::duration::{duration, FLUSH, INTERVAL, LOG_AFTER, LOG_BEFORE, TIMEOUT, WAIT};
use super::files::named_file;
use super::table::{required, values, Spanned, Table};
use super::values::{
    admin_host, detail_policy, fastcgi_root, file_path, health_check_path, holdoff, host_header,
    index_file, instance, is_fastcgi, is_http_check, kept_header, log_format, log_level,
    nameserver, param_name, path_prefix, report_export, report_url, route_host, server_with_weight,
    socket_addr, unix_socket_path, upstream_index, upstream_name,
};
use super::*;
use std::path::Path;

/// Reads the whole file.
pub(super) fn config(mut top: Table, origin: &Path) -> Config {
    let listen = listen(&mut top);
    let server = server(&mut top, origin);
    let client = client(&mut top);
    let admin = admin(&mut top, origin);
    let (diagnosis, report_url) = diagnosis(&mut top);
    let resolver = resolver(&mut top);
    let log = log(&mut top);
    let reports = Reports {
        url: report_url,
        ..reports(&mut top, origin)
    };
    let certificates = certificates(&mut top, origin, &listen);
    let upstreams: Vec<Upstream> = top
        .named_tables("upstreams")
        .into_iter()
        .map(|(name, table)| upstream(name, table, origin))
        .collect();
    let routes = routes(&mut top, &upstreams);
    Config {
        boot: BootConfig {
            listen: listen.value,
            certificates,
            server,
            client,
            admin,
            log,
            reports,
        },
        live: LiveConfig {
            diagnosis,
            resolver,
            upstreams,
            routes,
        },
    }
}

fn listen(top: &mut Table) -> Spanned<Listen> {
    let given = top.has("listen");
    let mut t = top.table(required("listen"));
    let http = t.list("http", socket_addr).unwrap_or_default();
    let https = t.list("https", socket_addr).unwrap_or_default();
    let all_listeners: Vec<_> = http.iter().chain(https.iter()).cloned().collect();
    t.errors().reject_duplicates("listen", &all_listeners);
    if all_listeners.is_empty() && given {
        t.error(
            t.at,
            "listen: needs at least one address in `http` or `https`",
        );
    }
    Spanned {
        value: Listen {
            http: values(http),
            https: values(https),
        },
        at: t.at,
    }
}

fn server(top: &mut Table, origin: &Path) -> ServerSettings {
    let mut t = top.table("server");
    let default = ServerSettings::default();
    ServerSettings {
        threads: t
            .integer("threads", 1..=1024)
            .map(|n| n as usize)
            .or(default.threads),
        work_stealing: t.boolean("work_stealing").unwrap_or(default.work_stealing),
        shutdown_timeout: t
            .value("shutdown_timeout", duration(TIMEOUT))
            .unwrap_or(default.shutdown_timeout),
        upgrade_socket: t
            .value("upgrade_socket", |text| unix_socket_path(origin.join(text)))
            .unwrap_or(default.upgrade_socket),
        pid_file: t
            .value("pid_file", |text| file_path(origin.join(text)))
            .unwrap_or(default.pid_file),
        instance: t.value("instance", instance).unwrap_or(default.instance),
    }
}

fn client(top: &mut Table) -> ClientSettings {
    let mut t = top.table("client");
    let default = ClientSettings::default();
    let mut timeout = |key, default| t.value(key, duration(TIMEOUT)).unwrap_or(default);
    let header_timeout = timeout("header_timeout", default.header_timeout);
    let body_timeout = timeout("body_timeout", default.body_timeout);
    let keepalive_timeout = timeout("keepalive_timeout", default.keepalive_timeout);
    let send_timeout = timeout("send_timeout", default.send_timeout);
    ClientSettings {
        header_timeout,
        body_timeout,
        keepalive_timeout,
        send_timeout,
        max_header_bytes: t
            .integer("max_header_bytes", 1024..=(1 << 20))
            .map_or(default.max_header_bytes, |n| n as usize),
        max_connections: t
            .integer("max_connections", 1..=1_000_000)
            .map_or(default.max_connections, |n| n as usize),
    }
}

fn admin(top: &mut Table, origin: &Path) -> Admin {
    let mut t = top.table("admin");
    let default = Admin::default();
    let listen = t.value("listen", socket_addr).unwrap_or(default.listen);
    let hosts = t.list("hosts", admin_host).map_or(default.hosts, values);
    let token = t
        .spanned("token_file", |text| Ok(origin.join(text)))
        .and_then(|path| {
            AdminToken::read(&path.value)
                .map_err(|message| t.error(path.at, format!("token_file: {message}")))
                .ok()
        })
        .or(default.token);
    Admin {
        listen,
        hosts,
        token,
    }
}

/// The disclosure policy, and `report_url`, which belongs to the report ring (boot-only).
/// An absolute path (a disk to sample).
fn absolute_path(text: &str) -> Result<std::path::PathBuf, String> {
    if text.starts_with('/') {
        Ok(std::path::PathBuf::from(text))
    } else {
        Err(format!("`{text}` is not an absolute path"))
    }
}

fn diagnosis(top: &mut Table) -> (DiagnosisPolicy, Option<String>) {
    let mut t = top.table("diagnosis");
    let default = DiagnosisPolicy::default();
    let policy = DiagnosisPolicy {
        detail: t.value("detail", detail_policy).unwrap_or(default.detail),
        trusted: t
            .list("trusted", |text| text.parse::<Cidr>())
            .map_or(default.trusted, values),
        deploy_window: t
            .value("deploy_window", duration(TIMEOUT))
            .unwrap_or(default.deploy_window),
        stale_race: t
            .value("stale_race", duration(TIMEOUT))
            .unwrap_or(default.stale_race),
        overload_in_flight: t
            .integer("overload_in_flight", 1..=1_000_000)
            .map_or(default.overload_in_flight, |n| n as u32),
        crash_loop_comebacks: t
            .integer("crash_loop_comebacks", 1..=16)
            .map_or(default.crash_loop_comebacks, |n| n as u32),
        address_window: t
            .value("address_window", duration(TIMEOUT))
            .unwrap_or(default.address_window),
        host_disks: t
            .list("host_disks", absolute_path)
            .map_or(default.host_disks, values),
        host_cpu_busy_percent: t
            .integer("host_cpu_busy_percent", 0..=100)
            .map_or(default.host_cpu_busy_percent, |n| n as u32),
        host_memory_available_percent: t
            .integer("host_memory_available_percent", 0..=100)
            .map_or(default.host_memory_available_percent, |n| n as u32),
        host_disk_free_percent: t
            .integer("host_disk_free_percent", 0..=100)
            .map_or(default.host_disk_free_percent, |n| n as u32),
    };
    let report_url = t.value("report_url", report_url).or(Reports::default().url);
    (policy, report_url)
}

fn resolver(top: &mut Table) -> Resolver {
    let mut t = top.table("resolver");
    let default = Resolver::default();
    Resolver {
        nameservers: t
            .list("nameservers", nameserver)
            .map_or(default.nameservers, values),
        refresh: t
            .value("refresh", duration(INTERVAL))
            .unwrap_or(default.refresh),
    }
}

fn log(top: &mut Table) -> Log {
    let mut t = top.table("log");
    let default = Log::default();
    Log {
        level: t.value("level", log_level).unwrap_or(default.level),
        format: t.value("format", log_format).unwrap_or(default.format),
        access: t.boolean("access").unwrap_or(default.access),
        access_flush: t
            .value("access_flush", duration_or_off(FLUSH))
            .unwrap_or(default.access_flush),
        error_lines_per_second: t
            .integer("error_lines_per_second", 0..=1_000_000)
            .map_or(default.error_lines_per_second, |n| n as u32),
    }
}

fn reports(top: &mut Table, origin: &Path) -> Reports {
    let mut t = top.table("reports");
    let default = Reports::default();
    Reports {
        max_count: t
            .integer("max_count", 0..=1_000_000)
            .map_or(default.max_count, |n| n as usize),
        max_bytes: t
            .integer("max_bytes", 0..=(1 << 30))
            .map_or(default.max_bytes, |n| n as usize),
        url: default.url,
        keep_headers: t
            .list("keep_headers", kept_header)
            .map_or(default.keep_headers, values),
        export: t
            .value("export", |text| report_export(text, origin))
            .or(default.export),
    }
}

/// `[[tls.certificates]]`, each checked (readable, parsable, key matching) here.
fn certificates(top: &mut Table, origin: &Path, listen: &Spanned<Listen>) -> Vec<Certificate> {
    let mut tls = top.table("tls");
    let errors_before = tls.errors().count();
    let certificates: Vec<Certificate> = tls
        .table_array("certificates")
        .into_iter()
        .filter_map(|mut t| {
            let cert = t.spanned(required("cert_file"), |text| named_file(origin, text));
            let key = t.spanned(required("key_file"), |text| named_file(origin, text));
            let (cert, key) = (cert?, key?);
            let ((cert_file, cert_pem), (key_file, key_pem)) = (cert.value, key.value);
            Certificate::parse(cert_file, &cert_pem, key_file, &key_pem)
                .map_err(|reason| t.error(cert.at, format!("certificates: {reason}")))
                .ok()
        })
        .collect();
    tls.finish();
    // Said only when the file names no certificate at all: one it names but cannot use has
    // been reported already.
    let certificates_failed = top.errors().count() > errors_before;
    if !listen.value.https.is_empty() && certificates.is_empty() && !certificates_failed {
        top.error(
            listen.at,
            "listen.https needs at least one [[tls.certificates]] with cert_file and key_file",
        );
    }
    certificates
}

fn upstream(name: Spanned<String>, mut t: Table, origin: &Path) -> Upstream {
    if let Err(message) = upstream_name(&name.value) {
        t.error(name.at, message);
    }
    let default = Upstream::default();
    let weighted = t
        .non_empty_list(required("servers"), server_with_weight)
        .unwrap_or_default();
    let servers: Vec<Spanned<ServerAddr>> = weighted
        .iter()
        .map(|s| Spanned {
            value: s.value.0.clone(),
            at: s.at,
        })
        .collect();
    let weights = weighted.iter().map(|s| s.value.1).collect();
    t.errors().reject_duplicates("servers", &servers);
    let tls = t.boolean("tls").unwrap_or(default.tls);
    let sni = t.spanned("sni", addr::hostname);
    let ca_path = t.spanned("ca_file", |text| Ok(origin.join(text)));
    if !tls {
        for (key, at) in [
            ("sni", sni.as_ref().map(|v| v.at)),
            ("ca_file", ca_path.as_ref().map(|v| v.at)),
        ] {
            if let Some(at) = at {
                t.error(at, format!("{key}: only applies with tls = true"));
            }
        }
    }
    // The name a certificate is verified against: a unix socket's path cannot be one.
    if tls && sni.is_none() {
        for server in &servers {
            if let ServerAddr::Unix(_) = server.value {
                t.error(
                    server.at,
                    format!(
                        "servers: `{}`: with tls = true, a unix socket server needs `sni`, the name its certificate is verified against",
                        server.value
                    ),
                );
            }
        }
    }
    let ca_file = ca_path.filter(|_| tls).and_then(|path| {
        CaFile::read(&path.value)
            .map_err(|message| t.error(path.at, format!("ca_file: {message}")))
            .ok()
    });
    let connect_timeout = t
        .value("connect_timeout", duration(TIMEOUT))
        .unwrap_or(default.connect_timeout);
    let mut wait = |key, default| t.value(key, duration(WAIT)).unwrap_or(default);
    let read_timeout = wait("read_timeout", default.read_timeout);
    let write_timeout = wait("write_timeout", default.write_timeout);
    let total_timeout = t
        .value("total_timeout", duration(WAIT))
        .or(default.total_timeout);
    let host_header = t.value("host_header", host_header).or(default.host_header);
    let retries = t
        .integer("retries", 0..=10)
        .map_or(default.retries, |n| n as u32);
    let max_fails = t
        .integer("max_fails", 0..=1000)
        .map_or(default.max_fails, |n| n as u32);
    let fail_timeout = t
        .value("fail_timeout", duration(TIMEOUT))
        .unwrap_or(default.fail_timeout);
    let refused_holdoff = t
        .value("refused_holdoff", holdoff)
        .unwrap_or(default.refused_holdoff);
    let health_check = t
        .optional_table("health_check")
        .map(|mut table| health_check(&mut table));
    let protocol = t.spanned("protocol", is_fastcgi);
    if let (Some(protocol), true) = (&protocol, tls) {
        if protocol.value {
            t.error(
                protocol.at,
                "protocol = \"fastcgi\" does not go with tls = true: FastCGI servers (php-fpm) speak plain text",
            );
        }
    }
    let fastcgi = fastcgi(&mut t, protocol.as_ref());
    let evidence = t
        .optional_table("evidence")
        .and_then(|mut table| evidence(&mut table));

    Upstream {
        name: name.value,
        servers: values(servers),
        tls,
        sni: sni.map(|v| v.value),
        ca_file,
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
        fastcgi,
        evidence,
    }
}

/// `[upstreams.NAME.evidence]`: `log_file` (one path or up to 8), `pidfile`, `systemd_unit` or
/// `cgroup` (both name the app's cgroup: one of them), `log_before`, `log_after`. A table that
/// names nothing to read is refused, so a typo cannot leave the evidence silently off.
fn evidence(t: &mut Table) -> Option<AppEvidence> {
    let log_files = t.string_or_list("log_file", absolute_path);
    let pidfile = t.spanned("pidfile", absolute_path);
    let unit = t.spanned("systemd_unit", systemd_unit);
    let cgroup = t.spanned("cgroup", cgroup_dir);
    let log_before = t
        .value("log_before", duration_or_off(LOG_BEFORE))
        .unwrap_or(AppEvidence::DEFAULT_LOG_BEFORE);
    let log_after = t
        .value("log_after", duration_or_off(LOG_AFTER))
        .unwrap_or(AppEvidence::DEFAULT_LOG_AFTER);
    let log_files = log_files.unwrap_or_default();
    if log_files.len() > AppEvidence::MAX_LOG_FILES {
        t.error(
            log_files[AppEvidence::MAX_LOG_FILES].at,
            format!(
                "log_file: at most {} files are followed per upstream",
                AppEvidence::MAX_LOG_FILES
            ),
        );
    }
    t.errors()
        .reject_duplicates("log_file", &displayed(&log_files));
    if let (Some(_), Some(cgroup)) = (&unit, &cgroup) {
        t.error(
            cgroup.at,
            "cgroup: give systemd_unit or cgroup, not both: each names the app's cgroup",
        );
    }
    let cgroup = cgroup.map(|c| c.value).or_else(|| {
        unit.as_ref()
            .map(|u| Path::new(AppEvidence::SYSTEMD_SLICE).join(&u.value))
    });
    if log_files.is_empty() && pidfile.is_none() && cgroup.is_none() && !t.has("log_file") {
        t.error(
            t.at,
            "[evidence] names nothing to read: give log_file, pidfile, systemd_unit or cgroup",
        );
    }
    Some(AppEvidence {
        log_files: values(log_files),
        pidfile: pidfile.map(|p| p.value),
        cgroup,
        log_before,
        log_after,
    })
}

/// A duration within `bounds`, or `"off"` for none (zero, as `refused_holdoff`): a log
/// window, the access log's flush.
fn duration_or_off(
    bounds: super::DurationBounds,
) -> impl Fn(&str) -> Result<std::time::Duration, String> {
    move |text| match text {
        "off" => Ok(std::time::Duration::ZERO),
        _ => duration(bounds)(text),
    }
}

/// Paths as displayable values, for the duplicate check.
fn displayed(paths: &[Spanned<std::path::PathBuf>]) -> Vec<Spanned<String>> {
    paths
        .iter()
        .map(|p| Spanned {
            value: p.value.display().to_string(),
            at: p.at,
        })
        .collect()
}

/// A systemd unit's name (`app.service`, `app` meaning `app.service`, `app@1.service`): it
/// becomes a directory name under the system slice, so no `/` and no dot-only names.
fn systemd_unit(text: &str) -> Result<String, String> {
    let valid = (1..=255).contains(&text.len())
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b));
    if !valid {
        return Err(format!(
            "`{}` is not a systemd unit name (letters, digits, @ . _ : - and \\, as `app.service`)",
            text.escape_debug()
        ));
    }
    Ok(match text.contains('.') {
        true => text.to_owned(),
        false => format!("{text}.service"),
    })
}

/// A cgroup v2 directory: an absolute path under `/sys/fs/cgroup`, without `..`.
fn cgroup_dir(text: &str) -> Result<std::path::PathBuf, String> {
    let path = absolute_path(text)?;
    let climbs = path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if !path.starts_with("/sys/fs/cgroup") || climbs {
        return Err(format!(
            "`{text}` is not a cgroup directory under /sys/fs/cgroup"
        ));
    }
    Ok(path)
}

/// The FastCGI keys of an upstream: `root` (required with `protocol = "fastcgi"`), `index`,
/// `params` and `front_controller`, each refused with `protocol = "http"`. The front controller
/// serves files from `root`: resolved here once when it is on this machine.
fn fastcgi(t: &mut Table, protocol: Option<&Spanned<bool>>) -> Option<Fastcgi> {
    let root = t.spanned("root", fastcgi_root);
    let index = t.spanned("index", index_file);
    let params = t.string_entries("params", param_name);
    let front_controller = t.spanned_boolean("front_controller");
    let Some(protocol) = protocol.filter(|p| p.value) else {
        let given = [
            ("root", root.as_ref().map(|v| v.at)),
            ("index", index.as_ref().map(|v| v.at)),
            (
                "params",
                params.as_ref().and_then(|p| p.first()).map(|v| v.at),
            ),
            ("front_controller", front_controller.as_ref().map(|v| v.at)),
        ];
        for (key, at) in given {
            if let Some(at) = at {
                t.error(
                    at,
                    format!("{key}: only applies with protocol = \"fastcgi\""),
                );
            }
        }
        return None;
    };
    let Some(root) = root else {
        if !t.has("root") {
            t.error(
                protocol.at,
                "protocol = \"fastcgi\" needs `root`, the document root as php-fpm sees it (SCRIPT_FILENAME = root + the script's path)",
            );
        }
        return None;
    };
    // TOML itself refuses a key written twice: no duplicate check here.
    let params = params.unwrap_or_default();
    let front_controller = front_controller.is_none_or(|f| f.value);
    // A root that is not here (yet: an app volume mounted after triage starts, or php-fpm's
    // files on another host) is looked for again by each request, as nginx does.
    let root_path = if root.value.is_empty() {
        "/"
    } else {
        &root.value
    };
    let local_root = front_controller
        .then(|| std::fs::canonicalize(root_path))
        .and_then(Result::ok)
        .filter(|path| path.is_dir());
    Some(Fastcgi {
        root: root.value,
        index: index.map_or_else(|| Fastcgi::DEFAULT_INDEX.to_owned(), |i| i.value),
        params: values(params),
        front_controller,
        local_root,
    })
}

fn health_check(t: &mut Table) -> HealthCheck {
    let default = HealthCheck::default();
    let is_http = t.value("kind", is_http_check);
    let path = t.value("path", health_check_path);
    // A path alone is enough to ask for an HTTP check.
    let kind = match (is_http, path) {
        (Some(true), path) => HealthCheckKind::Http {
            path: path.unwrap_or_else(|| HealthCheckKind::DEFAULT_PATH.to_owned()),
        },
        (_, Some(path)) => HealthCheckKind::Http { path },
        (Some(false) | None, None) => default.kind,
    };
    let interval = t
        .value("interval", duration(INTERVAL))
        .unwrap_or(default.interval);
    let timeout = t
        .value("timeout", duration(TIMEOUT))
        .unwrap_or(default.timeout);
    let mut threshold = |key, default: u32| t.integer(key, 1..=100).map_or(default, |n| n as u32);
    HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold: threshold("healthy_threshold", default.healthy_threshold),
        unhealthy_threshold: threshold("unhealthy_threshold", default.unhealthy_threshold),
    }
}

fn routes(top: &mut Table, upstreams: &[Upstream]) -> Vec<Route> {
    let mut routes: Vec<Spanned<Route>> = Vec::new();
    for mut t in top.table_array(required("routes")) {
        let errors = t.errors();
        let errors_before = errors.count();
        let at = t.at;
        let default = Route::default();
        let path_prefix = t.value(required("path_prefix"), path_prefix);
        let host = t.value("host", route_host).or(default.host);
        let upstream = t.value(required("upstream"), |name| upstream_index(upstreams, name));
        let max_body_size = t
            .integer("max_body_size", 0..=(1 << 40))
            .unwrap_or(default.max_body_size);
        let timeouts = RouteTimeouts {
            connect: t.value("connect_timeout", duration(TIMEOUT)),
            read: t.value("read_timeout", duration(WAIT)),
            write: t.value("write_timeout", duration(WAIT)),
            total: t.value("total_timeout", duration(WAIT)),
        };
        // Unknown keys count as mistakes of this route too.
        t.finish();
        let (Some(path_prefix), Some(upstream)) = (path_prefix, upstream) else {
            continue;
        };
        // A route with any mistake is left out of the duplicate check, so one mistake is not
        // reported twice.
        if errors.count() > errors_before {
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
                errors.line_of(earlier.at)
            );
            errors.error(at, message);
            continue;
        }
        routes.push(Spanned { value: route, at });
    }
    values(routes)
}
