//! Self-tests of the support code: each behaviour, certificate, DNS answer and client outcome
//! checked from a client's point of view, so that an integration test failing against triage
//! is triage's failure, not the harness's.
//!
//! Not a module of `support` (each integration test binary would run these again); mount it
//! once from a test file of its own, at the crate root next to `support`:
//! `mod support; #[path = "support/selftest.rs"] mod selftest;`

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::certs::{CertifiedKey, TestPki};
use crate::support::client::{self, ClientError, Request};
use crate::support::dns::{self, DnsMode};
use crate::support::http1::WireReader;
use crate::support::origin::{self, Behavior};
use crate::support::triage;

/// Deadline for the raw reads these tests do themselves.
const SHORT: Duration = Duration::from_secs(5);

/// Connects over TLS to `addr` with SNI `server_name`, trusting `config`'s roots.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .expect("a valid server name");
    tokio::time::timeout(
        SHORT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake finished in time")
}

/// The rustls error inside an I/O error from a TLS handshake, if that is what it is.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The certificate error a TLS client got from the origin, or a panic saying what else it got.
async fn certificate_error(origin_cert: CertifiedKey, pki: &TestPki) -> rustls::CertificateError {
    let origin = origin::spawn(Behavior::tls(origin_cert, Behavior::ok("secret"))).await;
    let error = tls_connect(origin.addr, pki.client_config(), "localhost")
        .await
        .expect_err("the handshake must fail");
    match rustls_error(&error) {
        Some(rustls::Error::InvalidCertificate(reason)) => reason.clone(),
        other => panic!("expected a certificate error, got {other:?} ({error})"),
    }
}

