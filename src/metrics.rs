//! Prometheus metrics: one registry, typed labels, handles resolved before the first request.
//!
//! Every label value comes from the config (route and upstream names) or from a closed enum
//! (diagnosis, phase, source, status code), so cardinality is bounded by the config, never by
//! paths, clients or error text. Per-upstream and per-diagnosis handles are resolved at start-up;
//! status-code handles are resolved on first use and cached, so counting a request is a few
//! atomic adds with no label hashing or string formatting.

use crate::cause::Cause;
use crate::client::CloseReason;
use crate::config::LiveConfig;
use crate::diagnosis::{Diagnosis, Source};
use crate::outcome::Outcome;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Buckets for connect time, in seconds: loopback connects take ~0.1 ms, cross-region ~100 ms,
/// and `connect_timeout` defaults to 5 s.
pub const CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for time to response headers and whole-request duration, in seconds: from a fast
/// cached answer (1 ms) to `read_timeout`'s default of 60 s.
pub const RESPONSE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label value used where a request has no route or no upstream (e.g. `no_route`).
pub const NONE_LABEL: &str = "none";

/// The `upstream` label of a deploy marker for all upstreams (no upstream name has a `*`).
pub const ALL_UPSTREAMS_LABEL: &str = "*";

/// The lowest and highest status codes with a cached handle.
const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// Handles for one upstream.
struct UpstreamHandles {
    /// `[diagnosis][cause]`, resolved on first use: a series appears with its first failure,
    /// not as one of the few hundred pairs that never happen.
    failures: [[OnceLock<IntCounter>; Cause::COUNT]; Diagnosis::COUNT],
    name: String,
    connect_seconds: Histogram,
    response_seconds: Histogram,
    request_seconds: Histogram,
    retries: IntCounter,
    /// By server index.
    server_healthy: Vec<IntGauge>,
    /// By server index: the server as written (the `server` label), and the expiry gauge of
    /// its TLS certificate, created at the first handshake (plain-HTTP servers have none).
    certificate_expiry: Vec<(String, OnceLock<IntGauge>)>,
}

/// Handles for one route (with its upstream).
struct RouteHandles {
    route: String,
    upstream: String,
    client_closed: IntCounter,
    /// `[source][code - 100]`, resolved on first use.
    requests: [Box<[OnceLock<IntCounter>]>; Source::COUNT],
}

/// All of triage's metrics: one registry and the metric families, for the life of the process
/// (counters keep counting across config reloads).
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    failures: IntCounterVec,
    connect: HistogramVec,
    response: HistogramVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    client_closed: IntCounterVec,
    server_healthy: IntGaugeVec,
    certificate_expiry: IntGaugeVec,
    stored: IntGauge,
    evicted: IntCounter,
    deploys: IntCounterVec,
    client_connections: IntGauge,
    client_connections_closed: IntCounterVec,
    reports_export_dropped: IntCounter,
}

/// The handles one config's routes and upstreams count with, resolved when the config is
/// loaded.
pub struct MetricHandles {
    requests: IntCounterVec,
    failures: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    routes: Vec<RouteHandles>,
    upstreams: Vec<UpstreamHandles>,
}

