//! The app's own evidence (`[upstreams.NAME.evidence]`), from real processes that really die
//! on loopback, their logs in files of a temp dir: a gunicorn worker SIGKILLed mid-request
//! (its arbiter writes the SIGKILL line, after triage answered), a node process dying of heap
//! OOM with its stderr in a file, a node app killed while its own request log is followed, and
//! a cgroup whose memory limit gets the app OOM-killed (where the machine lets a test make a
//! cgroup). Each test reads the stored report on the admin listener, waiting (bounded) for
//! the amendment after the failure's after-window.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::apps::{self, App};
use support::client::{self, Request, Response};
use support::php_fpm::{PhpFpm, Pool};
use support::triage::{single_upstream, temp_dir, Triage};

fn cause(resp: &Response) -> &str {
    resp.header("x-diagnosis-cause").unwrap_or("")
}

/// The upstream `app` at `addr`, its evidence the log file `log` (and `extra` keys).
fn with_log(addr: std::net::SocketAddr, log: &Path, extra: &str) -> String {
    single_upstream(
        addr,
        &format!(
            "[upstreams.app.evidence]\nlog_file = \"{}\"\n{extra}",
            log.display()
        ),
    )
}

/// The report of `id` as JSON, once `done` holds for it (at most `within`); the last one read
/// otherwise, for the failing assertion to show.
async fn report_when(
    triage: &Triage,
    id: &str,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let resp = client::send(
            triage.admin,
            Request::get(&format!("/diagnoses/{id}?format=json")),
        )
        .await
        .expect("the report");
        // The report is stored as the request is logged, just after the answer went out: a
        // 404 is only "not yet" until the deadline.
        if resp.status == 404 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(resp.status, 200, "{}", resp.body_text());
        let report: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
        if done(&report) || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn app_log_has(report: &serde_json::Value, needle: &str) -> bool {
    report["app_log"].as_array().is_some_and(|lines| {
        lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(needle)))
    })
}

/// A 502 whose answer-time cause is one of `answered` (the app's line may not be read yet),
/// and its report once amended to `cause` (polled for at most 10 s).
async fn amended_to(
    triage: &Triage,
    resp: &Response,
    answered: &[&str],
    cause_now: &str,
) -> serde_json::Value {
    assert_eq!(resp.status, 502, "{resp:?}");
    assert!(
        answered.contains(&cause(resp)),
        "{}: {}",
        cause(resp),
        resp.header("x-diagnosis-hint").unwrap_or("")
    );
    let id = resp.header("x-diagnosis-id").expect("id");
    report_when(triage, id, Duration::from_secs(10), |r| {
        r["cause"] == cause_now
    })
    .await
}

/// The report's cause is `cause`, and a line of its `app_log` that `quoted` accepts is both in
/// `app_log` and quoted as evidence (source `app_log`).
fn assert_quoted(report: &serde_json::Value, cause: &str, quoted: impl Fn(&str) -> bool) {
    assert_eq!(report["cause"], cause, "{report:#}");
    let lines = report["app_log"].as_array().expect("app_log is a list");
    assert!(
        lines.iter().any(|l| l.as_str().is_some_and(&quoted)),
        "{report:#}"
    );
    assert!(
        report["evidence"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["source"] == "app_log" && e["fact"].as_str().is_some_and(&quoted))),
        "{report:#}"
    );
}

/// gunicorn's line for a SIGKILLed worker: 21+ says "was sent SIGKILL! Perhaps out of
/// memory?", 20.1 (Debian 12) "was terminated due to signal 9".
fn is_sigkill_line(line: &str) -> bool {
    line.contains("was sent SIGKILL! Perhaps out of memory?")
        || line.contains("was terminated due to signal 9")
}

/// A gunicorn sync worker SIGKILLed 0.6 s into a request (what the OOM killer does): the
/// answer says what was known then (the worker died; or already out of memory if the arbiter
/// was quick), and the stored report, amended once the after-window closed, quotes gunicorn's
/// SIGKILL line in `app_log` and has cause `out_of_memory` with that line as evidence. Without
/// the log (the same failure in tests/causes.rs) it stays `worker_killed`.
#[tokio::test]
async fn killed_gunicorn_worker_is_out_of_memory_by_its_log() {
    let dir = temp_dir();
    let log = dir.path().join("gunicorn-error.log");
    let log_arg = log.display().to_string();
    let app = App::gunicorn(
        dir.path(),
        &[
            "--workers",
            "1",
            "--timeout",
            "30",
            "--error-logfile",
            &log_arg,
        ],
    );
    let triage = Triage::start(&with_log(app.addr, &log, "")).await;
    let resp = apps::sigkill_worker_mid_request(triage.http).await;
    let report = amended_to(
        &triage,
        &resp,
        &["worker_killed", "out_of_memory"],
        "out_of_memory",
    )
    .await;
    assert_quoted(&report, "out_of_memory", is_sigkill_line);
    assert!(
        report["hint"].as_str().is_some_and(is_sigkill_line),
        "{report:#}"
    );
}

