//! FastCGI upstreams against a real php-fpm on loopback: what a client of triage gets when PHP
//! answers, exits, fails, sleeps, dies, or is not there, and the front controller WordPress,
//! Laravel and Symfony need.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::{self, Request, Response};
use support::origin::{self, Behavior};
use support::php_fpm::{self, PhpFpm, Pool};
use support::triage::Triage;

/// The scripts every test's php-fpm serves.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "params.php",
        r#"<?php
header('Content-Type: application/json');
header('X-Powered-By-Test: params');
$keys = ['SCRIPT_FILENAME', 'SCRIPT_NAME', 'PATH_INFO', 'REQUEST_URI', 'QUERY_STRING',
    'REQUEST_METHOD', 'DOCUMENT_ROOT', 'REQUEST_SCHEME', 'REMOTE_ADDR', 'SERVER_NAME',
    'HTTP_HOST', 'HTTP_X_CUSTOM', 'HTTP_X_FORWARDED_FOR', 'HTTP_X_REQUEST_ID', 'APP_ENV', 'HTTPS', 'HTTP_PROXY'];
$out = [];
foreach ($keys as $k) { $out[$k] = $_SERVER[$k] ?? null; }
echo json_encode($out);
"#,
    ),
    ("hello.php", "<?php echo 'hello from php';\n"),
    (
        "redirect.php",
        "<?php header('Location: /login'); echo 'moved';\n",
    ),
    (
        "status.php",
        "<?php header('Status: 418 I am a teapot'); echo 'short and stout';\n",
    ),
    ("exit.php", "<?php echo 'before exit'; exit(3); echo 'never';\n"),
    ("fatal.php", "<?php\necho 'partial';\nundefined_function_called();\n"),
    // An app whose MySQL is down, as a framework's bootstrap meets it: PDO's exception, uncaught.
    (
        "orders.php",
        r#"<?php
$db = new PDO('mysql:host=127.0.0.1;port=' . $_GET['db_port'] . ';dbname=shop', 'shop', 'secret');
echo 'orders: ', $db->query('SELECT count(*) FROM orders')->fetchColumn();
"#,
    ),
    (
        "sleep.php",
        "<?php sleep((int)($_GET['s'] ?? 3)); echo 'slept';\n",
    ),
    (
        "die.php",
        r#"<?php
if (isset($_GET['flush'])) { header('Content-Type: text/plain'); echo str_repeat('x', 1000); ob_flush(); flush(); }
file_put_contents(__DIR__ . '/../' . $_GET['pid'], getmypid());
sleep(30);
echo 'never';
"#,
    ),
    (
        "upload.php",
        "<?php $b = file_get_contents('php://input'); echo strlen($b), ' ', md5($b);\n",
    ),
    (
        "index.php",
        "<?php echo 'front controller: ', $_SERVER['REQUEST_URI'], ' script ', $_SERVER['SCRIPT_NAME'];\n",
    ),
    ("style.css", "body { color: red; }\n"),
    (
        "bigheader.php",
        "<?php header('X-Big: ' . str_repeat('a', 70000)); echo 'big';\n",
    ),
    ("admin/index.php", "<?php echo 'admin index';\n"),
];

/// A route for requests to `host` only.
fn host_route(host: &str, upstream: &str) -> String {
    format!("[[routes]]\nhost = \"{host}\"\npath_prefix = \"/\"\nupstream = \"{upstream}\"\n")
}

/// A GET for `host`.
async fn get_for(triage: &Triage, host: &str, path: &str) -> Response {
    client::send(triage.http, Request::get(path).header("Host", host))
        .await
        .unwrap_or_else(|e| panic!("GET {path} for {host}: {e}"))
}

