//! An upstream as the proxy uses it: its servers in rotation, and how to build a Pingora peer for
//! one of them with the configured TLS and timeouts.

use super::balancer::Balancer;
use crate::config::{self, ServerAddr};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    retry_budget: RetryBudget,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    pub total_timeout: Option<Duration>,
}

/// Retries may add at most a fifth to an upstream's load (plus a small floor per second), so a
/// failing upstream is not hit twice as hard in a storm.
#[derive(Debug, Default)]
struct RetryBudget {
    /// The current second (high 32 bits) and the requests seen in it (low 32 bits).
    requests: AtomicU64,
    /// The current second (high 32 bits) and the retries granted in it (low 32 bits).
    retries: AtomicU64,
}

const RETRY_FLOOR_PER_SECOND: u64 = 10;
const RETRY_RATIO_PERCENT: u64 = 20;

fn bump(counter: &AtomicU64, second: u64) -> u64 {
    let previous = counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some(if w >> 32 == second {
                w + 1
            } else {
                (second << 32) | 1
            })
        })
        .unwrap_or(0);
    if previous >> 32 == second {
        (previous & 0xffff_ffff) + 1
    } else {
        1
    }
}

fn current_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() & 0xffff_ffff)
}

impl RetryBudget {
    fn count_request(&self) {
        bump(&self.requests, current_second());
    }

    fn allow_retry(&self) -> bool {
        let second = current_second();
        let requests = if self.requests.load(Ordering::Relaxed) >> 32 == second {
            self.requests.load(Ordering::Relaxed) & 0xffff_ffff
        } else {
            0
        };
        let allowed = RETRY_FLOOR_PER_SECOND + requests * RETRY_RATIO_PERCENT / 100;
        bump(&self.retries, second) <= allowed
    }
}

impl Upstream {
    /// Builds the runtime upstream, with the CA certificates read when the config was loaded.
    pub fn new(cfg: &config::Upstream) -> Upstream {
        Upstream {
            name: cfg.name.clone(),
            tls: cfg.tls,
            sni: cfg.sni.clone(),
            ca: cfg.ca_file.as_ref().map(|ca| Arc::clone(&ca.certs)),
            balancer: Balancer::new(
                &cfg.servers,
                &cfg.weights,
                cfg.max_fails,
                cfg.fail_timeout,
                cfg.refused_holdoff,
            ),
            host_header: cfg.host_header.clone(),
            retries: cfg.retries,
            retry_budget: RetryBudget::default(),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
            total_timeout: cfg.total_timeout,
        }
    }

    /// Counts a request towards the retry budget.
    pub fn count_request(&self) {
        self.retry_budget.count_request();
    }

    /// Whether the retry budget allows one more retry now.
    pub fn allow_retry(&self) -> bool {
        self.retry_budget.allow_retry()
    }

    /// A peer for `addr`, reached as `server`. Over TLS, the name is the configured `sni`,
    /// else the server's hostname, else its IP: never empty, because Pingora skips certificate
    /// verification entirely when the SNI is empty.
    pub fn peer(
        &self,
        server: &ServerAddr,
        addr: SocketAddr,
        route: &config::RouteTimeouts,
        total_left: Option<Duration>,
    ) -> HttpPeer {
        let name = match (&self.sni, server) {
            // Only TLS uses the name: plain HTTP spares the allocation on every request.
            _ if !self.tls => String::new(),
            (Some(sni), _) => sni.clone(),
            (None, ServerAddr::Host { host, .. }) => host.clone(),
            (None, ServerAddr::Ip(ip)) => ip.ip().to_string(),
        };
        let mut peer = HttpPeer::new(addr, self.tls, name);
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
        peer
    }
}
