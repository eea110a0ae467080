//! Upstream hostname resolution, kept off the request path.
//!
//! Pingora's `HttpPeer::new` resolves a hostname synchronously and panics when it fails, and
//! nginx resolves once at start-up and keeps a stale address for ever. triage resolves every
//! upstream hostname in the background, again every `[resolver] refresh`, logs each change of
//! address, and hands requests the latest answer without waiting. A request only waits for DNS
//! when a name has never resolved; if it still does not, the request gets `dns_error`.
//!
//! The answers outlive a config: a reload [renews](HostResolver::renewed) the resolver, which
//! keeps the answer of every hostname the new config still names (the registry holds it), so a
//! reload during a DNS outage does not turn known addresses into `dns_error`.

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

/// The latest answer for a hostname: its addresses, and when they were resolved (a report
/// shows both: a failure on an address resolved hours ago reads differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub host: String,
    pub ips: Vec<IpAddr>,
    pub resolved_at: std::time::SystemTime,
}

/// Where names are resolved.
enum Backend {
    /// The system resolver (getaddrinfo on tokio's blocking pool: /etc/hosts, resolv.conf).
    System,
    /// Specific nameservers, queried directly over UDP/TCP.
    Nameservers(Box<TokioResolver>),
}

/// Resolves and caches the hostnames named in the config.
pub struct HostResolver {
    /// Shared with the resolvers renewed from this one.
    backend: Arc<Backend>,
    /// What `backend` was built from, to tell whether a new config may keep it.
    nameservers: Vec<SocketAddr>,
    refresh: Duration,
    /// Each hostname's latest answer, shared with the resolvers renewed from this one.
    cache: HashMap<String, Arc<ArcSwapOption<Addresses>>>,
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
            .map(|h| (h.to_ascii_lowercase(), Arc::default()))
            .collect();
        Ok(HostResolver {
            backend: Arc::new(backend),
            nameservers: nameservers.to_vec(),
            refresh,
            cache,
        })
    }

    /// The resolver of a new config: with the same nameservers, it keeps this one's backend and
    /// the answers of the `hosts` this one knows (each is shared, so a refresh by either is seen
    /// by both); other nameservers start afresh, since their answers may differ.
    pub fn renewed(
        &self,
        hosts: impl IntoIterator<Item = String>,
        nameservers: &[SocketAddr],
        refresh: Duration,
    ) -> Result<HostResolver, String> {
        if nameservers != self.nameservers.as_slice() {
            return HostResolver::new(hosts, nameservers, refresh);
        }
        let cache = hosts
            .into_iter()
            .map(|h| {
                let host = h.to_ascii_lowercase();
                let slot = self.cache.get(&host).cloned().unwrap_or_default();
                (host, slot)
            })
            .collect();
        Ok(HostResolver {
            backend: Arc::clone(&self.backend),
            nameservers: self.nameservers.clone(),
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
                Some(old) if old.ips != fresh.ips => tracing::warn!(
                    host,
                    old = ?old.ips,
                    new = ?fresh.ips,
                    "upstream address changed"
                ),
                Some(_) => {}
                None => tracing::info!(host, addresses = ?fresh.ips, "upstream resolved"),
            }
        }
        Ok(fresh)
    }

    async fn lookup(&self, host: &str) -> Result<Addresses, String> {
        let addrs: Vec<IpAddr> = match self.backend.as_ref() {
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
        Ok(Addresses {
            host: host.to_owned(),
            ips: addrs,
            resolved_at: std::time::SystemTime::now(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(resolver: &HostResolver, host: &str) -> Option<Arc<Addresses>> {
        resolver.cache.get(host).and_then(|slot| slot.load_full())
    }

    /// A renewed resolver with the same nameservers keeps the answers of the hosts still named
    /// (shared: a later refresh by either is seen by both) and drops the others; with other
    /// nameservers it starts with no answers.
    #[tokio::test]
    async fn renewing_keeps_the_answers_of_the_same_nameservers() {
        let known = Arc::new(Addresses {
            host: "app.internal".into(),
            ips: vec![IpAddr::from([10, 0, 0, 1])],
            resolved_at: std::time::SystemTime::now(),
        });
        let first = HostResolver::new(
            ["a.test".to_owned(), "b.test".to_owned()],
            &[],
            Duration::from_secs(30),
        )
        .expect("resolver");
        first.cache["a.test"].store(Some(Arc::clone(&known)));
        let renewed = first
            .renewed(
                ["A.test".to_owned(), "c.test".to_owned()],
                &[],
                Duration::from_secs(5),
            )
            .expect("renewed");
        assert_eq!(answer(&renewed, "a.test"), Some(Arc::clone(&known)));
        assert_eq!(answer(&renewed, "c.test"), None);
        assert!(!renewed.cache.contains_key("b.test"));
        let moved = Arc::new(Addresses {
            host: "app.internal".into(),
            ips: vec![IpAddr::from([10, 0, 0, 2])],
            resolved_at: std::time::SystemTime::now(),
        });
        renewed.cache["a.test"].store(Some(Arc::clone(&moved)));
        assert_eq!(answer(&first, "a.test"), Some(moved));
        let nameserver: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let elsewhere = renewed
            .renewed(["a.test".to_owned()], &[nameserver], Duration::from_secs(5))
            .expect("other nameservers");
        assert_eq!(answer(&elsewhere, "a.test"), None);
    }
}
