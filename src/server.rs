//! Start-up: turns a validated config into a running Pingora server with the proxy, the admin
//! listener, the background loops (DNS refresh, health checks) and the reload triggers.

use crate::admin::Admin;
use crate::app_evidence::Watcher;
use crate::client::ClientConnections;
use crate::config::{BootConfig, Config, LiveConfig, LogFormat, LogLevel};
use crate::deploys::DeployLog;
use crate::export::Exporter;
use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::proxy::{Services, State, Triage};
use crate::registry::Registry;
use crate::reload::{self, Reloader};
use crate::report::ReportStore;
use crate::rundir;
use crate::shutdown::{AtExit, InFlight, Signals};
use crate::tls::SniResolver;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::{ConnectionLimit, Service};
use std::path::Path;
use std::sync::Arc;

/// Installs the log subscriber the config asks for. `RUST_LOG`, when set, overrides the level.
///
/// Pingora's own lines (targets `pingora*`) share a budget of `pingora_lines_per_second`
/// (`[log] error_lines_per_second`): Pingora logs an error line for many things a client does
/// (a half-sent request, a reset connection), and a client sending those by the thousand must
/// not flood the log. Lines over the budget are dropped.
pub fn init_logging(level: &LogLevel, format: &LogFormat, pingora_lines_per_second: u32) {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let pingora_budget = crate::accesslog::RateLimiter::new(pingora_lines_per_second);
    // The most verbose level any line can pass at. Pingora logs through the `log` crate, and
    // `try_init` bridges `log` to this subscriber with `log`'s own max level set from this
    // hint: without it (a bare `filter_fn` gives none, so the pair gives none) that level is
    // TRACE, and each of the dozen `debug!`/`trace!` calls Pingora makes per request becomes a
    // `log::Record` dispatched and then filtered out, about 12k instructions per request
    // (benches/instructions.py). With it, they stop at `log`'s one atomic compare.
    let max_level = level_filter.max_level_hint();
    // After the level filter (`and` stops at the first "no"), so only lines that would be
    // written spend the budget.
    let budget = tracing_subscriber::filter::filter_fn(move |meta| {
        !meta.target().starts_with("pingora") || pingora_budget.admit().is_some()
    });
    let budget = match max_level {
        Some(level) => budget.with_max_level_hint(level),
        None => budget,
    };
    let filter = level_filter.and(budget);
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .boxed(),
    };
    // A subscriber already installed (e.g. by an embedding program) is fine.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// Keeps the current state's background loops running, across reloads.
struct Supervisor(Arc<Reloader>);

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        reload::supervise(self.0.subscribe(), async move {
            let _ = shutdown.changed().await;
        })
        .await;
    }
}

