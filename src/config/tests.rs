//! Unit tests of the config reader: every accepted form, every default, and the position and
//! wording of every error message.

use super::*;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

const MINIMAL: &str = r#"[listen]
http = ["0.0.0.0:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
path_prefix = "/"
upstream = "app"
"#;

fn parse_ok(text: &str) -> Config {
    parse(text, Path::new(".")).unwrap_or_else(|errors| panic!("{errors}"))
}

/// Every error as "LINE:COLUMN: message", in the order reported.
fn errors(text: &str) -> Vec<String> {
    let errors = parse(text, Path::new(".")).expect_err("config should be rejected");
    errors.0.iter().map(ToString::to_string).collect()
}

/// The one error `text` has, asserting there is exactly one.
fn only_error(text: &str) -> String {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.remove(0)
}

/// A fresh directory per test, so tests that write files can run in parallel.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("triage-config-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real (self-signed) certificate in PEM: a ca_file is parsed when the config is loaded.
fn pem() -> String {
    rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
        .unwrap()
        .cert
        .pem()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The documented example (with tls = true, which sni and ca_file require) parses to exactly these values.
#[test]
fn documented_example_parses() {
    let dir = scratch_dir("example");
    std::fs::write(dir.join("ca.pem"), pem()).unwrap();
    std::fs::write(dir.join("admin.token"), "0123456789abcdef0123\n").unwrap();
    let text = r#"
[listen]
http = ["0.0.0.0:8080"]

[server]
threads = 4
work_stealing = true
shutdown_timeout = "30s"
upgrade_socket = "/run/triage-blue/upgrade.sock"
pid_file = "triage.pid"
instance = "web-1.eu"

[client]
header_timeout = "10s"
body_timeout = "20s"
keepalive_timeout = "30s"
send_timeout = "40s"
max_header_bytes = 16384
max_connections = 2048

[admin]
listen = "127.0.0.1:9901"
hosts = ["Triage-Admin.internal", "[::1]", "10.0.0.5"]
token_file = "admin.token"

[diagnosis]
detail = "trusted"
trusted = ["127.0.0.0/8", "::1/128"]
report_url = "https://support.example/diagnoses"
deploy_window = "15m"

[resolver]
nameservers = ["127.0.0.1:53"]
refresh = "30s"

[log]
level = "info"
format = "text"
access = false
access_flush = "off"
error_lines_per_second = 5

[reports]
max_count = 50
max_bytes = 65536
keep_headers = ["X-Tenant"]
export = "reports.jsonl"

[upstreams.app]
servers = ["127.0.0.1:3000 weight=3", "127.0.0.1:3001"]
tls = true
sni = "app.internal"
ca_file = "ca.pem"
connect_timeout = "5s"
read_timeout = "60s"
write_timeout = "60s"
host_header = "app.internal:8443"
retries = 2
max_fails = 5
fail_timeout = "30s"
refused_holdoff = "off"

[upstreams.app.health_check]
kind = "tcp"
interval = "1s"
timeout = "500ms"
healthy_threshold = 1
unhealthy_threshold = 2

[[routes]]
path_prefix = "/"
host = "example.com"
upstream = "app"
max_body_size = 10485760
read_timeout = "2m"
"#;
    let config = parse(text, &dir).unwrap_or_else(|errors| panic!("{errors}"));
    let expected = Config {
        boot: BootConfig {
            listen: Listen {
                http: vec!["0.0.0.0:8080".parse().unwrap()],
                https: vec![],
            },
            certificates: vec![],
            server: ServerSettings {
                threads: Some(4),
                work_stealing: true,
                shutdown_timeout: Duration::from_secs(30),
                upgrade_socket: "/run/triage-blue/upgrade.sock".into(),
                pid_file: dir.join("triage.pid"),
                instance: "web-1.eu".into(),
            },
            client: ClientSettings {
                header_timeout: secs(10),
                body_timeout: secs(20),
                keepalive_timeout: secs(30),
                send_timeout: secs(40),
                max_header_bytes: 16384,
                max_connections: 2048,
            },
            admin: Admin {
                listen: "127.0.0.1:9901".parse().unwrap(),
                hosts: vec![
                    "triage-admin.internal".into(),
                    "::1".into(),
                    "10.0.0.5".into(),
                ],
                token: Some(AdminToken::read(&dir.join("admin.token")).unwrap()),
            },
            log: Log {
                level: LogLevel::Info,
                format: LogFormat::Text,
                access: false,
                access_flush: Duration::ZERO,
                error_lines_per_second: 5,
            },
            reports: Reports {
                max_count: 50,
                max_bytes: 65536,
                url: Some("https://support.example/diagnoses/".into()),
                keep_headers: vec!["x-tenant".into()],
                export: Some(ReportExport::File(dir.join("reports.jsonl"))),
            },
        },
        live: LiveConfig {
            diagnosis: DiagnosisPolicy {
                detail: DetailPolicy::Trusted,
                trusted: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                deploy_window: secs(900),
                ..DiagnosisPolicy::default()
            },
            resolver: Resolver {
                nameservers: vec!["127.0.0.1:53".parse().unwrap()],
                refresh: secs(30),
            },
            upstreams: vec![Upstream {
                name: "app".into(),
                servers: vec![
                    "127.0.0.1:3000".parse().unwrap(),
                    "127.0.0.1:3001".parse().unwrap(),
                ],
                tls: true,
                sni: Some("app.internal".into()),
                ca_file: Some(CaFile::read(&dir.join("ca.pem")).unwrap()),
                connect_timeout: secs(5),
                read_timeout: secs(60),
                write_timeout: secs(60),
                total_timeout: None,
                weights: vec![3, 1],
                host_header: Some("app.internal:8443".into()),
                retries: 2,
                max_fails: 5,
                fail_timeout: secs(30),
                refused_holdoff: Duration::ZERO,
                health_check: Some(HealthCheck {
                    kind: HealthCheckKind::Tcp,
                    interval: secs(1),
                    timeout: Duration::from_millis(500),
                    healthy_threshold: 1,
                    unhealthy_threshold: 2,
                }),
                fastcgi: None,
                evidence: None,
            }],
            routes: vec![Route {
                host: Some("example.com".into()),
                path_prefix: "/".into(),
                upstream: 0,
                max_body_size: 10 << 20,
                timeouts: RouteTimeouts {
                    connect: None,
                    read: Some(secs(120)),
                    write: None,
                    total: None,
                },
            }],
        },
    };
    assert_eq!(config, expected);
}

/// Everything optional takes its documented default.
#[test]
fn defaults() {
    let config = parse_ok(MINIMAL);
    assert_eq!(
        config.boot.admin.listen,
        SocketAddr::from(([127, 0, 0, 1], 9901))
    );
    assert_eq!(config.live.diagnosis.detail, DetailPolicy::Trusted);
    assert_eq!(config.live.diagnosis.trusted, Cidr::loopback());
    assert_eq!(
        config.live.diagnosis.trusted[1].network(),
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    );
    assert_eq!(
        config.boot.report_url().as_deref(),
        Some("http://127.0.0.1:9901/diagnoses/")
    );
    assert_eq!(config.boot.server.threads, None);
    assert!(config.boot.server.worker_threads() >= 1);
    assert!(!config.boot.server.work_stealing);
    assert_eq!(config.boot.server.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(
        config.boot.server.upgrade_socket,
        Path::new("/run/triage/upgrade.sock")
    );
    assert_eq!(
        config.boot.server.pid_file,
        Path::new("/run/triage/triage.pid")
    );
    assert!(config.boot.admin.hosts.is_empty() && config.boot.admin.token.is_none());
    assert!(config.boot.reports.keep_headers.is_empty());
    assert!(config.boot.log.access);
    assert_eq!(config.boot.log.access_flush, Duration::from_millis(100));
    assert_eq!(config.boot.log.error_lines_per_second, 10);
    assert_eq!(config.boot.reports.max_count, 1000);
    assert_eq!(config.boot.reports.max_bytes, 8 << 20);
    assert!(config.live.resolver.nameservers.is_empty());
    assert_eq!(config.live.resolver.refresh, secs(30));
    assert_eq!(
        (config.boot.log.level.as_str(), &config.boot.log.format),
        ("info", &LogFormat::Text)
    );
    let upstream = &config.live.upstreams[0];
    assert!(!upstream.tls && upstream.sni.is_none() && upstream.ca_file.is_none());
    let timeouts = (
        upstream.connect_timeout,
        upstream.read_timeout,
        upstream.write_timeout,
    );
    assert_eq!(timeouts, (secs(5), secs(60), secs(60)));
    assert_eq!(upstream.weights, vec![1]);
    assert_eq!(upstream.host_header, None);
    assert_eq!(
        (
            upstream.retries,
            upstream.max_fails,
            upstream.fail_timeout,
            upstream.refused_holdoff
        ),
        (1, 3, secs(10), Duration::from_millis(100))
    );
    assert_eq!(upstream.health_check, None);
    assert_eq!(
        config.live.routes,
        vec![Route {
            host: None,
            path_prefix: "/".into(),
            upstream: 0,
            max_body_size: 1 << 20,
            timeouts: RouteTimeouts::default(),
        }]
    );
    assert_eq!(
        config
            .live
            .upstream_of(&config.live.routes[0])
            .map(|u| u.name.as_str()),
        Some("app")
    );
}

/// Routes point at upstreams by file position, and names, hosts and enums are read as written.
#[test]
fn several_upstreams_and_routes() {
    let text = r#"[listen]
http = ["0.0.0.0:80", "[::]:80"]
[diagnosis]
detail = "none"
trusted = []
[log]
level = "trace"
format = "json"
[upstreams.web]
servers = ["web-1.internal:8080", "10.0.0.2:8080", "[fd00::2]:8080"]
[upstreams.API_v2]
servers = ["api:9000"]
tls = true
[[routes]]
host = "API.Example.com"
path_prefix = "/"
upstream = "API_v2"
[[routes]]
path_prefix = "/"
upstream = "web"
"#;
    let config = parse_ok(text);
    assert_eq!(config.boot.listen.http.len(), 2);
    assert_eq!(
        (config.live.diagnosis.detail, config.live.diagnosis.trusted),
        (DetailPolicy::None, vec![])
    );
    assert_eq!(
        (config.boot.log.level, config.boot.log.format),
        (LogLevel::Trace, LogFormat::Json)
    );
    let servers: Vec<String> = config.live.upstreams[0]
        .servers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        servers,
        ["web-1.internal:8080", "10.0.0.2:8080", "[fd00::2]:8080"]
    );
    assert_eq!(
        config.live.routes[0].host.as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        (
            config.live.routes[0].upstream,
            config.live.routes[1].upstream
        ),
        (1, 0)
    );
}

/// Inline tables and arrays of inline tables are read like their [header] forms.
#[test]
fn inline_tables_are_accepted() {
    let text = r#"listen = { http = ["0.0.0.0:8080"] }
upstreams.app = { servers = ["app:80"] }
routes = [{ path_prefix = "/", upstream = "app" }]
"#;
    assert_eq!(parse_ok(text).live.routes.len(), 1);
}

/// The report link belongs to the boot part: by default the reports on the configured admin
/// listener, the configured report_url otherwise, and none when the ring keeps no reports.
#[test]
fn report_url_follows_admin_and_ring() {
    let text = format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:9999\"\n");
    assert_eq!(
        parse_ok(&text).boot.report_url().as_deref(),
        Some("http://127.0.0.1:9999/diagnoses/")
    );
    let text = format!("{MINIMAL}[diagnosis]\nreport_url = \"https://support.example/r\"\n");
    let config = parse_ok(&text);
    assert_eq!(
        config.boot.report_url().as_deref(),
        Some("https://support.example/r/")
    );
    assert_eq!(config.live.diagnosis, DiagnosisPolicy::default());
    let text = format!("{MINIMAL}[reports]\nmax_count = 0\n");
    assert_eq!(parse_ok(&text).boot.report_url(), None);
}

/// A TOML syntax error is reported alone, at the position toml_edit gives.
#[test]
fn syntax_error() {
    let error = only_error("[listen]\nhttp = \n");
    assert!(error.starts_with("2:8: invalid TOML: "), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

/// Leaving out [listen] is reported at line 1, column 1.
#[test]
fn missing_listen_table() {
    let text = MINIMAL.replace("[listen]\nhttp = [\"0.0.0.0:8080\"]\n", "");
    assert_eq!(only_error(&text), "1:1: missing required table `listen`");
}

/// A missing required key is reported at its table's header.
#[test]
fn missing_keys_at_header() {
    let text = r#"# comment
[listen]

[upstreams.app]
tls = false

[[routes]]
path_prefix = "/"
upstream = "app"

[[routes]]
path_prefix = "/api"
"#;
    assert_eq!(
        errors(text),
        [
            "2:1: listen: needs at least one address in `http` or `https`",
            "4:1: missing required key `servers` in [upstreams.app]",
            "11:1: missing required key `upstream` in [[routes]]",
        ]
    );
}

/// A file without routes says so at line 1, column 1.
#[test]
fn missing_routes() {
    let text = "[listen]\nhttp = [\"0.0.0.0:80\"]\n";
    assert_eq!(only_error(text), "1:1: missing required table `routes`");
}

/// Unknown keys, at the top level and nested, are reported at the key with the allowed keys.
#[test]
fn unknown_keys() {
    let text = format!("{MINIMAL}[listn]\nhttp = []\n");
    assert_eq!(
        only_error(&text),
        "10:2: unknown key `listn` in the top level; expected one of: \
         listen, server, client, admin, diagnosis, resolver, log, reports, tls, upstreams, routes"
    );
    let text = MINIMAL.replace("servers =", "timeout = \"5s\"\nservers =");
    assert_eq!(
        only_error(&text),
        "5:1: unknown key `timeout` in [upstreams.app]; expected one of: \
         servers, tls, sni, ca_file, connect_timeout, read_timeout, write_timeout, \
         total_timeout, host_header, retries, max_fails, fail_timeout, refused_holdoff, \
         health_check, protocol, root, index, params, front_controller, evidence"
    );
    let text = MINIMAL.replace("upstream = \"app\"", "upstream = \"app\"\n  weight = 2");
    assert!(only_error(&text).starts_with("10:3: unknown key `weight` in [[routes]];"));
}

/// Values of the wrong type are reported at the value, naming the expected type.
#[test]
fn type_errors() {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:3000\"]",
        "servers = \"127.0.0.1:3000\"\ntls = \"yes\"",
    );
    assert_eq!(
        errors(&text),
        [
            "5:11: servers: expected an array of strings, found string",
            "6:7: tls: expected a boolean, found string",
        ]
    );
    let text = MINIMAL.replace("[\"0.0.0.0:8080\"]", "[\"0.0.0.0:8080\", 8081]");
    assert_eq!(
        only_error(&text),
        "2:25: http: expected a string, found integer"
    );
    let text = format!("{MINIMAL}[resolver]\nrefresh = 30\n[admin]\nlisten = true\n");
    assert_eq!(
        errors(&text),
        [
            "11:11: refresh: expected a string, found integer",
            "13:10: listen: expected a string, found boolean"
        ]
    );
    let text = format!(
        "[server]\nthreads = 0\nwork_stealing = \"no\"\nshutdown_timeout = \"2h\"\n{MINIMAL}"
    );
    assert_eq!(
        errors(&text),
        [
            "2:11: threads: 0 is out of range 1..=1024",
            "3:17: work_stealing: expected a boolean, found string",
            "4:20: shutdown_timeout: `2h` is longer than the 1h maximum"
        ]
    );
    let text = format!("{MINIMAL}log = \"debug\"\n");
    // `log` after [[routes]] belongs to the route, so it is an unknown route key.
    assert!(only_error(&text).starts_with("10:1: unknown key `log` in [[routes]]"));
    let text = format!("log = \"debug\"\n{MINIMAL}");
    assert_eq!(
        only_error(&text),
        "1:7: log: expected a table, found string"
    );
}

/// An upstreams entry that is not a table is a type error at its value.
#[test]
fn upstream_must_be_table() {
    let text = MINIMAL.replace(
        "[upstreams.app]\nservers = [\"127.0.0.1:3000\"]",
        "[upstreams]\napp = \"127.0.0.1:3000\"",
    );
    assert_eq!(
        errors(&text),
        [
            "5:7: app: expected a table, found string",
            "9:12: upstream: no upstream named `app`; no [upstreams.NAME] tables are defined",
        ]
    );
}

/// Bad durations are reported at the value with the accepted form.
#[test]
fn invalid_durations() {
    let text = MINIMAL.replace(
        "servers =",
        "connect_timeout = \"1.5s\"\nread_timeout = \"0s\"\nservers =",
    );
    assert_eq!(
        errors(&text),
        [
            "5:19: connect_timeout: `1.5s` is not a duration; expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m",
            "6:16: read_timeout: `0s` is zero; expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m",
        ]
    );
}

/// A network with host bits set is reported at that entry of the list.
#[test]
fn cidr_with_host_bits() {
    let text = format!("{MINIMAL}[diagnosis]\ntrusted = [\"::1\", \"10.0.0.1/8\"]\n");
    assert_eq!(
        only_error(&text),
        "11:19: trusted: `10.0.0.1/8` has host bits set; did you mean 10.0.0.0/8?"
    );
}

/// Invalid choices for enum-like keys list the accepted ones.
#[test]
fn invalid_choices() {
    let text = format!("{MINIMAL}[diagnosis]\ndetail = \"some\"\n[log]\nlevel = \"INFO\"\n");
    assert_eq!(
        errors(&text),
        [
            "11:10: detail: `some` is not one of: all, trusted, none",
            "13:9: level: `INFO` is not one of: error, warn, info, debug, trace",
        ]
    );
}

/// Socket addresses are checked in listen, admin and resolver.
#[test]
fn invalid_socket_addresses() {
    let text = format!("{MINIMAL}[admin]\nlisten = \"localhost:9901\"\n[resolver]\nnameservers = [\"1.1.1.1\", \"1.1.1.1:0\"]\n");
    assert_eq!(
        errors(&text),
        [
            "11:10: listen: `localhost:9901` is not a socket address; expected ip:port, like 0.0.0.0:8080 or [::]:8080",
            "13:16: nameservers: `1.1.1.1` is not a socket address; expected ip:port, like 0.0.0.0:8080 or [::]:8080",
            "13:27: nameservers: `1.1.1.1:0` has port 0; DNS is usually on port 53",
        ]
    );
}

/// An upstream name that could not be a metric label is reported at the name.
#[test]
fn invalid_upstream_name() {
    let text = MINIMAL
        .replace("[upstreams.app]", "[upstreams.\"my app\"]")
        .replace("\"app\"", "\"my app\"");
    assert_eq!(
        only_error(&text),
        "4:12: upstream name `my app` must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -, \
         since it is used as a metric label and a header value"
    );
}

/// Server entries must be valid and distinct; the later duplicate is reported.
#[test]
fn invalid_and_duplicate_servers() {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:3000\"]",
        "servers = [\"App:80\", \"app:80\", \"app\", \"my_app:80\"]",
    );
    assert_eq!(
        errors(&text),
        [
            "5:22: servers: `app:80` is listed more than once",
            "5:32: servers: `app` has no port; expected ip:port, [ipv6]:port, hostname:port or unix:/path",
            "5:39: servers: `my_app:80`: `my_app` is not a valid hostname; expected dot-separated labels of letters, digits and inner hyphens",
        ]
    );
    let text = MINIMAL.replace("[\"0.0.0.0:8080\"]", "[\"0.0.0.0:8080\", \"0.0.0.0:8080\"]");
    assert_eq!(
        only_error(&text),
        "2:25: listen: `0.0.0.0:8080` is listed more than once"
    );
}

/// Empty lists where at least one entry is required are reported at the list.
#[test]
fn empty_required_lists() {
    let text = "routes = []\n[listen]\nhttp = []\n[upstreams.app]\nservers = []\n";
    assert_eq!(
        errors(text),
        [
            "1:10: routes: at least one entry is required",
            "2:1: listen: needs at least one address in `http` or `https`",
            "5:11: servers: at least one entry is required",
        ]
    );
}

/// sni and ca_file without tls = true are reported at their values.
#[test]
fn tls_options_need_tls() {
    let text = MINIMAL.replace(
        "servers =",
        "sni = \"app\"\nca_file = \"ca.pem\"\nservers =",
    );
    assert_eq!(
        errors(&text),
        [
            "5:7: sni: only applies with tls = true",
            "6:11: ca_file: only applies with tls = true"
        ]
    );
}

/// Unix socket servers mix with TCP ones in an upstream, weights included; a bad path is
/// reported at its value, and over TLS a unix socket server needs `sni` (its certificate
/// cannot name a path, and an empty SNI would skip verification).
#[test]
fn unix_socket_servers() {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:3000\"]",
        "servers = [\"unix:/run/app.sock weight=3\", \"127.0.0.1:3000\"]",
    );
    let upstream = &parse_ok(&text).live.upstreams[0];
    assert_eq!(
        upstream.servers,
        [
            "unix:/run/app.sock".parse().unwrap(),
            ServerAddr::Ip("127.0.0.1:3000".parse().unwrap())
        ]
    );
    assert_eq!(upstream.weights, [3, 1]);
    let text = MINIMAL.replace("\"127.0.0.1:3000\"", "\"unix:app.sock\", \"unix:/a.sock\"");
    assert_eq!(
        errors(&text),
        ["5:12: servers: `unix:app.sock`: the socket's path must be absolute, like unix:/run/app.sock"]
    );
    let text = MINIMAL.replace(
        "servers =",
        "tls = true\nservers = [\"unix:/run/app.sock\"]\nx =",
    );
    let text = text.replace("x = [\"127.0.0.1:3000\"]\n", "");
    assert_eq!(
        errors(&text),
        ["6:12: servers: `unix:/run/app.sock`: with tls = true, a unix socket server needs `sni`, the name its certificate is verified against"]
    );
    parse_ok(&text.replace("tls = true", "tls = true\nsni = \"app.internal\""));
}

