//! `/incidents` in front of a real failure storm, and the admin pages loaded in a real browser:
//! headless Chromium (Debian's `chromium`, installed by `scripts/setup.sh`) renders
//! `/incidents`, `/diagnoses` and a report, with the chart's SVG in the page and no console
//! error.

mod support;

use std::process::Command;
use support::client;
use support::origin::refused_addr;
use support::triage::{single_upstream, temp_dir, Triage};

/// A storm of refusals at an address that never answered is one incident with its cause
/// counted, ongoing, linked to its first report; the page draws the upstream's chart.
#[tokio::test]
async fn a_storm_is_one_incident() {
    let triage = Triage::start(&single_upstream(refused_addr(), "")).await;
    let mut ids = Vec::new();
    let mut value = serde_json::Value::Null;
    for sent in 1..=20 {
        let resp = client::get(triage.http, "/storm").await;
        assert_eq!(resp.status, 502, "{resp:?}");
        ids.push(resp.header("x-diagnosis-id").expect("id").to_owned());
        // A failure is recorded as its request is logged, just after its answer, and the
        // next request may be handled on another worker thread: each is waited for, so that
        // the incident's first and last ids are the storm's first and last.
        value = incidents_once_counted(&triage, sent).await;
    }
    let incidents = value["incidents"].as_array().expect("a list");
    assert_eq!(incidents.len(), 1, "{value}");
    let incident = &incidents[0];
    assert_eq!(incident["upstream"], "app");
    assert_eq!(incident["failures"], 20);
    assert_eq!(incident["causes"]["never_answered"], 20, "{value}");
    assert!(incident["end"].is_null(), "still going on: {value}");
    assert_eq!(incident["first_id"], ids[0].as_str());
    assert_eq!(incident["last_id"], ids[19].as_str());

    let page = client::get(triage.admin, "/incidents").await.body_text();
    assert!(page.contains("<svg class=\"chart\""), "{page}");
    assert!(page.contains("<rect class=\"failure\""), "{page}");
    assert!(
        page.contains(&format!("href=\"/diagnoses/{}\"", ids[0])),
        "{page}"
    );
    let report = client::get(triage.admin, &format!("/diagnoses/{}", ids[5])).await;
    assert!(
        report
            .body_text()
            .contains("Part of an incident of <a href=\"/incidents#app\">"),
        "{}",
        report.body_text()
    );
}

/// `/incidents?format=json` once its first incident has counted `failures` (within 5 s).
async fn incidents_once_counted(triage: &Triage, failures: u64) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let json = client::get(triage.admin, "/incidents?format=json").await;
        assert_eq!(json.status, 200);
        let value: serde_json::Value = serde_json::from_slice(&json.body).expect("JSON");
        if value["incidents"][0]["failures"].as_u64() >= Some(failures) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{failures} failures not counted within 5 s: {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Chromium's path: Debian's package, which scripts/setup.sh installs.
fn chromium() -> &'static str {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return path;
        }
    }
    panic!("chromium is not installed: scripts/setup.sh installs Debian's chromium");
}

/// Loads `url` in headless Chromium: the DOM after load, and the console errors it logged.
fn render(url: &str) -> (String, Vec<String>) {
    let profile = temp_dir();
    let output = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--enable-logging=stderr",
            "--v=0",
            "--timeout=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "chromium failed on {url}: {stderr}"
    );
    let errors = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&output.stdout).into_owned(), errors)
}

/// The admin pages render in a real browser: `/incidents` with its chart as SVG (a rect per
/// failure step), `/diagnoses` with the failure listed, and the report's page, each without a
/// console error.
#[tokio::test(flavor = "multi_thread")]
async fn pages_render_in_chromium() {
    let triage = Triage::start(&single_upstream(refused_addr(), "")).await;
    let mut id = String::new();
    for _ in 0..5 {
        let resp = client::get(triage.http, "/render").await;
        id = resp.header("x-diagnosis-id").expect("id").to_owned();
    }
    support::triage::report_of(&triage, &id).await;
    let admin = triage.admin;
    let pages = tokio::task::spawn_blocking(move || {
        ["/incidents", "/diagnoses", &format!("/diagnoses/{id}")]
            .map(|path| (path.to_owned(), render(&format!("http://{admin}{path}"))))
    })
    .await
    .expect("chromium runs");
    for (path, (dom, errors)) in &pages {
        assert!(errors.is_empty(), "{path}: console errors {errors:?}");
        assert!(dom.contains("</html>"), "{path}: {dom}");
    }
    let (incidents, _) = &pages[0].1;
    assert!(incidents.contains("<svg class=\"chart\""), "{incidents}");
    assert!(incidents.contains("class=\"failure\""), "{incidents}");
    let (list, _) = &pages[1].1;
    assert!(list.contains("connect_refused"), "{list}");
    let (report, _) = &pages[2].1;
    assert!(report.contains("never_answered"), "{report}");
}
