//! Hot reload: a valid config takes effect for new requests without failing any request in
//! flight; an invalid one is refused, its errors reported, and the old config keeps serving.
//! What is known of the servers outlives a reload: one failing during an outage stays out of
//! rotation, and a hostname keeps its address.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use support::client::{self, Request, Response};
use support::dns::spawn_dns;
use support::origin::{self, refused_addr, Behavior};
use support::triage::{metric_becomes, single_upstream, triage_binary, Triage};

fn body_for(upstream: SocketAddr) -> String {
    single_upstream(upstream, "")
}

/// Rewrites triage's config file with `body` after its listeners.
fn rewrite_config(triage: &Triage, body: &str) {
    std::fs::write(triage.config_path(), triage.config_text(body)).expect("rewrite config");
}

/// `POST /reload` on the admin listener, which must succeed.
async fn admin_reload(triage: &Triage) -> Response {
    let resp = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answer");
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    resp
}

/// The bodies (or diagnoses, for failures) of `count` requests in a row.
async fn answers(triage: &Triage, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..count {
        let resp = client::get(triage.http, "/").await;
        seen.push(match resp.header("x-diagnosis") {
            Some(diagnosis) => diagnosis.to_owned(),
            None => resp.body_text(),
        });
    }
    seen
}

async fn body_eventually(triage: &Triage, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = client::get(triage.http, "/").await.body_text();
        if body == want || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGHUP reloads the config, as with nginx: new requests go to the new upstream.
#[tokio::test]
async fn sighup_applies_a_new_config() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    let triage = Triage::start(&body_for(a.addr)).await;
    assert_eq!(client::get(triage.http, "/").await.body_text(), "a\n");
    rewrite_config(&triage, &body_for(b.addr));
    let status = Command::new("kill")
        .args(["-HUP", &triage.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    triage
        .wait_for_output("config reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(body_eventually(&triage, "b\n").await, "b\n");
}

/// Reloads back and forth under steady load: not one request fails.
#[tokio::test]
async fn reload_under_load_fails_nothing() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    let triage = Triage::start(&body_for(a.addr)).await;
    let http = triage.http;
    let load: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..150 {
                    let resp = client::send(http, Request::get("/")).await;
                    statuses.push(resp.map(|r| r.status).unwrap_or(0));
                }
                statuses
            })
        })
        .collect();
    for round in 0..6 {
        let upstream = if round % 2 == 0 { b.addr } else { a.addr };
        rewrite_config(&triage, &body_for(upstream));
        let resp = client::send(
            triage.admin,
            Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
        )
        .await
        .expect("reload answer");
        assert_eq!(resp.status, 200, "{}", resp.body_text());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut total = 0;
    for task in load {
        let statuses = task.await.expect("load task");
        total += statuses.len();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    assert_eq!(total, 600);
    assert!(a.requests() > 0 && b.requests() > 0);
}

/// An invalid config is refused with its errors (and their positions), by `triage reload` and
/// by the admin endpoint, and the running config keeps serving.
#[tokio::test]
async fn invalid_reload_keeps_the_old_config() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let triage = Triage::start(&body_for(a.addr)).await;
    rewrite_config(
        &triage,
        "[upstreams.app]\nservers = [\"not an address\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
    );
    let out = Command::new(triage_binary())
        .arg("reload")
        .arg("-c")
        .arg(triage.config_path())
        .output()
        .expect("triage reload");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":7:12: servers:"), "{stderr}");
    let resp = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answer");
    assert_eq!(resp.status, 400);
    assert!(resp.body_text().contains("running config is unchanged"));
    triage
        .wait_for_output("reload refused", Duration::from_secs(5))
        .await;
    assert_eq!(client::get(triage.http, "/").await.body_text(), "a\n");
}

/// `triage reload` applies a valid config and says so.
#[tokio::test]
async fn reload_command_applies_a_valid_config() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    let triage = Triage::start(&body_for(a.addr)).await;
    rewrite_config(&triage, &body_for(b.addr));
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    assert_eq!(body_eventually(&triage, "b\n").await, "b\n");
}

/// The report ring and its link stay as the process started: a reload that turns the ring on
/// (max_count 0 -> 10) or moves report_url says both need a restart, and failures still carry
/// no link to a ring that keeps nothing.
#[tokio::test]
async fn reload_keeps_the_report_ring_and_its_link() {
    let dead = refused_addr();
    let body = single_upstream(dead, "");
    let triage = Triage::start(&format!("[reports]\nmax_count = 0\n{body}")).await;
    rewrite_config(
        &triage,
        &format!(
            "[reports]\nmax_count = 10\n[diagnosis]\nreport_url = \"https://support.example/r\"\n{body}"
        ),
    );
    let resp = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answer");
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    let said = resp.body_text();
    assert!(
        said.contains("not applied until restart: [reports]")
            && said.contains("not applied until restart: [diagnosis] report_url"),
        "{said}"
    );
    let failed = client::get(triage.http, "/").await;
    assert_eq!(failed.header("x-diagnosis"), Some("connect_refused"));
    assert_eq!(failed.header("x-diagnosis-report"), None);
}