impl Metrics {
    /// Registers every metric family.
    pub fn new(instance: &str) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "triage_requests_total",
                "Requests answered, by route, upstream, status code and who produced the status",
            ),
            &["route", "upstream", "code", "source"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "triage_upstream_failures_total",
                "Requests with a diagnosis, by upstream, diagnosis token, phase and cause",
            ),
            &["upstream", "diagnosis", "phase", "cause"],
        )?;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["upstream"],
            )
        };
        let connect = histogram(
            "triage_upstream_connect_seconds",
            "Time to open a new connection to the upstream (TCP and TLS)",
            CONNECT_BUCKETS,
        )?;
        let response = histogram(
            "triage_upstream_response_seconds",
            "Time from sending the request to receiving the upstream's response headers",
            RESPONSE_BUCKETS,
        )?;
        let duration = histogram(
            "triage_request_duration_seconds",
            "Time from receiving the request to the end of the response",
            RESPONSE_BUCKETS,
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "triage_upstream_retries_total",
                "Attempts beyond the first, by upstream",
            ),
            &["upstream"],
        )?;
        let client_closed = IntCounterVec::new(
            Opts::new(
                "triage_client_closed_total",
                "Requests whose client went away before the response was complete",
            ),
            &["route"],
        )?;
        let server_healthy = IntGaugeVec::new(
            Opts::new(
                "triage_upstream_server_healthy",
                "1 while a server is in rotation (passing health checks, not ejected), else 0",
            ),
            &["upstream", "server"],
        )?;
        let certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "triage_upstream_tls_certificate_expiry_timestamp_seconds",
                "notAfter of the certificate the server presented at triage's last TLS handshake \
                 with it, in seconds since the Unix epoch",
            ),
            &["upstream", "server"],
        )?;
        let stored = IntGauge::new(
            "triage_diagnoses_stored",
            "Failure reports currently kept for /diagnoses",
        )?;
        let evicted = IntCounter::new(
            "triage_diagnoses_evicted_total",
            "Failure reports evicted from the ring to make room for newer ones",
        )?;
        let deploys = IntCounterVec::new(
            Opts::new(
                "triage_deploys_total",
                "Deploy markers recorded (POST /deploys), by upstream; \"*\" for all upstreams",
            ),
            &["upstream"],
        )?;
        let client_connections = IntGauge::new(
            "triage_client_connections",
            "Client connections open now (at most [client] max_connections)",
        )?;
        let client_connections_closed = IntCounterVec::new(
            Opts::new(
                "triage_client_connections_closed_total",
                "Client connections closed for a [client] limit, by the limit",
            ),
            &["reason"],
        )?;
        // `triage_instance`, not `instance`: Prometheus's own `instance` label (the scrape
        // target) would rename it to `exported_instance`.
        let build_info = IntGaugeVec::new(
            Opts::new(
                "triage_build_info",
                "Always 1; labels describe the build and name this instance",
            ),
            &["version", "triage_instance"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), instance])
            .set(1);
        let reports_export_dropped = IntCounter::with_opts(Opts::new(
            "triage_reports_export_dropped_total",
            "Reports not exported ([reports] export) because the writer was behind",
        ))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(connect.clone()))?;
        registry.register(Box::new(response.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(client_closed.clone()))?;
        registry.register(Box::new(stored.clone()))?;
        registry.register(Box::new(evicted.clone()))?;
        registry.register(Box::new(server_healthy.clone()))?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        registry.register(Box::new(deploys.clone()))?;
        registry.register(Box::new(client_connections.clone()))?;
        registry.register(Box::new(client_connections_closed.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(reports_export_dropped.clone()))?;

        Ok(Metrics {
            registry,
            requests,
            failures,
            connect,
            response,
            duration,
            retries,
            client_closed,
            server_healthy,
            certificate_expiry,
            stored,
            evicted,
            deploys,
            client_connections,
            client_connections_closed,
            reports_export_dropped,
        })
    }

    /// The counter of reports `[reports] export` dropped.
    pub fn reports_export_dropped(&self) -> IntCounter {
        self.reports_export_dropped.clone()
    }

    /// The gauge of open client connections.
    pub fn client_connections(&self) -> IntGauge {
        self.client_connections.clone()
    }

    /// One counter of closed client connections per reason, indexed by it; every reason's
    /// series exists from the start, at 0.
    pub fn client_connections_closed(&self) -> [IntCounter; CloseReason::COUNT] {
        CloseReason::ALL.map(|reason| {
            self.client_connections_closed
                .with_label_values(&[reason.token()])
        })
    }

    /// Resolves the handles for `config`'s routes and upstreams; its servers start as healthy.
    pub fn handles(&self, config: &LiveConfig) -> MetricHandles {
        let upstream_names = config
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.servers.as_slice()))
            .chain([(NONE_LABEL, &[][..])]);
        let upstreams = upstream_names
            .map(|(name, servers)| UpstreamHandles {
                server_healthy: servers
                    .iter()
                    .map(|s| {
                        let gauge = self
                            .server_healthy
                            .with_label_values(&[name, &s.to_string()]);
                        gauge.set(1);
                        gauge
                    })
                    .collect(),
                certificate_expiry: servers
                    .iter()
                    .map(|s| (s.to_string(), OnceLock::new()))
                    .collect(),
                failures: Diagnosis::ALL.map(|_| Cause::ALL.map(|_| OnceLock::new())),
                name: name.to_owned(),
                connect_seconds: self.connect.with_label_values(&[name]),
                response_seconds: self.response.with_label_values(&[name]),
                request_seconds: self.duration.with_label_values(&[name]),
                retries: self.retries.with_label_values(&[name]),
            })
            .collect();
        let route_labels = config
            .routes
            .iter()
            .map(|r| {
                let upstream = config
                    .upstreams
                    .get(r.upstream)
                    .map_or(NONE_LABEL, |u| u.name.as_str());
                (
                    route_label(r.host.as_deref(), &r.path_prefix),
                    upstream.to_owned(),
                )
            })
            .chain([(NONE_LABEL.to_owned(), NONE_LABEL.to_owned())]);
        // At 0 from the start, so the first deploy of an upstream is an increase.
        for upstream in config.upstreams.iter().map(|u| u.name.as_str()) {
            self.deploys.with_label_values(&[upstream]);
        }
        self.deploys.with_label_values(&[ALL_UPSTREAMS_LABEL]);
        let routes = route_labels
            .map(|(route, upstream)| RouteHandles {
                client_closed: self.client_closed.with_label_values(&[route.as_str()]),
                requests: Source::ALL.map(|_| code_slots()),
                route,
                upstream,
            })
            .collect();
        MetricHandles {
            requests: self.requests.clone(),
            failures: self.failures.clone(),
            certificate_expiry: self.certificate_expiry.clone(),
            routes,
            upstreams,
        }
    }

    /// Sets how many failure reports are stored.
    pub fn set_stored(&self, count: usize) {
        self.stored.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts the reports evicted from the ring to store a new one.
    pub fn count_evicted(&self, count: usize) {
        self.evicted
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts one deploy marker of `upstream` (a config name), or of all upstreams (`None`).
    pub fn count_deploy(&self, upstream: Option<&str>) {
        self.deploys
            .with_label_values(&[upstream.unwrap_or(ALL_UPSTREAMS_LABEL)])
            .inc();
    }

    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl MetricHandles {
    /// Counts one diagnosis of `upstream` (an index into the config's upstreams).
    pub fn count_failure(&self, upstream: usize, diagnosis: Diagnosis, cause: Cause) {
        if let Some(handles) = self.upstreams.get(upstream) {
            self.failure_counter(handles, diagnosis, cause).inc();
        }
    }

    fn failure_counter<'a>(
        &self,
        up: &'a UpstreamHandles,
        diagnosis: Diagnosis,
        cause: Cause,
    ) -> &'a IntCounter {
        up.failures[diagnosis][cause].get_or_init(|| {
            self.failures.with_label_values(&[
                up.name.as_str(),
                diagnosis.token(),
                diagnosis.phase().token(),
                cause.token(),
            ])
        })
    }

    /// Counts one finished request.
    pub fn record(&self, outcome: &Outcome<'_>) {
        let route = outcome
            .route
            .filter(|&r| r < self.routes.len() - 1)
            .unwrap_or(self.routes.len() - 1);
        let upstream = outcome
            .upstream
            .filter(|&u| u < self.upstreams.len() - 1)
            .unwrap_or(self.upstreams.len() - 1);
        let route_handles = &self.routes[route];
        self.requests_counter(route_handles, outcome.source(), outcome.status)
            .inc();
        let up = &self.upstreams[upstream];
        if let Some(d) = outcome.diagnosis() {
            let cause = outcome.cause.map_or(Cause::Unknown, |c| c.cause);
            self.failure_counter(up, d, cause).inc();
            if d == Diagnosis::ClientClosed {
                route_handles.client_closed.inc();
            }
        }
        let retries = outcome.attempts.saturating_sub(1);
        if retries > 0 {
            up.retries.inc_by(u64::from(retries));
        }
        if let Some(connect) = outcome.timings.connect {
            up.connect_seconds.observe(connect.as_secs_f64());
        }
        if let Some(response) = outcome.timings.response {
            up.response_seconds.observe(response.as_secs_f64());
        }
        up.request_seconds
            .observe(outcome.timings.total.as_secs_f64());
    }

    fn requests_counter<'a>(
        &'a self,
        route: &'a RouteHandles,
        source: Source,
        status: u16,
    ) -> &'a IntCounter {
        // HTTP has no codes outside 100..=599; anything else is counted as 599 rather than lost.
        let (slot, code) = match status.checked_sub(FIRST_CODE) {
            Some(i) if (i as usize) < CODES => (i as usize, status),
            _ => (CODES - 1, 599),
        };
        route.requests[source][slot].get_or_init(|| {
            self.requests.with_label_values(&[
                route.route.as_str(),
                route.upstream.as_str(),
                &code.to_string(),
                source.token(),
            ])
        })
    }

    /// Records the notAfter (Unix seconds) of the certificate server `server` of upstream
    /// `upstream` presented at a handshake. Runs once per new TLS connection, not per request.
    pub fn set_certificate_expiry(&self, upstream: usize, server: usize, not_after: i64) {
        let Some(up) = self.upstreams.get(upstream) else {
            return;
        };
        if let Some((label, gauge)) = up.certificate_expiry.get(server) {
            gauge
                .get_or_init(|| {
                    self.certificate_expiry
                        .with_label_values(&[up.name.as_str(), label.as_str()])
                })
                .set(not_after);
        }
    }

    /// Records whether server `server` of upstream `upstream` is in rotation.
    pub fn set_server_healthy(&self, upstream: usize, server: usize, healthy: bool) {
        if let Some(gauge) = self
            .upstreams
            .get(upstream)
            .and_then(|u| u.server_healthy.get(server))
        {
            gauge.set(i64::from(healthy));
        }
    }
}

fn code_slots() -> Box<[OnceLock<IntCounter>]> {
    (0..CODES).map(|_| OnceLock::new()).collect()
}

/// A route's label: its host and prefix, e.g. `/api/` or `example.com/`.
pub fn route_label(host: Option<&str>, path_prefix: &str) -> String {
    match host {
        Some(host) => format!("{host}{path_prefix}"),
        None => path_prefix.to_owned(),
    }
}
