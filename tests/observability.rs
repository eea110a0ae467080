//! What an operator sees: exact metric deltas after real failures, a valid exposition for
//! Prometheus, and a report behind every failure id, redacted and bounded.

mod support;

use std::process::Command;
use std::time::Duration;
use support::client::{self, Request};
use support::origin::{self, refused_addr, Behavior};
use support::triage::{single_upstream, Triage};
use tokio::io::AsyncWriteExt;

/// Scrapes `/metrics`.
async fn scrape(triage: &Triage) -> String {
    let resp = client::get(triage.admin, "/metrics").await;
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    resp.body_text()
}

/// Scrapes until `ready` holds (the counting happens in Pingora's logging hook, just after the
/// response went out), for at most 5 s; returns the last scrape either way, for exact asserts.
async fn scrape_when(triage: &Triage, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(triage).await;
        if ready(&m) || tokio::time::Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches an admin page until it answers 200 (the report is stored in the logging hook, just
/// after the response), for at most 5 s.
async fn admin_page(triage: &Triage, path: &str) -> client::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client::get(triage.admin, path).await;
        if resp.status == 200 || tokio::time::Instant::now() > deadline {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the series `name` whose labels include all of `labels` (0 when absent).
fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (series_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// The JSON report of request `id`, after checking its HTML page is served too.
async fn report_json(triage: &Triage, id: &str) -> serde_json::Value {
    admin_page(triage, &format!("/diagnoses/{id}")).await;
    let resp = client::send(
        triage.admin,
        Request::get(&format!("/diagnoses/{id}")).header("Accept", "application/json"),
    )
    .await
    .expect("report");
    assert_eq!(resp.status, 200);
    let report: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    assert_eq!(report["id"], id);
    report
}

/// After N requests to a dead upstream, the failure counter rose by exactly N, triage's 502s are
/// counted as the proxy's, the report of the first shows its attempt, and the report of a later
/// one (answered from that refusal, within the hold-off) says no connect was made.
#[tokio::test]
async fn refused_requests_are_counted_and_reported() {
    const N: usize = 7;
    let dead = refused_addr();
    // A hold-off longer than the test, so every request after the first is answered from the
    // first refusal, however slow the machine.
    let triage = Triage::start(&single_upstream(dead, "refused_holdoff = \"60s\"")).await;
    let failures = |m: &str| {
        metric(
            m,
            "triage_upstream_failures_total",
            &[
                ("upstream", "app"),
                ("diagnosis", "connect_refused"),
                ("phase", "connect"),
            ],
        )
    };
    let before = scrape(&triage).await;
    let mut ids = Vec::new();
    for _ in 0..N {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 502);
        ids.push(resp.header("x-diagnosis-id").expect("id").to_owned());
    }
    let after = scrape_when(&triage, |m| failures(m) - failures(&before) >= N as f64).await;
    assert_eq!(failures(&after) - failures(&before), N as f64);
    let proxy_502 = [
        ("route", "/"),
        ("upstream", "app"),
        ("code", "502"),
        ("source", "proxy"),
    ];
    assert_eq!(
        metric(&after, "triage_requests_total", &proxy_502)
            - metric(&before, "triage_requests_total", &proxy_502),
        N as f64
    );
    assert_eq!(metric(&after, "triage_diagnoses_stored", &[]), N as f64);

    let held_off = report_json(&triage, &ids[3]).await;
    assert_eq!(held_off["diagnosis"], "connect_refused");
    assert_eq!(held_off["attempts"].as_array().map(Vec::len), Some(0));
    let detail = held_off["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(&format!("not connected: {dead} refused a connection ")),
        "{detail}"
    );

    let report = report_json(&triage, &ids[0]).await;
    assert_eq!(report["diagnosis"], "connect_refused");
    assert_eq!(report["phase"], "connect");
    assert_eq!(report["source"], "proxy");
    assert_eq!(report["status"], 502);
    assert_eq!(report["upstream"], "app");
    assert_eq!(report["route"], "/");
    assert_eq!(report["method"], "GET");
    let attempts = report["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["address"], dead.to_string());
    assert_eq!(attempts[0]["diagnosis"], "connect_refused");
    assert_eq!(attempts[0]["detail"], "Connection refused (os error 111)");
    assert_eq!(attempts[0]["reused_connection"], false);
    for key in ["time", "host", "path", "headers", "hint", "total_ms"] {
        assert!(!report[key].is_null(), "report lacks {key}: {report}");
    }
    // The same report as HTML, readable at a glance.
    let page = client::get(triage.admin, &format!("/diagnoses/{}", ids[0])).await;
    assert!(page.body_text().contains("connect_refused"));
    assert!(page.body_text().contains(&dead.to_string()));
}

/// A 502 the app sent and a 502 triage generated are never counted together.
#[tokio::test]
async fn app_502_and_proxy_502_are_separate_series() {
    let app = origin::spawn(Behavior::respond(502, "app says bad gateway")).await;
    let dead = refused_addr();
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[upstreams.dead]\nservers = [\"{dead}\"]\n[[routes]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    assert_eq!(client::get(triage.http, "/").await.status, 502);
    assert_eq!(client::get(triage.http, "/dead").await.status, 502);
    let m = scrape_when(&triage, |m| {
        metric(m, "triage_requests_total", &[("code", "502")]) >= 2.0
    })
    .await;
    assert_eq!(
        metric(
            &m,
            "triage_requests_total",
            &[("upstream", "app"), ("code", "502"), ("source", "upstream")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "triage_requests_total",
            &[("upstream", "dead"), ("code", "502"), ("source", "proxy")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "triage_upstream_failures_total",
            &[("upstream", "app"), ("diagnosis", "upstream_status")]
        ),
        1.0
    );
}

/// Body-phase failures are counted too, with their phase.
#[tokio::test]
async fn body_failures_are_counted() {
    let app = origin::spawn(Behavior::BodyReset {
        announced: 50_000,
        sent: 100,
    })
    .await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::get(triage.http, "/").await;
    assert!(!resp.complete);
    triage
        .wait_for_output("diagnosis=body_reset", Duration::from_secs(5))
        .await;
    let m = scrape(&triage).await;
    assert_eq!(
        metric(
            &m,
            "triage_upstream_failures_total",
            &[("diagnosis", "body_reset"), ("phase", "response_body")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "triage_requests_total",
            &[("code", "200"), ("source", "upstream")]
        ),
        1.0
    );
}

/// A client that gives up while the app is stuck is counted as client_closed and logged as 499.
#[tokio::test]
async fn client_closed_is_counted_as_499() {
    let app = origin::spawn(Behavior::Stall).await;
    let triage = Triage::start(&single_upstream(app.addr, "read_timeout = \"5s\"")).await;
    let mut stream = tokio::net::TcpStream::connect(triage.http)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /waiting HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    let line = triage
        .wait_for_output("diagnosis=client_closed", Duration::from_secs(5))
        .await;
    assert!(line.contains("\" 499 "), "{line}");
    let m = scrape(&triage).await;
    assert_eq!(
        metric(&m, "triage_client_closed_total", &[("route", "/")]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "triage_requests_total",
            &[("code", "499"), ("source", "proxy")]
        ),
        1.0
    );
}

/// Connect time, time to response headers and request duration land in per-upstream histograms.
#[tokio::test]
async fn latency_histograms() {
    let app = origin::spawn(Behavior::ok("ok")).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    for _ in 0..3 {
        assert_eq!(client::get(triage.http, "/").await.status, 200);
    }
    let m = scrape_when(&triage, |m| {
        metric(m, "triage_request_duration_seconds_count", &[]) >= 3.0
    })
    .await;
    let count = |name: &str| metric(&m, name, &[("upstream", "app")]);
    assert_eq!(count("triage_request_duration_seconds_count"), 3.0);
    assert_eq!(count("triage_upstream_response_seconds_count"), 3.0);
    assert!(count("triage_upstream_connect_seconds_count") >= 1.0);
    assert_eq!(metric(&m, "triage_build_info", &[]), 1.0);
}

/// The real exposition passes `promtool check metrics` without a warning.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let dead = refused_addr();
    let triage = Triage::start(&single_upstream(dead, "")).await;
    client::get(triage.http, "/").await;
    let exposition = scrape(&triage).await;
    let file = triage.write_file("metrics.txt", &exposition);
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("run sh");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool (installed by scripts/setup.sh) complained:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Query strings and credentials never reach a report; the trusted client gets a link to it.
#[tokio::test]
async fn reports_are_redacted_and_linked() {
    let dead = refused_addr();
    let triage = Triage::start(&single_upstream(dead, "")).await;
    let resp = client::send(
        triage.http,
        Request::get("/login?password=hunter2")
            .header("Authorization", "Bearer s3cret-token")
            .header("Cookie", "session=abc123"),
    )
    .await
    .expect("response");
    let link = resp.header("x-diagnosis-report").expect("report link");
    let id = resp.header("x-diagnosis-id").expect("id");
    assert_eq!(
        link,
        format!("http://{}/diagnoses/{id}", triage.admin).as_str()
    );
    let report = admin_page(&triage, &format!("/diagnoses/{id}?format=json")).await;
    let text = report.body_text();
    for secret in ["hunter2", "s3cret-token", "abc123"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["path"], "/login?[redacted]");
    assert_eq!(json["headers"]["authorization"], "[redacted]");
    assert_eq!(json["headers"]["cookie"], "[redacted]");
}

/// Header values are kept by allow-list: API keys, cloud tokens and session ids under names no
/// deny-list knows are redacted, in the report as JSON and as HTML; a Referer keeps only where
/// it points, and path parameters (`;jsessionid=`) lose their values, in the report and in the
/// access log; harmless headers stay readable.
#[tokio::test]
async fn reports_and_the_access_log_keep_no_secrets() {
    let dead = refused_addr();
    let triage = Triage::start(&single_upstream(dead, "")).await;
    let secrets = [
        "k-api-0451",
        "t-access-0452",
        "FwoGZXIvYXdzE-0453",
        "AIzaSy-0454",
        "sess-0455",
        "code-0456",
        "jsess-0457",
    ];
    let resp = client::send(
        triage.http,
        Request::get("/x;jsessionid=jsess-0457/y?token=1")
            .header("api-key", secrets[0])
            .header("x-access-token", secrets[1])
            .header("X-Amz-Security-Token", secrets[2])
            .header("x-goog-api-key", secrets[3])
            .header("x-session-id", secrets[4])
            .header("Referer", "http://a.example/cb;s=1?code=code-0456")
            .header("User-Agent", "probe/1.0")
            .header("X-Request-Id", "req-42"),
    )
    .await
    .expect("response");
    assert_eq!(resp.status, 502);
    let id = resp.header("x-diagnosis-id").expect("id").to_owned();
    let report = admin_page(&triage, &format!("/diagnoses/{id}?format=json")).await;
    assert_eq!(report.status, 200);
    let html = client::get(triage.admin, &format!("/diagnoses/{id}")).await;
    let log = triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    for (what, text) in [
        ("the JSON report", report.body_text()),
        ("the HTML report", html.body_text()),
        ("the access log", log.clone()),
    ] {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {what}:\n{text}"
            );
        }
    }
    let json: serde_json::Value = serde_json::from_slice(&report.body).expect("JSON");
    assert_eq!(json["path"], "/x;jsessionid=[redacted]/y?[redacted]");
    let headers = &json["headers"];
    for name in [
        "api-key",
        "x-access-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "x-session-id",
    ] {
        assert_eq!(headers[name], "[redacted]", "{name}: {json}");
    }
    assert_eq!(
        headers["referer"],
        "http://a.example/cb;s=[redacted]?[redacted]"
    );
    assert_eq!(headers["user-agent"], "probe/1.0");
    assert_eq!(headers["x-request-id"], "req-42");
    let line = log
        .lines()
        .find(|l| l.contains(&format!("id={id}")))
        .expect("the access line");
    assert!(
        line.contains("\"GET /x;jsessionid=[redacted]/y HTTP/1.1\" 502 ")
            && line.contains("\"http://a.example/cb;s=[redacted]?[redacted]\" \"probe/1.0\""),
        "{line}"
    );
}

/// The ring keeps at most max_count reports, newest first, counts the ones it evicts, and can
/// be filtered.
#[tokio::test]
async fn report_ring_is_bounded_and_filterable() {
    let dead = refused_addr();
    let app = origin::spawn(Behavior::ResetBeforeResponse).await;
    let config = format!(
        "[reports]\nmax_count = 3\n[upstreams.dead]\nservers = [\"{dead}\"]\n[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    let mut ids = Vec::new();
    for path in ["/dead", "/dead", "/", "/dead", "/"] {
        let resp = client::get(triage.http, path).await;
        ids.push(resp.header("x-diagnosis-id").expect("id").to_owned());
    }
    admin_page(&triage, &format!("/diagnoses/{}", ids[4])).await;
    let list = client::get(triage.admin, "/diagnoses?format=json").await;
    let json: serde_json::Value = serde_json::from_slice(&list.body).expect("JSON");
    let listed: Vec<&str> = json["diagnoses"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]
    );
    let evicted = client::get(triage.admin, &format!("/diagnoses/{}", ids[0])).await;
    assert_eq!(evicted.status, 404);
    let filtered = client::get(
        triage.admin,
        "/diagnoses?format=json&upstream=app&diagnosis=connection_reset",
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&filtered.body).expect("JSON");
    let tokens: Vec<&str> = json["diagnoses"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["diagnosis"].as_str())
        .collect();
    assert_eq!(tokens, vec!["connection_reset", "connection_reset"]);
    let m = scrape_when(&triage, |m| {
        metric(m, "triage_diagnoses_stored", &[]) == 3.0
    })
    .await;
    assert_eq!(metric(&m, "triage_diagnoses_stored", &[]), 3.0);
    // Five reports in a ring of three: the two oldest were evicted, and counted.
    assert_eq!(metric(&m, "triage_diagnoses_evicted_total", &[]), 2.0);
}

/// Health and readiness answer on the admin listener, and the list page renders as HTML.
#[tokio::test]
async fn health_readiness_and_list_page() {
    let dead = refused_addr();
    let triage = Triage::start(&single_upstream(dead, "")).await;
    assert_eq!(client::get(triage.admin, "/healthz").await.status, 200);
    assert_eq!(client::get(triage.admin, "/readyz").await.status, 200);
    let id = client::get(triage.http, "/")
        .await
        .header("x-diagnosis-id")
        .expect("id")
        .to_owned();
    admin_page(&triage, &format!("/diagnoses/{id}")).await;
    let page = client::get(triage.admin, "/diagnoses").await;
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body_text().contains("connect_refused"));
    let bad = client::get(triage.admin, "/diagnoses?diagnosis=not_a_token").await;
    assert_eq!(bad.status, 400);
}

/// A failure storm does not flood the log: error lines are capped per second and the next one
/// reports how many were suppressed, so that every failure is either a line or counted by a
/// later one. (The burst may straddle a second: then two seconds each let two lines through,
/// and which line reports what depends on where the boundary fell; the total does not.)
#[tokio::test]
async fn error_lines_are_rate_limited() {
    let dead = refused_addr();
    let triage = Triage::start(&format!(
        "[log]\naccess = false\nerror_lines_per_second = 2\n{}",
        single_upstream(dead, "")
    ))
    .await;
    for _ in 0..20 {
        client::get(triage.http, "/").await;
    }
    // A second later: a line gets through, and reports what was suppressed since the last.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = client::get(triage.http, "/").await;
    let id = last.header("x-diagnosis-id").expect("id").to_owned();
    triage
        .wait_for_output(&format!("id=\"{id}\""), Duration::from_secs(5))
        .await;
    let stdout = triage.stdout();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("upstream failure"))
        .collect();
    let suppressed: Vec<u64> = lines
        .iter()
        .map(|l| {
            let (_, after) = l
                .split_once("suppressed=")
                .expect("suppressed= on every line");
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("a count")
        })
        .collect();
    // Two lines a second, over the two or three seconds the failures fell in.
    assert!(
        lines.len() <= 6,
        "{} error lines for 21 failures",
        lines.len()
    );
    assert_eq!(
        lines.len() as u64 + suppressed.iter().sum::<u64>(),
        21,
        "every failure is a line or counted as suppressed: {lines:#?}"
    );
    assert!(lines.last().is_some_and(|l| l.contains(&id)));
    assert!(!stdout.contains("\"GET / HTTP/1.1\""), "access log is off");
}

/// A client cannot forge access-log fields: a `"` in the User-Agent or Referer and a space in
/// the Host are written `\x22` and `\x20`, as nginx does, so the line still parses as one
/// request with triage's own fields.
#[tokio::test]
async fn client_text_cannot_forge_access_log_fields() {
    let app = origin::spawn(Behavior::ok("ok\n")).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::send(
        triage.http,
        Request::get("/")
            .header("User-Agent", "curl\" 200 0 \"x\" \"forged")
            .header("Referer", "http://a/\" upstream=forged"),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 200);
    let log = triage
        .wait_for_output("forged", Duration::from_secs(5))
        .await;
    let line = log
        .lines()
        .find(|l| l.contains("forged"))
        .expect("the access line");
    assert!(
        line.contains(
            "\"http://a/\\x22 upstream=forged\" \"curl\\x22 200 0 \\x22x\\x22 \\x22forged\""
        ),
        "{line}"
    );
    assert_eq!(line.matches('"').count(), 6, "{line}");
}

/// A client cannot flood the log through Pingora's own error lines: 300 half-sent requests
/// (the head cut, the connection closed), each of which Pingora logs at error level, leave at
/// most `[log] error_lines_per_second` of those lines per second.
#[tokio::test]
async fn pingora_lines_are_rate_limited() {
    let app = origin::spawn(Behavior::ok("ok\n")).await;
    let triage = Triage::start(&format!(
        "[log]\naccess = false\nerror_lines_per_second = 3\n{}",
        single_upstream(app.addr, "")
    ))
    .await;
    let started = std::time::Instant::now();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(triage.http)
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
            .await
            .expect("write");
        drop(stream);
    }
    // Pingora logs a cut request once it reads the close; give the last ones time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seconds = started.elapsed().as_secs() + 1;
    let pingora_lines = triage
        .stdout()
        .lines()
        .filter(|l| l.contains("ERROR pingora"))
        .count();
    assert!(
        pingora_lines as u64 <= 3 * (seconds + 1),
        "{pingora_lines} Pingora error lines in {seconds} s:\n{}",
        triage.stdout()
    );
}

/// 256 KiB of garbage from the upstream (a header line that never ends, then an invalid one)
/// becomes a detail of at most 1 KiB where it is classified, so every place that shows it is
/// bounded: the HTML error page, the problem+json body, the report (page and JSON), the error
/// log line and a JSON access-log line. Before the bound, each of them carried all 256 KiB.
#[tokio::test]
async fn upstream_garbage_is_bounded_everywhere() {
    const GARBAGE: usize = 256 * 1024;
    const PAGE_MAX: usize = 16 * 1024;
    let mut garbage = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    garbage.extend(std::iter::repeat_n(b'z', GARBAGE));
    garbage.extend(b"\r\nBad\x01Header\r\n\r\n");
    let app = origin::spawn(Behavior::Garbage(garbage)).await;
    let triage = Triage::start(&format!(
        "[log]\nformat = \"json\"\n{}",
        single_upstream(app.addr, "")
    ))
    .await;

    let page = client::get(triage.http, "/").await;
    assert_eq!(page.header("x-diagnosis"), Some("invalid_response"));
    assert!(
        page.body_text().contains("zzzz") && page.body.len() < PAGE_MAX,
        "an error page of {} bytes",
        page.body.len()
    );
    let problem = client::send(
        triage.http,
        Request::get("/").header("Accept", "application/json"),
    )
    .await
    .expect("response");
    let problem_json: serde_json::Value = serde_json::from_slice(&problem.body).expect("JSON");
    // The error text is the problem's `error` member (`cause` is now the cause's token).
    let detail = problem_json["error"].as_str().unwrap_or_default();
    assert!(
        detail.contains("zzzz") && detail.len() <= 1024,
        "a problem+json error of {} bytes in {} bytes",
        detail.len(),
        problem.body.len()
    );
    assert!(problem.body.len() < PAGE_MAX, "{}", problem.body.len());

    let id = page.header("x-diagnosis-id").expect("id");
    let report_page = admin_page(&triage, &format!("/diagnoses/{id}")).await;
    assert!(
        report_page.body_text().contains("zzzz") && report_page.body.len() < PAGE_MAX,
        "a report page of {} bytes",
        report_page.body.len()
    );
    let report = report_json(&triage, id).await;
    let detail = report["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("buf: ") && detail.ends_with("...") && detail.len() <= 1024,
        "a report detail of {} bytes",
        detail.len()
    );

    triage
        .wait_for_output("upstream failure", Duration::from_secs(5))
        .await;
    let log = triage.stdout();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        log.lines().filter(|l| l.contains("zzzz")).count() >= 2 && longest < 4096,
        "the longest log line has {longest} bytes"
    );
}

/// A fleet: `[server] instance` starts every id (the header, the page, the access log and the
/// report), `/diagnoses/{id}` finds the report by the full id and by its digits alone, an id of
/// another instance gets a 404 naming both instances, `triage_build_info` names the instance,
/// and `[reports] export` writes the report as one JSON line with the same id.
#[tokio::test]
async fn an_instance_names_its_ids_and_exports_its_reports() {
    let dead = refused_addr();
    let body = format!(
        "[server]\ninstance = \"web-2.eu\"\n[reports]\nexport = \"reports.jsonl\"\n{}",
        single_upstream(dead, "")
    );
    let triage = Triage::start(&body).await;
    let resp = client::get(triage.http, "/export/me").await;
    assert_eq!(resp.status, 502, "{resp:?}");
    let id = resp.header("x-diagnosis-id").expect("id").to_owned();
    let hex = id.strip_prefix("web-2.eu-").expect("the instance first");
    assert_eq!(hex.len(), 16, "{id}");
    assert!(resp.body_text().contains(&id));

    let report = report_json(&triage, &id).await;
    assert_eq!(report["diagnosis"], "connect_refused");
    let by_digits = client::get(triage.admin, &format!("/diagnoses/{hex}?format=json")).await;
    assert_eq!(by_digits.status, 200, "{by_digits:?}");
    let elsewhere = client::get(triage.admin, &format!("/diagnoses/web-3-{hex}")).await;
    assert_eq!(elsewhere.status, 404);
    assert!(
        elsewhere
            .body_text()
            .contains("made by instance web-3, and this is web-2.eu"),
        "{}",
        elsewhere.body_text()
    );

    let exposition = scrape(&triage).await;
    assert_eq!(
        metric(
            &exposition,
            "triage_build_info",
            &[("triage_instance", "web-2.eu")]
        ),
        1.0,
        "{exposition}"
    );
    let log = triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    assert!(log.contains(&format!("id={id}")), "{log}");

    let path = triage.dir().path().join("reports.jsonl");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing exported to {path:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exported: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(exported["id"], id.as_str());
    assert_eq!(exported["diagnosis"], "connect_refused");
    assert_eq!(exported["path"], "/export/me");
}
