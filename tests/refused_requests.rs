//! What triage checks before it routes, against a recording origin behind a single route
//! `/public/`: the path is matched in its normal form (percent-encoded dots, unreserved
//! characters and slashes decoded, repeated slashes merged, dot-segments resolved), so no
//! spelling of a path outside `/public/` reaches the app through that route; a path that climbs
//! above `/` and a Host that is not a host name are refused with 400 `bad_request`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::{self, Request, Response};
use support::origin::{self, Behavior, Origin};
use support::triage::Triage;

/// An echoing app behind triage, routed only under `/public/`.
async fn public_only() -> (Origin, Triage) {
    let app = origin::spawn(Behavior::Echo).await;
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\npath_prefix = \"/public/\"\nupstream = \"app\"\n",
        app.addr
    );
    let triage = Triage::start(&config).await;
    (app, triage)
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    client::send(addr, Request::get(path))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Asserts a triage-made answer: this status and diagnosis, and (for a 400) this detail.
fn assert_answer(what: &str, response: &Response, status: u16, diagnosis: &str) {
    assert_eq!(response.status, status, "{what}: {response:?}");
    assert_eq!(
        response.header("x-diagnosis"),
        Some(diagnosis),
        "{what}: {response:?}"
    );
    assert_eq!(
        response.header("x-diagnosis-source"),
        Some("proxy"),
        "{what}"
    );
}

/// Every spelling of a path outside `/public/` that starts with `/public/` (dot-segments, as
/// they are or percent-encoded in either case, with an encoded slash, behind a doubled slash)
/// is matched where it really points: no route (404 `no_route`); one that climbs above `/` is
/// 400 `bad_request`. None reaches the app.
#[tokio::test]
async fn paths_are_matched_where_they_point() {
    let (app, triage) = public_only().await;
    for (path, status, diagnosis) in [
        ("/public/../secret", 404, "no_route"),
        ("/public/%2e%2e/secret", 404, "no_route"),
        ("/public/./../admin/delete", 404, "no_route"),
        ("/public/%2E%2E/x", 404, "no_route"),
        ("/public/..%2fsecret", 404, "no_route"),
        ("/public/.%2e/secret", 404, "no_route"),
        ("/public/a/..%2F..%2Fsecret", 404, "no_route"),
        ("/public//../secret", 404, "no_route"),
        ("/public/..", 404, "no_route"),
        ("/../x", 400, "bad_request"),
        ("/public/../../x", 400, "bad_request"),
        ("/public/%2e%2e%2f%2e%2e%2fx", 400, "bad_request"),
    ] {
        let response = get(triage.http, path).await;
        assert_answer(path, &response, status, diagnosis);
        if status == 400 {
            assert_eq!(
                response.header("x-diagnosis-detail"),
                Some("path climbs above / with dot-segments"),
                "{path}"
            );
        }
    }
    assert_eq!(app.requests(), 0, "{:?}", app.received());
}

/// The same holds for an absolute-form request target (`GET http://host/path`).
#[tokio::test]
async fn absolute_form_paths_are_matched_where_they_point() {
    let (app, triage) = public_only().await;
    let outside = client::send_raw(
        triage.http,
        b"GET http://localhost/public/../secret HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(10),
    )
    .await
    .expect("response");
    assert_answer("absolute-form outside", &outside, 404, "no_route");
    assert_eq!(app.requests(), 0, "{:?}", app.received());
    let inside = client::send_raw(
        triage.http,
        b"GET http://localhost/public/./a/../b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await
    .expect("response");
    assert_eq!(inside.status, 200, "{inside:?}");
    assert_eq!(inside.header("x-echo-target"), Some("/public/b"));
}

/// A path with dot-segments that stays inside the route reaches the app resolved, so the app
/// gets exactly the path that was matched (and the query as sent, dots and all).
#[tokio::test]
async fn dot_segments_inside_the_route_reach_the_app_resolved() {
    let (app, triage) = public_only().await;
    for (path, target) in [
        ("/public/./a/../b", "/public/b"),
        ("/public/%2e/a/%2E%2E/b/", "/public/b/"),
        ("/public/a/..%2Fb", "/public/b"),
        ("/public/./a?x=../y", "/public/a?x=../y"),
        // Outside /public/ to an app that keeps %2F encoded, if it got this as sent.
        ("/a/b%2F..%2F..%2Fpublic/x", "/public/x"),
    ] {
        let response = get(triage.http, path).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("x-echo-target"), Some(target), "{path}");
    }
    assert_eq!(app.requests(), 5);
}

