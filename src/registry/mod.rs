//! What triage knows about its upstreams that outlives a config: one registry for the life of
//! the process, from which every config's [`State`](crate::proxy::State) borrows.
//!
//! A reload builds a new state, but not new servers: per upstream name and server address (as
//! written in the config), the same [`Server`] carries on, with its health-check verdict, its
//! ejection and failure count, its refusal hold-off and its [`ServerHistory`]; per upstream name
//! the same [`RetryBudget`]; per hostname the same DNS answer (the resolver is
//! [renewed](crate::resolve::HostResolver::renewed), and rebuilt only when `[resolver]
//! nameservers` change). So a reload during an outage puts no failing server back in rotation,
//! forgets no address, and resets no gauge or budget. What a config sets (weights, `max_fails`,
//! thresholds, timeouts) comes from the new config; what only an earlier config could have said
//! is forgotten (see [`Balancer::new`](crate::proxy::balancer::Balancer::new)).
//!
//! The registry is locked only while a config borrows from it (at start and at each reload);
//! requests reach the entries through the state, without it. Entries no config names any more
//! are dropped at that reload: the registry holds only what the newest config names, and a
//! state still serving requests keeps its own entries alive until its last request ends.

pub mod history;

pub use history::{AddressChange, HistorySnapshot, InFlightToken, ServerHistory};

use crate::config::{LiveConfig, ServerAddr};
use crate::proxy::balancer::Server;
use crate::proxy::upstream::RetryBudget;
use crate::resolve::HostResolver;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The long-lived state of every upstream server, retry budget and hostname the newest config
/// names.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// By upstream name and server address as configured.
    servers: HashMap<(String, ServerAddr), Arc<Server>>,
    /// By upstream name.
    retry_budgets: HashMap<String, Arc<RetryBudget>>,
    /// The newest config's resolver, which holds the answer of each of its hostnames.
    resolver: Option<Arc<HostResolver>>,
}

/// What one config borrows from the registry.
pub struct Lease {
    /// Parallel to the config's upstreams.
    pub upstreams: Vec<LentUpstream>,
    pub resolver: Arc<HostResolver>,
}

/// The entries of one upstream of a config.
pub struct LentUpstream {
    /// Parallel to the upstream's `servers`.
    pub servers: Vec<Arc<Server>>,
    pub retry_budget: Arc<RetryBudget>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Lends `config` the entries it names, making those it names for the first time, and
    /// forgets those it no longer names. Fails (changing nothing) if the DNS resolver cannot
    /// be set up.
    pub fn lend(&self, config: &LiveConfig) -> Result<Lease, String> {
        // Poisoned only by a panic while lending, which leaves the maps whole: carry on.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let hostnames = config
            .upstreams
            .iter()
            .flat_map(|u| u.servers.iter())
            .filter_map(|s| match s {
                ServerAddr::Host { host, .. } => Some(host.clone()),
                ServerAddr::Ip(_) | ServerAddr::Unix(_) => None,
            });
        let resolver = Arc::new(match &entries.resolver {
            Some(previous) => previous.renewed(
                hostnames,
                &config.resolver.nameservers,
                config.resolver.refresh,
            )?,
            None => HostResolver::new(
                hostnames,
                &config.resolver.nameservers,
                config.resolver.refresh,
            )?,
        });
        let mut servers = HashMap::new();
        let mut retry_budgets = HashMap::new();
        let upstreams = config
            .upstreams
            .iter()
            .map(|upstream| {
                let retry_budget = entries
                    .retry_budgets
                    .get(&upstream.name)
                    .cloned()
                    .unwrap_or_default();
                retry_budgets.insert(upstream.name.clone(), Arc::clone(&retry_budget));
                let lent = upstream
                    .servers
                    .iter()
                    .map(|addr| {
                        let key = (upstream.name.clone(), addr.clone());
                        let server = entries
                            .servers
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Server::new(addr.clone())));
                        servers.insert(key, Arc::clone(&server));
                        server
                    })
                    .collect();
                LentUpstream {
                    servers: lent,
                    retry_budget,
                }
            })
            .collect();
        *entries = Entries {
            servers,
            retry_budgets,
            resolver: Some(Arc::clone(&resolver)),
        };
        Ok(Lease {
            upstreams,
            resolver,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::time::SystemTime;

    fn live(body: &str) -> LiveConfig {
        let text = format!("[listen]\nhttp = [\"127.0.0.1:8080\"]\n{body}\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n");
        config::parse(&text, std::path::Path::new("."))
            .unwrap_or_else(|errors| panic!("{errors}"))
            .live
    }

    /// A config naming the same upstream and server borrows the same entries, whatever else
    /// changed (weights, another server added, the order); a server or upstream it no longer
    /// names is forgotten, and comes back fresh.
    #[test]
    fn configs_borrow_the_entries_they_name() {
        let registry = Registry::new();
        let first = registry
            .lend(&live("[upstreams.app]\nservers = [\"127.0.0.1:3000\", \"127.0.0.1:3001\"]\n[upstreams.api]\nservers = [\"127.0.0.1:3000\"]\n"))
            .expect("lend");
        first.upstreams[0].servers[0]
            .history
            .record_success(200, None, SystemTime::now());
        let second = registry
            .lend(&live(
                "[upstreams.app]\nservers = [\"127.0.0.1:3002\", \"127.0.0.1:3000 weight=3\"]\n",
            ))
            .expect("lend");
        let (app, kept) = (&second.upstreams[0], &first.upstreams[0]);
        assert!(Arc::ptr_eq(&app.servers[1], &kept.servers[0]));
        assert!(Arc::ptr_eq(&app.retry_budget, &kept.retry_budget));
        assert!(app.servers[0]
            .history
            .snapshot(SystemTime::now())
            .last_success
            .is_none());
        let third = registry
            .lend(&live("[upstreams.app]\nservers = [\"127.0.0.1:3001\"]\n[upstreams.api]\nservers = [\"127.0.0.1:3000\"]\n"))
            .expect("lend");
        assert!(
            !Arc::ptr_eq(&third.upstreams[0].servers[0], &kept.servers[1]),
            "dropped by the second config"
        );
        assert!(!Arc::ptr_eq(
            &third.upstreams[1].retry_budget,
            &first.upstreams[1].retry_budget
        ));
        assert!(
            !Arc::ptr_eq(&third.upstreams[1].servers[0], &kept.servers[0]),
            "another upstream's server is another entry"
        );
    }
}
