//! Every file under `deploy/` checked by the real tool for its kind: the systemd unit by
//! `systemd-analyze`, the Kubernetes manifests by `kubectl kustomize` and the Kubernetes schemas
//! (`kubernetes-validate`; the PodMonitor by the Prometheus Operator's CRD schema), the alerts by
//! `promtool`, and the Grafana dashboard by a real Prometheus server scraping a real triage while
//! failures are driven, which runs every panel's query. The tools are installed by
//! `scripts/setup.sh`; a missing one fails its test, never skips it.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::client::{self, Request};
use support::origin::{self, refused_addr, Behavior};
use support::triage::{temp_dir, triage_binary, TempDir, Triage};

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Runs `program` with `args`, failing the test with the setup hint when it is not installed.
fn run(program: &str, args: &[&str], dir: Option<&Path>) -> Output {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command.output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): scripts/setup.sh should have installed it")
    })
}

/// The output's stdout and stderr, for failure messages.
fn shown(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The unit with `/usr/bin/triage` replaced by the binary under test, in `dir`:
/// `systemd-analyze verify` checks that every Exec binary exists, and the package's path is
/// not there on a build machine. Everything else is verified as shipped.
fn unit_for_verify(dir: &TempDir, unit: &str) -> PathBuf {
    let binary = triage_binary();
    let text = unit.replace("/usr/bin/triage", &binary.to_string_lossy());
    dir.write_file("triage.service", text)
}

/// The unit passes `systemd-analyze verify` without a warning (directives, Exec paths, unit
/// dependencies), and a unit with a mistake fails it, so the check is real.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/triage.service")).unwrap();
    let dir = temp_dir();
    let path = unit_for_verify(&dir, &unit);
    let output = run("systemd-analyze", &["verify", path.to_str().unwrap()], None);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        shown(&output)
    );

    let broken = dir.write_file(
        "broken.service",
        unit.replace("/usr/bin/triage", "/nonexistent/triage")
            .replace("Type=exec", "Type=sometimes"),
    );
    let output = run(
        "systemd-analyze",
        &["verify", broken.to_str().unwrap()],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("Failed to parse service type"),
        "{}",
        shown(&output)
    );
}

/// The unit does what README "Running it in production" says: the config checked before
/// start, SIGHUP reload, SIGTERM graceful stop given longer than the default shutdown_timeout,
/// /run/triage for the upgrade socket and pid file, a dedicated user with only
/// CAP_NET_BIND_SERVICE; and `systemd-analyze security` rates its hardening "OK" (exposure at
/// most 2.0 of 10; the threshold is in tenths).
#[test]
fn systemd_unit_runs_triage_as_production_does() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/triage.service")).unwrap();
    for line in [
        "ExecStartPre=/usr/bin/triage -t -c /etc/triage/triage.toml",
        "ExecStart=/usr/bin/triage -c /etc/triage/triage.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=20s",
        "RuntimeDirectory=triage",
        "RuntimeDirectoryMode=0700",
        "User=triage",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let dir = temp_dir();
    let path = unit_for_verify(&dir, &unit);
    let output = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", shown(&output));
}

/// `kubectl kustomize` builds deploy/kubernetes, and the result passes the Kubernetes schemas
/// strictly (kubernetes-validate --strict: unknown fields are errors), every built-in kind of
/// it; the PodMonitor passes the Prometheus Operator's CRD schema. A mistake fails each check.
#[test]
fn kubernetes_manifests_build_and_match_the_schemas() {
    let built = kustomize(&deploy_dir().join("kubernetes"));
    let dir = temp_dir();
    let file = dir.write_file("triage.yaml", &built);
    let output = run(
        "kubernetes-validate",
        &["--strict", file.to_str().unwrap()],
        None,
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}", shown(&output));
    for kind in [
        "configmap/triage-config-",
        "deployment/triage",
        "service/triage",
        "poddisruptionbudget/triage",
        "horizontalpodautoscaler/triage",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(" passed for resource ") && l.contains(kind)),
            "kubernetes-validate did not pass {kind}:\n{report}"
        );
    }
    assert!(!report.contains("failed"), "kubernetes-validate:\n{report}");
    // The check is real: a Deployment with a mistyped field fails it.
    let wrong = dir.write_file("wrong.yaml", built.replace("replicas: 3", "replica: 3"));
    let output = run(
        "kubernetes-validate",
        &["--strict", wrong.to_str().unwrap()],
        None,
    );
    assert!(!output.status.success(), "{}", shown(&output));

    let output = validate_podmonitor(&built);
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("is valid"),
        "the PodMonitor check (npm @kubernetes-models/prometheus-operator, installed by \
         scripts/setup.sh):\n{}",
        shown(&output)
    );
    // ...and a PodMonitor whose interval is no Prometheus duration fails it.
    let output = validate_podmonitor(&built.replace("interval: 15s", "interval: 15 seconds"));
    assert!(!output.status.success(), "{}", shown(&output));
}