/// A ca_file resolves against origin and must exist and hold a PEM certificate that parses.
#[test]
fn ca_file_is_checked() {
    let dir = scratch_dir("ca-file");
    std::fs::write(dir.join("good.pem"), pem()).unwrap();
    std::fs::write(dir.join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let not_der = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.join("bad.pem"), not_der).unwrap();
    let with_ca = |file: &str| {
        MINIMAL.replace(
            "servers =",
            &format!("tls = true\nca_file = \"{file}\"\nservers ="),
        )
    };
    let config = parse(&with_ca("good.pem"), &dir).unwrap_or_else(|e| panic!("{e}"));
    let ca_path = config.live.upstreams[0].ca_file.as_ref().map(|ca| &ca.path);
    assert_eq!(ca_path, Some(&dir.join("good.pem")));

    let errors = parse(&with_ca("key.pem"), &dir).unwrap_err().0;
    assert_eq!((errors.len(), errors[0].line, errors[0].column), (1, 6, 11));
    assert!(errors[0]
        .message
        .ends_with("key.pem holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)"));

    // Read once at load: a certificate that does not parse is a config error, not a failed start.
    let errors = parse(&with_ca("bad.pem"), &dir).unwrap_err().0;
    assert_eq!((errors.len(), errors[0].line, errors[0].column), (1, 6, 11));
    assert!(
        errors[0].message.starts_with("ca_file: ") && errors[0].message.contains("bad.pem"),
        "{}",
        errors[0].message
    );

    let errors = parse(&with_ca("missing.pem"), &dir).unwrap_err().0;
    assert_eq!((errors.len(), errors[0].line, errors[0].column), (1, 6, 11));
    assert!(
        errors[0].message.starts_with("ca_file: cannot read "),
        "{}",
        errors[0].message
    );
}

