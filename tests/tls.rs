//! TLS to the upstream: each certificate problem and protocol mismatch, with certificates made
//! in the test, gets its own diagnosis and the TLS library's reason for trusted clients.

mod support;

use std::net::SocketAddr;
use support::certs::TestPki;
use support::client::{self, Response};
use support::origin::{self, Behavior, TLS_HANDSHAKE_FAILURE_ALERT};
use support::triage::{temp_dir, Triage};

/// Starts triage with a TLS upstream at `addr`, trusting `pki`'s CA and asking for "localhost".
async fn get_over_tls(pki: &TestPki, addr: SocketAddr) -> (Triage, Response) {
    let dir = temp_dir();
    let ca = pki.write_ca_file(dir.path());
    let config = format!(
        "[upstreams.app]\nservers = [\"{addr}\"]\ntls = true\nsni = \"localhost\"\nca_file = \"{}\"\nconnect_timeout = \"2s\"\n\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        ca.display()
    );
    let triage = Triage::start_in(dir, &config).await;
    let resp = client::get(triage.http, "/").await;
    (triage, resp)
}

fn assert_tls_failure(resp: &Response, token: &str, reason_part: &str) {
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some(token), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-phase"), Some("tls"), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-source"), Some("proxy"));
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    assert!(
        detail.contains(reason_part),
        "detail {detail:?} should contain {reason_part:?}"
    );
}

/// A valid certificate from the configured CA: the request goes through over TLS.
#[tokio::test]
async fn valid_certificate_proxies() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost"]),
        Behavior::ok("over tls\n"),
    ))
    .await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "over tls\n");
}

/// An expired certificate: tls_certificate_expired, with rustls's reason.
#[tokio::test]
async fn expired_certificate() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.expired_leaf(&["localhost"]),
        Behavior::ok("x"),
    ))
    .await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_certificate_expired", "expired");
    assert_eq!(
        resp.header("proxy-status")
            .map(|p| p.starts_with("triage; error=tls_certificate_error")),
        Some(true)
    );
}

/// A certificate not valid yet is diagnosed with the expired ones (outside its validity).
#[tokio::test]
async fn not_yet_valid_certificate() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.not_yet_valid_leaf(&["localhost"]),
        Behavior::ok("x"),
    ))
    .await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_certificate_expired", "not valid yet");
}

/// A certificate for another name: tls_certificate_name_mismatch.
#[tokio::test]
async fn wrong_name_certificate() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.leaf(&["other.example"]),
        Behavior::ok("x"),
    ))
    .await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_certificate_name_mismatch", "not valid for name");
}

/// A certificate no trusted CA signed: tls_certificate_untrusted.
#[tokio::test]
async fn unknown_issuer() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.self_signed(&["localhost"]),
        Behavior::ok("x"),
    ))
    .await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_certificate_untrusted", "UnknownIssuer");
}

/// TLS configured, but the port answers in plain HTTP: tls_upstream_plaintext.
#[tokio::test]
async fn plain_http_on_tls_port() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::ok("plain")).await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_upstream_plaintext", "InvalidContentType");
}

/// The server refuses every handshake with an alert: the generic tls_handshake_failed.
#[tokio::test]
async fn handshake_refused_by_alert() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::SpeaksFirst(TLS_HANDSHAKE_FAILURE_ALERT.to_vec())).await;
    let (_triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_tls_failure(&resp, "tls_handshake_failed", "HandshakeFailure");
}

/// An untrusted client learns it was a certificate problem, but not the TLS library's reason.
#[tokio::test]
async fn tls_reason_hidden_from_untrusted_clients() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.expired_leaf(&["localhost"]),
        Behavior::ok("x"),
    ))
    .await;
    let dir = temp_dir();
    let ca = pki.write_ca_file(dir.path());
    let config = format!(
        "[diagnosis]\ntrusted = [\"192.0.2.0/24\"]\n[upstreams.app]\nservers = [\"{}\"]\ntls = true\nsni = \"localhost\"\nca_file = \"{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        app.addr,
        ca.display()
    );
    let triage = Triage::start_in(dir, &config).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.header("x-diagnosis"), Some("tls_certificate_expired"));
    assert_eq!(
        resp.header("proxy-status"),
        Some("triage; error=tls_certificate_error")
    );
    assert!(resp.header("x-diagnosis-detail").is_none());
    assert!(!resp.body_text().contains("verification time"));
}

