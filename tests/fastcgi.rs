//! FastCGI upstreams against a real php-fpm on loopback: what a client of triage gets when PHP
//! answers, exits, fails, sleeps, dies, or is not there, and the front controller WordPress,
//! Laravel and Symfony need.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::{self, Request, Response};
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
    (
        "sleep.php",
        "<?php sleep((int)($_GET['s'] ?? 3)); echo 'slept';\n",
    ),
    (
        "die.php",
        r#"<?php
if (isset($_GET['flush'])) { header('Content-Type: text/plain'); echo str_repeat('x', 1000); flush(); }
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
    ("admin/index.php", "<?php echo 'admin index';\n"),
];

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

async fn get(triage: &Triage, path: &str) -> Response {
    client::get(triage.http, path).await
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
    let config = fastcgi_upstream("php", fpm.pools[0], &root, "params = { APP_ENV = \"test\" }")
        + &route("php", "");
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
    assert_eq!(params["HTTP_X_CUSTOM"], "custom value", "the underscore header is not sent");
    assert_eq!(params["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert_eq!(params["HTTP_X_REQUEST_ID"], resp.header("x-diagnosis-id").expect("id"));
    assert_eq!(params["APP_ENV"], "test");
    assert_eq!(params["HTTPS"], serde_json::Value::Null);
    assert_eq!(params["HTTP_PROXY"], serde_json::Value::Null, "httpoxy");
    let access = triage
        .wait_for_output("\"GET /params.php HTTP/1.1\" 200", Duration::from_secs(5))
        .await;
    assert!(access.contains("upstream=php"), "{access}");
}