/// Route keys are validated at their values: path_prefix, host and the upstream name.
#[test]
fn invalid_route_values() {
    let text = r#"[listen]
http = ["0.0.0.0:80"]
[upstreams.app]
servers = ["app:80"]
[upstreams.web]
servers = ["web:80"]
[[routes]]
path_prefix = "api"
host = "example.com:8080"
upstream = "api"
[[routes]]
path_prefix = "/"
host = "https://example.com"
upstream = "app"
"#;
    assert_eq!(
        errors(text),
        [
            "8:15: path_prefix: `api` must start with /",
            "9:8: host: `example.com:8080` must be a bare hostname, without a port",
            "10:12: upstream: no upstream named `api`; defined: app, web",
            "13:8: host: `https://example.com` must be a bare hostname, without a scheme",
        ]
    );
}

/// A second route with the same host (case-insensitively) and path_prefix is reported at its header.
#[test]
fn duplicate_route() {
    let text = format!("{MINIMAL}host = \"Example.com\"\n[[routes]]\nupstream = \"app\"\npath_prefix = \"/\"\nhost = \"example.COM\"\n");
    assert_eq!(
        only_error(&text),
        "11:1: duplicate route: host `example.com` with path_prefix `/` is already routed on line 7"
    );
    let text = format!("{MINIMAL}[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n");
    assert_eq!(
        only_error(&text),
        "10:1: duplicate route: any host with path_prefix `/` is already routed on line 7"
    );
}