/// Reloads the config on SIGHUP, as nginx does.
struct ReloadOnHangup(Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP, reload with `triage reload`: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                hangup = hangups.recv() => {
                    // None: the runtime's signal driver is gone (shutting down); waiting
                    // again would return at once, for ever.
                    if hangup.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    // The outcome is logged by the reloader.
                    let _ = self.0.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Pingora's server settings for triage. `upgrade` takes the listening sockets over from a
/// running triage (zero-downtime binary upgrade: start the new binary with `--upgrade`, then
/// send SIGQUIT to the old one, which hands its sockets over and drains).
fn server_conf(boot: &BootConfig, live: &LiveConfig) -> ServerConf {
    // Pingora's bound on attempts per request: the largest `retries` plus the first attempt,
    // plus one for a stale pooled connection. Each upstream's own `retries` and retry budget
    // decide within that bound. It is fixed for the life of the process, so a reload may not
    // raise `retries` above it (reload.rs refuses).
    // The shutdown watchdog (shutdown.rs) ends the process when the drain is over or at
    // `shutdown_timeout`; Pingora's own phases, a second longer each, are only a backstop.
    let grace_seconds = boot.server.shutdown_timeout.as_secs_f64().ceil() as u64;
    ServerConf {
        max_retries: live.most_retries() as usize + 2,
        grace_period_seconds: Some(grace_seconds + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora writes `pid_file` only when it daemonizes, which triage does not: triage
        // writes its own (rundir.rs), which also readies the socket's directory.
        upgrade_sock: boot.server.upgrade_socket.to_string_lossy().into_owned(),
        pid_file: boot.server.pid_file.to_string_lossy().into_owned(),
        threads: boot.server.worker_threads(),
        work_stealing: boot.server.work_stealing,
        ..ServerConf::default()
    }
}

/// The buffer a response to a client is gathered in before it goes to the socket.
///
/// Pingora's default is one MSS (1,460 bytes), so a response header followed by a body of a
/// few KiB (an error page, most HTML and JSON answers) left in two `send` calls: two trips
/// through loopback or the NIC, and two wake-ups of the client. 4 KiB holds the header and
/// the whole error page. A body written larger than the buffer still goes straight to the
/// socket, and a chunked body is still flushed at every chunk; only a Content-Length body
/// that trickles in small pieces waits for 4 KiB (instead of 1,460 bytes) or its end.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings::default().write(4096)
}

/// Puts the proxy's client connections under `[client]`: the timeouts and the head size limit
/// (HTTP/1 and HTTP/2), and the cap on open connections, asked at every accept.
fn limit_clients(
    proxy_service: &mut Service<pingora::proxy::HttpProxy<Triage>>,
    clients: &Arc<ClientConnections>,
    boot: &BootConfig,
) {
    if let Some(proxy) = proxy_service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.client_limits = Some(clients.limits());
        proxy.server_options = Some(options);
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        // HTTP/2's bound is on the decoded header list; h2 answers a list over it with 431.
        let max_header_list = u32::try_from(boot.client.max_header_bytes).unwrap_or(u32::MAX);
        h2.max_header_list_size(max_header_list);
        proxy.h2_options = Some(h2);
    }
    proxy_service.set_connection_limit(Arc::clone(clients) as Arc<dyn ConnectionLimit>);
}

/// A server ready to run, with the signal handling that bounds its shutdown.
pub struct Process {
    server: Server,
    signals: Signals,
    at_exit: AtExit,
}

impl Process {
    /// Serves until a signal ends the process (see [`crate::shutdown`]).
    pub fn run_forever(self) -> ! {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(self.signals),
        });
        (self.at_exit)();
        std::process::exit(0)
    }
}

/// Builds the server for the config at `path` (already loaded as `config`): the boot part sets
/// up the process, the live part the first proxy state. Fails (without panicking) on what
/// validation cannot see before start-up, such as a DNS resolver that cannot be set up.
///
/// First the runtime directory is readied and the pid file written (see [`crate::rundir`]),
/// before Pingora's bootstrap, which on `--upgrade` waits for the sockets on the upgrade
/// socket; the pid file is removed again when a later step fails.
pub fn build(config: Config, path: &Path, upgrade: bool) -> Result<Process, String> {
    let pid_file = rundir::prepare(&config.boot.server, upgrade)?;
    let at_exit: AtExit = Arc::new(move || {
        if let Some(pid_file) = &pid_file {
            pid_file.remove();
        }
    });
    build_process(config, path, upgrade, Arc::clone(&at_exit)).inspect_err(|_| at_exit())
}