/// Runs scripts/validate-podmonitor.mjs on `manifests`.
fn validate_podmonitor(manifests: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/validate-podmonitor.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): scripts/setup.sh should have installed it")
        });
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(manifests.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The Deployment runs several replicas, probes /healthz and /readyz on the admin port,
/// drains before SIGTERM, runs as non-root; and a change of triage.toml renames the generated
/// ConfigMap the pods mount, so it rolls the pods onto the new config.
#[test]
fn kubernetes_config_change_rolls_the_pods() {
    let source = deploy_dir().join("kubernetes");
    let built = kustomize(&source);
    for needle in [
        "replicas: 3",
        "path: /healthz",
        "path: /readyz",
        "port: admin",
        "preStop:",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(
            built.contains(needle),
            "the built manifests lack {needle}:\n{built}"
        );
    }
    let name = config_map_name(&built);
    assert!(
        built.contains(&format!("name: {name}\n")) && built.matches(name.as_str()).count() >= 2,
        "the Deployment does not mount {name}:\n{built}"
    );

    let copy = temp_dir();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let config = std::fs::read_to_string(source.join("triage.toml")).unwrap();
    copy.write_file(
        "triage.toml",
        config.replace("read_timeout = \"30s\"", "read_timeout = \"20s\""),
    );
    let changed = kustomize(copy.path());
    let changed_name = config_map_name(&changed);
    assert_ne!(
        name, changed_name,
        "a changed config kept the ConfigMap's name"
    );
    assert!(changed.contains(&format!("name: {changed_name}\n")));
}

/// The config the Kubernetes ConfigMap carries passes `triage -t`.
#[test]
fn kubernetes_config_passes_triage_check() {
    let config = deploy_dir().join("kubernetes/triage.toml");
    let output = run(
        triage_binary().to_str().unwrap(),
        &["-t", "-c", config.to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", shown(&output));
}

/// `kubectl kustomize DIR`, which must succeed.
fn kustomize(dir: &Path) -> String {
    let output = run("kubectl", &["kustomize", dir.to_str().unwrap()], None);
    assert!(
        output.status.success(),
        "kubectl kustomize (kubectl: scripts/setup.sh installs Debian's kubernetes-client when \
         missing):\n{}",
        shown(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The generated ConfigMap's name, `triage-config-<hash>`.
fn config_map_name(built: &str) -> String {
    built
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: "))
        .find(|n| n.starts_with("triage-config-"))
        .unwrap_or_else(|| panic!("no generated triage-config ConfigMap in:\n{built}"))
        .to_owned()
}

/// The alert rules pass `promtool check rules`, and their unit tests (each alert fired by
/// synthetic series of its diagnosis or cause, and silent where it must be) pass
/// `promtool test rules`.
#[test]
fn alerts_pass_promtool_check_and_unit_tests() {
    let dir = deploy_dir().join("prometheus");
    let output = run("promtool", &["check", "rules", "alerts.yml"], Some(&dir));
    assert!(output.status.success(), "{}", shown(&output));
    let output = run(
        "promtool",
        &["test", "rules", "alerts_test.yml"],
        Some(&dir),
    );
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("SUCCESS"),
        "{}",
        shown(&output)
    );
}

/// Every file under deploy/ is one that a test here checks with its tool: a new file without
/// a check fails this test.
#[test]
fn every_deploy_file_is_checked() {
    let checked = [
        "README.md",
        "systemd/triage.service",
        "systemd/triage.sysusers",
        "debian/postinst",
        "kubernetes/kustomization.yaml",
        "kubernetes/triage.toml",
        "kubernetes/deployment.yaml",
        "kubernetes/service.yaml",
        "kubernetes/poddisruptionbudget.yaml",
        "kubernetes/horizontalpodautoscaler.yaml",
        "kubernetes/podmonitor.yaml",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
        "grafana/triage.json",
    ];
    let mut found = Vec::new();
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(deploy_dir()).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    for file in &found {
        assert!(
            checked.contains(&file.as_str()),
            "deploy/{file} is checked by no test in tests/deploy_files.rs"
        );
    }
    // The kustomization lists every manifest, so kubernetes-validate sees them all.
    let kustomization =
        std::fs::read_to_string(deploy_dir().join("kubernetes/kustomization.yaml")).unwrap();
    for file in found.iter().filter(|f| f.starts_with("kubernetes/")) {
        let name = file.trim_start_matches("kubernetes/");
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                kustomization.contains(&format!("- {name}")),
                "kustomization.yaml does not list {name}"
            );
        }
    }
}

/// The Debian package (`cargo deb`, here from the debug binary: `--no-build --profile dev`, so
/// no release build is needed) holds the binary, the unit as shipped, the config as a conffile
/// at /etc/triage/triage.toml and the triage user for systemd-sysusers; its postinst parses;
/// and, unpacked in a temp dir (never installed on this machine), the packaged triage passes
/// `-t` on the packaged config and the packaged unit passes `systemd-analyze verify`.
#[test]
fn debian_package_holds_the_unit_config_and_user() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = temp_dir();
    let deb = dir.path().join("triage.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = run(
        &cargo,
        &[
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--no-dbgsym",
            "--output",
            deb.to_str().unwrap(),
        ],
        Some(root),
    );
    assert!(
        output.status.success(),
        "cargo deb (cargo-deb: scripts/setup.sh installs it):\n{}",
        shown(&output)
    );
    let deb = deb.to_str().unwrap();

    let output = run("dpkg-deb", &["--contents", deb], None);
    let contents = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", shown(&output));
    for path in [
        "./usr/bin/triage",
        "./usr/lib/systemd/system/triage.service",
        "./etc/triage/triage.toml",
        "./usr/lib/sysusers.d/triage.conf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "the package lacks {path}:\n{contents}"
        );
    }

    let control = dir.path().join("control");
    let output = run(
        "dpkg-deb",
        &["--control", deb, control.to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", shown(&output));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == "/etc/triage/triage.toml"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    let output = run(
        "sh",
        &["-n", control.join("postinst").to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", shown(&output));

    let unpacked = dir.path().join("root");
    let output = run("dpkg-deb", &["-x", deb, unpacked.to_str().unwrap()], None);
    assert!(output.status.success(), "{}", shown(&output));
    let binary = unpacked.join("usr/bin/triage");
    let config = unpacked.join("etc/triage/triage.toml");
    let output = run(
        binary.to_str().unwrap(),
        &["-t", "-c", config.to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", shown(&output));
    let unit =
        std::fs::read_to_string(unpacked.join("usr/lib/systemd/system/triage.service")).unwrap();
    let shipped = std::fs::read_to_string(deploy_dir().join("systemd/triage.service")).unwrap();
    assert_eq!(
        unit, shipped,
        "the packaged unit differs from deploy/systemd/triage.service"
    );
    let unit_file = dir.write_file(
        "triage.service",
        unit.replace("/usr/bin/triage", binary.to_str().unwrap()),
    );
    let output = run(
        "systemd-analyze",
        &["verify", unit_file.to_str().unwrap()],
        None,
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        shown(&output)
    );
}

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long Prometheus may take to be ready, and the panels' queries to return series.
const PROMETHEUS_READY: Duration = Duration::from_secs(30);
const SERIES_WAIT: Duration = Duration::from_secs(45);

/// A free port on 127.0.0.1 (bound, then released; the start is retried if it is taken).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the real `prometheus` on 127.0.0.1 scraping `target` every second, with the alert
/// rules loaded, storage in `dir`; waits until it is ready.
async fn start_prometheus(dir: &TempDir, target: SocketAddr) -> (Killed, SocketAddr) {
    let rules = deploy_dir().join("prometheus/alerts.yml");
    let config = dir.write_file(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: triage\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        ),
    );
    let mut last = String::new();
    for _ in 0..3 {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run prometheus ({e}): scripts/setup.sh should have installed it (Debian's prometheus package)")
            });
        let mut prometheus = Killed(child);
        let deadline = tokio::time::Instant::now() + PROMETHEUS_READY;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = prometheus.0.try_wait() {
                break;
            }
            if let Ok(resp) = client::send(addr, Request::get("/-/ready")).await {
                if resp.status == 200 {
                    return (prometheus, addr);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last = dir.read_file("prometheus.log");
    }
    panic!("prometheus did not become ready:\n{last}");
}

/// `query` percent-encoded for a URL's query string.
fn url_encoded(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every panel's query of the dashboard, with its title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/triage.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("triage.json is JSON");
    let mut queries = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            let title = panel["title"].as_str().unwrap_or("?");
            queries.push((title.to_owned(), expr.to_owned()));
        }
    }
    queries
}

/// Grafana's variables as this test's values: its upstreams, the one triage instance, a rate
/// interval of four scrapes (Grafana's own rule for `$__rate_interval`), a one-minute range.
fn substitute(expr: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "4s")
        .replace("$__range", "1m")
        .replace("$instance", &regex_quoted(instance))
        .replace("$upstream", "ok|app|dead|slow|reset")
}

/// `text` as a Prometheus regex matching only itself (dots escaped, in a PromQL string).
fn regex_quoted(text: &str) -> String {
    text.replace('.', "\\\\.")
}

/// The dashboard's queries all parse and return series from a real Prometheus that scrapes a
/// real triage every second while requests succeed and fail five ways (the app's 503, refused,
/// timed out, reset), with the alert rules loaded by the same server (every rule group
/// healthy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_return_series_from_real_prometheus() {
    let ok = origin::spawn(Behavior::ok("fine")).await;
    let app = origin::spawn(Behavior::respond(503, "down for maintenance")).await;
    let slow = origin::spawn(Behavior::Stall).await;
    let reset = origin::spawn(Behavior::ResetBeforeResponse).await;
    let dead = refused_addr();
    let mut config = String::new();
    for (name, addr, extra) in [
        ("ok", ok.addr, ""),
        ("app", app.addr, ""),
        ("slow", slow.addr, "read_timeout = \"100ms\"\n"),
        ("reset", reset.addr, "retries = 1\n"),
        ("dead", dead, "retries = 1\n"),
    ] {
        config.push_str(&format!(
            "[upstreams.{name}]\nservers = [\"{addr}\"]\n{extra}\n[[routes]]\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n\n"
        ));
    }
    let triage = Triage::start(&config).await;
    let storage = temp_dir();
    let (_prometheus, prometheus) = start_prometheus(&storage, triage.admin).await;

    // Traffic until the test is done: bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        let http = triage.http;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + SERIES_WAIT + Duration::from_secs(10);
            for i in 0..5000usize {
                if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                    break;
                }
                let path = ["/ok", "/app", "/dead", "/slow", "/reset", "/ok"][i % 6];
                let _ =
                    client::send(http, Request::get(path).timeout(Duration::from_secs(5))).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let instance = triage.admin.to_string();
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 15,
        "only {} queries in the dashboard",
        queries.len()
    );
    let deadline = tokio::time::Instant::now() + SERIES_WAIT;
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for (title, expr) in &queries {
            let query = substitute(expr, &instance);
            let resp = client::send(
                prometheus,
                Request::get(&format!("/api/v1/query?query={}", url_encoded(&query))),
            )
            .await
            .expect("an answer from prometheus");
            let body: serde_json::Value =
                serde_json::from_slice(&resp.body).expect("prometheus answers JSON");
            assert_eq!(
                body["status"], "success",
                "panel {title:?}: query {query} does not run: {body}"
            );
            if body["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                empty.push(format!("panel {title:?}: {query}"));
            }
        }
        if empty.is_empty() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    assert!(
        empty.is_empty(),
        "queries without series after {SERIES_WAIT:?}:\n{}\nprometheus log:\n{}",
        empty.join("\n"),
        storage.read_file("prometheus.log")
    );

    // The alert rules, loaded by the real server, evaluate without error.
    let resp = client::get(prometheus, "/api/v1/rules").await;
    let rules: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    assert_eq!(groups.len(), 2, "{rules}");
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        assert_ne!(rule["health"], "err", "{rule}");
    }
}