/// The JSON report of request `id`, once stored (it is, at the end of the request, just after
/// its response went out).
async fn report(triage: &Triage, id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client::send(
            triage.admin,
            Request::get(&format!("/diagnoses/{id}")).header("Accept", "application/json"),
        )
        .await
        .expect("report");
        if resp.status == 200 {
            return serde_json::from_slice(&resp.body).expect("JSON");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report of {id}: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `[diagnosis]` with the CPU-saturation cause off: the tests of a timeout's cause run on a
/// machine whose CPU the rest of the suite may well keep at 100 %.
const NO_CPU_CAUSE: &str = "[diagnosis]\nhost_cpu_busy_percent = 0\n";

/// One pool of `workers` static workers.
fn pool(name: &'static str, workers: u32) -> Pool {
    Pool {
        name,
        workers,
        terminate_after: 0,
    }
}

/// An upstream `name` of php-fpm at `addr` with `root`, and `extra` keys.
fn fastcgi_upstream(name: &str, addr: SocketAddr, root: &std::path::Path, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\nservers = [\"{addr}\"]\nprotocol = \"fastcgi\"\nroot = \"{}\"\n{extra}\n",
        root.display()
    )
}

/// The catch-all route to `upstream`.
fn route(upstream: &str, extra: &str) -> String {
    format!("[[routes]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\n{extra}\n")
}

/// php-fpm with one pool of 2 workers serving `SCRIPTS`, and triage in front of it with the
/// upstream's defaults.
async fn php_behind_triage() -> (PhpFpm, Triage) {
    let fpm = PhpFpm::start(&[pool("www", 2)], SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "") + &route("php", "")),
    )
    .await;
    (fpm, triage)
}

/// Whether one of the report's evidence facts contains `needle`.
fn has_fact(report: &serde_json::Value, needle: &str) -> bool {
    report["evidence"].as_array().is_some_and(|e| {
        e.iter()
            .any(|f| f["fact"].as_str().is_some_and(|f| f.contains(needle)))
    })
}

async fn get(triage: &Triage, path: &str) -> Response {
    client::get(triage.http, path).await
}

/// The connection to the worker broke before any answer: php-fpm's killed worker resets it when
/// it had unread bytes (the end of stdin), else closes it.
fn assert_broke(resp: &Response, cause: &str) {
    let token = resp.header("x-diagnosis").unwrap_or("");
    assert!(
        token == "connection_reset" || token == "connection_closed",
        "{resp:?}"
    );
    assert_generated(resp, 502, token, cause);
}

/// The headers of a failure triage answers itself, as for HTTP upstreams.
fn assert_generated(resp: &Response, status: u16, token: &str, cause: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some(token), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-source"), Some("proxy"), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-cause"), Some(cause), "{resp:?}");
    assert!(resp
        .header("proxy-status")
        .is_some_and(|v| v.starts_with("triage; error=")));
    assert!(resp.body_text().contains(token), "{}", resp.body_text());
}

