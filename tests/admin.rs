//! The admin listener answers its operator, not a web page: a request naming another host (DNS
//! rebinding) is refused, a state change needs a request no page can send cross-site, every
//! answer forbids sniffing, framing and caching, and `[admin] token_file` puts a bearer token
//! in front of everything but the probes.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::client::{self, Request};
use support::origin::{self, refused_addr, Behavior};
use support::triage::{single_upstream, temp_dir, triage_binary, Triage};

/// A token for the tests, in the form `openssl rand -hex 16` writes.
const TOKEN: &str = "5f0c2b9de1a8437f9a6b0c1d2e3f4a5b";

async fn admin_get(triage: &Triage, path: &str, headers: &[(&str, &str)]) -> client::Response {
    let request = headers
        .iter()
        .fold(Request::get(path), |request, (name, value)| {
            request.header(name, value)
        });
    client::send(triage.admin, request)
        .await
        .expect("admin answer")
}

/// The id of a failed request, after its report is stored.
async fn failed_request_id(triage: &Triage) -> String {
    let failed = client::get(triage.http, "/").await;
    assert_eq!(failed.status, 502);
    let id = failed.header("x-diagnosis-id").expect("id").to_owned();
    // The report is stored in the logging hook, just after the response left.
    triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    id
}

/// A page whose name the attacker points at 127.0.0.1 sends that name as the Host: 421, and
/// no report. The listener's own address, `localhost` (any port: a tunnel changes it) and the
/// names of `[admin] hosts` are answered.
#[tokio::test]
async fn a_host_that_does_not_name_the_listener_is_refused() {
    let triage = Triage::start(&format!(
        "hosts = [\"triage-admin.test\"]\n{}",
        single_upstream(refused_addr(), "")
    ))
    .await;
    let id = failed_request_id(&triage).await;
    let report = format!("/diagnoses/{id}?format=json");
    let port = triage.admin.port();
    for host in [
        format!("rebind.attacker.example:{port}"),
        "127.0.0.2".to_owned(),
    ] {
        for path in ["/diagnoses", report.as_str(), "/metrics"] {
            let resp = admin_get(&triage, path, &[("Host", &host)]).await;
            assert_eq!(resp.status, 421, "{host} {path}: {resp:?}");
            assert!(!resp.body_text().contains(&id), "{resp:?}");
        }
    }
    for host in [
        triage.admin.to_string(),
        format!("localhost:{port}"),
        "localhost:8000".to_owned(),
        "Triage-Admin.test".to_owned(),
    ] {
        let resp = admin_get(&triage, &report, &[("Host", &host)]).await;
        assert_eq!(resp.status, 200, "{host}: {resp:?}");
        assert!(resp.body_text().contains(&id));
    }
}

/// A cross-site form or `text/plain` POST cannot reload the config (403, and the old config
/// keeps serving); `Content-Type: application/json` or `X-Triage-Admin` can.
#[tokio::test]
async fn a_simple_post_cannot_reload() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    let triage = Triage::start(&single_upstream(a.addr, "")).await;
    std::fs::write(
        triage.config_path(),
        triage.config_text(&single_upstream(b.addr, "")),
    )
    .expect("rewrite config");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = Request::post("/reload", "{}");
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let resp = client::send(triage.admin, request)
            .await
            .expect("admin answer");
        assert_eq!(resp.status, 403, "{content_type:?}: {resp:?}");
    }
    assert_eq!(client::get(triage.http, "/").await.body_text(), "a\n");
    let resp = client::send(
        triage.admin,
        Request::post("/reload", "{}").header("Content-Type", "application/json"),
    )
    .await
    .expect("admin answer");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(client::get(triage.http, "/").await.body_text(), "b\n");
    std::fs::write(
        triage.config_path(),
        triage.config_text(&single_upstream(a.addr, "")),
    )
    .expect("rewrite config");
    let resp = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("admin answer");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(client::get(triage.http, "/").await.body_text(), "a\n");
}

/// Every admin answer (pages, JSON, metrics, probes, errors and refusals) carries nosniff, a
/// CSP that allows only the pages' inline style and no framing, no-store and no-referrer.
#[tokio::test]
async fn every_admin_answer_carries_the_protective_headers() {
    let triage = Triage::start(&single_upstream(refused_addr(), "")).await;
    let id = failed_request_id(&triage).await;
    let report = format!("/diagnoses/{id}");
    let report_json = format!("/diagnoses/{id}?format=json");
    let answers = [
        ("/diagnoses", vec![]),
        (report.as_str(), vec![]),
        (report_json.as_str(), vec![]),
        ("/metrics", vec![]),
        ("/healthz", vec![]),
        ("/nothing-here", vec![]),
        ("/diagnoses", vec![("Host", "attacker.example")]),
    ];
    for (path, headers) in answers {
        let resp = admin_get(&triage, path, &headers).await;
        let csp = resp.header("content-security-policy").unwrap_or("");
        assert!(
            resp.header("x-content-type-options") == Some("nosniff")
                && resp.header("cache-control") == Some("no-store")
                && resp.header("referrer-policy") == Some("no-referrer")
                && csp.starts_with("default-src 'none'; style-src 'unsafe-inline';")
                && csp.contains("frame-ancestors 'none'"),
            "{path} {headers:?}: {resp:?}"
        );
    }
}

/// With `[admin] token_file`, everything but `/healthz` and `/readyz` needs the bearer token
/// (401 and `WWW-Authenticate: Bearer` without it or with a wrong one); the report link still
/// points at the report, which the token opens; `triage reload` reads the token and reloads.
#[tokio::test]
async fn a_token_guards_all_but_the_probes() {
    let dead = refused_addr();
    let dir = temp_dir();
    dir.write_file("admin.token", format!("{TOKEN}\n"));
    let body = |upstream: SocketAddr| {
        format!(
            "token_file = \"admin.token\"\n{}",
            single_upstream(upstream, "")
        )
    };
    let triage = Triage::start_in(dir, &body(dead)).await;
    let failed = client::get(triage.http, "/").await;
    let id = failed.header("x-diagnosis-id").expect("id").to_owned();
    let link = failed.header("x-diagnosis-report").expect("report link");
    assert_eq!(link, format!("http://{}/diagnoses/{id}", triage.admin));
    triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    let report = format!("/diagnoses/{id}");
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/metrics", "/diagnoses", report.as_str()] {
        for authorization in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
            let headers: Vec<_> = authorization
                .map(|a| ("Authorization", a))
                .into_iter()
                .collect();
            let resp = admin_get(&triage, path, &headers).await;
            assert_eq!(resp.status, 401, "{path} {authorization:?}: {resp:?}");
            assert!(
                resp.header("www-authenticate")
                    .is_some_and(|w| w.starts_with("Bearer")),
                "{resp:?}"
            );
            assert!(!resp.body_text().contains(&id));
        }
        let resp = admin_get(&triage, path, &[("Authorization", &bearer)]).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
    }
    let resp = admin_get(&triage, &report, &[("Authorization", &bearer)]).await;
    assert!(resp.body_text().contains(&id));
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(admin_get(&triage, probe, &[]).await.status, 200, "{probe}");
    }
    let unauthenticated = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("admin answer");
    assert_eq!(unauthenticated.status, 401);

    let app = origin::spawn(Behavior::ok("app\n")).await;
    std::fs::write(triage.config_path(), triage.config_text(&body(app.addr)))
        .expect("rewrite config");
    let out = Command::new(triage_binary())
        .arg("reload")
        .arg("-c")
        .arg(triage.config_path())
        .output()
        .expect("triage reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client::get(triage.http, "/").await.body_text(), "app\n");
}