/// Problems in several sections are all reported in one pass, sorted by position.
#[test]
fn all_errors_at_once() {
    let text = r#"[upstreams.app]
servers = ["app"]
tls = "yes"

[log]
level = "loud"

[[routes]]
path_prefix = "/"
upstream = "nope"

[resolver]
refresh = "10"
"#;
    let rendered = parse(text, Path::new(".")).unwrap_err().to_string();
    assert_eq!(
        rendered,
        "1:1: missing required table `listen`\n\
         2:12: servers: `app` has no port; expected ip:port, [ipv6]:port, hostname:port or unix:/path\n\
         3:7: tls: expected a boolean, found string\n\
         6:9: level: `loud` is not one of: error, warn, info, debug, trace\n\
         10:12: upstream: no upstream named `nope`; defined: app\n\
         13:11: refresh: `10` is not a duration; expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m"
    );
}

/// load reads the file and resolves ca_file next to it; an unreadable file is one error at 0:0.
#[test]
fn load_reads_file() {
    let dir = scratch_dir("load");
    std::fs::write(dir.join("ca.pem"), pem()).unwrap();
    let text = MINIMAL.replace("servers =", "tls = true\nca_file = \"ca.pem\"\nservers =");
    std::fs::write(dir.join("triage.toml"), text).unwrap();
    let config = load(&dir.join("triage.toml")).unwrap_or_else(|e| panic!("{e}"));
    let ca_path = config.live.upstreams[0].ca_file.as_ref().map(|ca| &ca.path);
    assert_eq!(ca_path, Some(&dir.join("ca.pem")));

    let errors = load(&dir.join("absent.toml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.to_string().starts_with("0:0: cannot read "),
        "{errors}"
    );
    let _: &dyn std::error::Error = &errors;
}

/// A token file must be a regular file of bounded size holding one usable token; its
/// surrounding whitespace is not part of it, and its value never shows in `Debug`.
#[test]
fn token_file_is_checked() {
    let dir = scratch_dir("token-file");
    let with_token = |file: &str| format!("[admin]\ntoken_file = \"{file}\"\n{MINIMAL}");
    std::fs::write(dir.join("good"), "  s3cret-0123456789abcdef\r\n").unwrap();
    let config = parse(&with_token("good"), &dir).unwrap_or_else(|e| panic!("{e}"));
    let token = config.boot.admin.token.expect("a token");
    assert_eq!(token.secret(), "s3cret-0123456789abcdef");
    assert!(!format!("{token:?}").contains("s3cret"));

    std::fs::write(dir.join("short"), "abc\n").unwrap();
    std::fs::write(dir.join("empty"), "\n").unwrap();
    std::fs::write(dir.join("two-words"), "0123456789abcdef 0123456789abcdef").unwrap();
    std::fs::write(dir.join("large"), "a".repeat(5000)).unwrap();
    for (file, says) in [
        ("short", "the token has 3 characters, fewer than 16"),
        ("empty", "holds no token"),
        ("two-words", "the token may hold only letters, digits"),
        ("large", "holds 5000 bytes; a token file holds at most 4096"),
        (".", "is not a regular file"),
        ("missing", "cannot read "),
    ] {
        let errors = parse(&with_token(file), &dir).unwrap_err().0;
        assert_eq!((errors.len(), errors[0].line, errors[0].column), (1, 2, 14));
        assert!(
            errors[0].message.starts_with("token_file: ") && errors[0].message.contains(says),
            "{file}: {}",
            errors[0].message
        );
    }
}

/// `[reports] keep_headers` takes header names, lowercased, but no credential.
#[test]
fn kept_headers_are_checked() {
    let text = format!("[reports]\nkeep_headers = [\"X-Tenant\"]\n{MINIMAL}");
    assert_eq!(parse_ok(&text).boot.reports.keep_headers, ["x-tenant"]);
    let text = format!("[reports]\nkeep_headers = [\"Cookie\", \"x tenant\"]\n{MINIMAL}");
    assert_eq!(
        errors(&text),
        [
            "2:17: keep_headers: `Cookie` carries credentials; its value is never kept in a report",
            "2:27: keep_headers: `x tenant` is not a header name",
        ]
    );
}

/// `[admin] hosts` takes hostnames and IP addresses (bracketed or not), without a port.
#[test]
fn admin_hosts_are_checked() {
    let text =
        format!("[admin]\nhosts = [\"A.Example\", \"[::1]\", \"::ffff:10.0.0.5\"]\n{MINIMAL}");
    assert_eq!(
        parse_ok(&text).boot.admin.hosts,
        ["a.example", "::1", "10.0.0.5"]
    );
    let text = format!("[admin]\nhosts = [\"admin.example:9901\", \"bad_name\"]\n{MINIMAL}");
    assert_eq!(
        errors(&text),
        [
            "2:10: hosts: `admin.example:9901` must be a hostname or an IP address, without a \
             port (any port is accepted)",
            "2:32: hosts: `bad_name` is not a valid hostname; expected dot-separated labels of \
             letters, digits and inner hyphens",
        ]
    );
}

/// `[server] upgrade_socket` and `pid_file` resolve against the config's directory and must
/// name a file; the upgrade socket's must fit a unix socket address.
#[test]
fn runtime_paths_are_checked() {
    let text = format!(
        "[server]\nupgrade_socket = \"run/up.sock\"\npid_file = \"run/triage.pid\"\n{MINIMAL}"
    );
    let server = parse(&text, Path::new("/etc/triage")).unwrap().boot.server;
    assert_eq!(server.upgrade_socket, Path::new("/etc/triage/run/up.sock"));
    assert_eq!(server.pid_file, Path::new("/etc/triage/run/triage.pid"));
    let long = format!("/{}/s.sock", "d".repeat(100));
    let text =
        format!("[server]\nupgrade_socket = \"{long}\"\npid_file = \"/run/triage/\"\n{MINIMAL}");
    assert_eq!(
        errors(&text),
        [
            format!(
                "2:18: upgrade_socket: `{long}` is 108 bytes long; a unix socket path is at most 107"
            ),
            "3:12: pid_file: `/run/triage/` names no file".to_owned(),
        ]
    );
}

/// Every duration has a documented range by what it is for: a timeout at most an hour (a read,
/// write or total timeout a day, for idle WebSockets and long downloads), an interval between
/// 50ms and an hour. A duration past its maximum is refused at `-t`, never left to overflow an
/// `Instant` on the first request (9223372036854775807s used to pass and then panic).
#[test]
fn durations_are_bounded() {
    let text = MINIMAL.replace(
        "servers =",
        "connect_timeout = \"9223372036854775807s\"\nread_timeout = \"25h\"\n\
         fail_timeout = \"2h\"\nrefused_holdoff = \"61m\"\nservers =",
    );
    let text = format!(
        "{text}read_timeout = \"9999999h\"\n[upstreams.app.health_check]\ninterval = \"10ms\"\n\
         timeout = \"2h\"\n[resolver]\nrefresh = \"49ms\"\n[diagnosis]\ndeploy_window = \"2h\"\n\
         [log]\naccess_flush = \"5ms\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "5:19: connect_timeout: `9223372036854775807s` is longer than the 1h maximum",
            "6:16: read_timeout: `25h` is longer than the 24h maximum",
            "7:16: fail_timeout: `2h` is longer than the 1h maximum",
            "8:19: refused_holdoff: `61m` is longer than the 1h maximum",
            "14:16: read_timeout: `9999999h` is longer than the 24h maximum",
            "16:12: interval: `10ms` is shorter than the 50ms minimum",
            "17:11: timeout: `2h` is longer than the 1h maximum",
            "19:11: refresh: `49ms` is shorter than the 50ms minimum",
            "21:17: deploy_window: `2h` is longer than the 1h maximum",
            "23:16: access_flush: `5ms` is shorter than the 10ms minimum",
        ]
    );
}

