//! Every failure an app can have, produced by a real misbehaving server on loopback, and exactly
//! what a client of triage sees for it: status, diagnosis headers, body.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::client::{self, Request, Response};
use support::dns::spawn_dns;
use support::origin::{self, refused_addr, Behavior};
use support::triage::{single_upstream, Triage};

/// Starts triage in front of `addr` and sends one GET.
async fn get_through(addr: SocketAddr, extra: &str) -> (Triage, Response) {
    let triage = Triage::start(&single_upstream(addr, extra)).await;
    let resp = client::get(triage.http, "/some/path").await;
    (triage, resp)
}

/// The headers every response triage generates itself carries, whatever the policy.
fn assert_generated(resp: &Response, status: u16, token: &str, phase: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some(token), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-phase"), Some(phase), "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-source"), Some("proxy"), "{resp:?}");
    let id = resp.header("x-diagnosis-id").expect("an id");
    // `INSTANCE-` (the host name by default) and 16 hex digits.
    let (instance, hex) = id.rsplit_once('-').expect("an instance name");
    assert!(!instance.is_empty() && hex.len() == 16, "{id}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(!resp.header("x-diagnosis-hint").unwrap_or("").is_empty());
    assert!(resp
        .header("proxy-status")
        .is_some_and(|v| v.starts_with("triage; error=")));
    assert!(resp.body_text().contains(token), "{}", resp.body_text());
    assert!(resp.body_text().contains(id));
}

/// Nothing listens on the port: 502 connect_refused, cause never_answered, with the OS's words
/// for a trusted client.
#[tokio::test]
async fn connect_refused() {
    let dead = refused_addr();
    let (_triage, resp) = get_through(dead, "").await;
    assert_generated(&resp, 502, "connect_refused", "connect");
    assert_eq!(
        resp.header("proxy-status"),
        Some(
            format!(
                "triage; error=connection_refused; details=\"Connection refused (os error 111)\"; next-hop=\"{dead}\""
            )
            .as_str()
        )
    );
    assert_eq!(
        resp.header("x-diagnosis-upstream"),
        Some(format!("app {dead}").as_str())
    );
    assert_eq!(
        resp.header("x-diagnosis-detail"),
        Some("Connection refused (os error 111)")
    );
    assert!(resp
        .header("server-timing")
        .is_some_and(|v| v.contains("total;dur=")));
    assert!(resp
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/html")));
    // An address that never answered: the cause says so, and not that the app crashed.
    assert_eq!(resp.header("x-diagnosis-cause"), Some("never_answered"));
    let hint = resp.header("x-diagnosis-hint").unwrap_or("");
    assert!(hint.contains("has not answered once"), "{hint}");
    assert!(!hint.contains("crashed"), "{hint}");
    assert!(resp.body_text().contains("has not answered once"));
}

/// Like nginx, an upstream failure keeps the client connection: the next request on it is
/// served. Only a request whose body triage never read closes it, and says so.
#[tokio::test]
async fn error_page_keeps_the_client_connection() {
    let dead = refused_addr();
    let app = origin::spawn(Behavior::ok("alive")).await;
    let config = format!(
        "[upstreams.dead]\nservers = [\"{dead}\"]\n[upstreams.app]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    let mut conn = client::Connection::connect(triage.http)
        .await
        .expect("connect");
    for _ in 0..2 {
        let resp = conn.send(Request::get("/dead")).await.expect("response");
        assert_generated(&resp, 502, "connect_refused", "connect");
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
        let resp = conn
            .send(Request::get("/"))
            .await
            .expect("the same connection serves the next request");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "alive"));
    }
    let resp = conn
        .send(Request::post("/dead", vec![b'x'; 64 * 1024]))
        .await
        .expect("response");
    assert_generated(&resp, 502, "connect_refused", "connect");
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    assert!(conn.send(Request::get("/")).await.is_err());
}

/// A client outside `trusted` gets the token, phase, source, hint and id, but no detail.
#[tokio::test]
async fn untrusted_client_gets_no_detail() {
    let dead = refused_addr();
    let config = format!(
        "[diagnosis]\ndetail = \"trusted\"\ntrusted = [\"10.0.0.0/8\"]\n{}",
        single_upstream(dead, "")
    );
    let triage = Triage::start(&config).await;
    let resp = client::get(triage.http, "/").await;
    assert_generated(&resp, 502, "connect_refused", "connect");
    assert_eq!(
        resp.header("proxy-status"),
        Some("triage; error=connection_refused")
    );
    for hidden in [
        "x-diagnosis-detail",
        "x-diagnosis-upstream",
        "server-timing",
        "x-diagnosis-report",
    ] {
        assert!(resp.header(hidden).is_none(), "{hidden} leaked: {resp:?}");
    }
    let body = resp.body_text();
    assert!(!body.contains(&dead.to_string()), "address leaked: {body}");
    assert!(!body.contains("os error"), "errno leaked: {body}");
}

/// `detail = "none"` hides the detail even from loopback; `"all"` shows it to everyone.
#[tokio::test]
async fn detail_policy_none_and_all() {
    let dead = refused_addr();
    let none = Triage::start(&format!(
        "[diagnosis]\ndetail = \"none\"\n{}",
        single_upstream(dead, "")
    ))
    .await;
    let resp = client::get(none.http, "/").await;
    assert!(resp.header("x-diagnosis-detail").is_none());
    let all = Triage::start(&format!(
        "[diagnosis]\ndetail = \"all\"\ntrusted = []\n{}",
        single_upstream(dead, "")
    ))
    .await;
    let resp = client::get(all.http, "/").await;
    assert!(resp.header("x-diagnosis-detail").is_some());
}

/// A client that asks for JSON gets RFC 9457 problem+json with triage's members.
#[tokio::test]
async fn problem_json_body() {
    let dead = refused_addr();
    let triage = Triage::start(&single_upstream(dead, "")).await;
    let resp = client::send(
        triage.http,
        Request::get("/").header("Accept", "application/json"),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 502);
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("valid JSON");
    assert_eq!(json["type"], "urn:triage:diagnosis:connect_refused");
    assert_eq!(json["title"], "Bad Gateway");
    assert_eq!(json["status"], 502);
    assert_eq!(json["diagnosis"], "connect_refused");
    assert_eq!(json["phase"], "connect");
    assert_eq!(json["source"], "proxy");
    assert_eq!(json["id"], resp.header("x-diagnosis-id").unwrap_or(""));
    assert_eq!(json["upstream"], "app");
    assert_eq!(json["address"], dead.to_string());
    // The errno text is `error`; `cause` is the cause's token.
    assert_eq!(json["error"], "Connection refused (os error 111)");
    assert_eq!(json["cause"], "never_answered");
    assert!(json["hint"]
        .as_str()
        .is_some_and(|h| h.contains("has not answered once")));
    assert_eq!(json["evidence"][0]["source"], "attempt");
    assert_eq!(json["evidence"][1]["source"], "history");
    assert!(json["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(json["timings_ms"]["total"].is_number());
}

/// A healthy app's answer passes through with only the id and the source added.
#[tokio::test]
async fn success_passes_through_with_id() {
    let app = origin::spawn(Behavior::ok("hello\n")).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_text(), "hello\n");
    // The instance name (the host name by default), `-`, 16 hex digits.
    assert!(resp
        .header("x-diagnosis-id")
        .and_then(|id| id.rsplit_once('-'))
        .is_some_and(|(instance, hex)| !instance.is_empty() && hex.len() == 16));
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert!(resp.header("x-diagnosis").is_none());
    assert!(resp.header("proxy-status").is_none());
}

/// The app's own 503 (database down) passes through untouched and is attributed to the app,
/// after the Proxy-Status entry the app sent itself.
#[tokio::test]
async fn upstream_5xx_is_the_apps() {
    let app = origin::spawn(Behavior::Respond {
        status: 503,
        headers: vec![(
            "Proxy-Status".to_owned(),
            "app-gateway; error=destination_unavailable".to_owned(),
        )],
        body: b"database is down\n".to_vec(),
    })
    .await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body_text(), "database is down\n");
    assert_eq!(resp.header("x-diagnosis"), Some("upstream_status"));
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    assert_eq!(resp.header("x-diagnosis-phase"), Some("response_headers"));
    assert_eq!(
        resp.headers_all("proxy-status"),
        vec![
            "app-gateway; error=destination_unavailable".to_owned(),
            format!("triage; received-status=503; next-hop=\"{}\"", app.addr),
        ]
    );
}

/// The app resets the connection before answering (crash, OOM kill): 502 connection_reset.
#[tokio::test]
async fn connection_reset() {
    let app = origin::spawn(Behavior::ResetBeforeResponse).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_generated(&resp, 502, "connection_reset", "response_headers");
    assert!(resp
        .header("x-diagnosis-detail")
        .is_some_and(|d| d.contains("Connection reset by peer")));
}

/// The app closes the connection without a byte: 502 connection_closed.
#[tokio::test]
async fn connection_closed() {
    let app = origin::spawn(Behavior::CloseBeforeResponse).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_generated(&resp, 502, "connection_closed", "response_headers");
    assert!(resp
        .header("x-diagnosis-detail")
        .is_some_and(|d| d.contains("bytes already read: 0")));
}

/// The app accepts the request and never answers: 504 response_timeout after read_timeout.
#[tokio::test]
async fn response_timeout() {
    let app = origin::spawn(Behavior::Stall).await;
    let started = Instant::now();
    let (_triage, resp) = get_through(app.addr, "read_timeout = \"300ms\"").await;
    assert_generated(&resp, 504, "response_timeout", "response_headers");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The port answers with bytes that are not HTTP: 502 invalid_response, bytes in the detail.
#[tokio::test]
async fn invalid_response() {
    let app = origin::spawn(Behavior::Garbage(b"HELLO WORLD\r\n\r\n".to_vec())).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_generated(&resp, 502, "invalid_response", "response_headers");
    assert!(resp
        .header("x-diagnosis-detail")
        .is_some_and(|d| d.contains("HELLO WORLD")));
}

/// Bytes from the upstream with CR/LF never break a header: the detail is printable and bounded.
#[tokio::test]
async fn upstream_bytes_are_sanitized_in_headers() {
    let mut garbage = b"HTTP/1.1 200 OK\r\nX-Injected: yes\r\nBad\x01Header\r\n".to_vec();
    garbage.extend(std::iter::repeat_n(b'z', 5000));
    garbage.extend(b"\r\n\r\n");
    let app = origin::spawn(Behavior::Garbage(garbage)).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_eq!(resp.status, 502);
    assert!(resp.header("x-injected").is_none());
    let detail = resp.header("x-diagnosis-detail").expect("detail");
    assert!(detail.len() <= 256, "{}", detail.len());
    assert!(detail.bytes().all(|b| (b' '..=b'~').contains(&b)));
}

/// A runaway header larger than Pingora accepts: 502 response_headers_too_large.
#[tokio::test]
async fn response_headers_too_large() {
    let app = origin::spawn(Behavior::HugeHeaders { bytes: 1_200_000 }).await;
    let (_triage, resp) = get_through(app.addr, "").await;
    assert_generated(&resp, 502, "response_headers_too_large", "response_headers");
}

/// Plain HTTP configured, but the app speaks TLS: 502 upstream_expects_tls.
#[tokio::test]
async fn upstream_expects_tls() {
    let app = origin::spawn(Behavior::SpeaksTls).await;
    let (_triage, resp) = get_through(app.addr, "tls = false").await;
    assert_generated(&resp, 502, "upstream_expects_tls", "response_headers");
}

/// The app dies mid-body after its status went out: the client sees the app's 200 cut short,
/// never a hang, and the access log records body_reset.
#[tokio::test]
async fn body_reset() {
    let app = origin::spawn(Behavior::BodyReset {
        announced: 100_000,
        sent: 1000,
    })
    .await;
    let (triage, resp) = get_through(app.addr, "").await;
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis-source"), Some("upstream"));
    triage
        .wait_for_output("diagnosis=body_reset", Duration::from_secs(5))
        .await;
}

/// The app closes early, having announced more body than it sent: body_closed.
#[tokio::test]
async fn body_closed() {
    let app = origin::spawn(Behavior::BodyClose {
        announced: 100_000,
        sent: 1000,
    })
    .await;
    let (triage, resp) = get_through(app.addr, "").await;
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "{resp:?}");
    triage
        .wait_for_output("diagnosis=body_closed", Duration::from_secs(5))
        .await;
}

/// The app stalls mid-body: after read_timeout the client gets a cut body, not a hang.
#[tokio::test]
async fn body_timeout() {
    let app = origin::spawn(Behavior::BodyStall {
        announced: 100_000,
        sent: 1000,
    })
    .await;
    let started = Instant::now();
    let (triage, resp) = get_through(app.addr, "read_timeout = \"300ms\"").await;
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "{resp:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    triage
        .wait_for_output("diagnosis=body_timeout", Duration::from_secs(5))
        .await;
}

/// No route for the host: 404 no_route, and the client connection stays usable.
#[tokio::test]
async fn no_route() {
    let app = origin::spawn(Behavior::ok("x")).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nhost = \"app.example\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    let mut conn = client::Connection::connect(triage.http)
        .await
        .expect("connect");
    let resp = conn
        .send(
            Request::get("/")
                .header("Host", "other.example")
                .header("Connection", "keep-alive"),
        )
        .await
        .expect("response");
    assert_generated(&resp, 404, "no_route", "route");
    let resp = conn
        .send(Request::get("/").header("Host", "app.example"))
        .await
        .expect("the same connection serves the next request");
    assert_eq!(resp.status, 200);
}

/// The upstream's hostname does not resolve (NXDOMAIN from a loopback DNS server): 502 dns_error.
#[tokio::test]
async fn dns_error() {
    let dns = spawn_dns(HashMap::new()).await;
    let config = format!(
        "[resolver]\nnameservers = [\"{}\"]\n{}",
        dns.addr,
        "[upstreams.app]\nservers = [\"app.test:8080\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    );
    let triage = Triage::start(&config).await;
    let resp = client::get(triage.http, "/").await;
    assert_generated(&resp, 502, "dns_error", "dns");
    assert!(resp
        .header("x-diagnosis-detail")
        .is_some_and(|d| d.contains("app.test")));
}

/// A hostname that resolves (through the loopback DNS server) is proxied to its address.
#[tokio::test]
async fn hostname_resolves_without_blocking() {
    let app = origin::spawn(Behavior::ok("resolved\n")).await;
    let dns = spawn_dns(HashMap::from([(
        "app.test".to_owned(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]))
    .await;
    let config = format!(
        "[resolver]\nnameservers = [\"{}\"]\n[upstreams.app]\nservers = [\"app.test:{}\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        dns.addr,
        app.addr.port()
    );
    let triage = Triage::start(&config).await;
    let resp = client::get(triage.http, "/").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "resolved\n");
}

/// A connect that never completes (the listener's backlog is full): 504 connect_timeout.
#[tokio::test]
async fn connect_timeout() {
    use socket2::{Domain, Socket, Type};
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
    // Fill the accept queue (never accepted), so further SYNs are dropped.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_nonblocking(true).expect("nonblocking");
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (_triage, resp) = get_through(addr, "connect_timeout = \"300ms\"").await;
    assert_generated(&resp, 504, "connect_timeout", "connect");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(fillers);
}

/// After a refusal, requests within `refused_holdoff` are answered connect_refused without a
/// connect (the app, back on its port meanwhile, sees none of them), saying so to a trusted
/// client; after the hold-off, the next request reaches the app.
#[tokio::test]
async fn refused_holdoff_answers_without_connecting_then_recovers() {
    let addr = refused_addr();
    let triage = Triage::start(&single_upstream(addr, "refused_holdoff = \"1500ms\"")).await;
    let first = client::get(triage.http, "/").await;
    assert_generated(&first, 502, "connect_refused", "connect");
    assert_eq!(first.header("x-diagnosis-attempts"), Some("1"));

    let app = origin::spawn_at(addr, Behavior::ok("back"))
        .await
        .expect("the app takes its port back");
    let held = client::get(triage.http, "/").await;
    assert_generated(&held, 502, "connect_refused", "connect");
    assert_eq!(held.header("x-diagnosis-attempts"), None);
    let detail = held.header("x-diagnosis-detail").expect("detail");
    assert!(
        detail.starts_with(&format!("not connected: {addr} refused a connection ")),
        "{detail}"
    );
    assert_eq!(app.connections(), 0, "a held-off request connected");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let back = client::get(triage.http, "/").await;
    assert_eq!(back.status, 200, "{back:?}");
    assert_eq!(back.body_text(), "back");
    assert_eq!(app.connections(), 1);
}

/// The app drops the connection while a large request body is still being sent:
/// 502 request_send_failed.
#[tokio::test]
async fn request_send_failed() {
    // An app that reads the request head, then resets without reading the body.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    });
    let config = single_upstream(addr, "").replace(
        "upstream = \"app\"\n",
        "upstream = \"app\"\nmax_body_size = 16777216\n",
    );
    let triage = Triage::start(&config).await;
    let body = vec![b'x'; 8 * 1024 * 1024];
    let resp = client::send(triage.http, Request::post("/upload", body))
        .await
        .expect("a response");
    assert_generated(&resp, 502, "request_send_failed", "request");
}

/// Headers a client sends named X-Diagnosis-* never reach the app.
#[tokio::test]
async fn forged_diagnosis_headers_are_dropped() {
    let app = origin::spawn(Behavior::Echo).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::send(
        triage.http,
        Request::get("/")
            .header("X-Diagnosis", "connect_refused")
            .header("X-Diagnosis-Source", "proxy")
            .header("X-Kept", "yes"),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 200);
    let echoed = resp.body_text();
    assert!(!echoed.contains("x-diagnosis"), "{echoed}");
    assert!(echoed.contains("x-kept: yes"), "{echoed}");
}

/// Headers the upstream sends named X-Diagnosis-* never reach a client (trusted or not): the
/// diagnosis, hint and report link are triage's alone. The app's own Proxy-Status entry is kept,
/// before triage's.
#[tokio::test]
async fn upstream_diagnosis_headers_are_dropped() {
    let app = origin::spawn(Behavior::Respond {
        status: 503,
        headers: vec![
            ("X-Diagnosis".to_owned(), "connect_refused".to_owned()),
            ("X-Diagnosis-Hint".to_owned(), "call +1-555-0100".to_owned()),
            (
                "X-Diagnosis-Report".to_owned(),
                "http://evil.example/".to_owned(),
            ),
            ("X-Diagnosis-Evil".to_owned(), "yes".to_owned()),
            ("Proxy-Status".to_owned(), "app-gateway".to_owned()),
        ],
        body: b"down\n".to_vec(),
    })
    .await;
    for detail in ["all", "none"] {
        let triage = Triage::start(&format!(
            "[diagnosis]\ndetail = \"{detail}\"\n{}",
            single_upstream(app.addr, "")
        ))
        .await;
        let resp = client::get(triage.http, "/").await;
        assert_eq!(resp.status, 503, "{resp:?}");
        assert_eq!(resp.headers_all("x-diagnosis"), ["upstream_status"]);
        let hint = resp.headers_all("x-diagnosis-hint");
        assert!(
            hint.len() == 1 && !hint[0].contains("555"),
            "{detail}: {hint:?}"
        );
        assert!(resp.header("x-diagnosis-evil").is_none(), "{detail}");
        assert!(
            resp.headers_all("x-diagnosis-report")
                .iter()
                .all(|url| !url.contains("evil.example")),
            "{detail}: {resp:?}"
        );
        assert_eq!(resp.headers_all("proxy-status")[0], "app-gateway");
    }
}

/// A request whose head Pingora cannot parse gets triage's diagnosed 400 (X-Diagnosis:
/// bad_request, an id, the page), an access line and a metric, instead of a bare 400 nobody
/// could see.
#[tokio::test]
async fn unparsable_request_is_diagnosed_logged_and_counted() {
    let app = origin::spawn(Behavior::ok("ok\n")).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let resp = client::send_raw(
        triage.http,
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon in this header\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("bad_request"));
    assert_eq!(resp.header("x-diagnosis-source"), Some("proxy"));
    let id = resp.header("x-diagnosis-id").expect("an id").to_owned();
    assert!(resp.body_text().contains(&id), "the page names the id");
    assert_eq!(app.requests(), 0);
    let log = triage
        .wait_for_output(&format!("id={id}"), Duration::from_secs(5))
        .await;
    let line = log
        .lines()
        .find(|l| l.contains(&format!("id={id}")))
        .expect("access line");
    assert!(
        line.contains("\"- - -\" 400") && line.contains("diagnosis=bad_request"),
        "{line}"
    );
    let metrics = client::get(triage.admin, "/metrics").await.body_text();
    assert!(
        metrics.contains("triage_upstream_failures_total{cause=\"client_error\",diagnosis=\"bad_request\",phase=\"request\",upstream=\"none\"} 1"),
        "{metrics}"
    );
}