/// A path without dot-segments is matched in normal form (percent-encoded unreserved
/// characters and slashes decoded, repeated slashes merged) but reaches the app as the client
/// sent it, as nginx's `proxy_pass` without a URI passes it: `%2F` stays encoded for apps that
/// keep it inside a segment.
#[tokio::test]
async fn other_paths_match_normalized_and_reach_the_app_as_sent() {
    let (_app, triage) = public_only().await;
    for path in [
        "/%70ublic/x",
        "/public%2Fx",
        "/public/group%2Fproject",
        "//public//x",
        "/public/a%20b",
    ] {
        let response = get(triage.http, path).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("x-echo-target"), Some(path), "{path}");
    }
    let outside = get(triage.http, "/%73ecret/public/").await;
    assert_answer("/%73ecret/public/", &outside, 404, "no_route");
}

/// Percent-encoding that decodes to nothing (a `%` without two hex digits) or to a NUL is
/// refused, as nginx refuses it: the app could read either its own way.
#[tokio::test]
async fn malformed_percent_encoding_is_refused() {
    let (app, triage) = public_only().await;
    for (path, detail) in [
        ("/public/%zz", "path has a % not followed by two hex digits"),
        ("/public/%2", "path has a % not followed by two hex digits"),
        (
            "/public/100%",
            "path has a % not followed by two hex digits",
        ),
        ("/public/a%00b", "path has an encoded NUL (%00)"),
    ] {
        let response = get(triage.http, path).await;
        assert_answer(path, &response, 400, "bad_request");
        assert_eq!(
            response.header("x-diagnosis-detail"),
            Some(detail),
            "{path}"
        );
    }
    assert_eq!(app.requests(), 0, "{:?}", app.received());
}

/// A Host with a space, a tab, a byte above 0x7f, a slash or another byte no host name has is
/// 400 `bad_request` and never reaches the app (nor its logs, nor X-Forwarded-Host); host
/// names, IP addresses and IPv6 literals, with or without a port, pass.
#[tokio::test]
async fn a_host_that_is_not_a_host_is_refused() {
    let (app, triage) = public_only().await;
    for host in [
        &b"local host"[..],
        b"local\thost",
        b"local\xffhost",
        b"local/host",
        b"local\"host",
        b"<script>",
        b"a%zzb",
        b"[::1",
        b"[::1]x",
        b"localhost:80x",
        b":8080",
    ] {
        let mut raw = b"GET /public/ HTTP/1.1\r\nHost: ".to_vec();
        raw.extend_from_slice(host);
        raw.extend_from_slice(b"\r\n\r\n");
        let what = String::from_utf8_lossy(host).into_owned();
        let response = client::send_raw(triage.http, &raw, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("Host {what:?}: {e}"));
        assert_answer(&what, &response, 400, "bad_request");
        assert_eq!(
            response.header("x-diagnosis-detail"),
            Some("Host is not a valid host name"),
            "{what:?}"
        );
        assert_eq!(response.header("connection"), Some("close"), "{what:?}");
    }
    assert_eq!(app.requests(), 0, "{:?}", app.received());
    for host in [
        "shop.example",
        "shop.example:8080",
        "127.0.0.1:80",
        "[::1]:8080",
        "xn--bcher-kva.example",
        "my_host.internal",
        "",
    ] {
        let response = client::send(triage.http, Request::get("/public/").header("Host", host))
            .await
            .unwrap_or_else(|e| panic!("Host {host:?}: {e}"));
        assert_eq!(response.status, 200, "Host {host:?}: {response:?}");
    }
}
