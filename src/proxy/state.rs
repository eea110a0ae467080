//! What every request reads from the live config: built once per reload from it, and shared
//! by the requests that started under it until the last of them ends.

use super::routing::{RouteId, RouteTable};
use super::upstream::{self, Upstream};
use crate::cause::Thresholds;
use crate::config::{self, LiveConfig};
use crate::diagnosis::Disclosure;
use crate::metrics::{MetricHandles, Metrics};
use crate::registry::{Registry, ServerHistory};
use crate::resolve::HostResolver;
use std::sync::Arc;

/// Everything a request needs that comes from the live config, built once per reload.
pub struct State {
    pub config: LiveConfig,
    pub resolver: Arc<HostResolver>,
    pub handles: MetricHandles,
    pub routes: RouteTable,
    /// Each route's metric label, by route index.
    pub route_labels: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub disclosure: Disclosure,
    /// What the cause derivation counts as a race, a window, overload.
    pub thresholds: Thresholds,
}

impl State {
    /// Everything `config` needs at run time, over the servers, budgets and DNS answers it
    /// borrows from `registry`; fails (without panicking) if the DNS resolver cannot be set up.
    pub fn new(
        config: LiveConfig,
        metrics: &Metrics,
        registry: &Registry,
    ) -> Result<State, String> {
        let lease = registry.lend(&config)?;
        let upstreams = config
            .upstreams
            .iter()
            .zip(lease.upstreams)
            .map(|(cfg, lent)| Upstream::new(cfg, lent.servers, lent.retry_budget))
            .collect();
        Ok(State {
            resolver: lease.resolver,
            handles: metrics.handles(&config),
            routes: RouteTable::new(&config.routes),
            route_labels: config
                .routes
                .iter()
                .map(|r| crate::metrics::route_label(r.host.as_deref(), &r.path_prefix))
                .collect(),
            disclosure: Disclosure::new(&config.diagnosis),
            thresholds: Thresholds {
                stale_race: config.diagnosis.stale_race,
                deploy_window: config.diagnosis.deploy_window,
                address_window: config.diagnosis.address_window,
                crash_loop_comebacks: config.diagnosis.crash_loop_comebacks,
                overload_in_flight: config.diagnosis.overload_in_flight,
                pool_idle: upstream::POOL_IDLE_TIMEOUT,
            },
            upstreams,
            config,
        })
    }

    /// The config of route `id`, if there is one.
    pub fn route(&self, id: Option<RouteId>) -> Option<&config::Route> {
        id.and_then(|r| self.config.routes.get(r))
    }

    /// Sets each server's `triage_upstream_server_healthy` to whether it is in rotation now
    /// (passing its health checks and not ejected), for a scrape of `/metrics`. Read from the
    /// balancer rather than set on each change: an ejection ends on its own when `fail_timeout`
    /// passes, with no event that could update the gauge.
    pub fn refresh_health_gauges(&self) {
        for (upstream_index, upstream) in self.upstreams.iter().enumerate() {
            for server_index in 0..upstream.balancer.servers.len() {
                self.handles.set_server_healthy(
                    upstream_index,
                    server_index,
                    upstream.balancer.is_available(server_index),
                );
            }
        }
    }

    /// The history of server `server` of upstream `upstream` (indexes into the config).
    pub fn server_history(&self, upstream: usize, server: usize) -> Option<&ServerHistory> {
        self.upstreams.get(upstream)?.history(server)
    }
}