/// A reload raising an upstream's retries above what the process started with (Pingora fixes its
/// bound on attempts at start) is refused, saying why and what to do, and the old config serves.
#[tokio::test]
async fn reload_raising_retries_past_the_start_bound_is_refused() {
    let a = origin::spawn(Behavior::ok("a\n")).await;
    let b = origin::spawn(Behavior::ok("b\n")).await;
    let triage = Triage::start(&body_for(a.addr)).await;
    rewrite_config(&triage, &single_upstream(b.addr, "retries = 3"));
    let resp = client::send(
        triage.admin,
        Request::new("POST", "/reload").header("X-Triage-Admin", "1"),
    )
    .await
    .expect("reload answer");
    assert_eq!(resp.status, 400, "{}", resp.body_text());
    let said = resp.body_text();
    assert!(
        said.contains("running config is unchanged")
            && said.contains("[upstreams.app] retries = 3: more retries than the 1")
            && said.contains("restart triage"),
        "{said}"
    );
    triage
        .wait_for_output("reload refused", Duration::from_secs(5))
        .await;
    assert_eq!(client::get(triage.http, "/").await.body_text(), "a\n");
}

/// A reload during an outage keeps a server that failed its health checks out of rotation:
/// after `POST /reload` of a slightly changed config (another weight, a higher
/// unhealthy_threshold that one more failed check does not reach), every request still lands
/// on the good server and the dead one's healthy gauge stays 0. (Rebuilt, its state started
/// up again, and a request went to it.)
#[tokio::test]
async fn reload_keeps_a_server_down_by_its_checks_out_of_rotation() {
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let dead = refused_addr();
    let config = |weight: u32, unhealthy: u32| {
        format!(
            "[upstreams.app]\nservers = [\"{} weight={weight}\", \"{dead}\"]\nretries = 0\nmax_fails = 0\n\
             [upstreams.app.health_check]\ninterval = \"1h\"\nunhealthy_threshold = {unhealthy}\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
            good.addr
        )
    };
    let triage = Triage::start(&config(1, 1)).await;
    let gauge = format!("triage_upstream_server_healthy{{server=\"{dead}\",upstream=\"app\"}}");
    assert!(
        metric_becomes(&triage, &gauge, "0", Duration::from_secs(5)).await,
        "the dead server never failed its check"
    );
    rewrite_config(&triage, &config(2, 3));
    admin_reload(&triage).await;
    assert_eq!(answers(&triage, 6).await, vec!["good\n"; 6]);
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_millis(100)).await);
}

/// A reload during an outage keeps a server ejected by passive failures (max_fails) out of
/// rotation for the rest of its fail_timeout: after SIGHUP with the config unchanged, requests
/// all reach the good server, and the ejected one's healthy gauge stays 0.
#[tokio::test]
async fn reload_keeps_an_ejected_server_out_of_rotation() {
    let good = origin::spawn(Behavior::ok("good\n")).await;
    let dead = refused_addr();
    let config = format!(
        "[upstreams.app]\nservers = [\"{dead}\", \"{}\"]\nretries = 0\nmax_fails = 1\nfail_timeout = \"1h\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        good.addr
    );
    let triage = Triage::start(&config).await;
    assert_eq!(
        answers(&triage, 3).await,
        ["connect_refused", "good\n", "good\n"]
    );
    let gauge = format!("triage_upstream_server_healthy{{server=\"{dead}\",upstream=\"app\"}}");
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_secs(2)).await);
    triage.signal("HUP");
    triage
        .wait_for_output("config reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(answers(&triage, 6).await, vec!["good\n"; 6]);
    assert!(metric_becomes(&triage, &gauge, "0", Duration::from_millis(100)).await);
}

/// A reload keeps what the resolver knows: a hostname that resolved keeps its address when
/// its DNS record is gone by the time of the reload (the new config's first refresh fails and
/// keeps the last answer), instead of every request getting dns_error.
#[tokio::test]
async fn reload_keeps_the_dns_answers() {
    let app = origin::spawn(Behavior::ok("resolved\n")).await;
    let dns = spawn_dns(HashMap::from([(
        "app.test".to_owned(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]))
    .await;
    let config = format!(
        "[resolver]\nnameservers = [\"{}\"]\nrefresh = \"1h\"\n[upstreams.app]\nservers = [\"app.test:{}\"]\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        dns.addr,
        app.addr.port()
    );
    let triage = Triage::start(&config).await;
    assert_eq!(answers(&triage, 1).await, ["resolved\n"]);
    dns.remove("app.test");
    let queries = dns.queries_for("app.test");
    admin_reload(&triage).await;
    // The reloaded config's refresh asks again, and hears the name is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while dns.queries_for("app.test") == queries && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    triage
        .wait_for_output("keeping the last answer", Duration::from_secs(5))
        .await;
    assert_eq!(answers(&triage, 3).await, vec!["resolved\n"; 3]);
}