/// The ends of every duration range are accepted.
#[test]
fn duration_bounds_are_inclusive() {
    let text = MINIMAL.replace(
        "servers =",
        "connect_timeout = \"1h\"\nread_timeout = \"24h\"\nwrite_timeout = \"1ms\"\n\
         total_timeout = \"1440m\"\nfail_timeout = \"3600s\"\nrefused_holdoff = \"1h\"\nservers =",
    );
    let text = format!(
        "{text}total_timeout = \"24h\"\n[upstreams.app.health_check]\ninterval = \"50ms\"\n\
         timeout = \"1h\"\n[resolver]\nrefresh = \"1h\"\n[server]\nshutdown_timeout = \"1h\"\n\
         [diagnosis]\ndeploy_window = \"60m\"\n[log]\naccess_flush = \"10s\"\n"
    );
    let config = parse_ok(&text);
    assert_eq!(config.boot.log.access_flush, secs(10));
    let upstream = &config.live.upstreams[0];
    assert_eq!(
        (upstream.connect_timeout, upstream.read_timeout),
        (secs(3600), secs(86_400))
    );
    assert_eq!(upstream.total_timeout, Some(secs(86_400)));
    let check = upstream.health_check.as_ref().expect("a health check");
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_millis(50), secs(3600))
    );
    assert_eq!(config.live.resolver.refresh, secs(3600));
    assert_eq!(config.live.diagnosis.deploy_window, secs(3600));
}

