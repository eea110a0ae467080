//! The cause of a failure, from real app processes that really fail on loopback: a node
//! process that exits mid-request or is killed, a gunicorn worker killed by a signal or by
//! gunicorn's own timeout, a supervisor reviving an app that keeps dying, a release that dies
//! at startup after a deploy marker, a TLS server behind a plain-HTTP upstream. Each test
//! asserts the `X-Diagnosis-Cause` a client gets and that the hint carries the evidence.

mod support;

use std::time::{Duration, Instant};
use support::apps::{self, App};
use support::certs::TestPki;
use support::client::{self, Request, Response};
use support::origin::{self, Behavior};
use support::triage::{metric_becomes, single_upstream, temp_dir, Triage};

fn cause(resp: &Response) -> &str {
    resp.header("x-diagnosis-cause").unwrap_or("")
}

fn hint(resp: &Response) -> &str {
    resp.header("x-diagnosis-hint").unwrap_or("")
}

/// Sends `path` until a response carries `cause` (at most `within`), returning it.
async fn until_cause(triage: &Triage, path: &str, cause_token: &str, within: Duration) -> Response {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let resp = client::get(triage.http, path).await;
        if cause(&resp) == cause_token {
            return resp;
        }
        seen.push(format!("{} {}", resp.status, cause(&resp)));
        assert!(
            Instant::now() < deadline,
            "no {cause_token} within {within:?}; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node app that answered, then is stopped (SIGKILL): refusals are `app_down`, whose hint
/// says when it last answered and since when it refuses, and never that the port is wrong.
#[tokio::test]
async fn stopped_app_is_app_down() {
    let mut app = App::node(apps::NODE_APP, &[]);
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    app.kill_and_reap(Duration::from_secs(5));
    app.wait_refusing(Duration::from_secs(5));
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("x-diagnosis"), Some("connect_refused"));
    assert_eq!(cause(&resp), "app_down", "{}", hint(&resp));
    assert!(
        hint(&resp).contains("answered 200 until"),
        "{}",
        hint(&resp)
    );
    assert!(!hint(&resp).contains("port"), "{}", hint(&resp));
    // The access line and the failure counter carry the cause too.
    let id = resp.header("x-diagnosis-id").expect("id").to_owned();
    let log = triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    let line = log
        .lines()
        .find(|l| l.contains(&format!("id={id}")))
        .expect("the access line");
    assert!(line.contains("cause=app_down"), "{line}");
    assert!(
        metric_becomes(
            &triage,
            "triage_upstream_failures_total{cause=\"app_down\",diagnosis=\"connect_refused\",phase=\"connect\",upstream=\"app\"}",
            "1",
            Duration::from_secs(5)
        )
        .await
    );
}

/// A reload during the outage keeps the server's history: refusals after it are still
/// `app_down` (it answered before), not `never_answered` as for a server met for the first
/// time.
#[tokio::test]
async fn reload_during_an_outage_keeps_the_history() {
    let mut app = App::node(apps::NODE_APP, &[]);
    let body = single_upstream(app.addr, "");
    let triage = Triage::start(&body).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    app.kill_and_reap(Duration::from_secs(5));
    app.wait_refusing(Duration::from_secs(5));
    assert_eq!(cause(&client::get(triage.http, "/").await), "app_down");
    // The same upstream, a changed config around it.
    let changed = format!("{body}\n[[routes]]\npath_prefix = \"/other/\"\nupstream = \"app\"\n");
    std::fs::write(triage.config_path(), triage.config_text(&changed)).expect("rewrite the config");
    let reloaded = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answered");
    assert_eq!(reloaded.status, 200, "{}", reloaded.body_text());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(cause(&resp), "app_down", "{}", hint(&resp));
    assert!(
        hint(&resp).contains("answered 200 until"),
        "{}",
        hint(&resp)
    );
}

/// A node process that exits in the middle of a request is `app_crashed`, whether the kernel
/// ended the connection with a FIN (the request was read: GET) or a RST (a POST body left
/// unread), and whether the connection was new or reused: the same failure, run after run,
/// gets the same cause. The client gets the break, not the refusal a retry met.
#[tokio::test]
async fn exiting_app_is_app_crashed_with_fin_or_rst() {
    for run in 0..3 {
        for (request, how) in [
            (Request::get("/exit"), "FIN"),
            (Request::post("/exit", vec![b'x'; 256 * 1024]), "RST"),
        ] {
            let app = App::node(apps::NODE_APP, &[]);
            let triage = Triage::start(&single_upstream(app.addr, "")).await;
            // A first answer leaves a pooled connection, which /exit then reuses.
            assert_eq!(client::get(triage.http, "/").await.status, 200);
            let resp = client::send(triage.http, request)
                .await
                .expect("a response");
            assert_eq!(resp.status, 502, "run {run}, {how}: {resp:?}");
            assert_eq!(
                cause(&resp),
                "app_crashed",
                "run {run}, {how}: {} / {} / {}",
                resp.header("x-diagnosis").unwrap_or(""),
                hint(&resp),
                resp.body_text()
            );
            assert!(
                hint(&resp).contains("has refused connections since"),
                "{}",
                hint(&resp)
            );
        }
    }
}

/// A gunicorn sync worker SIGKILLed 0.6 s into a request (as the OOM killer does) while the
/// master still accepts connections: `worker_killed`, saying how far into the request, not
/// that the app crashed or closed an idle connection.
#[tokio::test]
async fn killed_gunicorn_worker_is_worker_killed() {
    let dir = temp_dir();
    let app = App::gunicorn(dir.path(), &["--workers", "1", "--timeout", "30"]);
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    for run in 0..2 {
        let resp = apps::sigkill_worker_mid_request(triage.http).await;
        assert_eq!(resp.status, 502, "run {run}: {resp:?}");
        assert_eq!(cause(&resp), "worker_killed", "run {run}: {}", hint(&resp));
        assert!(
            hint(&resp).contains("into the request while"),
            "{}",
            hint(&resp)
        );
        assert!(!hint(&resp).contains("idle"), "{}", hint(&resp));
        // gunicorn starts a new worker; wait for it before the next run.
        app.wait_listening(Duration::from_secs(10));
        until_status(&triage, "/", 200, Duration::from_secs(10)).await;
    }
}

/// Requests that gunicorn's own `--timeout 1` kills, at the same age each time (gunicorn 21
/// and later answer them 500 from the dying worker; 20 closes the connection):
/// `worker_timeout`, with the age, once the pattern is there.
#[tokio::test]
async fn gunicorn_timeout_is_worker_timeout() {
    let dir = temp_dir();
    let app = App::gunicorn(dir.path(), &["--workers", "1", "--timeout", "1"]);
    let triage = Triage::start(&single_upstream(app.addr, "read_timeout = \"20s\"")).await;
    let mut causes = Vec::new();
    for _ in 0..4 {
        until_status(&triage, "/", 200, Duration::from_secs(10)).await;
        let resp = client::get(triage.http, "/slow").await;
        assert!(matches!(resp.status, 500 | 502), "{resp:?}");
        causes.push((cause(&resp).to_owned(), hint(&resp).to_owned()));
    }
    let (last, last_hint) = causes.last().expect("four answers");
    assert_eq!(last, "worker_timeout", "{causes:?}");
    assert!(
        last_hint.contains("a worker timeout of about"),
        "{last_hint}"
    );
    assert!(
        causes
            .iter()
            .all(|(c, _)| matches!(c.as_str(), "app_error" | "worker_killed" | "worker_timeout")),
        "{causes:?}"
    );
}

/// A supervisor restarting an app that serves for half a second and dies: once it came back
/// and died twice within a minute, refusals are a `crash_loop`, saying how many times.
#[tokio::test]
async fn restarting_crashing_app_is_a_crash_loop() {
    let app = App::supervised(apps::NODE_SHORT_LIVED, &[("SERVE_MS", "500")], 300);
    app.wait_listening(Duration::from_secs(10));
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = until_cause(&triage, "/", "crash_loop", Duration::from_secs(15)).await;
    assert_eq!(resp.status, 502);
    assert!(
        hint(&resp).contains("came back and died"),
        "{}",
        hint(&resp)
    );
    assert!(
        hint(&resp).contains("times in the last 60 s"),
        "{}",
        hint(&resp)
    );
}

/// v1 served; a deploy marker for v2; v2 dies at import, restarted every 0.2 s: the refusals
/// are `broken_deploy`, naming the version, with "roll back first".
#[tokio::test]
async fn release_dying_at_startup_after_a_deploy_is_broken_deploy() {
    let v1 = App::node(apps::NODE_APP, &[]);
    let port = v1.addr;
    let triage = Triage::start(&single_upstream(port, "")).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    let marker = client::send(
        triage.admin,
        Request::post("/deploys", r#"{"upstream": "app", "version": "v2.0.1"}"#)
            .header("Content-Type", "application/json"),
    )
    .await
    .expect("the marker is answered");
    assert_eq!(marker.status, 201, "{}", marker.body_text());
    drop(v1);
    // v2 on the same port, under a supervisor: it never listens.
    let _v2 = apps::App::supervised_on(port.port(), apps::NODE_BROKEN_RELEASE, 200);
    let resp = until_cause(&triage, "/", "broken_deploy", Duration::from_secs(10)).await;
    assert_eq!(resp.status, 502);
    assert!(hint(&resp).contains("roll back first"), "{}", hint(&resp));
    assert!(hint(&resp).contains("v2.0.1"), "{}", hint(&resp));
}

/// Plain HTTP configured, the upstream is a real TLS server (node, OpenSSL), which closes on
/// the plain request: `wrong_protocol`, with the fix, not a crash.
#[tokio::test]
async fn tls_server_behind_plain_http_is_wrong_protocol() {
    let pki = TestPki::new();
    let leaf = pki.leaf(&["localhost"]);
    let dir = temp_dir();
    let cert = dir.write_file("cert.pem", &leaf.cert_pem);
    let key = dir.write_file("key.pem", &leaf.key_pem);
    let app = App::node(
        apps::NODE_TLS,
        &[
            ("CERT", cert.to_str().expect("path")),
            ("KEY", key.to_str().expect("path")),
        ],
    );
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    for _ in 0..3 {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 502, "{resp:?}");
        assert_eq!(cause(&resp), "wrong_protocol", "{resp:?}");
        assert!(hint(&resp).contains("set tls = true"), "{}", hint(&resp));
    }
}

/// A TLS port that answers plain HTTP with nginx's `400 The plain HTTP request was sent to
/// HTTPS port` is not the client's fault: 502 `upstream_expects_tls`, cause `wrong_protocol`,
/// instead of passing the 400 on.
#[tokio::test]
async fn nginx_plain_http_400_is_wrong_protocol() {
    let body = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let app = origin::spawn(Behavior::Garbage(answer.into_bytes())).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("upstream_expects_tls"));
    assert_eq!(cause(&resp), "wrong_protocol");
}

