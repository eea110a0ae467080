//! An upstream as the proxy uses it: its servers in rotation, and how to build a Pingora peer for
//! one of them with the configured TLS and timeouts.

use super::balancer::{Balancer, Server};
use crate::config::{self, PeerAddr, ServerAddr};
use crate::registry::ServerHistory;
use crate::window::{current_second, SecondWindow};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection to an upstream is kept.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One configured upstream, ready for requests.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub tls: bool,
    sni: Option<String>,
    ca: Option<Arc<CaType>>,
    pub balancer: Balancer,
    pub host_header: Option<String>,
    pub retries: u32,
    /// Kept across reloads by the registry, as the servers are.
    retry_budget: Arc<RetryBudget>,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    pub total_timeout: Option<Duration>,
    /// Pingora's connection-pool group for this upstream's peers (`HttpPeer::group_key`).
    pool_key: u64,
    /// How requests become FastCGI requests, when the servers speak FastCGI.
    pub fastcgi: Option<config::Fastcgi>,
}

/// The pool group of an upstream's connections. Pingora's pool key covers the address, the
/// scheme, the SNI and the verification flags, but not the CA: without a group of their own,
/// two upstreams on the same address and SNI with different `ca_file`s shared pooled TLS
/// connections, and one answered over connections only the other's CA had verified. Keyed by
/// the upstream's name and CA file, no connection is shared between upstreams.
fn pool_key(cfg: &config::Upstream) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cfg.name.hash(&mut hasher);
    cfg.ca_file.as_ref().map(|ca| &ca.path).hash(&mut hasher);
    hasher.finish()
}

/// Retries may add at most a fifth to an upstream's load (plus a small floor per second), so a
/// failing upstream is not hit twice as hard in a storm.
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: SecondWindow,
    retries: SecondWindow,
}

const RETRY_FLOOR_PER_SECOND: u64 = 10;
const RETRY_RATIO_PERCENT: u64 = 20;

impl RetryBudget {
    fn count_request(&self, second: u64) {
        self.requests.count(second);
    }

    fn allow_retry(&self) -> bool {
        let second = current_second();
        let allowed =
            RETRY_FLOOR_PER_SECOND + self.requests.get(second) * RETRY_RATIO_PERCENT / 100;
        self.retries.count(second) <= allowed
    }
}

impl Upstream {
    /// Builds the runtime upstream, with the CA certificates read when the config was loaded,
    /// over the state its servers (parallel to `cfg.servers`) and its retry budget have so far.
    pub fn new(
        cfg: &config::Upstream,
        servers: Vec<Arc<Server>>,
        retry_budget: Arc<RetryBudget>,
    ) -> Upstream {
        Upstream {
            name: cfg.name.clone(),
            tls: cfg.tls,
            sni: cfg.sni.clone(),
            ca: cfg.ca_file.as_ref().map(|ca| Arc::clone(&ca.certs)),
            balancer: Balancer::new(cfg, servers),
            host_header: cfg.host_header.clone(),
            retries: cfg.retries,
            retry_budget,
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
            total_timeout: cfg.total_timeout,
            pool_key: pool_key(cfg),
            fastcgi: cfg.fastcgi.clone(),
        }
    }

    /// How long the upstream may take to answer (`read_timeout`), unless a route overrides it.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Counts a request received in `second` (as [`crate::window::second_of`] gives it)
    /// towards the retry budget.
    pub fn count_request(&self, second: u64) {
        self.retry_budget.count_request(second);
    }

    /// Whether the retry budget allows one more retry now.
    pub fn allow_retry(&self) -> bool {
        self.retry_budget.allow_retry()
    }

    /// The history of server `index`.
    pub fn history(&self, index: usize) -> Option<&ServerHistory> {
        self.balancer.servers.get(index).map(|s| &s.history)
    }

    /// A peer for `addr`, reached as `server`. Over TLS, the name is the configured `sni`,
    /// else the server's hostname, else its IP: never empty, because Pingora skips certificate
    /// verification entirely when the SNI is empty (the config requires `sni` for a unix
    /// socket server over TLS). Fails only for a unix socket path the OS cannot take, which
    /// the config refuses.
    pub fn peer(
        &self,
        server: &ServerAddr,
        addr: &PeerAddr,
        route: &config::RouteTimeouts,
        total_left: Option<Duration>,
    ) -> pingora::Result<HttpPeer> {
        let name = match (&self.sni, server) {
            // Only TLS uses the name: plain HTTP spares the allocation on every request.
            _ if !self.tls => String::new(),
            (Some(sni), _) => sni.clone(),
            (None, ServerAddr::Host { host, .. }) => host.clone(),
            (None, ServerAddr::Ip(ip)) => ip.ip().to_string(),
            (None, ServerAddr::Unix(_)) => "localhost".to_owned(),
        };
        let mut peer = match addr {
            PeerAddr::Inet(addr) => HttpPeer::new(*addr, self.tls, name),
            PeerAddr::Unix(path) => HttpPeer::new_uds(path.as_str(), self.tls, name)?,
        };
        let options = &mut peer.options;
        // connect_timeout bounds the TCP connect and, separately, the TLS handshake (Pingora
        // applies its connection timeout to each), and both together at twice that.
        let connect = route.connect.unwrap_or(self.connect_timeout);
        options.connection_timeout = Some(connect);
        // Saturating: the config bounds every timeout, and arithmetic on one never panics.
        options.total_connection_timeout = Some(connect.saturating_mul(2));
        // Waiting for the answer never outlasts what is left of the total timeout.
        let read = route.read.unwrap_or(self.read_timeout);
        options.read_timeout = Some(total_left.map_or(read, |left| read.min(left)));
        options.write_timeout = Some(route.write.unwrap_or(self.write_timeout));
        options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        options.ca = self.ca.clone();
        peer.group_key = self.pool_key;
        Ok(peer)
    }
}