/// A script that answers: its body and headers reach the client; PHP got the params nginx's
/// fastcgi_params send (SCRIPT_FILENAME = root + path, REQUEST_URI as sent, HTTP_* headers, the
/// client's address, the upstream's own params) and none of what a client must not set.
#[tokio::test]
async fn a_script_answers_with_the_params_php_expects() {
    let fpm = PhpFpm::start(&[pool("www", 2)], SCRIPTS).await;
    let root = fpm.root();
    let config = fastcgi_upstream(
        "php",
        fpm.pools[0],
        &root,
        "params = { APP_ENV = \"test\" }",
    ) + &route("php", "");
    let triage = Triage::start(&config).await;
    let resp = client::send(
        triage.http,
        Request::get("/params.php?a=1&b=%20x")
            .header("X-Custom", "custom value")
            .header("X_Custom", "spoofed")
            .header("Proxy", "http://evil.example"),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}\n{}", fpm.log());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-powered-by-test"), Some("params"));
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert!(resp.header("x-diagnosis").is_none(), "{resp:?}");
    let params: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    let root = root.display().to_string();
    assert_eq!(params["SCRIPT_FILENAME"], format!("{root}/params.php"));
    assert_eq!(params["SCRIPT_NAME"], "/params.php");
    assert_eq!(params["DOCUMENT_ROOT"], root);
    assert_eq!(params["REQUEST_URI"], "/params.php?a=1&b=%20x");
    assert_eq!(params["QUERY_STRING"], "a=1&b=%20x");
    assert_eq!(params["REQUEST_METHOD"], "GET");
    assert_eq!(params["REQUEST_SCHEME"], "http");
    assert_eq!(params["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(params["SERVER_NAME"], "localhost");
    assert_eq!(params["HTTP_HOST"], "localhost");
    assert_eq!(
        params["HTTP_X_CUSTOM"], "custom value",
        "the underscore header is not sent"
    );
    assert_eq!(params["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert_eq!(
        params["HTTP_X_REQUEST_ID"],
        resp.header("x-diagnosis-id").expect("id")
    );
    assert_eq!(params["APP_ENV"], "test");
    assert_eq!(params["HTTPS"], serde_json::Value::Null);
    assert_eq!(params["HTTP_PROXY"], serde_json::Value::Null, "httpoxy");
    let access = triage
        .wait_for_output("\"GET /params.php HTTP/1.1\" 200", Duration::from_secs(5))
        .await;
    assert!(access.contains("upstream=php"), "{access}");
}

/// What CGI headers say becomes HTTP: `Status:` is the status, a `Location` alone a 302; a
/// script that calls exit() after its output answers normally.
#[tokio::test]
async fn cgi_headers_and_exit() {
    let (_fpm, triage) = php_behind_triage().await;
    let resp = get(&triage, "/redirect.php").await;
    assert_eq!(
        (resp.status, resp.header("location")),
        (302, Some("/login")),
        "{resp:?}"
    );
    let resp = get(&triage, "/status.php").await;
    assert_eq!(
        (resp.status, resp.body_text().as_str()),
        (418, "short and stout"),
        "{resp:?}"
    );
    assert!(resp.header("x-diagnosis").is_none(), "{resp:?}");
    let resp = get(&triage, "/exit.php").await;
    assert_eq!(
        (resp.status, resp.body_text().as_str()),
        (200, "before exit"),
        "{resp:?}"
    );
    assert!(
        resp.complete && resp.header("x-diagnosis").is_none(),
        "{resp:?}"
    );
}

/// A PHP fatal error is the app's own 500, passed through: upstream_status from the upstream,
/// cause app_error, and PHP's message (from FastCGI stderr) in the detail, the report's evidence
/// and a log line.
#[tokio::test]
async fn a_fatal_error_is_the_apps_500_with_phps_message() {
    let (fpm, triage) = php_behind_triage().await;
    let resp = get(&triage, "/fatal.php").await;
    assert_eq!(resp.status, 500, "{resp:?}\n{}", fpm.log());
    assert_eq!(resp.header("x-diagnosis"), Some("upstream_status"));
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert_eq!(resp.header("x-diagnosis-cause"), Some("app_error"));
    assert!(resp
        .header("proxy-status")
        .is_some_and(|v| v.contains("received-status=500")));
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = report(&triage, id).await;
    let message = "Call to undefined function undefined_function_called()";
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains(message)),
        "{report:#}"
    );
    assert!(has_fact(&report, message), "{report:#}");
    let log = triage
        .wait_for_output("FastCGI server wrote to stderr", Duration::from_secs(5))
        .await;
    assert!(log.contains(message), "{log}");
}

/// A real PHP app whose MySQL is down (nothing listens on the database's port): PDO's uncaught
/// exception is PHP's 500, passed through as the app's, with cause `database_down` quoting the
/// driver's `SQLSTATE[HY000] [2002]` from FastCGI stderr (production php.ini settings: nothing
/// is displayed, the body is empty), so the hint points at the database, not at the app.
#[tokio::test]
async fn an_app_whose_database_is_down_is_database_down() {
    let (fpm, triage) = php_behind_triage().await;
    let db_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let resp = get(&triage, &format!("/orders.php?db_port={db_port}")).await;
    assert_eq!(resp.status, 500, "{resp:?}\n{}", fpm.log());
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert_eq!(
        resp.header("x-diagnosis-cause"),
        Some("database_down"),
        "{resp:?}"
    );
    let hint = resp.header("x-diagnosis-hint").unwrap_or_default();
    assert!(hint.contains("SQLSTATE[HY000] [2002]"), "{hint}");
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = report(&triage, id).await;
    assert_eq!(report["cause"], "database_down", "{report:#}");
    assert!(has_fact(&report, "Uncaught PDOException"), "{report:#}");
}