/// The app's own 500 is `app_error`, said to come from the app; a 503 whose body is PHP's PDO
/// error is `database_down`, quoting it.
#[tokio::test]
async fn app_status_is_app_error_or_database_down() {
    let app = App::node(apps::NODE_APP, &[]);
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::get(triage.http, "/fail").await;
    assert_eq!(resp.status, 500);
    assert_eq!(
        resp.body_text(),
        "Internal Server Error\n",
        "the app's body passes"
    );
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert_eq!(cause(&resp), "app_error");
    assert!(
        hint(&resp).contains("the app itself answered 500"),
        "{}",
        hint(&resp)
    );

    let body = "<b>Fatal error</b>: Uncaught PDOException: SQLSTATE[HY000] [2002] Connection refused in /var/www/app/db.php:12";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let db = origin::spawn(Behavior::Garbage(answer.into_bytes())).await;
    let triage = Triage::start(&single_upstream(db.addr, "")).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body_text(), body, "the app's body passes whole");
    assert_eq!(cause(&resp), "database_down");
    assert!(
        hint(&resp).contains("SQLSTATE[HY000] [2002]"),
        "{}",
        hint(&resp)
    );
}

/// A request the app never answers within read_timeout, while its other requests answer at
/// once and few are in flight: `slow_request`, naming the path and the usual time.
#[tokio::test]
async fn one_slow_path_is_slow_request() {
    let app = App::node(apps::NODE_APP, &[]);
    // The machine's CPU is not in question here (parallel tests can pin it, which would rightly
    // make this host_cpu_saturated).
    let triage = Triage::start(&format!(
        "[diagnosis]\nhost_cpu_busy_percent = 0\n{}",
        single_upstream(app.addr, "read_timeout = \"1s\"")
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(client::get(triage.http, "/").await.status, 200);
    }
    let resp = client::get(triage.http, "/slow").await;
    assert_eq!(resp.status, 504);
    assert_eq!(cause(&resp), "slow_request", "{}", hint(&resp));
    assert!(
        hint(&resp).contains("/slow got no answer within 1.0 s"),
        "{}",
        hint(&resp)
    );
}

/// Timeouts while many requests are in flight at the server: `overloaded`, saying how many.
#[tokio::test]
async fn timeouts_with_many_in_flight_are_overloaded() {
    let app = App::node(apps::NODE_APP, &[]);
    let triage = Triage::start(&format!(
        "[diagnosis]\noverload_in_flight = 4\nhost_cpu_busy_percent = 0\n{}",
        single_upstream(app.addr, "read_timeout = \"1s\"")
    ))
    .await;
    let http = triage.http;
    let slow: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { client::get(http, "/slow").await }))
        .collect();
    let mut overloaded = 0;
    for request in slow {
        let resp = request.await.expect("a response");
        assert_eq!(resp.status, 504);
        if cause(&resp) == "overloaded" {
            assert!(
                hint(&resp).contains("requests in flight"),
                "{}",
                hint(&resp)
            );
            overloaded += 1;
        }
    }
    assert!(overloaded >= 1, "no overloaded among 6 concurrent timeouts");
}