/// `[client]` left out takes nginx's defaults; its timeouts are bounded like any timeout (at
/// most an hour) and its sizes by their ranges: a head of 1 KiB to 1 MiB (Pingora's own
/// bound), one to a million connections.
#[test]
fn client_limits_default_to_nginx_and_are_bounded() {
    let client = parse_ok(MINIMAL).boot.client;
    assert_eq!(
        (
            client.header_timeout,
            client.body_timeout,
            client.keepalive_timeout,
            client.send_timeout
        ),
        (secs(60), secs(60), secs(75), secs(60))
    );
    assert_eq!(
        (client.max_header_bytes, client.max_connections),
        (32768, 4096)
    );
    let text = format!(
        "{MINIMAL}[client]\nheader_timeout = \"61m\"\nkeepalive_timeout = \"0ms\"\n\
         max_header_bytes = 1023\nmax_connections = 0\nmax_header_byte = 1\n"
    );
    assert_eq!(
        errors(&text),
        [
            "11:18: header_timeout: `61m` is longer than the 1h maximum",
            "12:21: keepalive_timeout: `0ms` is zero; expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m",
            "13:20: max_header_bytes: 1023 is out of range 1024..=1048576",
            "14:19: max_connections: 0 is out of range 1..=1000000",
            "15:1: unknown key `max_header_byte` in [client]; expected one of: header_timeout, body_timeout, keepalive_timeout, send_timeout, max_header_bytes, max_connections",
        ]
    );
}

/// The report ring's bounds are bounded themselves: a million reports, a GiB.
#[test]
fn report_ring_bounds_are_bounded() {
    let text = format!("{MINIMAL}[reports]\nmax_count = 1000001\nmax_bytes = 1073741825\n");
    assert_eq!(
        errors(&text),
        [
            "11:13: max_count: 1000001 is out of range 0..=1000000",
            "12:13: max_bytes: 1073741825 is out of range 0..=1073741824",
        ]
    );
    let text = format!("{MINIMAL}[reports]\nmax_count = 1000000\nmax_bytes = 1073741824\n");
    assert_eq!(parse_ok(&text).boot.reports.max_bytes, 1 << 30);
}

/// No string value may hold a control character (TOML lets one in through an escape): a
/// path_prefix that can never match, or a health-check path that would write `\r\n` and a
/// header of its own into the check's request. The message shows the value escaped, so the
/// error itself writes no control byte to the terminal.
#[test]
fn strings_reject_control_characters() {
    let text = MINIMAL.replace("path_prefix = \"/\"", "path_prefix = \"/api\\n\"");
    let text = format!(
        "{text}[upstreams.app.health_check]\npath = \"/health\\r\\nX-Injected: 1\"\n\
         [diagnosis]\ntrusted = [\"::1\", \"127.0.0.1\\u0000\"]\n[admin]\nlisten = \"\\u007f\"\n\
         [log]\nlevel = \"info\\u0085\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "8:15: path_prefix: `/api\\n` contains the control character U+000A",
            "11:8: path: `/health\\r\\nX-Injected: 1` contains the control character U+000D",
            "13:19: trusted: `127.0.0.1\\0` contains the control character U+0000",
            "15:10: listen: `\\u{7f}` contains the control character U+007F",
            "17:9: level: `info\\u{85}` contains the control character U+0085",
        ]
    );
}

/// An upstream name is a table key, not a string value: its message escapes it too.
#[test]
fn upstream_name_message_is_escaped() {
    let text = MINIMAL
        .replace("[upstreams.app]", "[upstreams.\"a\\u001bb\"]")
        .replace("upstream = \"app\"", "upstream = \"ab\"");
    let errors = errors(&text);
    assert!(
        errors[0].starts_with("4:12: upstream name `a\\u{1b}b` must be"),
        "{errors:#?}"
    );
    assert!(errors.iter().all(|e| !e.contains('\u{1b}')), "{errors:#?}");
}