/// Two upstreams on the same address and SNI, each trusting another CA, never share pooled TLS
/// connections: after the one whose CA signed the server's certificate has a pooled connection,
/// the other still verifies, and fails, every time (it used to answer 200 over the first one's
/// connections).
#[tokio::test]
async fn upstreams_with_different_cas_share_no_connection() {
    let pki = TestPki::new();
    let other_pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost"]),
        Behavior::ok("over tls\n"),
    ))
    .await;
    let dir = temp_dir();
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("create dir");
    let ca = pki.write_ca_file(dir.path());
    let other_ca = other_pki.write_ca_file(&other_dir);
    let upstream = |name: &str, ca: &std::path::Path| {
        format!(
            "[upstreams.{name}]\nservers = [\"{}\"]\ntls = true\nsni = \"localhost\"\nca_file = \"{}\"\nretries = 0\n",
            app.addr,
            ca.display()
        )
    };
    let config = format!(
        "{}{}\n[[routes]]\npath_prefix = \"/a/\"\nupstream = \"trusting\"\n\n[[routes]]\npath_prefix = \"/b/\"\nupstream = \"other\"\n",
        upstream("trusting", &ca),
        upstream("other", &other_ca)
    );
    let triage = Triage::start_in(dir, &config).await;
    for round in 0..3 {
        let trusted = client::get(triage.http, "/a/").await;
        assert_eq!(trusted.status, 200, "round {round}: {trusted:?}");
        let other = client::get(triage.http, "/b/").await;
        // Both test CAs have the same name, so rustls finds "the issuer" and rejects its
        // signature.
        assert_tls_failure(&other, "tls_certificate_untrusted", "BadSignature");
    }
}

/// A TLS handshake with the server sets the certificate-expiry gauge of that server (the leaf's
/// notAfter, a year from now here), so an alert can fire weeks before the certificate expires;
/// a plain-HTTP upstream has no such series.
#[tokio::test]
async fn certificate_expiry_is_a_metric() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost"]),
        Behavior::ok("over tls\n"),
    ))
    .await;
    let (triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let metrics = client::get(triage.admin, "/metrics").await.body_text();
    let series = format!(
        "triage_upstream_tls_certificate_expiry_timestamp_seconds{{server=\"{}\",upstream=\"app\"}} ",
        app.addr
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    let not_after: f64 = line[series.len()..].trim().parse().expect("a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let year = 365.0 * 86400.0;
    assert!(
        (now + year - 3600.0..now + year + 3600.0).contains(&not_after),
        "notAfter {not_after} should be a year after {now}"
    );

    let plain = origin::spawn(Behavior::ok("plain\n")).await;
    let triage = Triage::start(&support::triage::single_upstream(plain.addr, "")).await;
    assert_eq!(client::get(triage.http, "/").await.status, 200);
    let metrics = client::get(triage.admin, "/metrics").await.body_text();
    assert!(
        !metrics.contains("triage_upstream_tls_certificate_expiry_timestamp_seconds{"),
        "{metrics}"
    );
}

/// A failure after the handshake: the report's attempt shows the certificate the server
/// presented (subject, issuer, names, validity), so support can tell which certificate a
/// server behind a load balancer had.
#[tokio::test]
async fn a_report_shows_the_upstreams_certificate() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost", "127.0.0.1"]),
        Behavior::ResetBeforeResponse,
    ))
    .await;
    let (triage, resp) = get_over_tls(&pki, app.addr).await;
    assert_eq!(resp.status, 502, "{resp:?}");
    let id = resp.header("x-diagnosis-id").expect("id");
    let report = support::triage::report_of(&triage, id).await;
    let certificate = &report["attempts"][0]["certificate"];
    assert_eq!(
        certificate["names"],
        serde_json::json!(["localhost", "127.0.0.1"]),
        "{report}"
    );
    assert!(
        certificate["issuer"]
            .as_str()
            .is_some_and(|i| !i.is_empty()),
        "{report}"
    );
    let not_after = certificate["not_after"].as_str().expect("not_after");
    let not_before = certificate["not_before"].as_str().expect("not_before");
    assert!(
        not_after > not_before && not_after.ends_with('Z'),
        "{report}"
    );
}
