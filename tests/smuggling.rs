//! Request smuggling: a request whose body framing two HTTP parsers could read differently
//! never reaches the app as sent. Each probe is sent as raw bytes to triage in front of a
//! recording origin, and carries a second request, `GET /smuggled`, hidden where one reading of
//! its framing would find it. For every probe the test states exactly what the client sees:
//!
//! - refused by Pingora's HTTP/1 parser (a bare `400` with no `X-Diagnosis`: the request never
//!   became a request, so triage never saw it);
//! - refused by triage (`400` with `X-Diagnosis: bad_request` and the reason in
//!   `X-Diagnosis-Detail`, the connection closed);
//! - or forwarded as one request, framed the one way every parser reads it (a single
//!   canonical `Content-Length`, or `Transfer-Encoding: chunked`).
//!
//! And the app never sees a second, smuggled request.

mod support;

use std::time::Duration;
use support::client::{self, Response};
use support::origin::{self, Behavior, ReceivedRequest};
use support::triage::{single_upstream, Triage};

/// The request a probe hides in its body, for a parser that reads the framing the other way.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// What the client must see for a probe.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Pingora's parser refuses the request head: triage answers it through its
    /// `invalid_request` hook, 400 bad_request with Pingora's own error as the detail.
    RefusedByParser,
    /// triage refuses it before routing: 400 bad_request with this detail.
    Refused(&'static str),
    /// The app gets exactly one request, with this single `Content-Length` (or chunked when
    /// `None`) and this body.
    Forwarded {
        content_length: Option<&'static str>,
        body: &'static str,
    },
}

const BOTH: Expect = Expect::Refused("both Content-Length and Transfer-Encoding");
const NOT_CHUNKED: Expect = Expect::Refused("Transfer-Encoding is not exactly chunked");

/// A POST head with these header lines (each ending in CRLF unless it says otherwise), then
/// the body.
fn post(header_lines: &str, body: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: localhost\r\n{header_lines}\r\n{body}").into_bytes()
}

/// A chunked body of one chunk `data`.
fn chunked(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len())
}

/// The probes: CL.TE, TE.CL, TE.TE obfuscations, duplicate and malformed Content-Length,
/// obs-fold, bare LF and bare CR, each with the answer it must get.
fn probes() -> Vec<(&'static str, Vec<u8>, Expect)> {
    // The chunked reading ends at the zero chunk; a Content-Length reader takes all of it.
    let cl_te_body = format!("0\r\n\r\n{SMUGGLED}");
    // A Content-Length reader stops after the chunk-size line (4 bytes: "2b\r\n"); the
    // chunked reader takes it all.
    let te_cl_body = chunked(SMUGGLED);
    vec![
        (
            "CL.TE",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
            BOTH,
        ),
        (
            "TE.CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                &te_cl_body,
            ),
            BOTH,
        ),
        (
            "CL.TE with the Transfer-Encoding hidden behind a bare LF",
            post(
                &format!(
                    "X-Padding: a\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
            BOTH,
        ),
        (
            "TE.TE: Transfer-Encoding: xchunked",
            post(
                &format!(
                    "Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
            Expect::RefusedByParser,
        ),
        (
            "TE.TE: a space before the colon",
            post(
                &format!(
                    "Transfer-Encoding : chunked\r\nContent-Length: {}\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
            Expect::RefusedByParser,
        ),
        (
            "TE.TE: Transfer-Encoding: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", &te_cl_body),
            Expect::RefusedByParser,
        ),
        (
            "TE.TE: two lines, chunked then identity",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                &te_cl_body,
            ),
            Expect::RefusedByParser,
        ),
        (
            "TE.TE: two lines, identity then chunked",
            post(
                "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                &te_cl_body,
            ),
            NOT_CHUNKED,
        ),
        (
            "TE.TE: two lines, chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &te_cl_body,
            ),
            NOT_CHUNKED,
        ),
        (
            "TE.TE: Transfer-Encoding: gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", &te_cl_body),
            NOT_CHUNKED,
        ),
        (
            "TE.TE: obs-fold",
            post("Transfer-Encoding:\r\n chunked\r\n", &te_cl_body),
            Expect::RefusedByParser,
        ),
        (
            "Transfer-Encoding: chunked in an HTTP/1.0 request",
            format!(
                "POST /upload HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{te_cl_body}"
            )
            .into_bytes(),
            Expect::RefusedByParser,
        ),
        (
            "Transfer-Encoding in other case and with whitespace",
            post("Transfer-Encoding: \tChunked \r\n", &chunked("hello")),
            Expect::Forwarded {
                content_length: None,
                body: "hello",
            },
        ),
        (
            "two identical Content-Length lines",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Expect::Forwarded {
                content_length: Some("5"),
                body: "hello",
            },
        ),
        (
            "Content-Length: 5, 5",
            post("Content-Length: 5, 5\r\n", "hello"),
            Expect::Forwarded {
                content_length: Some("5"),
                body: "hello",
            },
        ),
        (
            "Content-Length: 05",
            post("Content-Length: 05\r\n", "hello"),
            Expect::Forwarded {
                content_length: Some("5"),
                body: "hello",
            },
        ),
        (
            "Content-Length: 5, 6",
            post(
                "Content-Length: 5, 6\r\n",
                &format!("hello{SMUGGLED}"),
            ),
            Expect::RefusedByParser,
        ),
        (
            "two differing Content-Length lines",
            post(
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                &format!("hello{SMUGGLED}"),
            ),
            Expect::RefusedByParser,
        ),
        (
            "Content-Length: +5",
            post("Content-Length: +5\r\n", &format!("hello{SMUGGLED}")),
            Expect::RefusedByParser,
        ),
        (
            "obs-fold on another header",
            post(
                "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
                &format!("hello{SMUGGLED}"),
            ),
            Expect::RefusedByParser,
        ),
        (
            "a bare CR in a header value",
            post(
                "X-Padding: a\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                &format!("hello{SMUGGLED}"),
            ),
            Expect::RefusedByParser,
        ),
        (
            "bare LF line endings throughout",
            b"POST /upload HTTP/1.1\nHost: localhost\nContent-Length: 5\n\nhello".to_vec(),
            Expect::Forwarded {
                content_length: Some("5"),
                body: "hello",
            },
        ),
    ]
}

/// What the client and the app saw for a probe, in the terms of [`Expect`].
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    RefusedByParser,
    Refused(String),
    Forwarded {
        content_length: Option<String>,
        body: String,
    },
    /// Anything else, described.
    Other(String),
}