/// A script that sleeps past read_timeout: 504 response_timeout; a worker was free to answer
/// the probe, so it is this request that is slow (slow_request), not the pool.
#[tokio::test]
async fn a_script_past_read_timeout() {
    let fpm = PhpFpm::start(&[pool("www", 3)], SCRIPTS).await;
    // A busy test machine must not turn the cause into host_cpu_saturated.
    let config = NO_CPU_CAUSE.to_owned()
        + &fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "read_timeout = \"1s\"")
        + &route("php", "");
    let triage = Triage::start(&config).await;
    assert_eq!(get(&triage, "/hello.php").await.status, 200);
    let resp = get(&triage, "/sleep.php?s=4").await;
    assert_generated(&resp, 504, "response_timeout", "slow_request");
}

/// Every worker busy: a request waits for one in php-fpm's listen queue until read_timeout; a
/// probe right after gets no FastCGI answer either, so the cause is pool_exhausted.
#[tokio::test]
async fn the_pool_exhausted() {
    let fpm = PhpFpm::start(&[pool("one", 1)], SCRIPTS).await;
    let root = fpm.root();
    let config = NO_CPU_CAUSE.to_owned()
        + &fastcgi_upstream("php", fpm.pools[0], &root, "read_timeout = \"1s\"")
        + &fastcgi_upstream("hold", fpm.pools[0], &root, "read_timeout = \"30s\"")
        + &host_route("hold.test", "hold")
        + &route("php", "");
    let triage = Triage::start(&config).await;
    let http = triage.http;
    // The one worker is taken by a request that sleeps.
    let holding = tokio::spawn(async move {
        client::send(
            http,
            Request::get("/die.php?pid=held.pid")
                .header("Host", "hold.test")
                .timeout(Duration::from_secs(40)),
        )
        .await
    });
    let worker = php_fpm::wait_for_pid(&fpm.dir().join("held.pid")).await;
    let resp = get(&triage, "/hello.php").await;
    assert_generated(&resp, 504, "response_timeout", "pool_exhausted");
    assert!(
        resp.header("x-diagnosis-hint")
            .is_some_and(|h| h.contains("pm.max_children")),
        "{resp:?}"
    );
    php_fpm::kill_worker(worker);
    let _ = holding.await;
}

/// A worker SIGKILLed before it answered: 502 connection_reset, cause worker_killed (php-fpm
/// still accepts connections); killed after its first bytes went out: the client gets the
/// app's 200 cut short, and the access line says body_reset (or body_closed), worker_killed.
#[tokio::test]
async fn a_worker_killed_mid_request() {
    let (fpm, triage) = php_behind_triage().await;
    let http = triage.http;
    let request = tokio::spawn(async move { client::get(http, "/die.php?pid=before.pid").await });
    php_fpm::kill_worker(php_fpm::wait_for_pid(&fpm.dir().join("before.pid")).await);
    let resp = request.await.expect("request");
    assert_broke(&resp, "worker_killed");
    // Keep-alive, so the body is chunked and a cut shows (a close-delimited body cannot show
    // one, behind nginx neither).
    let request = tokio::spawn(async move {
        client::send(
            http,
            Request::get("/die.php?pid=during.pid&flush=1").header("Connection", "keep-alive"),
        )
        .await
        .expect("a response")
    });
    php_fpm::kill_worker(php_fpm::wait_for_pid(&fpm.dir().join("during.pid")).await);
    let resp = request.await.expect("request");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(!resp.complete, "the client sees the cut: {resp:?}");
    assert_eq!(resp.body.len(), 1000);
    let id = resp.header("x-diagnosis-id").expect("id");
    let output = triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    let line = output
        .lines()
        .find(|l| l.contains(&format!("id={id}")))
        .expect("the access line");
    let cut = line.contains("diagnosis=body_reset") || line.contains("diagnosis=body_closed");
    assert!(cut && line.contains("cause=worker_killed"), "{line}");
}

