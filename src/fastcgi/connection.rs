//! A connection to a FastCGI server, opened for one request and closed after it (nginx's
//! default without `fastcgi_keep_conn`; php-fpm then frees the worker at once).
//!
//! The address comes from the peer the proxy built for the attempt, the one place a server's
//! address is decided: a TCP address today; a unix socket (`unix:/run/php/php-fpm.sock`) is one
//! more arm of [`connect`]. Failures are the `pingora::Error`s Pingora's own connector gives,
//! with the same types and `io::Error` causes, so the proxy's classifier reads them as it reads
//! an HTTP upstream's.

use super::record::RecordReader;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// An open connection: its two halves, and the records read so far.
pub struct Connection {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub records: RecordReader,
    /// The socket's descriptor, for the proxy's `connected_to_upstream` hook.
    pub fd: std::os::unix::io::RawFd,
}

/// Connects to the peer's address within its connection timeout.
pub async fn connect(peer: &HttpPeer) -> Result<Connection> {
    let timeout = peer
        .options
        .connection_timeout
        .unwrap_or(Duration::from_secs(60));
    let address = match peer.address() {
        SocketAddr::Inet(address) => *address,
        SocketAddr::Unix(path) => {
            return Error::e_explain(
                ErrorType::ConnectError,
                format!("FastCGI over a unix socket ({path:?}) is not supported yet"),
            )
        }
    };
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(Error::because(
                ErrorType::ConnectError,
                format!("Fail to connect to {address}"),
                e,
            ))
        }
        Err(_) => {
            return Error::e_explain(
                ErrorType::ConnectTimedout,
                format!("connecting to {address}, timeout {timeout:?}"),
            )
        }
    };
    // Small records (the params, the end of stdin) must not wait for more to fill a packet.
    let _ = stream.set_nodelay(true);
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&stream);
    let (reader, writer) = stream.into_split();
    Ok(Connection {
        reader: Box::new(reader),
        writer: Box::new(writer),
        records: RecordReader::default(),
        fd,
    })
}
