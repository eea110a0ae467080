//! Deploy markers: a deploy script records one with `POST /deploys` on the admin listener or
//! with `triage deployed`, and `GET /deploys` lists them. The admin listener's protections
//! hold for it (Host, non-simple request, token); the body is checked against the running
//! config; the markers outlive a reload and stay bounded in number.

mod support;

use std::process::{Command, Output};
use std::time::Duration;
use support::client::{self, Request};
use support::origin::refused_addr;
use support::triage::{
    check_config_command, config_text, free_loopback_addrs, single_upstream, temp_dir,
    triage_binary, Triage,
};

/// A token for the tests, in the form `openssl rand -hex 16` writes.
const TOKEN: &str = "8d3e1f0a2b4c46e9a7f5b3c1d0e2f4a6";

/// Two upstreams, `app` (behind `/`) and `api`, neither of which needs to be up.
fn two_upstreams() -> String {
    let (app, api) = (refused_addr(), refused_addr());
    format!(
        "[upstreams.app]\nservers = [\"{app}\"]\n[upstreams.api]\nservers = [\"{api}\"]\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    )
}

/// triage with [`two_upstreams`] and `[admin] token_file` holding [`TOKEN`].
async fn start_with_token() -> Triage {
    let dir = temp_dir();
    dir.write_file("admin.token", format!("{TOKEN}\n"));
    let body = format!("token_file = \"admin.token\"\n{}", two_upstreams());
    Triage::start_in(dir, &body).await
}

/// `POST /deploys` with a JSON body, as a deploy script sends it.
async fn post_deploy(triage: &Triage, body: &str) -> client::Response {
    client::send(
        triage.admin,
        Request::post("/deploys", body).header("Content-Type", "application/json"),
    )
    .await
    .expect("admin answer")
}

/// `GET /deploys?format=json`, parsed.
async fn deploys(triage: &Triage) -> serde_json::Value {
    let resp = client::get(triage.admin, "/deploys?format=json").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {resp:?}"))
}

/// The versions `GET /deploys` lists, newest first.
async fn listed_versions(triage: &Triage) -> Vec<String> {
    deploys(triage).await["deploys"]
        .as_array()
        .expect("deploys")
        .iter()
        .map(|d| d["version"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The value of the `triage_deploys_total` series of `upstream`, if it is exposed.
async fn deploys_counted(triage: &Triage, upstream: &str) -> Option<f64> {
    let metrics = client::get(triage.admin, "/metrics").await.body_text();
    let series = format!("triage_deploys_total{{upstream=\"{upstream}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
}

/// `triage deployed -c FILE ARGS...` against the config of a running triage.
fn deployed(triage: &Triage, args: &[&str]) -> Output {
    Command::new(triage_binary())
        .arg("deployed")
        .arg("-c")
        .arg(triage.config_path())
        .args(args)
        .output()
        .expect("run triage deployed")
}

/// Whether `time` is RFC 3339 UTC with milliseconds, as the reports' times are.
fn is_rfc3339_millis(time: &str) -> bool {
    let shape = time.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    time.len() == 24 && shape
}

/// A marker for one upstream and one for all of them are answered 201 with the marker as
/// recorded, listed newest first as JSON (exactly `{"deploys": [{"upstream", "version",
/// "time"}]}`, `upstream` null for all) and as an HTML page, logged, and counted by upstream
/// (`"*"` for all; an upstream without deploys at 0).
#[tokio::test]
async fn a_marker_is_recorded_listed_logged_and_counted() {
    let triage = Triage::start(&two_upstreams()).await;
    assert_eq!(deploys(&triage).await, serde_json::json!({ "deploys": [] }));
    assert_eq!(deploys_counted(&triage, "app").await, Some(0.0));

    let first = post_deploy(&triage, r#"{"upstream": "app", "version": "v1.4.2"}"#).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.header("content-type"), Some("application/json"));
    let recorded: serde_json::Value = serde_json::from_slice(&first.body).expect("JSON");
    assert_eq!(recorded["upstream"], "app");
    assert_eq!(recorded["version"], "v1.4.2");
    let time = recorded["time"].as_str().unwrap_or("").to_owned();
    assert!(is_rfc3339_millis(&time), "{recorded}");
    let second = post_deploy(&triage, r#"{"version": "site-7"}"#).await;
    assert_eq!(second.status, 201, "{second:?}");
    let empty = client::send(
        triage.admin,
        Request::new("POST", "/deploys").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("admin answer");
    assert_eq!(empty.status, 201, "{empty:?}");

    let listed = client::get(triage.admin, "/deploys?format=json").await;
    let text = listed.body_text();
    assert!(
        text.starts_with(r#"{"deploys":[{"upstream":null,"version":"unknown","time":""#),
        "{text}"
    );
    let listed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let markers = listed["deploys"].as_array().expect("deploys");
    assert_eq!(markers.len(), 3, "{listed}");
    assert_eq!(markers[1]["upstream"], serde_json::Value::Null);
    assert_eq!(markers[1]["version"], "site-7");
    assert_eq!(markers[2], recorded);
    for marker in markers {
        let keys: Vec<&str> = marker
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["upstream", "version", "time"], "{marker}");
    }

    let page = client::get(triage.admin, "/deploys").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.body_text();
    let row = format!(
        "<tr><td class=\"mono\">{time}</td><td>app</td><td class=\"mono\">v1.4.2</td></tr>"
    );
    assert!(html.contains(&row), "{html}");
    assert!(
        html.contains("<td><em>all</em></td><td class=\"mono\">site-7</td>"),
        "{html}"
    );
    assert!(
        html.find("site-7") < html.find("v1.4.2"),
        "newest first: {html}"
    );

    triage
        .wait_for_output(
            "deploy marker recorded upstream=\"app\" version=\"v1.4.2\"",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(deploys_counted(&triage, "app").await, Some(1.0));
    assert_eq!(deploys_counted(&triage, "*").await, Some(2.0));
    assert_eq!(deploys_counted(&triage, "api").await, Some(0.0));
}

/// An upstream the running config lacks is 422, naming the upstreams it has; a body that is
/// not the expected object is 400, one over 4 KiB 413; none of them records anything.
#[tokio::test]
async fn an_unknown_upstream_or_a_bad_body_is_refused() {
    let triage = Triage::start(&two_upstreams()).await;
    let unknown = post_deploy(&triage, r#"{"upstream": "web", "version": "v2"}"#).await;
    assert_eq!(unknown.status, 422, "{unknown:?}");
    assert_eq!(
        unknown.body_text(),
        "no upstream `web` in the running config; its upstreams: app, api (leave `upstream` \
         out for all of them)\n"
    );
    let long = format!(r#"{{"version": "{}"}}"#, "9".repeat(129));
    for (body, said) in [
        ("v2", "the body must be a JSON object"),
        ("[\"app\", \"v2\"]", "the body must be a JSON object"),
        (
            r#"{"upstream": ["app"]}"#,
            "`upstream` must be a string or null",
        ),
        (r#"{"version": 2}"#, "`version` must be a string or null"),
        (
            r#"{"version": "v2", "upstreams": "app"}"#,
            "unknown key `upstreams`",
        ),
        (
            r#"{"version": "v2\r\nX-Injected: 1"}"#,
            "`version` must be visible ASCII",
        ),
        (
            r#"{"version": "two words"}"#,
            "`version` must be visible ASCII",
        ),
        (&long, "`version` is longer than 128 bytes"),
    ] {
        let resp = post_deploy(&triage, body).await;
        assert_eq!(resp.status, 400, "{body}: {resp:?}");
        assert!(resp.body_text().starts_with(said), "{body}: {resp:?}");
    }
    let padded = format!(r#"{{"version": "v2"}}{}"#, " ".repeat(4096));
    let large = post_deploy(&triage, &padded).await;
    assert_eq!(large.status, 413, "{large:?}");
    assert_eq!(listed_versions(&triage).await, Vec::<String>::new());
    assert_eq!(deploys_counted(&triage, "*").await, Some(0.0));
}

/// A cross-site form or `text/plain` POST records no marker (403); with `[admin] token_file`
/// a marker needs the token (401 without it), and a Host naming another server gets 421.
#[tokio::test]
async fn only_the_operator_can_record_a_marker() {
    let triage = start_with_token().await;
    let bearer = format!("Bearer {TOKEN}");
    let body = r#"{"upstream": "app", "version": "v1"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = Request::post("/deploys", body).header("Authorization", &bearer);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let resp = client::send(triage.admin, request).await.expect("answer");
        assert_eq!(resp.status, 403, "{content_type:?}: {resp:?}");
    }
    let json = |request: Request| request.header("Content-Type", "application/json");
    let unauthenticated = client::send(triage.admin, json(Request::post("/deploys", body)))
        .await
        .expect("answer");
    assert_eq!(unauthenticated.status, 401, "{unauthenticated:?}");
    let rebound = client::send(
        triage.admin,
        json(Request::post("/deploys", body))
            .header("Authorization", &bearer)
            .header("Host", "deploys.attacker.example"),
    )
    .await
    .expect("answer");
    assert_eq!(rebound.status, 421, "{rebound:?}");
    let listed = client::send(
        triage.admin,
        Request::get("/deploys?format=json").header("Authorization", &bearer),
    )
    .await
    .expect("answer");
    assert_eq!(listed.body_text(), r#"{"deploys":[]}"#);
    let accepted = client::send(
        triage.admin,
        json(Request::post("/deploys", body)).header("Authorization", &bearer),
    )
    .await
    .expect("answer");
    assert_eq!(accepted.status, 201, "{accepted:?}");
}

/// `triage deployed` reads the admin address and the token from the config, records the
/// marker and prints it; without `--upstream` it is for all upstreams, without `--version`
/// unknown; an upstream the running triage lacks fails non-zero, saying why.
#[tokio::test]
async fn triage_deployed_records_a_marker() {
    let triage = start_with_token().await;
    let out = deployed(&triage, &["--upstream", "api", "--version", "3f9c1a7"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("the marker, as JSON");
    assert_eq!(printed["upstream"], "api");
    assert_eq!(printed["version"], "3f9c1a7");

    let out = deployed(&triage, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the marker, as JSON");
    assert_eq!(printed["upstream"], serde_json::Value::Null);
    assert_eq!(printed["version"], "unknown");

    let out = deployed(&triage, &["--upstream", "web", "--version", "v9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("triage: no deploy marker recorded: the admin listener answered 422: ")
            && stderr.contains("its upstreams: app, api"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let listed = client::send(
        triage.admin,
        Request::get("/deploys?format=json").header("Authorization", &format!("Bearer {TOKEN}")),
    )
    .await
    .expect("answer");
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
    let versions: Vec<_> = listed["deploys"]
        .as_array()
        .expect("deploys")
        .iter()
        .map(|d| (d["upstream"].clone(), d["version"].clone()))
        .collect();
    assert_eq!(
        versions,
        [
            (serde_json::Value::Null, "unknown".into()),
            ("api".into(), "3f9c1a7".into())
        ]
    );
}

/// With no triage on the config's admin address, or with an invalid config, `triage
/// deployed` exits non-zero and says why.
#[test]
fn triage_deployed_fails_without_a_listener() {
    let addrs = free_loopback_addrs(1);
    let config = config_text(
        addrs[0],
        refused_addr(),
        &single_upstream(refused_addr(), ""),
    );
    let out = check_config_command(&config, |path| {
        let mut command = Command::new(triage_binary());
        command
            .arg("deployed")
            .arg("-c")
            .arg(path)
            .args(["--version", "v1"]);
        command
    });
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "triage: no deploy marker recorded: cannot reach the admin listener at 127.0.0.1:"
        ),
        "{stderr}"
    );

    let out = check_config_command("[listen]\nhttp = [\"nowhere\"]\n", |path| {
        let mut command = Command::new(triage_binary());
        command.arg("deployed").arg("-c").arg(path);
        command
    });
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has errors") && stderr.ends_with("triage: no deploy marker recorded\n"),
        "{stderr}"
    );
}

/// A reload replaces the upstreams, not the markers: they are still listed after it, and a
/// marker is checked against the reloaded config (a new upstream is accepted, a removed one
/// refused).
#[tokio::test]
async fn markers_survive_a_reload() {
    let triage = Triage::start(&single_upstream(refused_addr(), "")).await;
    assert_eq!(
        post_deploy(&triage, r#"{"upstream": "app", "version": "v1"}"#)
            .await
            .status,
        201
    );
    std::fs::write(
        triage.config_path(),
        triage.config_text(
            &two_upstreams()
                .replace("[upstreams.app]", "[upstreams.web]")
                .replace("upstream = \"app\"", "upstream = \"web\""),
        ),
    )
    .expect("rewrite config");
    let reloaded = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answer");
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(listed_versions(&triage).await, ["v1"]);
    assert_eq!(
        post_deploy(&triage, r#"{"upstream": "web", "version": "v2"}"#)
            .await
            .status,
        201
    );
    let removed = post_deploy(&triage, r#"{"upstream": "app", "version": "v3"}"#).await;
    assert_eq!(removed.status, 422, "{removed:?}");
    assert!(
        removed.body_text().contains("its upstreams: web, api"),
        "{removed:?}"
    );
    assert_eq!(listed_versions(&triage).await, ["v2", "v1"]);
}

/// The log keeps the last 256 markers: after 260, the four oldest are gone, newest first.
#[tokio::test]
async fn the_markers_are_bounded() {
    let triage = Triage::start(&single_upstream(refused_addr(), "")).await;
    for i in 0..260 {
        let resp = post_deploy(&triage, &format!(r#"{{"version": "v{i}"}}"#)).await;
        assert_eq!(resp.status, 201, "{i}: {resp:?}");
    }
    let versions = listed_versions(&triage).await;
    let expected: Vec<String> = (4..260).rev().map(|i| format!("v{i}")).collect();
    assert_eq!(versions, expected);
    assert_eq!(deploys_counted(&triage, "*").await, Some(260.0));
}