/// node dying of heap OOM (`--max-old-space-size=32`, stderr in the followed file): its
/// FATAL line is in `app_log`, quoted as the evidence of cause `out_of_memory` (the whole
/// process died: without the log, `app_crashed`).
#[tokio::test]
async fn node_heap_oom_is_out_of_memory() {
    let dir = temp_dir();
    let log = dir.path().join("node.log");
    let app = App::node_logged(apps::NODE_LOGGING_APP, &["--max-old-space-size=32"], &log);
    let triage = Triage::start(&with_log(app.addr, &log, "")).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    let resp = client::get(triage.http, "/grow").await;
    let report = amended_to(
        &triage,
        &resp,
        &["app_crashed", "out_of_memory"],
        "out_of_memory",
    )
    .await;
    assert!(
        app_log_has(&report, "JavaScript heap out of memory"),
        "{report:#}"
    );
    assert_quoted(&report, "out_of_memory", |line| {
        line.contains("FATAL ERROR") && line.contains("heap out of memory")
    });
}

/// A node app writing its request log to a followed file, killed (SIGKILL) in the middle of a
/// request: the report's `app_log` has the lines it wrote before it died (the one of this
/// request included, and a secret in a query redacted), its `app_process` (from a pidfile)
/// says it is gone, and a client triage does not trust sees none of it, in the page or in
/// problem+json.
#[tokio::test]
async fn killed_app_has_its_log_and_untrusted_clients_see_none() {
    let dir = temp_dir();
    let log = dir.path().join("app.log");
    let app = App::node_logged(apps::NODE_LOGGING_APP, &[], &log);
    let pidfile = dir.write_file("app.pid", format!("{}\n", app.pid()));
    let body = format!(
        "[diagnosis]\ntrusted = [\"192.0.2.0/24\"]\n{}",
        with_log(
            app.addr,
            &log,
            &format!("log_after = \"500ms\"\npidfile = \"{}\"", pidfile.display())
        )
    );
    let triage = Triage::start(&body).await;
    assert_eq!(
        client::get(triage.http, "/hello?token=s3cr3t").await.status,
        200
    );
    let http = triage.http;
    let slow = tokio::spawn(async move {
        client::send(
            http,
            Request::get("/slow").header("Accept", "application/problem+json"),
        )
        .await
    });
    // The follower polls every 200 ms: let it read the /slow line before the kill.
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.kill_group("KILL");
    let resp = slow.await.expect("the task").expect("a response");
    assert_eq!(resp.status, 502, "{resp:?}");
    let seen = resp.body_text();
    assert!(!seen.contains("GET /"), "{seen}");
    assert!(!seen.contains("app_log"), "{seen}");
    let page = client::get(triage.http, "/slow").await;
    assert!(
        !page.body_text().contains("GET /hello"),
        "{}",
        page.body_text()
    );
    let id = resp.header("x-diagnosis-id").expect("id");
    // Amended (the sample after the window says the process is gone), bounded.
    let report = report_when(&triage, id, Duration::from_secs(10), |r| {
        r["app_process"]["alive"] == false
    })
    .await;
    assert!(app_log_has(&report, "GET /slow"), "{report:#}");
    assert!(app_log_has(&report, "GET /hello?[redacted]"), "{report:#}");
    assert!(!report.to_string().contains("s3cr3t"), "{report:#}");
    assert_eq!(report["cause"], "app_crashed", "{report:#}");
    let process = &report["app_process"];
    assert_eq!(
        process["pid"].as_u64(),
        Some(u64::from(app.pid())),
        "{report:#}"
    );
    assert_eq!(process["alive"], false, "{report:#}");
}

/// A release gunicorn cannot import (`ModuleNotFoundError`, then "Worker failed to boot."),
/// its error log followed: the refusals after it are `broken_deploy`, without any deploy
/// marker, the import error quoted as evidence; without the log they would be
/// `never_answered`.
#[tokio::test]
async fn release_that_cannot_import_is_broken_deploy_by_its_log() {
    let dir = temp_dir();
    let log = dir.path().join("gunicorn-error.log");
    std::fs::write(
        dir.path().join("broken_release.py"),
        "import settings_that_were_not_deployed\napp = None\n",
    )
    .expect("write the release");
    let port = apps::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // The follower starts before the log exists, so it reads it whole when it appears.
    let triage = Triage::start(&with_log(addr, &log, "")).await;
    let mut gunicorn = std::process::Command::new("python3")
        .args(["-m", "gunicorn", "--bind", &addr.to_string(), "--chdir"])
        .arg(dir.path())
        .arg("--error-logfile")
        .arg(&log)
        .arg("broken_release:app")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start gunicorn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        match gunicorn.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(None) | Err(_) => break None,
        }
    };
    if exited.is_none() {
        let _ = gunicorn.kill();
        let _ = gunicorn.wait();
        panic!("gunicorn did not exit on a release it cannot import");
    }
    // Let the follower read the traceback (it polls every 200 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(
        cause(&resp),
        "broken_deploy",
        "{}",
        resp.header("x-diagnosis-hint").unwrap_or("")
    );
    let hint = resp.header("x-diagnosis-hint").unwrap_or("");
    assert!(hint.contains("the app's restart at"), "{hint}");
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = report_when(&triage, id, Duration::from_secs(10), |r| {
        app_log_has(r, "settings_that_were_not_deployed")
    })
    .await;
    assert_eq!(report["cause"], "broken_deploy", "{report:#}");
    assert!(
        report["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["source"] == "app_log"
                && e["fact"]
                    .as_str()
                    .is_some_and(|f| f.contains("ModuleNotFoundError")
                        || f.contains("Worker failed to boot")))),
        "{report:#}"
    );
}

