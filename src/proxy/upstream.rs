//! An upstream as the proxy uses it: its servers in rotation, and how to build a Pingora peer for
//! one of them with the configured TLS and timeouts.

use crate::config::{self, ServerAddr};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One configured upstream, ready for requests.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub tls: bool,
    sni: Option<String>,
    ca: Option<Arc<CaType>>,
    servers: Vec<ServerAddr>,
    next: AtomicUsize,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Upstream {
    /// Builds the runtime upstream; fails only if the CA file cannot be read or parsed.
    pub fn new(cfg: &config::Upstream) -> Result<Upstream, String> {
        let ca = match &cfg.ca_file {
            Some(path) => Some(load_ca(path)?),
            None => None,
        };
        Ok(Upstream {
            name: cfg.name.clone(),
            tls: cfg.tls,
            sni: cfg.sni.clone(),
            ca,
            servers: cfg.servers.clone(),
            next: AtomicUsize::new(0),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
        })
    }

    /// The next server in round-robin order.
    pub fn next_server(&self) -> &ServerAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        // Config validation guarantees at least one server.
        &self.servers[i % self.servers.len()]
    }

    /// A peer for `addr`, reached as `server`. The TLS name is the configured `sni`, else the
    /// server's hostname, else its IP: never empty, because Pingora skips certificate
    /// verification entirely when the SNI is empty.
    pub fn peer(&self, server: &ServerAddr, addr: SocketAddr) -> HttpPeer {
        let name = match (&self.sni, server) {
            (Some(sni), _) => sni.clone(),
            (None, ServerAddr::Host { host, .. }) => host.clone(),
            (None, ServerAddr::Ip(ip)) => ip.ip().to_string(),
        };
        let mut peer = HttpPeer::new(addr, self.tls, name);
        let options = &mut peer.options;
        options.connection_timeout = Some(self.connect_timeout);
        options.total_connection_timeout = Some(self.connect_timeout);
        options.read_timeout = Some(self.read_timeout);
        options.write_timeout = Some(self.write_timeout);
        options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        options.ca = self.ca.clone();
        peer
    }
}

/// Reads a PEM file of CA certificates into the form Pingora's peer options take.
fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der.map_err(|e| format!("{}: {e}", path.display()))?;
        let wrapped = WrappedX509::try_new(der.to_vec(), |raw| {
            X509Certificate::from_der(raw).map(|(_, cert)| cert)
        })
        .map_err(|e| format!("{}: not a valid certificate: {e}", path.display()))?;
        certs.push(wrapped);
    }
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}