/// Reads from a raw socket until EOF or error, bounded by `SHORT`.
async fn read_to_end_or_error(tcp: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut received = Vec::new();
    let result = tokio::time::timeout(SHORT, async {
        let mut buf = [0u8; 4096];
        for _ in 0..10_000 {
            match tcp.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .expect("the origin ended the connection in time");
    (received, result)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

mod origin_behaviours {
    use super::*;

    /// Respond answers with its status, headers and body, and keeps the connection alive.
    #[tokio::test]
    async fn respond_answers_and_keeps_alive() {
        let origin = origin::spawn(Behavior::Respond {
            status: 503,
            headers: vec![("Retry-After".into(), "5".into())],
            body: b"database down".to_vec(),
        })
        .await;
        let mut conn = client::Connection::connect(origin.addr).await.unwrap();
        for _ in 0..2 {
            let response = conn.send(Request::get("/db")).await.unwrap();
            assert_eq!(response.status, 503);
            assert_eq!(response.reason, "Service Unavailable");
            assert_eq!(response.header("retry-after"), Some("5"));
            assert_eq!(response.header("content-length"), Some("13"));
            assert_eq!(response.body_text(), "database down");
            assert!(response.complete);
        }
        assert_eq!(origin.connections(), 1);
        assert_eq!(origin.requests(), 2);
        assert_eq!(origin.received()[1].target, "/db");
    }

    /// Respond honours `Connection: close` from the client: it says so and closes.
    #[tokio::test]
    async fn respond_closes_when_asked() {
        let origin = origin::spawn(Behavior::ok("hi")).await;
        let mut tcp = TcpStream::connect(origin.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (received, result) = read_to_end_or_error(&mut tcp).await;
        result.unwrap();
        let text = String::from_utf8(received).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
    }

    /// A HEAD request gets the head only, with the Content-Length a GET would have.
    #[tokio::test]
    async fn respond_to_head_has_no_body() {
        let origin = origin::spawn(Behavior::ok("twelve bytes")).await;
        let response = client::send(origin.addr, Request::head("/")).await.unwrap();
        assert_eq!(response.header("content-length"), Some("12"));
        assert!(response.body.is_empty());
        assert!(response.complete);
    }

    /// Nothing listens on refused_addr: connecting is refused.
    #[tokio::test]
    async fn refused_addr_refuses() {
        let error = client::send(origin::refused_addr(), Request::get("/"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Connect(_)), "{error}");
        assert_eq!(error.io_kind(), Some(io::ErrorKind::ConnectionRefused));
    }

    /// ResetBeforeResponse makes the client's read fail with ECONNRESET, not see a FIN.
    #[tokio::test]
    async fn reset_before_response_resets() {
        let origin = origin::spawn(Behavior::ResetBeforeResponse).await;
        let error = client::send(origin.addr, Request::get("/"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::Read { received, .. } if received.is_empty()),
            "{error}"
        );
        assert_eq!(error.io_kind(), Some(io::ErrorKind::ConnectionReset));
        assert_eq!(
            origin.requests(),
            1,
            "the request was read before the reset"
        );
    }

    /// CloseBeforeResponse ends the connection cleanly without a byte.
    #[tokio::test]
    async fn close_before_response_closes_cleanly() {
        let origin = origin::spawn(Behavior::CloseBeforeResponse).await;
        let mut tcp = TcpStream::connect(origin.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        let (received, result) = read_to_end_or_error(&mut tcp).await;
        assert!(received.is_empty());
        result.expect("a clean EOF, not an error");
        let error = client::send(origin.addr, Request::get("/"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::Closed { received } if received.is_empty()),
            "{error}"
        );
    }

    /// Stall reads the request, sends nothing, and keeps the connection open until the
    /// origin is dropped, which then closes it.
    #[tokio::test]
    async fn stall_holds_until_dropped() {
        let origin = origin::spawn(Behavior::Stall).await;
        let mut tcp = TcpStream::connect(origin.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        let mut buf = [0u8; 64];
        let silent = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await;
        assert!(silent.is_err(), "stalled origin sent {silent:?}");
        assert_eq!(origin.requests(), 1);
        drop(origin);
        let (received, _) = read_to_end_or_error(&mut tcp).await;
        assert!(received.is_empty());
    }

    /// A dropped origin stops accepting connections.
    #[tokio::test]
    async fn dropped_origin_refuses() {
        let origin = origin::spawn(Behavior::ok("")).await;
        let addr = origin.addr;
        drop(origin);
        // The abort takes effect when the runtime next polls the accept task.
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{addr} still accepts after the origin was dropped");
    }

    /// Garbage writes exactly its bytes and closes; the client reports them as not HTTP.
    #[tokio::test]
    async fn garbage_is_sent_verbatim() {
        let origin = origin::spawn(Behavior::Garbage(b"HELLO WORLD\r\n\r\n".to_vec())).await;
        let mut tcp = TcpStream::connect(origin.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        let (received, result) = read_to_end_or_error(&mut tcp).await;
        result.unwrap();
        assert_eq!(received, b"HELLO WORLD\r\n\r\n");
        let error = client::send(origin.addr, Request::get("/"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Malformed { .. }), "{error}");
    }

    /// HugeHeaders sends one header of exactly the asked length in an otherwise valid head.
    #[tokio::test]
    async fn huge_headers_sends_one_long_header() {
        let origin = origin::spawn(Behavior::HugeHeaders { bytes: 100_000 }).await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-huge").map(str::len), Some(100_000));
        assert!(response.complete && response.body.is_empty());
    }

    /// BodyReset announces more than it sends, then resets: the client gets the head, the
    /// partial body, and ECONNRESET.
    #[tokio::test]
    async fn body_reset_cuts_with_rst() {
        let origin = origin::spawn(Behavior::BodyReset {
            announced: 1000,
            sent: 100,
        })
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-length"), Some("1000"));
        assert_eq!(response.body, vec![b'x'; 100]);
        assert!(!response.complete);
        assert_eq!(response.body_error, Some(io::ErrorKind::ConnectionReset));
    }

    /// BodyClose announces more than it sends, then closes cleanly: incomplete, no error.
    #[tokio::test]
    async fn body_close_cuts_with_fin() {
        let origin = origin::spawn(Behavior::BodyClose {
            announced: 1000,
            sent: 10,
        })
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.body.len(), 10);
        assert!(!response.complete);
        assert_eq!(response.body_error, None);
    }

    /// BodyStall sends the head and part of the body, then nothing, without closing.
    #[tokio::test]
    async fn body_stall_goes_silent() {
        let origin = origin::spawn(Behavior::BodyStall {
            announced: 1000,
            sent: 10,
        })
        .await;
        let tcp = TcpStream::connect(origin.addr).await.unwrap();
        let mut wire = WireReader::new(tcp);
        wire.stream.write_all(GET).await.unwrap();
        let head = tokio::time::timeout(SHORT, wire.read_head(64 * 1024))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.header("content-length"), Some("1000"));
        let body = tokio::time::timeout(
            Duration::from_millis(300),
            wire.read_body(crate::support::http1::Framing::Length(10), 10),
        )
        .await
        .expect("the 10 bytes sent arrive");
        assert!(body.complete);
        let mut buf = [0u8; 16];
        let more = tokio::time::timeout(Duration::from_millis(300), wire.stream.read(&mut buf));
        assert!(more.await.is_err(), "nothing more arrives, and no EOF");
    }

    /// The client's deadline turns a stalled body into a test failure, not a hang.
    #[tokio::test]
    #[should_panic(expected = "no complete response within")]
    async fn client_deadline_panics_on_a_stalled_body() {
        let origin = origin::spawn(Behavior::BodyStall {
            announced: 1000,
            sent: 10,
        })
        .await;
        let request = Request::get("/").timeout(Duration::from_millis(300));
        let _ = client::send(origin.addr, request).await;
    }

    /// SlowHeaders answers only after its delay, then normally.
    #[tokio::test]
    async fn slow_headers_waits_then_answers() {
        let origin = origin::spawn(Behavior::SlowHeaders {
            delay: Duration::from_millis(200),
            status: 201,
        })
        .await;
        let started = Instant::now();
        let response = client::get(origin.addr, "/").await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(response.status, 201);
        assert!(response.complete);
    }

    /// Echo lists the request headers as received, lowercased, one per line, and describes
    /// the request line and body in x-echo-* headers.
    #[tokio::test]
    async fn echo_lists_request_headers() {
        let origin = origin::spawn(Behavior::Echo).await;
        let request = Request::post("/submit?x=1", "12345")
            .header("X-Diagnosis-Fake", "spoof")
            .header("Accept", "application/json");
        let response = client::send(origin.addr, request).await.unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&response.body)
            .unwrap()
            .lines()
            .collect();
        assert_eq!(
            lines,
            [
                "host: localhost",
                "x-diagnosis-fake: spoof",
                "accept: application/json",
                "content-length: 5",
                "connection: close",
            ]
        );
        assert_eq!(response.header("x-echo-method"), Some("POST"));
        assert_eq!(response.header("x-echo-target"), Some("/submit?x=1"));
        assert_eq!(response.header("x-echo-body-length"), Some("5"));
        assert_eq!(origin.received()[0].body, b"12345");
    }

    /// A chunked request body is read (and decoded) before the origin answers.
    #[tokio::test]
    async fn chunked_request_body_is_read() {
        let origin = origin::spawn(Behavior::Echo).await;
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        let response = client::send_raw(origin.addr, raw, SHORT).await.unwrap();
        assert_eq!(response.header("x-echo-body-length"), Some("5"));
        assert_eq!(origin.received()[0].body, b"abcde");
    }

    /// A request that is not HTTP (here a TLS ClientHello's first bytes) is answered 400 at
    /// once, as nginx does, rather than waiting for a blank line that never comes.
    #[tokio::test]
    async fn non_http_request_gets_400() {
        let origin = origin::spawn(Behavior::ok("")).await;
        let raw = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        let response = client::send_raw(origin.addr, &raw, SHORT).await.unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(origin.requests(), 0);
    }

    /// SpeaksFirst greets without waiting for a request; an HTTP client sees it as garbage.
    #[tokio::test]
    async fn speaks_first_greets_before_the_request() {
        let origin =
            origin::spawn(Behavior::SpeaksFirst(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())).await;
        let mut tcp = TcpStream::connect(origin.addr).await.unwrap();
        let (received, result) = read_to_end_or_error(&mut tcp).await;
        result.unwrap();
        assert_eq!(received, b"SSH-2.0-OpenSSH_9.6\r\n");
        let error = client::send(origin.addr, Request::get("/"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Closed { .. }), "{error}");
    }

    /// A `Connection: close` in Respond's headers closes the connection after the response.
    #[tokio::test]
    async fn respond_with_connection_close_header_closes() {
        let origin = origin::spawn(Behavior::Respond {
            status: 200,
            headers: vec![("Connection".into(), "close".into())],
            body: b"bye".to_vec(),
        })
        .await;
        let mut conn = client::Connection::connect(origin.addr).await.unwrap();
        let response = conn.send(Request::get("/")).await.unwrap();
        assert_eq!(response.body_text(), "bye");
        let error = conn.send(Request::get("/")).await.unwrap_err();
        assert!(error.io_kind().is_some() || matches!(error, ClientError::Closed { .. }));
        assert_eq!(origin.requests(), 1);
    }

    /// spawn_same_port gives two origins on one port, on 127.0.0.1 and ::1.
    #[tokio::test]
    async fn same_port_on_both_loopbacks() {
        let (v4, v6) = origin::spawn_same_port(Behavior::ok("four"), Behavior::ok("six")).await;
        assert_eq!(v4.addr.port(), v6.addr.port());
        assert_eq!(v4.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(v6.addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(client::get(v4.addr, "/").await.body_text(), "four");
        assert_eq!(client::get(v6.addr, "/").await.body_text(), "six");
    }
}

mod tls {
    use super::*;

    /// A leaf signed by the test CA is accepted, and the inner behaviour is served over TLS.
    #[tokio::test]
    async fn valid_leaf_serves_inner_over_tls() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::tls(
            pki.leaf(&["localhost"]),
            Behavior::ok("secret"),
        ))
        .await;
        let tls = tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .expect("a valid certificate is accepted");
        let mut wire = WireReader::new(tls);
        wire.stream.write_all(GET).await.unwrap();
        let head = wire.read_head(64 * 1024).await.unwrap();
        assert_eq!(head.start_line, "HTTP/1.1 200 OK");
        let body = wire
            .read_body(crate::support::http1::Framing::Length(6), 6)
            .await;
        assert_eq!(body.bytes, b"secret");
    }

    /// An IP address name becomes an IP SAN that a client connecting by IP accepts.
    #[tokio::test]
    async fn leaf_for_an_ip_address() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::tls(pki.leaf(&["127.0.0.1"]), Behavior::ok(""))).await;
        tls_connect(origin.addr, pki.client_config(), "127.0.0.1")
            .await
            .expect("the IP SAN matches");
    }

    /// An expired leaf fails the client's handshake with an expiry error.
    #[tokio::test]
    async fn expired_leaf_is_rejected_as_expired() {
        let pki = TestPki::new();
        let reason = certificate_error(pki.expired_leaf(&["localhost"]), &pki).await;
        assert!(
            matches!(
                reason,
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
            ),
            "{reason:?}"
        );
    }

    /// A leaf valid only from next year fails with a not-yet-valid error.
    #[tokio::test]
    async fn future_leaf_is_rejected_as_not_yet_valid() {
        let pki = TestPki::new();
        let reason = certificate_error(pki.not_yet_valid_leaf(&["localhost"]), &pki).await;
        assert!(
            matches!(
                reason,
                rustls::CertificateError::NotValidYet
                    | rustls::CertificateError::NotValidYetContext { .. }
            ),
            "{reason:?}"
        );
    }

    /// A self-signed certificate fails with "unknown issuer" for a client trusting the CA.
    #[tokio::test]
    async fn self_signed_is_rejected_as_unknown_issuer() {
        let pki = TestPki::new();
        let reason = certificate_error(pki.self_signed(&["localhost"]), &pki).await;
        assert_eq!(reason, rustls::CertificateError::UnknownIssuer);
    }

    /// A leaf for another name fails with a name mismatch when the client asks for localhost.
    #[tokio::test]
    async fn wrong_name_is_rejected_as_name_mismatch() {
        let pki = TestPki::new();
        let reason = certificate_error(pki.leaf(&["other.example"]), &pki).await;
        assert!(
            matches!(
                reason,
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ),
            "{reason:?}"
        );
    }

    /// A failed handshake only closes that connection: the origin serves the next one.
    #[tokio::test]
    async fn failed_handshake_does_not_stop_the_origin() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::tls(pki.leaf(&["localhost"]), Behavior::ok(""))).await;
        let other_pki = TestPki::new();
        tls_connect(origin.addr, other_pki.client_config(), "localhost")
            .await
            .expect_err("another CA's client rejects the certificate");
        tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .expect("the origin still serves");
        assert_eq!(origin.connections(), 2);
    }

    /// Reset over TLS is a real RST (no close_notify): the TLS client's read fails with
    /// ECONNRESET.
    #[tokio::test]
    async fn reset_over_tls_is_a_real_reset() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::tls(
            pki.leaf(&["localhost"]),
            Behavior::ResetBeforeResponse,
        ))
        .await;
        let mut tls = tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .unwrap();
        tls.write_all(GET).await.unwrap();
        let mut buf = [0u8; 64];
        let error = tokio::time::timeout(SHORT, tls.read(&mut buf))
            .await
            .unwrap()
            .expect_err("a reset, not data or EOF");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    /// A cut body over TLS: the client gets the partial body, then the connection ends.
    #[tokio::test]
    async fn body_close_over_tls() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::tls(
            pki.leaf(&["localhost"]),
            Behavior::BodyClose {
                announced: 100,
                sent: 7,
            },
        ))
        .await;
        let tls = tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .unwrap();
        let mut wire = WireReader::new(tls);
        wire.stream.write_all(GET).await.unwrap();
        wire.read_head(64 * 1024).await.unwrap();
        let body = wire
            .read_body(crate::support::http1::Framing::Length(100), 100)
            .await;
        assert_eq!(body.bytes.len(), 7);
        assert!(!body.complete);
    }

    /// SpeaksTls answers a plain HTTP request with a TLS alert record, which is not HTTP.
    #[tokio::test]
    async fn speaks_tls_answers_plain_http_with_tls_bytes() {
        let origin = origin::spawn(Behavior::SpeaksTls).await;
        let error = client::send(origin.addr, Request::get("/"))
            .await
            .unwrap_err();
        match &error {
            ClientError::Malformed { received, .. } => {
                assert_eq!(received[..2], [0x15, 0x03], "a TLS alert record: {error}")
            }
            other => panic!("expected TLS bytes, got {other}"),
        }
    }

    /// SpeaksTls is a working TLS server (self-signed for localhost) answering 200.
    #[tokio::test]
    async fn speaks_tls_serves_tls_clients() {
        let origin = origin::spawn(Behavior::SpeaksTls).await;
        // SpeaksTls makes its own certificate, which no test CA signed: the handshake gets as
        // far as checking it (unknown issuer) rather than failing earlier.
        let pki = TestPki::new();
        let reason = {
            let error = tls_connect(origin.addr, pki.client_config(), "localhost")
                .await
                .unwrap_err();
            rustls_error(&error).cloned()
        };
        assert_eq!(
            reason,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
    }

    /// A TLS client talking to a plain HTTP origin fails with a corrupt-message error, since
    /// the origin answers its ClientHello with a plain-text 400.
    #[tokio::test]
    async fn tls_client_on_plain_origin_gets_plaintext() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::ok("plain")).await;
        let error = tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .unwrap_err();
        assert!(
            matches!(rustls_error(&error), Some(rustls::Error::InvalidMessage(_))),
            "{error:?}"
        );
    }

    /// SpeaksFirst with the handshake-failure alert fails a TLS client's handshake with it.
    #[tokio::test]
    async fn handshake_failure_alert_fails_the_handshake() {
        let pki = TestPki::new();
        let origin = origin::spawn(Behavior::SpeaksFirst(
            origin::TLS_HANDSHAKE_FAILURE_ALERT.to_vec(),
        ))
        .await;
        let error = tls_connect(origin.addr, pki.client_config(), "localhost")
            .await
            .unwrap_err();
        assert_eq!(
            rustls_error(&error),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            ))
        );
    }

    /// The CA file written for a proxy's ca_file holds the CA certificate in PEM.
    #[test]
    fn ca_file_holds_the_ca_pem() {
        let pki = TestPki::new();
        let dir = triage::temp_dir();
        let path = pki.write_ca_file(dir.path());
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(text, pki.ca_pem());
    }
}

