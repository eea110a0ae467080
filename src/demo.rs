//! A demo app with faults, so a newcomer sees real diagnoses with one `curl`.
//!
//! `triage demo` starts it on the address of the `demo` upstream in the config (loopback), then
//! starts triage in front of it. Each path is one real-life failure of an app:
//! `/` answers 200; `/db` answers 503 like an app whose database is down; `/slow` answers after
//! 3 s (past the demo's read_timeout); `/crash` resets the connection like an app killed mid
//! request; `/garbage` writes bytes that are not HTTP.

use crate::config::{LiveConfig, ServerAddr};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the demo app on its own thread and runtime, on the first server of the `demo`
/// upstream.
pub fn spawn(config: &LiveConfig) -> Result<(), String> {
    let upstream = config
        .upstreams
        .iter()
        .find(|u| u.name == "demo")
        .ok_or("the config has no [upstreams.demo] for the demo app")?;
    let addr = match upstream.servers.first() {
        Some(ServerAddr::Ip(addr)) if addr.ip().is_loopback() => *addr,
        _ => return Err("[upstreams.demo] must name a loopback ip:port".to_owned()),
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{addr}: {e}"))?;
    std::thread::Builder::new()
        .name("demo-app".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(serve(listener, addr)),
                Err(e) => eprintln!("demo app: {e}"),
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn serve(listener: std::net::TcpListener, addr: SocketAddr) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return eprintln!("demo app on {addr}: {e}"),
    };
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    }
}

async fn handle(mut stream: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read the request head (the demo's requests have no body).
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        if len == buf.len() {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let response: &[u8] = match path {
        "/db" => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\n\r\nerror: could not connect to database",
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nslow\n"
        }
        "/crash" => {
            // SO_LINGER 0 makes close() send RST, like a process killed mid-request.
            let _ = stream.set_zero_linger();
            return;
        }
        "/garbage" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\nhello from the demo app\n",
    };
    let _ = stream.write_all(response).await;
}