fn build_process(
    config: Config,
    path: &Path,
    upgrade: bool,
    at_exit: AtExit,
) -> Result<Process, String> {
    let Config { boot, live } = config;
    // Before the first id is made: every id of the process starts with the instance's name.
    crate::id::set_instance(&boot.server.instance);
    let metrics = Arc::new(
        Metrics::new(&boot.server.instance).map_err(|e| format!("cannot register metrics: {e}"))?,
    );
    let conf = server_conf(&boot, &live);
    let reports = ReportStore::new(boot.reports.max_count, boot.reports.max_bytes);
    let reports = Arc::new(match &boot.reports.export {
        Some(target) => {
            reports.with_export(Exporter::start(target, metrics.reports_export_dropped())?)
        }
        None => reports,
    });
    // For the life of the process: a reload replaces the state, never the deploy markers, and
    // every reload's state borrows from the registry.
    let deploys = Arc::new(DeployLog::default());
    let machine = Arc::new(Machine::default());
    let registry = Arc::new(Registry::new());
    let state = Arc::new(State::new(live, &metrics, &registry)?);
    let reloader = Arc::new(Reloader::new(
        path.to_path_buf(),
        boot.clone(),
        state,
        Arc::clone(&metrics),
        registry,
    ));
    // The disks to sample are the live config's, read at each sample: a reload changes them.
    let live_state = reloader.shared_state();
    machine.start(move || live_state.load().config.diagnosis.host_disks.clone());
    // Likewise the app evidence settings, read at each poll of the evidence thread.
    let app_evidence = Arc::new(Watcher::default());
    let live_state = reloader.shared_state();
    app_evidence.start(Arc::clone(&reports), move || {
        live_state
            .load()
            .config
            .upstreams
            .iter()
            .filter_map(|u| u.evidence.clone().map(|e| (u.name.clone(), e)))
            .collect()
    });

    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let in_flight = Arc::new(InFlight::default());
    if let Some(warning) = crate::client::raise_file_limit(boot.client.max_connections) {
        tracing::warn!("{warning}");
    }
    let clients = Arc::new(ClientConnections::new(
        &boot.client,
        &metrics,
        boot.log.error_lines_per_second,
    ));
    // For the life of the process, like the deploy markers: a reload keeps the timelines.
    let incidents = Arc::new(crate::incidents::Incidents::default());
    let access_lines = crate::accesslog::lines_for(&boot.log);
    let at_exit: AtExit = {
        let access_lines = Arc::clone(&access_lines);
        Arc::new(move || {
            access_lines.flush();
            at_exit();
        })
    };
    let services = Services {
        metrics: Arc::clone(&metrics),
        reports: Arc::clone(&reports),
        deploys: Arc::clone(&deploys),
        machine: Arc::clone(&machine),
        app_evidence,
        incidents: Arc::clone(&incidents),
        in_flight: Arc::clone(&in_flight),
        clients: Arc::clone(&clients),
        access_lines,
    };
    let proxy = Triage::new(reloader.shared_state(), services, &boot);
    let mut proxy_service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    limit_clients(&mut proxy_service, &clients, &boot);
    for addr in &boot.listen.http {
        proxy_service
            .add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(client_buffers()));
    }
    if !boot.listen.https.is_empty() {
        let loaded = boot.certificates.iter().map(|c| c.loaded.clone()).collect();
        let resolver = Arc::new(SniResolver::new(loaded)?);
        for addr in &boot.listen.https {
            // The paths are unused: the resolver supplies the certificates, by SNI.
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| format!("cannot set up TLS on {addr}: {e}"))?;
            settings.set_cert_resolver(resolver.clone());
            // HTTP/2 and HTTP/1.1, chosen by ALPN.
            settings.enable_h2();
            proxy_service.add_listener(
                ListenerConfig::tcp(addr.to_string())
                    .tls(settings)
                    .l4_buffer(client_buffers()),
            );
        }
    }
    server.add_service(proxy_service);
    server.add_service(background_service(
        "background loops",
        Supervisor(Arc::clone(&reloader)),
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup(Arc::clone(&reloader)),
    ));

    let mut admin = Service::new(
        "admin".to_owned(),
        Admin::new(
            metrics,
            reports,
            deploys,
            incidents,
            Some(reloader),
            &boot.admin,
        ),
    );
    admin.add_tcp(&boot.admin.listen.to_string());
    server.add_service(admin);
    Ok(Process {
        server,
        signals: Signals::new(
            in_flight,
            boot.server.shutdown_timeout,
            Arc::clone(&at_exit),
        ),
        at_exit,
    })
}
