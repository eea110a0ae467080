//! Upstream hostname resolution, kept off the request path.
//!
//! Pingora's `HttpPeer::new` resolves a hostname synchronously and panics when it fails, and
//! nginx resolves once at start-up and keeps a stale address for ever. triage resolves every
//! upstream hostname in the background, again every `[resolver] refresh`, logs each change of
//! address, and hands requests the latest answer without waiting. A request only waits for DNS
//! when a name has never resolved; if it still does not, the request gets `dns_error`.

use arc_swap::ArcSwapOption;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long one resolution may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The latest addresses of a hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses(pub Vec<IpAddr>);

/// Where names are resolved.
enum Backend {
    /// The system resolver (getaddrinfo on tokio's blocking pool: /etc/hosts, resolv.conf).
    System,
    /// Specific nameservers, queried directly over UDP/TCP.
    Nameservers(Box<TokioResolver>),
}

/// Resolves and caches the hostnames named in the config.
pub struct HostResolver {
    backend: Backend,
    refresh: Duration,
    cache: HashMap<String, ArcSwapOption<Addresses>>,
}

impl HostResolver {
    /// `hosts` are the hostnames to keep resolved; `nameservers` empty means the system resolver.
    pub fn new(
        hosts: impl IntoIterator<Item = String>,
        nameservers: &[SocketAddr],
        refresh: Duration,
    ) -> Result<HostResolver, String> {
        let backend = if nameservers.is_empty() {
            Backend::System
        } else {
            let servers = nameservers
                .iter()
                .map(|ns| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = ns.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = ns.port();
                    NameServerConfig::new(ns.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut opts = ResolverOpts::default();
            opts.timeout = Duration::from_secs(2);
            opts.attempts = 1;
            // triage refreshes on its own schedule; a cached answer would hide a change.
            opts.cache_size = 0;
            let resolver = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
            Backend::Nameservers(Box::new(resolver))
        };
        let cache = hosts
            .into_iter()
            .map(|h| (h.to_ascii_lowercase(), ArcSwapOption::empty()))
            .collect();
        Ok(HostResolver {
            backend,
            refresh,
            cache,
        })
    }

    /// The addresses of `host`: the cached answer, or a fresh lookup if there is none yet.
    pub async fn addresses(&self, host: &str) -> Result<Arc<Addresses>, String> {
        if let Some(cached) = self.cache.get(host).and_then(|slot| slot.load_full()) {
            return Ok(cached);
        }
        self.refresh_one(host).await
    }

    /// Resolves `host` now and stores the answer; logs when the addresses changed.
    async fn refresh_one(&self, host: &str) -> Result<Arc<Addresses>, String> {
        let fresh = Arc::new(self.lookup(host).await?);
        if let Some(slot) = self.cache.get(host) {
            let previous = slot.swap(Some(Arc::clone(&fresh)));
            match previous {
                Some(old) if old.0 != fresh.0 => tracing::warn!(
                    host,
                    old = ?old.0,
                    new = ?fresh.0,
                    "upstream address changed"
                ),
                Some(_) => {}
                None => tracing::info!(host, addresses = ?fresh.0, "upstream resolved"),
            }
        }
        Ok(fresh)
    }

    async fn lookup(&self, host: &str) -> Result<Addresses, String> {
        let addrs: Vec<IpAddr> = match &self.backend {
            Backend::System => {
                let lookup = tokio::net::lookup_host((host, 0));
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Err(_) => return Err(format!("resolving {host}: timed out")),
                    Ok(Err(e)) => return Err(format!("resolving {host}: {e}")),
                    Ok(Ok(found)) => found.map(|sa| sa.ip()).collect(),
                }
            }
            Backend::Nameservers(resolver) => {
                // A trailing dot makes the name absolute: no search-domain guessing.
                let fqdn = format!("{}.", host.trim_end_matches('.'));
                match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(fqdn)).await {
                    Err(_) => return Err(format!("resolving {host}: timed out")),
                    Ok(Err(e)) => return Err(format!("resolving {host}: {e}")),
                    Ok(Ok(found)) => found.iter().collect(),
                }
            }
        };
        if addrs.is_empty() {
            return Err(format!("resolving {host}: no addresses"));
        }
        Ok(Addresses(addrs))
    }

    /// Re-resolves every host now, keeping the last good answer when a lookup fails (a DNS
    /// outage should not take down upstreams that still answer at their known address).
    pub async fn refresh_all(&self) {
        for host in self.cache.keys() {
            if let Err(error) = self.refresh_one(host).await {
                tracing::warn!(host, %error, "upstream re-resolution failed; keeping the last answer");
            }
        }
    }

    /// Refreshes every host on the configured interval, until the process stops.
    pub async fn run(&self) {
        if self.cache.is_empty() {
            return;
        }
        loop {
            self.refresh_all().await;
            tokio::time::sleep(self.refresh).await;
        }
    }
}