/// php-fpm's own request_terminate_timeout kills the worker: 502 connection_reset with cause
/// worker_killed, not a timeout of triage's.
#[tokio::test]
async fn php_fpm_terminates_a_slow_script() {
    let pools = [Pool {
        name: "www",
        workers: 2,
        terminate_after: 1,
    }];
    let fpm = PhpFpm::start(&pools, SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "") + &route("php", "")),
    )
    .await;
    let resp = get(&triage, "/sleep.php?s=5").await;
    assert_broke(&resp, "worker_killed");
}

/// php-fpm stopped (killed with its workers) after it answered: 502 connect_refused, cause
/// app_down, as for an HTTP app.
#[tokio::test]
async fn the_pool_stopped() {
    let mut fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "") + &route("php", "")),
    )
    .await;
    assert_eq!(
        get(&triage, "/hello.php").await.body_text(),
        "hello from php"
    );
    fpm.stop();
    let resp = get(&triage, "/hello.php").await;
    assert_generated(&resp, 502, "connect_refused", "app_down");
}

/// With the front controller off, every path runs as a script: a missing one is php-fpm's 404
/// "Primary script unknown" (script_not_found, from the upstream, the SCRIPT_FILENAME in the
/// report), a file that is no script its 403 (script_denied); both pass through.
#[tokio::test]
async fn missing_and_denied_scripts() {
    let fpm = PhpFpm::start(&[pool("www", 2)], SCRIPTS).await;
    let root = fpm.root();
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &root, "front_controller = false")
            + &route("php", "")),
    )
    .await;
    let resp = get(&triage, "/nope.php").await;
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("script_not_found"));
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    let report = report(&triage, resp.header("x-diagnosis-id").expect("id")).await;
    let filename = format!("{}/nope.php", root.display());
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Primary script unknown") && d.contains(&filename)),
        "{report:#}"
    );
    let resp = get(&triage, "/style.css").await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("script_denied"));
    // A path ending in / runs its index.
    assert_eq!(get(&triage, "/admin/").await.body_text(), "admin index");
}

/// The front controller: a file next to index.php is served from disk (type, validators, 304,
/// a range, HEAD), a script runs (its source is never served), a directory runs its index
/// (after a redirect to its /), and any other path runs /index.php with the original URI.
#[tokio::test]
async fn static_files_and_the_front_controller() {
    let (_fpm, triage) = php_behind_triage().await;
    let css = get(&triage, "/style.css").await;
    assert_eq!(css.status, 200, "{css:?}");
    assert_eq!(css.body_text(), "body { color: red; }\n");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.header("last-modified").is_some() && css.header("x-diagnosis-id").is_some());
    let etag = css.header("etag").expect("etag");
    let not_modified = client::send(
        triage.http,
        Request::get("/style.css").header("If-None-Match", etag),
    )
    .await
    .expect("304");
    assert_eq!(
        (not_modified.status, not_modified.body.len()),
        (304, 0),
        "{not_modified:?}"
    );
    let part = client::send(
        triage.http,
        Request::get("/style.css").header("Range", "bytes=7-11"),
    )
    .await
    .expect("206");
    assert_eq!(
        (part.status, part.body_text().as_str()),
        (206, "color"),
        "{part:?}"
    );
    assert_eq!(part.header("content-range"), Some("bytes 7-11/21"));
    let head = client::send(triage.http, Request::head("/style.css"))
        .await
        .expect("HEAD");
    assert_eq!(
        (head.status, head.header("content-length"), head.body.len()),
        (200, Some("21"), 0)
    );
    assert_eq!(
        get(&triage, "/hello.php").await.body_text(),
        "hello from php"
    );
    let routed = get(&triage, "/blog/2024/hello-world?page=2").await;
    assert_eq!(
        routed.body_text(),
        "front controller: /blog/2024/hello-world?page=2 script /index.php",
        "{routed:?}"
    );
    assert_eq!(
        get(&triage, "/").await.body_text(),
        "front controller: / script /index.php"
    );
    let redirect = get(&triage, "/admin?x=1").await;
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some("/admin/?x=1")),
        "{redirect:?}"
    );
    assert_eq!(get(&triage, "/admin/").await.body_text(), "admin index");
    // Not GET or HEAD: the app's, even where a file is.
    let post = client::send(triage.http, Request::post("/style.css", "x"))
        .await
        .expect("POST");
    assert_eq!(
        post.body_text(),
        "front controller: /style.css script /index.php"
    );
    let access = triage
        .wait_for_output("\"GET /style.css HTTP/1.1\" 200", Duration::from_secs(5))
        .await;
    assert!(access.contains("upstream=php"), "{access}");
}