/// A path_prefix is matched against the request's path, which has no spaces, query, fragment
/// or raw non-ASCII: a prefix with one could never match. A health-check path is written into
/// the check's request line, so it must be a valid origin-form request target.
#[test]
fn paths_must_be_usable() {
    let text = r#"[listen]
http = ["0.0.0.0:80"]
[upstreams.app]
servers = ["app:80"]
[upstreams.app.health_check]
path = "/health check"
[upstreams.web]
servers = ["web:80"]
[upstreams.web.health_check]
path = "/health#top"
[[routes]]
path_prefix = "/a b"
upstream = "app"
[[routes]]
path_prefix = "/search?q"
upstream = "app"
[[routes]]
path_prefix = "/café"
upstream = "app"
[[routes]]
path_prefix = "/doc#part"
upstream = "app"
"#;
    assert_eq!(
        errors(text),
        [
            "6:8: path: `/health check` contains a space, which a request target never has; write it as %20",
            "10:8: path: `/health#top` contains `#`, which starts a fragment, never sent in a request",
            "12:15: path_prefix: `/a b` contains a space, which a request target never has; write it as %20",
            "15:15: path_prefix: `/search?q` contains `?`, which starts the query; a path_prefix is matched against the path alone",
            "18:15: path_prefix: `/café` contains `é`, which a request target only has percent-encoded, as %C3%A9",
            "21:15: path_prefix: `/doc#part` contains `#`, which starts a fragment, never sent in a request",
        ]
    );
    let text = format!("{MINIMAL}[upstreams.app.health_check]\npath = \"/healthz?full=1\"\n");
    let config = parse_ok(&text);
    let check = config.live.upstreams[0].health_check.as_ref();
    assert_eq!(
        check.map(|c| &c.kind),
        Some(&HealthCheckKind::Http {
            path: "/healthz?full=1".into()
        })
    );
}

/// A string value longer than any real one (4096 bytes, a path's limit) is refused before a
/// parser sees it.
#[test]
fn strings_are_bounded() {
    let long = format!("/{}", "a".repeat(4096));
    let text = MINIMAL.replace("path_prefix = \"/\"", &format!("path_prefix = \"{long}\""));
    assert_eq!(
        only_error(&text),
        "8:15: path_prefix: a value of 4097 bytes is longer than the 4096-byte maximum"
    );
    let text = MINIMAL.replace(
        "path_prefix = \"/\"",
        &format!("path_prefix = \"{}\"", &long[..4096]),
    );
    assert_eq!(parse_ok(&text).live.routes[0].path_prefix.len(), 4096);
}

/// The config with a `[[tls.certificates]]` entry naming `cert` and `key`, before MINIMAL.
fn with_certificate(cert: &str, key: &str) -> String {
    format!("[[tls.certificates]]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{MINIMAL}")
}

/// The files a config names must be regular files: /dev/zero as a certificate used to be read
/// until memory ran out, a directory or a device is refused before it is opened, each at its
/// own key.
#[test]
fn files_must_be_regular() {
    let dir = scratch_dir("regular-files");
    let dir_text = dir.display().to_string();
    assert_eq!(
        errors(&with_certificate("/dev/zero", &dir_text)),
        [
            "2:13: cert_file: /dev/zero is not a regular file but a character device".to_owned(),
            format!("3:12: key_file: {dir_text} is not a regular file but a directory"),
        ]
    );
    let text = MINIMAL.replace(
        "servers =",
        &format!("tls = true\nca_file = \"{dir_text}\"\nservers ="),
    );
    assert_eq!(
        only_error(&text),
        format!("6:11: ca_file: {dir_text} is not a regular file but a directory")
    );
}

/// A FIFO is refused without being opened (opening one waits for a writer, forever).
#[test]
fn fifo_is_refused() {
    let dir = scratch_dir("fifo");
    let fifo = dir.join("ca.pem");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
    let text = MINIMAL.replace("servers =", "tls = true\nca_file = \"ca.pem\"\nservers =");
    let errors = parse(&text, &dir).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (6, 11));
    assert_eq!(
        errors[0].message,
        format!(
            "ca_file: {} is not a regular file but a FIFO",
            fifo.display()
        )
    );
}

/// A file the config names holds at most 1 MiB (a CA bundle of every public root is a
/// quarter of that); a larger one is refused from its size, before it is read.
#[test]
fn files_are_bounded() {
    let dir = scratch_dir("file-size");
    let mut big = pem().into_bytes();
    big.resize((1 << 20) + 1, b'\n');
    std::fs::write(dir.join("big.pem"), &big).unwrap();
    let text = MINIMAL.replace("servers =", "tls = true\nca_file = \"big.pem\"\nservers =");
    let errors = parse(&text, &dir).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].message,
        format!(
            "ca_file: {} holds 1048577 bytes, more than the 1 MiB maximum",
            dir.join("big.pem").display()
        )
    );
    big.truncate(1 << 20);
    std::fs::write(dir.join("big.pem"), &big).unwrap();
    assert!(parse(&text, &dir).is_ok());
}

/// The config file itself is bounded the same way: `-c /dev/zero` is an error, not a hang.
#[test]
fn config_file_must_be_regular() {
    let errors = load(Path::new("/dev/zero")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "0:0: /dev/zero is not a regular file but a character device"
    );
}

/// `protocol = "fastcgi"` reads root (trailing `/` dropped), index, params in file order and
/// front_controller, and resolves root when the front controller serves from it.
#[test]
fn fastcgi_upstream() {
    let dir = scratch_dir("fastcgi");
    let root = std::fs::canonicalize(&dir).unwrap();
    let text = MINIMAL.replace(
        "servers =",
        &format!(
            "protocol = \"fastcgi\"\nroot = \"{}/\"\nindex = \"app.php\"\nparams = {{ APP_ENV = \"prod\", HTTPS = \"on\" }}\nservers =",
            root.display()
        ),
    );
    let cfg = parse_ok(&text);
    let fastcgi = cfg.live.upstreams[0].fastcgi.clone().expect("fastcgi");
    assert_eq!(fastcgi.root, root.display().to_string());
    assert_eq!(fastcgi.index, "app.php");
    assert_eq!(
        fastcgi.params,
        vec![
            ("APP_ENV".to_owned(), "prod".to_owned()),
            ("HTTPS".to_owned(), "on".to_owned())
        ]
    );
    assert!(fastcgi.front_controller);
    assert_eq!(fastcgi.local_root.as_deref(), Some(root.as_path()));
    // On, a root not here (yet) is looked for again by each request.
    let later = MINIMAL.replace(
        "servers =",
        "protocol = \"fastcgi\"\nroot = \"/nowhere/public\"\nservers =",
    );
    let later = parse_ok(&later).live.upstreams[0].fastcgi.clone();
    assert!(later.is_some_and(|f| f.front_controller && f.local_root.is_none()));
    // Off, root is php-fpm's alone: it need not exist here, and is never read.
    let remote = MINIMAL.replace(
        "servers =",
        "protocol = \"fastcgi\"\nroot = \"/nowhere/public\"\nfront_controller = false\nservers =",
    );
    let fastcgi = parse_ok(&remote).live.upstreams[0]
        .fastcgi
        .clone()
        .expect("fastcgi");
    assert_eq!(
        (fastcgi.index.as_str(), fastcgi.local_root),
        ("index.php", None)
    );
    assert!(parse_ok(MINIMAL).live.upstreams[0].fastcgi.is_none());
}

