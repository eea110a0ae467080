//! Start-up: turns a validated config into a running Pingora server with the proxy, the admin
//! listener and the background resolver.

use crate::admin::Admin;
use crate::config::{Config, LogFormat, LogLevel};
use crate::metrics::Metrics;
use crate::proxy::{State, Triage};
use crate::report::ReportStore;
use crate::resolve::HostResolver;
use crate::tls::SniResolver;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;

/// Installs the log subscriber the config asks for. `RUST_LOG`, when set, overrides the level.
pub fn init_logging(level: &LogLevel, format: &LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A subscriber already installed (e.g. by an embedding program) is fine.
    let _ = result;
}

/// Re-resolves upstream hostnames in the background.
struct ResolverTask(Arc<HostResolver>);

#[async_trait]
impl BackgroundService for ResolverTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.0.run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs the active health checks in the background.
struct HealthTask {
    state: Arc<State>,
    resolver: Arc<HostResolver>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for HealthTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let checks = crate::proxy::health::run(
            Arc::clone(&self.state),
            Arc::clone(&self.resolver),
            Arc::clone(&self.metrics),
        );
        tokio::select! {
            _ = checks => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Builds the server for `config`. Fails (without panicking) on what validation cannot see
/// before start-up, such as an unreadable CA file.
pub fn build(config: Config) -> Result<Server, String> {
    let state = State::new(config)?;
    let resolver = HostResolver::new(
        state.hostnames(),
        &state.config.resolver.nameservers,
        state.config.resolver.refresh,
    )?;
    let resolver = Arc::new(resolver);
    let listen = state.config.listen.clone();
    let certificates = state.config.certificates.clone();
    let admin_listen = state.config.admin.listen;

    // Pingora's bound on attempts per request: the largest `retries` plus the first attempt,
    // plus one for a stale pooled connection. Each upstream's own `retries` and retry budget
    // decide within that bound.
    let most_retries = state
        .config
        .upstreams
        .iter()
        .map(|u| u.retries as usize)
        .max()
        .unwrap_or(0);
    let conf = ServerConf {
        max_retries: most_retries + 2,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics =
        Arc::new(Metrics::new(&state.config).map_err(|e| format!("cannot register metrics: {e}"))?);
    let reports = Arc::new(ReportStore::new(
        state.config.reports.max_count,
        state.config.reports.max_bytes,
    ));
    let state = Arc::new(state);
    let health = HealthTask {
        state: Arc::clone(&state),
        resolver: Arc::clone(&resolver),
        metrics: Arc::clone(&metrics),
    };
    let proxy = Triage::new(
        state,
        Arc::clone(&resolver),
        Arc::clone(&metrics),
        Arc::clone(&reports),
    );
    let mut proxy_service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    for addr in &listen.http {
        proxy_service.add_tcp(&addr.to_string());
    }
    if !listen.https.is_empty() {
        let pairs: Vec<_> = certificates
            .iter()
            .map(|c| (c.cert_file.clone(), c.key_file.clone()))
            .collect();
        let resolver = Arc::new(SniResolver::load(&pairs)?);
        for addr in &listen.https {
            // The paths are unused: the resolver supplies the certificates, by SNI.
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| format!("cannot set up TLS on {addr}: {e}"))?;
            settings.set_cert_resolver(resolver.clone());
            // HTTP/2 and HTTP/1.1, chosen by ALPN.
            settings.enable_h2();
            proxy_service.add_tls_with_settings(&addr.to_string(), None, settings);
        }
    }
    server.add_service(proxy_service);
    server.add_service(background_service("resolver", ResolverTask(resolver)));
    server.add_service(background_service("health checks", health));

    let mut admin = Service::new("admin".to_owned(), Admin::new(metrics, reports));
    admin.add_tcp(&admin_listen.to_string());
    server.add_service(admin);
    Ok(server)
}
