//! TLS termination in front of the app: HTTPS clients over HTTP/2 or HTTP/1.1, certificates
//! chosen by SNI, and bad certificates refused at `triage -t`.

mod support;

use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::certs::TestPki;
use support::origin::{self, Behavior};
use support::triage::{
    check_config, free_loopback_addrs, temp_dir, triage_binary, with_runtime_paths, TempDir,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// triage with an `https` listener; killed on drop.
struct HttpsTriage {
    https: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Drop for HttpsTriage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts triage serving `certs` (leaf PEMs, the first the default) in front of `upstream`.
async fn start(pki_certs: &[support::certs::CertifiedKey], upstream: SocketAddr) -> HttpsTriage {
    let dir = temp_dir();
    let mut cert_tables = String::new();
    for (i, cert) in pki_certs.iter().enumerate() {
        let cert_file = dir.write_file(&format!("cert{i}.pem"), &cert.cert_pem);
        let key_file = dir.write_file(&format!("key{i}.pem"), &cert.key_pem);
        cert_tables.push_str(&format!(
            "[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        ));
    }
    let ports = free_loopback_addrs(2);
    let runtime = with_runtime_paths(dir.path(), "");
    let config = format!(
        "[listen]\nhttps = [\"{}\"]\n[admin]\nlisten = \"{}\"\n{cert_tables}{runtime}\
         [upstreams.app]\nservers = [\"{upstream}\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        ports[0], ports[1]
    );
    let config_file = dir.write_file("triage.toml", config);
    let child = Command::new(triage_binary())
        .arg("-c")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start triage");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(ports[0]).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "triage did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    HttpsTriage {
        https: ports[0],
        child,
        _dir: dir,
    }
}

async fn tls_connect(
    pki: &TestPki,
    addr: SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*pki.client_config()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with triage")
}

/// An HTTPS client over HTTP/2 reaches a plain-HTTP app through triage, with the diagnosis id,
/// source and timing, and the app learns the client used https.
#[tokio::test]
async fn http2_over_tls_to_a_plain_upstream() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::Echo).await;
    let triage = start(&[pki.leaf(&["localhost"])], app.addr).await;
    let tls = tls_connect(&pki, triage.https, "localhost", &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get("https://localhost/over-h2")
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-diagnosis-id"));
    // triage's headers are written after the app's as lines on HTTP/1; HTTP/2 gets them too.
    assert_eq!(
        response
            .headers()
            .get("x-diagnosis-source")
            .map(|v| v.as_bytes()),
        Some(&b"upstream"[..])
    );
    assert!(response.headers().contains_key("server-timing"));
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        text.extend_from_slice(&chunk.expect("body chunk"));
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("x-forwarded-proto: https"), "{text}");
}

/// HTTP/1.1 over TLS works too, and each name gets its own certificate by SNI (the client
/// verifies it, so a wrong certificate fails the handshake).
#[tokio::test]
async fn http1_over_tls_and_sni_selection() {
    let pki = TestPki::new();
    let app = origin::spawn(Behavior::ok("hello over https\n")).await;
    let triage = start(
        &[pki.leaf(&["localhost"]), pki.leaf(&["shop.example"])],
        app.addr,
    )
    .await;
    for name in ["localhost", "shop.example"] {
        let mut tls = tls_connect(&pki, triage.https, name, &[b"http/1.1"]).await;
        tls.write_all(
            format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
            .await
            .expect("in time");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        assert!(
            response.ends_with("hello over https\n"),
            "{name}: {response}"
        );
    }
}

/// A missing certificate file is a config error at `triage -t`, with its position.
#[test]
fn missing_certificate_is_a_config_error() {
    let out = check_config(
        "[listen]\nhttps = [\"127.0.0.1:8443\"]\n[[tls.certificates]]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":4:13: cert_file: cannot read"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A certificate and a key that do not belong together are refused at `triage -t`.
#[test]
fn mismatched_key_is_a_config_error() {
    let pki = TestPki::new();
    let dir = temp_dir();
    let cert = dir.write_file("cert.pem", pki.leaf(&["localhost"]).cert_pem);
    let key = dir.write_file("key.pem", pki.leaf(&["localhost"]).key_pem);
    let out = check_config(&format!(
        "[listen]\nhttps = [\"127.0.0.1:8443\"]\n[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        cert.display(),
        key.display()
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("do not belong together"), "{stderr}");
}