/// What cannot work is said at its key: FastCGI keys without the protocol, no root, a root
/// that is not absolute or has dot-segments, TLS, a bad index or param name.
#[test]
fn fastcgi_mistakes() {
    let with = |keys: &str| MINIMAL.replace("servers =", &format!("{keys}\nservers ="));
    for (keys, says) in [
        (
            "protocol = \"fcgi\"",
            "protocol: `fcgi`: expected \"http\" or \"fastcgi\"",
        ),
        (
            "root = \"/srv\"",
            "root: only applies with protocol = \"fastcgi\"",
        ),
        (
            "front_controller = false",
            "front_controller: only applies with protocol = \"fastcgi\"",
        ),
        (
            "protocol = \"fastcgi\"",
            "protocol = \"fastcgi\" needs `root`",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"srv/public\"",
            "root: `srv/public` must be an absolute path",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"/srv/../etc\"",
            "must not have `.` or `..` segments",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"/tmp\"\nindex = \"a/b.php\"",
            "index: `a/b.php` must be a file name",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"/tmp\"\nparams = { \"A-B\" = \"x\" }",
            "params: `A-B` is not a param name",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"/tmp\"\nparams = { A = 1 }",
            "params: expected a string",
        ),
        (
            "protocol = \"fastcgi\"\nroot = \"/tmp\"\ntls = true",
            "does not go with tls = true",
        ),
    ] {
        let error = only_error(&with(keys));
        assert!(error.contains(says), "{keys}: {error}");
    }
}

/// `MINIMAL` with `[upstreams.app.evidence]` holding `body`.
fn with_evidence(body: &str) -> String {
    MINIMAL.replace(
        "[[routes]]",
        &format!("[upstreams.app.evidence]\n{body}\n[[routes]]"),
    )
}

/// The evidence keys: one log file or several, a pidfile with a unit's cgroup, the windows;
/// the defaults (5 s before, 1 s after) when left out; none without the table.
#[test]
fn evidence_keys_parse() {
    assert_eq!(parse_ok(MINIMAL).live.upstreams[0].evidence, None);
    let one = parse_ok(&with_evidence("log_file = \"/var/log/app/error.log\""));
    assert_eq!(
        one.live.upstreams[0].evidence,
        Some(AppEvidence {
            log_files: vec![PathBuf::from("/var/log/app/error.log")],
            pidfile: None,
            cgroup: None,
            log_before: secs(5),
            log_after: secs(1),
        })
    );
    let all = parse_ok(&with_evidence(
        "log_file = [\"/var/log/app/a.log\", \"/var/log/app/b.log\"]\npidfile = \"/run/app.pid\"\nsystemd_unit = \"app\"\nlog_before = \"10s\"\nlog_after = \"off\"",
    ));
    assert_eq!(
        all.live.upstreams[0].evidence,
        Some(AppEvidence {
            log_files: vec![
                PathBuf::from("/var/log/app/a.log"),
                PathBuf::from("/var/log/app/b.log")
            ],
            pidfile: Some(PathBuf::from("/run/app.pid")),
            cgroup: Some(PathBuf::from("/sys/fs/cgroup/system.slice/app.service")),
            log_before: secs(10),
            log_after: Duration::ZERO,
        })
    );
    let cgroup = parse_ok(&with_evidence("cgroup = \"/sys/fs/cgroup/app.slice/web\""));
    assert_eq!(
        cgroup.live.upstreams[0]
            .evidence
            .as_ref()
            .and_then(|e| e.cgroup.clone()),
        Some(PathBuf::from("/sys/fs/cgroup/app.slice/web"))
    );
}

/// Every wrong evidence key is reported at once, each with its line and column: a relative
/// path, too many files, a file twice, a unit and a cgroup both, a cgroup outside
/// /sys/fs/cgroup, windows out of bounds, an unknown key, and a table naming nothing.
#[test]
fn evidence_errors_have_positions() {
    let files: Vec<String> = (0..9).map(|i| format!("\"/l/{i}.log\"")).collect();
    let text = with_evidence(&format!(
        "log_file = [{}]\npidfile = \"app.pid\"\nsystemd_unit = \"a/b\"\ncgroup = \"/sys/fs/cgroup/../x\"\nlog_before = \"2m\"\nlog_after = \"11s\"\nlog = 1",
        files.join(", ")
    ));
    let errors = errors(&text);
    let expect = [
        "log_file: at most 8 files are followed per upstream",
        "pidfile: `app.pid` is not an absolute path",
        "systemd_unit: `a/b` is not a systemd unit name",
        "cgroup: `/sys/fs/cgroup/../x` is not a cgroup directory under /sys/fs/cgroup",
        "log_before: `2m` is longer than the 1m maximum",
        "log_after: `11s` is longer than the 10s maximum",
        "unknown key `log` in [upstreams.app.evidence]",
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (error, expected) in errors.iter().zip(expect) {
        assert!(error.contains(expected), "{error} / {expected}");
    }
    // log_file is on line 8 (its tenth entry at column 109), pidfile on line 9, and so on.
    for (error, line) in errors.iter().zip([
        "8:109:", "9:11:", "10:16:", "11:10:", "12:14:", "13:13:", "14:1:",
    ]) {
        assert!(error.starts_with(line), "{error} / {line}");
    }
    let both = only_error(&with_evidence(
        "systemd_unit = \"app.service\"\ncgroup = \"/sys/fs/cgroup/app\"",
    ));
    assert!(
        both.starts_with("9:10: cgroup: give systemd_unit or cgroup, not both"),
        "{both}"
    );
    let twice = only_error(&with_evidence("log_file = [\"/a.log\", \"/a.log\"]"));
    assert!(
        twice.contains("log_file: `/a.log` is listed more than once"),
        "{twice}"
    );
    let nothing = only_error(&with_evidence("log_before = \"1s\""));
    assert!(
        nothing.starts_with("7:1: [evidence] names nothing to read"),
        "{nothing}"
    );
}
