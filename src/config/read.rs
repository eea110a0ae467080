//! The readers: one function per table of the file, turning it into the typed values.

use super::values::{
    check_ca_file, host_header, nameserver, one_of, path_prefix, report_url, route_host,
    server_with_weight, socket_addr, upstream_index, values,
};
use super::walk::{Schema, Section, Spanned, Walker};
use super::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

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
pub(super) fn read_config(w: &mut Walker, top: &Section, origin: &Path) -> Config {
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
