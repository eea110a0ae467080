//! A connection to a FastCGI server, opened for one request and closed after it (nginx's
//! default without `fastcgi_keep_conn`; php-fpm then frees the worker at once).
//!
//! The address comes from the peer the proxy built for the attempt, the one place a server's
//! address is decided: a TCP address or a unix socket (`unix:/run/php/php-fpm.sock`). Failures are the `pingora::Error`s Pingora's own connector gives,
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
    match peer.address() {
        SocketAddr::Inet(address) => {
            let stream = within(timeout, address, tokio::net::TcpStream::connect(*address)).await?;
            // Small records (the params, the end of stdin) must not wait for more to fill a
            // packet.
            let _ = stream.set_nodelay(true);
            let fd = std::os::unix::io::AsRawFd::as_raw_fd(&stream);
            let (reader, writer) = stream.into_split();
            Ok(Connection::of(reader, writer, fd))
        }
        SocketAddr::Unix(address) => {
            let path = address.as_pathname().ok_or_else(|| {
                Error::explain(ErrorType::ConnectError, "an unnamed unix socket address")
            })?;
            let stream = within(timeout, address, tokio::net::UnixStream::connect(path)).await?;
            let fd = std::os::unix::io::AsRawFd::as_raw_fd(&stream);
            let (reader, writer) = stream.into_split();
            Ok(Connection::of(reader, writer, fd))
        }
    }
}

/// A connect bounded by `timeout`, its failure typed as Pingora's connector types it: the OS's
/// error as the cause of a `ConnectError` (refused, missing socket file, permission, a full
/// backlog), or `ConnectTimedout`.
async fn within<S>(
    timeout: Duration,
    address: &impl std::fmt::Debug,
    connect: impl std::future::Future<Output = std::io::Result<S>>,
) -> Result<S> {
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Error::because(
            ErrorType::ConnectError,
            format!("Fail to connect to {address:?}"),
            e,
        )),
        Err(_) => Error::e_explain(
            ErrorType::ConnectTimedout,
            format!("connecting to {address:?}, timeout {timeout:?}"),
        ),
    }
}

impl Connection {
    fn of(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
        fd: std::os::unix::io::RawFd,
    ) -> Connection {
        Connection {
            reader: Box::new(reader),
            writer: Box::new(writer),
            records: RecordReader::default(),
            fd,
        }
    }
}