/// A path that leads out of root through a symlink is refused: 403 outside_root, nothing read.
#[tokio::test]
async fn nothing_outside_root() {
    let fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    std::fs::write(fpm.dir().join("private.txt"), "top secret content").expect("write");
    std::os::unix::fs::symlink(fpm.dir().join("private.txt"), fpm.root().join("leak.txt"))
        .expect("symlink");
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "") + &route("php", "")),
    )
    .await;
    let resp = get(&triage, "/leak.txt").await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("outside_root"));
    assert_eq!(resp.header("x-diagnosis-cause"), Some("client_error"));
    assert!(!resp.body_text().contains("top secret content"));
}

/// A POST body of several MiB streams to the script whole (its length and md5 as PHP read it).
#[tokio::test]
async fn a_large_post_body() {
    let fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "")
            + &route("php", "max_body_size = 16777216")),
    )
    .await;
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = {
        let out = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(&body)?;
                child.wait_with_output()
            })
            .expect("md5sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let resp = client::send(
        triage.http,
        Request::post("/upload.php", body).timeout(Duration::from_secs(30)),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), format!("5242880 {digest}"));
}

/// A script whose headers run past 64 KiB: 502 response_headers_too_large.
#[tokio::test]
async fn headers_too_large() {
    let fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "") + &route("php", "")),
    )
    .await;
    let resp = get(&triage, "/bigheader.php").await;
    assert_generated(&resp, 502, "response_headers_too_large", "unknown");
}

/// HTTP sent to php-fpm's port, and FastCGI sent to an HTTP server, are wrong_protocol, each
/// with the fix of the protocol key.
#[tokio::test]
async fn http_and_fastcgi_ports_mixed_up() {
    let fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    let http_server = origin::spawn(Behavior::ok("hello")).await;
    let config = format!(
        "[upstreams.http_to_fpm]\nservers = [\"{}\"]\n\n",
        fpm.pools[0]
    ) + &fastcgi_upstream("fcgi_to_http", http_server.addr, &fpm.root(), "")
        + &host_route("fpm.test", "http_to_fpm")
        + &route("fcgi_to_http", "");
    let triage = Triage::start(&config).await;
    let resp = get_for(&triage, "fpm.test", "/hello.php").await;
    assert_eq!(
        resp.header("x-diagnosis-cause"),
        Some("wrong_protocol"),
        "{resp:?}"
    );
    assert!(
        resp.header("x-diagnosis-hint")
            .is_some_and(|h| h.contains("protocol = \"fastcgi\"")),
        "{resp:?}"
    );
    let resp = get(&triage, "/hello.php").await;
    assert_generated(&resp, 502, "invalid_response", "wrong_protocol");
    assert!(
        resp.header("x-diagnosis-hint")
            .is_some_and(|h| h.contains("protocol = \"http\"")),
        "{resp:?}"
    );
}