impl From<Expect> for Seen {
    fn from(expect: Expect) -> Seen {
        match expect {
            Expect::RefusedByParser => Seen::RefusedByParser,
            Expect::Refused(detail) => Seen::Refused(detail.to_owned()),
            Expect::Forwarded {
                content_length,
                body,
            } => Seen::Forwarded {
                content_length: content_length.map(str::to_owned),
                body: body.to_owned(),
            },
        }
    }
}

/// The values of a header the app received, in order.
fn received_values<'a>(request: &'a ReceivedRequest, name: &str) -> Vec<&'a str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Sums up a probe's response and the requests the app received for it.
fn seen(response: &Response, received: &[ReceivedRequest]) -> Seen {
    let closed = response.header("connection") == Some("close");
    match (response.status, received) {
        (400, []) if closed => match response.header("x-diagnosis") {
            Some("bad_request") => {
                let detail = response.header("x-diagnosis-detail").unwrap_or("");
                if detail.starts_with("Downstream InvalidHTTPHeader") {
                    Seen::RefusedByParser
                } else {
                    Seen::Refused(detail.to_owned())
                }
            }
            None => Seen::Other("a bare 400, without triage's diagnosis".to_owned()),
            Some(other) => Seen::Other(format!("400 with X-Diagnosis {other}")),
        },
        (200, [request]) if request.target == "/upload" => {
            let lengths = received_values(request, "content-length");
            let encodings = received_values(request, "transfer-encoding");
            let body = String::from_utf8_lossy(&request.body).into_owned();
            match (lengths.as_slice(), encodings.as_slice()) {
                ([length], []) => Seen::Forwarded {
                    content_length: Some((*length).to_owned()),
                    body,
                },
                ([], ["chunked"]) => Seen::Forwarded {
                    content_length: None,
                    body,
                },
                _ => Seen::Other(format!("forwarded with framing {:?}", request.headers)),
            }
        }
        _ => Seen::Other(format!(
            "{} (X-Diagnosis {:?}, Connection {:?}), the app got {received:?}",
            response.status,
            response.header("x-diagnosis"),
            response.header("connection"),
        )),
    }
}

/// Every probe gets the answer stated for it (refused by the parser, refused by triage with
/// the reason, or forwarded as one request with one unambiguous framing), and the app never
/// sees the request each probe hides, nor any request beyond the forwarded ones.
#[tokio::test]
async fn smuggling_probes_never_reach_the_app_twice() {
    let app = origin::spawn(Behavior::Echo).await;
    let triage = Triage::start(&single_upstream(app.addr, "")).await;
    let probes = probes();
    let mut forwarded = 0;
    let mut wrong = Vec::new();
    for (name, raw, expect) in &probes {
        let before = app.requests();
        let response = client::send_raw(triage.http, raw, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let received: Vec<_> = app.received().into_iter().skip(before).collect();
        let seen = seen(&response, &received);
        if seen != Seen::from(*expect) {
            wrong.push(format!("{name}: expected {expect:?}, saw {seen:?}"));
        }
        if let Expect::Forwarded { .. } = expect {
            forwarded += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} probes:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // A request of its own after the probes: whatever a probe left on a pooled upstream
    // connection would be in front of it.
    let after = client::get(triage.http, "/after").await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(after.header("x-echo-target"), Some("/after"), "{after:?}");
    let received = app.received();
    assert!(
        received.iter().all(|r| r.target != "/smuggled"),
        "a smuggled request reached the app: {received:?}"
    );
    assert_eq!(received.len(), forwarded + 1, "{received:?}");
}
