//! Active health checks reach a server the way a request does (Pingora's connector, the
//! upstream's TLS settings and timeouts) and diagnose a failed probe as the proxy diagnoses the
//! same failure of a request.

mod support;

use socket2::{Domain, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use support::certs::TestPki;
use support::client;
use support::origin::{self, refused_addr, Behavior};
use support::triage::{metric_becomes, temp_dir, Triage};

/// An HTTP health check of a TLS upstream (its SNI and CA file) takes the server answering
/// `/health` with 500 out of rotation and keeps the good one in: every request is answered
/// over TLS by the good server. (A probe in plain HTTP to a TLS port failed both.)
#[tokio::test]
async fn http_checks_of_a_tls_upstream_take_a_bad_status_out() {
    let pki = TestPki::new();
    let good = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost"]),
        Behavior::ok("good\n"),
    ))
    .await;
    let bad = origin::spawn(Behavior::tls(
        pki.leaf(&["localhost"]),
        Behavior::respond(500, "database down\n"),
    ))
    .await;
    let dir = temp_dir();
    let ca = pki.write_ca_file(dir.path());
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{}\"]\ntls = true\nsni = \"localhost\"\nca_file = \"{}\"\nretries = 0\nmax_fails = 0\n\
         [upstreams.app.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\nunhealthy_threshold = 1\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        good.addr,
        bad.addr,
        ca.display()
    );
    let triage = Triage::start_in(dir, &config).await;
    let gauge = |addr: SocketAddr| {
        format!("triage_upstream_server_healthy{{server=\"{addr}\",upstream=\"app\"}}")
    };
    assert!(
        metric_becomes(&triage, &gauge(bad.addr), "0", Duration::from_secs(5)).await,
        "the server answering 500 stayed in rotation"
    );
    assert!(metric_becomes(&triage, &gauge(good.addr), "1", Duration::from_secs(1)).await);
    for _ in 0..6 {
        let resp = client::get(triage.http, "/").await;
        assert_eq!(
            (resp.status, resp.body_text()),
            (200, "good\n".to_owned()),
            "{resp:?}"
        );
    }
    let probes = bad.received();
    assert!(
        probes.iter().any(|r| r.target == "/health"
            && r.header("user-agent") == Some("triage-health-check")),
        "{probes:?}"
    );
}

/// A listener whose accept queue is full: a connect to it never completes. The fillers must
/// outlive the test.
fn unaccepting_listener() -> (SocketAddr, Vec<Socket>) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let mut held = vec![listener];
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_nonblocking(true).expect("nonblocking");
        let _ = s.connect(&addr.into());
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    (addr, held)
}

/// For each way a server can fail (refusing, never accepting, speaking TLS to plain HTTP, a
/// TLS certificate from an unknown CA, garbage, a reset, no answer, a 503), the diagnosis of the
/// failed health check, as `no_healthy_upstream` shows it, is the diagnosis a request to the
/// same server gets from the proxy.
#[tokio::test]
async fn a_failed_probe_is_diagnosed_as_the_proxy_diagnoses_a_request() {
    let pki = TestPki::new();
    let dir = temp_dir();
    let ca = pki.write_ca_file(dir.path());
    let (never_accepts, _held) = unaccepting_listener();
    let speaks_tls = origin::spawn(Behavior::SpeaksTls).await;
    let untrusted = origin::spawn(Behavior::tls(
        pki.self_signed(&["localhost"]),
        Behavior::ok("x"),
    ))
    .await;
    let garbage = origin::spawn(Behavior::Garbage(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())).await;
    let reset = origin::spawn(Behavior::ResetBeforeResponse).await;
    let stall = origin::spawn(Behavior::Stall).await;
    let unavailable = origin::spawn(Behavior::respond(503, "down\n")).await;
    let tls = format!(
        "tls = true\nsni = \"localhost\"\nca_file = \"{}\"\n",
        ca.display()
    );
    let faults = [
        ("refused", refused_addr(), String::new(), "connect_refused"),
        (
            "never_accepts",
            never_accepts,
            String::new(),
            "connect_timeout",
        ),
        (
            "speaks_tls",
            speaks_tls.addr,
            String::new(),
            "upstream_expects_tls",
        ),
        (
            "untrusted",
            untrusted.addr,
            tls,
            "tls_certificate_untrusted",
        ),
        ("garbage", garbage.addr, String::new(), "invalid_response"),
        ("reset", reset.addr, String::new(), "connection_reset"),
        ("stall", stall.addr, String::new(), "response_timeout"),
        (
            "unavailable",
            unavailable.addr,
            String::new(),
            "upstream_status",
        ),
    ];
    let mut config = String::new();
    for (name, addr, extra, _) in &faults {
        let keys = format!(
            "servers = [\"{addr}\"]\nretries = 0\nconnect_timeout = \"300ms\"\nread_timeout = \"300ms\"\n{extra}"
        );
        config.push_str(&format!(
            "[upstreams.{name}]\n{keys}\n[upstreams.{name}_checked]\n{keys}\n\
             [upstreams.{name}_checked.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"200ms\"\ntimeout = \"1s\"\nunhealthy_threshold = 1\n"
        ));
    }
    for (name, ..) in &faults {
        config.push_str(&format!(
            "[[routes]]\npath_prefix = \"/{name}/\"\nupstream = \"{name}\"\n\
             [[routes]]\npath_prefix = \"/checked/{name}/\"\nupstream = \"{name}_checked\"\n"
        ));
    }
    let triage = Triage::start_in(dir, &config).await;
    for (name, addr, _, token) in &faults {
        let proxied = client::get(triage.http, &format!("/{name}/")).await;
        assert_eq!(
            proxied.header("x-diagnosis"),
            Some(*token),
            "{name}: {proxied:?}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let checked = loop {
            let resp = client::get(triage.http, &format!("/checked/{name}/")).await;
            if resp.header("x-diagnosis") == Some("no_healthy_upstream")
                || tokio::time::Instant::now() > deadline
            {
                break resp;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            checked.header("x-diagnosis"),
            Some("no_healthy_upstream"),
            "{name}: {checked:?}"
        );
        let detail = checked.header("x-diagnosis-detail").unwrap_or("");
        let said = format!("{addr}: failed health checks ({token}");
        assert!(
            detail.starts_with(&said),
            "{name}: {detail:?} should start {said:?}"
        );
    }
}