/// Sends `path` until it answers `status` (at most `within`).
async fn until_status(triage: &Triage, path: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if client::get(triage.http, path).await.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upstream hostname whose DNS record moves from the app's address to one where nothing
/// listens: the refusals are `address_changed`, naming both addresses.
#[tokio::test]
async fn moved_dns_record_is_address_changed() {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};
    let app = App::node(apps::NODE_APP, &[]);
    let dns = support::dns::spawn_dns(HashMap::from([(
        "app.test".to_owned(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]))
    .await;
    dns.set_ttl(0);
    let config = format!(
        "[resolver]\nnameservers = [\"{}\"]\nrefresh = \"100ms\"\n[upstreams.app]\nservers = [\"app.test:{}\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        dns.addr,
        app.addr.port()
    );
    let triage = Triage::start(&config).await;
    until_status(&triage, "/", 200, Duration::from_secs(5)).await;
    // 127.0.0.2 is loopback too, but the app listens on 127.0.0.1 only.
    dns.set("app.test", vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
    let resp = until_cause(&triage, "/", "address_changed", Duration::from_secs(10)).await;
    assert_eq!(resp.status, 502);
    let hint = hint(&resp);
    assert!(
        hint.contains("app.test changed from 127.0.0.1 to 127.0.0.2"),
        "{hint}"
    );
    // The report's attempt shows the DNS answer it used, and when it was resolved.
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = support::triage::report_of(&triage, id).await;
    let dns = &report["attempts"][0]["dns"];
    assert_eq!(dns["host"], "app.test", "{report}");
    assert_eq!(
        dns["addresses"],
        serde_json::json!(["127.0.0.2"]),
        "{report}"
    );
    assert!(
        dns["resolved_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{report}"
    );
}

/// A request the app had for longer than the stale keep-alive race is never replayed, even a
/// GET on a reused connection (which a stale pooled connection would be retried for): the app
/// may have died of this very request. The node app is killed 0.6 s into `/slow`: one
/// attempt, answered with the break and its cause.
#[tokio::test]
async fn request_the_app_had_is_not_retried() {
    let app = App::node(apps::NODE_APP, &[]);
    let triage = Triage::start(&single_upstream(app.addr, "retries = 2")).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    let http = triage.http;
    let slow = tokio::spawn(async move { client::get(http, "/slow").await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.kill_group("KILL");
    let resp = slow.await.expect("the request");
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-attempts"), Some("1"), "{resp:?}");
    assert_eq!(cause(&resp), "app_crashed", "{}", hint(&resp));
    assert!(hint(&resp).contains("into the request"), "{}", hint(&resp));
}

/// Every report carries the machine at the failure (sampled in the background), and a disk
/// under `host_disk_free_percent` free turns the app's 500 into `host_disk_full`, naming the
/// disk. (The threshold is set to 100 % here, so any real disk is "full": what the unit tests
/// decide on numbers, this proves end to end, from the sampler to the header.)
#[tokio::test]
async fn reports_carry_the_machine_and_a_full_disk_is_named() {
    let app = App::node(apps::NODE_APP, &[]);
    let triage = Triage::start(&format!(
        "[diagnosis]\nhost_disks = [\"/\"]\nhost_disk_free_percent = 100\n{}",
        single_upstream(app.addr, "")
    ))
    .await;
    // The first sample is taken a second after start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = client::get(triage.http, "/fail").await;
    assert_eq!(resp.status, 500);
    assert_eq!(cause(&resp), "host_disk_full", "{}", hint(&resp));
    assert!(hint(&resp).starts_with("/ has "), "{}", hint(&resp));
    let id = resp.header("x-diagnosis-id").expect("id");
    // The report is stored as the request is logged, just after its answer went out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let report = loop {
        let report = client::send(
            triage.admin,
            Request::get(&format!("/diagnoses/{id}")).header("Accept", "application/json"),
        )
        .await
        .expect("the report");
        if report.status == 200 || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(report.status, 200, "{}", report.body_text());
    let report: serde_json::Value = serde_json::from_slice(&report.body).expect("JSON");
    let machine = &report["machine"];
    assert!(
        machine["mem_total_bytes"].as_u64().is_some_and(|t| t > 0),
        "{report}"
    );
    assert!(machine["load1"].is_number(), "{report}");
    assert_eq!(machine["disks"][0]["path"], "/");
    assert_eq!(report["cause"], "host_disk_full");
    assert_eq!(report["evidence"][1]["source"], "machine", "{report}");
}

/// Whether a connection accepted on `port` holds bytes its process has not read (the
/// `rx_queue` of `/proc/net/tcp`): the request is in the app's socket.
fn unread_request_at(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|local| local.rsplit(':').next())
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        let unread = fields
            .get(4)
            .and_then(|queues| queues.split(':').nth(1))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        local_port == Some(port) && unread.is_some_and(|n| n > 0)
    })
}

/// gunicorn's gthread worker closes a keep-alive connection idle past `--keep-alive 1` from
/// its main loop, with whatever request has arrived on it still unread (a RST). The worker is
/// stopped (SIGSTOP, as a long GC pause or a starved VM stops it) past that deadline and
/// resumed once triage's request sits in its socket, so its close meets the request exactly as
/// triage reuses the pooled connection: the stale keep-alive race, every run. A GET is
/// replayed on a new connection and answered 200, the replay counted; a POST is not replayed
/// (the app might have had it), and its client gets `stale_keepalive`, with the connection's
/// age and triage's pool idle time, and no word of a crash.
#[tokio::test]
async fn connection_the_app_closed_as_it_was_reused_is_stale_keepalive() {
    let dir = temp_dir();
    let gthread = [
        "--worker-class",
        "gthread",
        "--threads",
        "2",
        "--workers",
        "1",
        "--keep-alive",
        "1",
    ];
    let app = App::gunicorn(dir.path(), &gthread);
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    for (run, method) in ["GET", "POST", "GET", "POST"].into_iter().enumerate() {
        // The pooled connection: the worker's keep-alive deadline starts at this answer.
        let worker = client::get(triage.http, "/pid").await.body_text();
        assert!(worker.parse::<u32>().is_ok(), "{worker}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        apps::kill(&worker, "STOP");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let http = triage.http;
        let request = match method {
            "GET" => Request::get("/"),
            _ => Request::post("/", "order=1"),
        };
        let reuse = tokio::spawn(async move { client::send(http, request).await });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !unread_request_at(app.addr.port()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        apps::kill(&worker, "CONT");
        let resp = reuse.await.expect("the request").expect("an answer");
        if method == "GET" {
            assert_eq!(resp.status, 200, "run {run}: {resp:?}");
            assert!(
                metric_becomes(
                    &triage,
                    "triage_upstream_retries_total{upstream=\"app\"}",
                    &(run / 2 + 1).to_string(),
                    Duration::from_secs(2)
                )
                .await,
                "run {run}: the replay is counted"
            );
        } else {
            assert_eq!(resp.status, 502, "run {run}: {resp:?}");
            assert_eq!(resp.header("x-diagnosis-attempts"), Some("1"), "{resp:?}");
            assert_eq!(
                cause(&resp),
                "stale_keepalive",
                "run {run}: {}",
                hint(&resp)
            );
            // The connection was opened for the `/pid` before, some 2.6 s earlier.
            assert!(
                hint(&resp).contains("a pooled connection (opened "),
                "{}",
                hint(&resp)
            );
            assert!(
                hint(&resp).contains("shorter than the 60 s triage keeps"),
                "{}",
                hint(&resp)
            );
            assert!(!hint(&resp).contains("crash"), "{}", hint(&resp));
        }
    }
}