mod client_reading {
    use super::*;

    /// A chunked response is decoded, extensions and trailers included, and complete.
    #[tokio::test]
    async fn chunked_body_is_decoded() {
        let origin = origin::spawn(Behavior::Respond {
            status: 200,
            headers: vec![("Transfer-Encoding".into(), "chunked".into())],
            body: b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
        })
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.body_text(), "hello, world");
        assert!(response.complete);
    }

    /// A chunked response without its last chunk is incomplete.
    #[tokio::test]
    async fn chunked_body_without_last_chunk_is_incomplete() {
        let origin = origin::spawn(Behavior::Garbage(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        ))
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.body_text(), "hello");
        assert!(!response.complete);
    }

    /// Without Content-Length or chunking, the body runs to the close, and is complete.
    #[tokio::test]
    async fn close_delimited_body() {
        let origin = origin::spawn(Behavior::Garbage(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\n\r\nuntil the end".to_vec(),
        ))
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.body_text(), "until the end");
        assert!(response.complete);
        assert_eq!(response.header("X-a"), Some("1"));
        assert_eq!(response.headers_all("x-A"), ["1", "2"]);
    }

    /// Interim 1xx responses are skipped; the final response is returned.
    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let origin = origin::spawn(Behavior::Garbage(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ))
        .await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.status, 204);
        assert!(response.complete);
    }

    /// The request carries Host and Connection: close by default, and the test's own values
    /// instead when it sets them.
    #[tokio::test]
    async fn default_headers_unless_set() {
        let origin = origin::spawn(Behavior::Echo).await;
        let response = client::get(origin.addr, "/").await;
        assert_eq!(response.body_text(), "host: localhost\nconnection: close\n");
        let request = Request::get("/")
            .header("Host", "app.example")
            .header("Connection", "close, x-custom");
        let response = client::send(origin.addr, request).await.unwrap();
        assert_eq!(
            response.body_text(),
            "host: app.example\nconnection: close, x-custom\n"
        );
    }
}