/// Health checks of a FastCGI upstream ask as FastCGI: php-fpm's ping.path passes; a check of a
/// missing script (its 404) takes the server out of rotation: 503 no_healthy_upstream, saying
/// why.
#[tokio::test]
async fn health_checks_speak_fastcgi() {
    let fpm = PhpFpm::start(&[pool("www", 2)], SCRIPTS).await;
    let root = fpm.root();
    let check = |path: &str| {
        format!("[upstreams.{{}}.health_check]\npath = \"{path}\"\ninterval = \"100ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n")
    };
    let config = fastcgi_upstream("pinged", fpm.pools[0], &root, "")
        + &check("/ping").replace("{}", "pinged")
        + &fastcgi_upstream("missing", fpm.pools[0], &root, "")
        + &check("/nope.php").replace("{}", "missing")
        + &host_route("missing.test", "missing")
        + &route("pinged", "");
    let triage = Triage::start(&config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&triage, "/hello.php").await.body_text(),
        "hello from php"
    );
    let resp = get_for(&triage, "missing.test", "/hello.php").await;
    assert_generated(&resp, 503, "no_healthy_upstream", "unknown");
    assert!(
        resp.header("x-diagnosis-detail")
            .is_some_and(|d| d.contains("GET /nope.php answered 404")),
        "{resp:?}"
    );
}

/// A body without a length (chunked) is read whole before php-fpm is asked, so PHP gets its
/// CONTENT_LENGTH and all of it; one over max_body_size is 413 before any worker is taken.
#[tokio::test]
async fn a_chunked_body() {
    let fpm = PhpFpm::start(&[pool("www", 1)], SCRIPTS).await;
    let triage = Triage::start(
        &(fastcgi_upstream("php", fpm.pools[0], &fpm.root(), "")
            + &route("php", "max_body_size = 10")),
    )
    .await;
    let chunked = |body: &str| {
        format!(
            "POST /upload.php HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let resp = client::send_raw(
        triage.http,
        chunked("hello").as_bytes(),
        Duration::from_secs(10),
    )
    .await
    .expect("a response");
    assert_eq!(
        resp.body_text(),
        "5 5d41402abc4b2a76b9719d911017c592",
        "{resp:?}"
    );
    let resp = client::send_raw(
        triage.http,
        chunked("far too long a body").as_bytes(),
        Duration::from_secs(10),
    )
    .await
    .expect("a response");
    assert_generated(&resp, 413, "request_body_too_large", "client_error");
}

/// php-fpm on a unix socket, as Debian's `fastcgi_pass unix:/run/php/php8.2-fpm.sock` setups
/// have it: scripts and the front controller answer over `unix:` servers as over TCP; when
/// php-fpm is killed, its socket file stays behind and a request is 502 `socket_refused`, with
/// the cause that the server answered before (not "the path is wrong").
#[tokio::test]
async fn php_fpm_on_a_unix_socket() {
    let mut fpm = PhpFpm::start_on_unix_socket(pool("www", 2), SCRIPTS).await;
    let socket = fpm.socket.clone().expect("a socket");
    let config = format!(
        "[upstreams.php]\nservers = [\"unix:{}\"]\nprotocol = \"fastcgi\"\nroot = \"{}\"\n\n{}",
        socket.display(),
        fpm.root().display(),
        route("php", "")
    );
    let triage = Triage::start(&config).await;
    let hello = get(&triage, "/hello.php").await;
    assert_eq!(
        (hello.status, hello.body_text().as_str()),
        (200, "hello from php"),
        "{hello:?}"
    );
    let routed = get(&triage, "/blog/2024/hello-world?page=2").await;
    assert_eq!(
        routed.body_text(),
        "front controller: /blog/2024/hello-world?page=2 script /index.php",
        "{routed:?}"
    );
    assert_eq!(get(&triage, "/style.css").await.status, 200);

    fpm.stop();
    assert!(socket.exists(), "a killed php-fpm leaves its socket file");
    let down = get(&triage, "/hello.php").await;
    assert_generated(&down, 502, "socket_refused", "app_down");
}