/// Says why a test cannot run here, past the test harness's capture of `eprintln!` (a direct
/// write to stderr is not captured), so `cargo test` shows it.
fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Where this machine lets a test make a cgroup v2 with the memory controller: one with a
/// 64 MiB `memory.max`, the node app moved into it, then `/buffers` (memory outside the JS
/// heap, which only the limit stops): the kernel's OOM killer kills it, `oom_kill` rises, and
/// the report has `app_process.oom_kills` of at least 1 and cause `out_of_memory`. Elsewhere
/// (cgroup v1, no memory controller, no permission) it says why it cannot run, and passes.
#[tokio::test]
async fn cgroup_oom_kill_is_out_of_memory() {
    let root = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let subtree = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "memory") {
        skipped(
            "cgroup_oom_kill_is_out_of_memory",
            &format!(
                "/sys/fs/cgroup is not a cgroup v2 hierarchy with the memory controller (cgroup.controllers: {:?})",
                controllers.trim()
            ),
        );
        return;
    }
    if !subtree.split_whitespace().any(|c| c == "memory") {
        skipped(
            "cgroup_oom_kill_is_out_of_memory",
            &format!(
                "the memory controller is not enabled for child cgroups of /sys/fs/cgroup (cgroup.subtree_control: {:?})",
                subtree.trim()
            ),
        );
        return;
    }
    let cgroup = root.join(format!("triage-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&cgroup) {
        skipped(
            "cgroup_oom_kill_is_out_of_memory",
            &format!("cannot make {}: {e}", cgroup.display()),
        );
        return;
    }
    // Removed at the end whatever happens (a cgroup is removed once it has no process).
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for _ in 0..50 {
                if std::fs::remove_dir(self.0).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _cleanup = Cleanup(&cgroup);
    std::fs::write(cgroup.join("memory.max"), "67108864").expect("memory.max");
    let _ = std::fs::write(cgroup.join("memory.swap.max"), "0");
    let dir = temp_dir();
    let log = dir.path().join("node.log");
    let app = App::node_logged(apps::NODE_LOGGING_APP, &[], &log);
    std::fs::write(cgroup.join("cgroup.procs"), app.pid().to_string()).expect("move the app");
    let triage = Triage::start(&single_upstream(
        app.addr,
        &format!(
            "[upstreams.app.evidence]\ncgroup = \"{}\"",
            cgroup.display()
        ),
    ))
    .await;
    // The sampler's first reading of oom_kill is its baseline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = client::get(triage.http, "/buffers").await;
    assert_eq!(resp.status, 502, "{resp:?}");
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = report_when(&triage, id, Duration::from_secs(10), |r| {
        r["cause"] == "out_of_memory"
    })
    .await;
    assert!(
        report["app_process"]["oom_kills"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{report:#}"
    );
    assert_eq!(report["cause"], "out_of_memory", "{report:#}");
    drop(app);
}

/// php-fpm's `request_terminate_timeout` (1 s) kills a worker running a 5 s script: the
/// answer is a broken connection (`worker_killed`, one failure says no more), and the report,
/// with php-fpm's own log followed, is `worker_timeout`, quoting its "execution timed out"
/// line (the request's query redacted in it).
#[tokio::test]
async fn php_fpm_terminated_worker_is_worker_timeout_by_its_log() {
    let pools = [Pool {
        name: "www",
        workers: 2,
        terminate_after: 1,
    }];
    let fpm = PhpFpm::start(
        &pools,
        &[(
            "sleep.php",
            "<?php sleep((int)($_GET['s'] ?? 1)); echo 'slept';",
        )],
    )
    .await;
    let log = fpm.dir().join("fpm.log");
    let triage = Triage::start(&format!(
        "[upstreams.php]\nservers = [\"{}\"]\nprotocol = \"fastcgi\"\nroot = \"{}\"\n[upstreams.php.evidence]\nlog_file = \"{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"php\"\n",
        fpm.pools[0],
        fpm.root().display(),
        log.display()
    ))
    .await;
    let resp = client::get(triage.http, "/sleep.php?s=5").await;
    assert_eq!(resp.status, 502, "{resp:?} {}", fpm.log());
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = report_when(&triage, id, Duration::from_secs(10), |r| {
        r["cause"] == "worker_timeout"
    })
    .await;
    assert!(app_log_has(&report, "execution timed out"), "{report:#}");
    assert!(app_log_has(&report, "/sleep.php?[redacted]"), "{report:#}");
    assert_eq!(report["cause"], "worker_timeout", "{report:#}");
    assert!(
        report["hint"]
            .as_str()
            .is_some_and(|h| h.contains("execution timed out")),
        "{report:#}"
    );
}