mod dns_server {
    use super::*;

    async fn server() -> dns::DnsServer {
        let mut records = HashMap::new();
        records.insert(
            "App.Test".to_owned(),
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        );
        records.insert(
            "v4only.test.".to_owned(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        );
        dns::spawn_dns(records).await
    }

    async fn ask(server: &dns::DnsServer, name: &str, qtype: u16) -> dns::DnsReply {
        dns::lookup(server.addr, name, qtype, SHORT)
            .await
            .expect("a reply")
    }

    /// A and AAAA queries for a known name are answered, case-insensitively, with the
    /// question echoed as asked, TTL 1 and sensible flags.
    #[tokio::test]
    async fn answers_a_and_aaaa() {
        let server = server().await;
        let reply = ask(&server, "aPP.test", dns::TYPE_A).await;
        assert_eq!(reply.rcode, dns::RCODE_NOERROR);
        assert_eq!(reply.question_name, "aPP.test");
        assert_eq!(reply.question_type, dns::TYPE_A);
        assert_eq!(reply.answers, [(IpAddr::V4(Ipv4Addr::LOCALHOST), 1)]);
        assert!(reply.recursion_desired() && reply.recursion_available());
        assert!(reply.authoritative() && !reply.truncated());
        let reply = ask(&server, "app.test.", dns::TYPE_AAAA).await;
        assert_eq!(reply.addrs(), [IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        assert_eq!(server.queries_for("APP.TEST"), 2);
    }

    /// An unknown name is NXDOMAIN; a known one without that record type is NOERROR, empty.
    #[tokio::test]
    async fn nxdomain_and_nodata() {
        let server = server().await;
        let reply = ask(&server, "missing.test", dns::TYPE_A).await;
        assert_eq!(reply.rcode, dns::RCODE_NXDOMAIN);
        assert!(reply.answers.is_empty());
        let reply = ask(&server, "v4only.test", dns::TYPE_AAAA).await;
        assert_eq!(reply.rcode, dns::RCODE_NOERROR);
        assert!(reply.answers.is_empty());
    }

    /// Records changed at run time are served from then on; removed ones become NXDOMAIN.
    #[tokio::test]
    async fn records_change_at_run_time() {
        let server = server().await;
        server.set("v4only.test", vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        let reply = ask(&server, "v4only.test", dns::TYPE_AAAA).await;
        assert_eq!(reply.addrs(), [IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        server.set_ttl(0);
        server.set("new.test", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let reply = ask(&server, "new.test", dns::TYPE_A).await;
        assert_eq!(reply.answers, [(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]);
        server.remove("new.test");
        assert_eq!(
            ask(&server, "new.test", dns::TYPE_A).await.rcode,
            dns::RCODE_NXDOMAIN
        );
    }

    /// Failure modes: SERVFAIL, REFUSED, and silence (the client times out).
    #[tokio::test]
    async fn failure_modes() {
        let server = server().await;
        server.set_mode(DnsMode::ServFail);
        assert_eq!(
            ask(&server, "app.test", dns::TYPE_A).await.rcode,
            dns::RCODE_SERVFAIL
        );
        server.set_mode(DnsMode::Refused);
        assert_eq!(
            ask(&server, "app.test", dns::TYPE_A).await.rcode,
            dns::RCODE_REFUSED
        );
        server.set_mode(DnsMode::Silent);
        let reply = dns::lookup(
            server.addr,
            "app.test",
            dns::TYPE_A,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(reply, None);
        assert_eq!(server.queries(), 3);
    }

    /// A query with two questions is answered FORMERR, header only, with its id.
    #[tokio::test]
    async fn malformed_query_gets_formerr() {
        let server = server().await;
        let mut query = dns::build_query(7, "app.test", dns::TYPE_A);
        query[5] = 2; // QDCOUNT 2, but only one question follows
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        socket.send_to(&query, server.addr).await.unwrap();
        let mut buf = [0u8; 512];
        let (len, _) = tokio::time::timeout(SHORT, socket.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(len, 12);
        assert_eq!(buf[..2], [0, 7]);
        assert_eq!(buf[3] & 0x0F, dns::RCODE_FORMERR);
    }

    /// build_query lays out a standard query byte for byte.
    #[test]
    fn build_query_wire_format() {
        assert_eq!(
            dns::build_query(0x1234, "a.bc.", dns::TYPE_AAAA),
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header, RD
                1, b'a', 2, b'b', b'c', 0, // QNAME
                0, 28, 0, 1, // QTYPE AAAA, QCLASS IN
            ]
        );
    }
}

mod launcher {
    use super::*;
    use std::process::Command;

    /// The config is the generated listeners followed by the test's sections.
    #[test]
    fn config_text_puts_listeners_first() {
        let http: SocketAddr = "127.0.0.1:1111".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        let text = triage::config_text(http, admin, "[[routes]]\npath_prefix = \"/\"");
        assert_eq!(
            text,
            "[listen]\nhttp = [\"127.0.0.1:1111\"]\n[admin]\nlisten = \"127.0.0.1:2222\"\n\n[[routes]]\npath_prefix = \"/\"\n"
        );
    }

    /// The runtime paths go into the test's own `[server]` table, or into one of their own
    /// after the test's sections.
    #[test]
    fn runtime_paths_join_the_server_table() {
        let dir = std::path::Path::new("/t");
        let keys = "upgrade_socket = \"/t/run/upgrade.sock\"\npid_file = \"/t/run/triage.pid\"\n";
        assert_eq!(
            triage::with_runtime_paths(dir, "[[routes]]\npath_prefix = \"/\"\n"),
            format!("[[routes]]\npath_prefix = \"/\"\n[server]\n{keys}")
        );
        assert_eq!(
            triage::with_runtime_paths(dir, "[log]\naccess = false\n[server]\nthreads = 1\n"),
            format!("[log]\naccess = false\n[server]\n{keys}threads = 1\n")
        );
    }

    /// With an https listener, the certificate table comes before `[admin]`, so the test's
    /// sections still follow `[admin]`.
    #[test]
    fn https_config_text_keeps_the_test_sections_last() {
        let http: SocketAddr = "127.0.0.1:1111".parse().unwrap();
        let https: SocketAddr = "127.0.0.1:3333".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        let text = triage::https_config_text(
            http,
            https,
            admin,
            std::path::Path::new("/d/cert.pem"),
            std::path::Path::new("/d/key.pem"),
            "[[routes]]\npath_prefix = \"/\"",
        );
        assert_eq!(
            text,
            "[listen]\nhttp = [\"127.0.0.1:1111\"]\nhttps = [\"127.0.0.1:3333\"]\n[[tls.certificates]]\ncert_file = \"/d/cert.pem\"\nkey_file = \"/d/key.pem\"\n[admin]\nlisten = \"127.0.0.1:2222\"\n\n[[routes]]\npath_prefix = \"/\"\n"
        );
    }

    /// Free ports are distinct, on 127.0.0.1, and bindable again once returned.
    #[test]
    fn free_loopback_addrs_are_distinct_and_free() {
        let addrs = triage::free_loopback_addrs(2);
        assert_ne!(addrs[0].port(), addrs[1].port());
        for addr in addrs {
            assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
            std::net::TcpListener::bind(addr).expect("the port is free again");
        }
    }

    /// A temp dir holds written files and disappears on drop.
    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = triage::temp_dir();
        let path = dir.write_file("ca.pem", "x");
        assert_eq!(dir.read_file("ca.pem"), "x");
        let root = dir.path().to_owned();
        assert_ne!(root, triage::temp_dir().path(), "each temp dir is new");
        drop(dir);
        assert!(!path.exists() && !root.exists());
    }

    /// The binary is Cargo's for this package's tests, else the debug build.
    #[test]
    fn triage_binary_is_named_triage() {
        assert!(triage::triage_binary().ends_with("triage"));
    }

    /// A process that exits before listening is retried, then reported with its stderr.
    #[tokio::test]
    async fn early_exit_is_retried_then_reported() {
        let start = tokio::spawn(triage::Triage::start_command(
            triage::temp_dir(),
            "",
            |_config| {
                let mut command = Command::new("/bin/sh");
                command.args(["-c", "echo config is broken >&2; exit 3"]);
                command
            },
        ));
        let panic = start.await.err().expect("start panics").into_panic();
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("did not start in 3 attempts"), "{message}");
        assert_eq!(message.matches("config is broken").count(), 3, "{message}");
    }

    /// check_config writes the text verbatim and returns the process's status and output.
    #[test]
    fn check_config_runs_on_the_verbatim_text() {
        let output = triage::check_config_command("[listen]\nhttp = 1\n", |config| {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg("cat \"$0\" >&2; exit 2").arg(config);
            command
        });
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(output.stderr, b"[listen]\nhttp = 1\n");
    }
}
