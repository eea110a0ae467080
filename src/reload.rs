//! Hot reload: a new config takes effect for new requests without dropping in-flight ones.
//!
//! `SIGHUP`, `POST /reload` on the admin listener, or `triage reload -c FILE` read the config
//! file again. An invalid one is refused, its errors logged with their positions, and the old
//! one keeps serving. A valid one becomes a new [`State`] swapped in atomically: each request
//! holds the state it started with until it ends, so a reload under load fails nothing. The new
//! state borrows what is known of its servers from the process's [`Registry`]: a server out of
//! rotation stays out, a hostname keeps its address, a retry budget its count. The background
//! loops (DNS refresh, health checks) restart for the new state, on those same entries.
//!
//! What a reload cannot change in a running process (listeners, worker threads, the admin
//! address, log format, the report ring and its link, certificates: the config's boot part) is
//! kept, with a warning that it needs a restart or a binary upgrade. Only the live part of the
//! new config reaches the new [`State`].
//!
//! One live setting has a bound fixed at start: Pingora's limit on attempts per request comes
//! from the largest `retries` the process started with. A reload raising an upstream's `retries`
//! above it is refused, saying so, rather than applied with fewer retries than the file says.

use crate::config::{self, BootConfig};
use crate::metrics::Metrics;
use crate::proxy::{health, State};
use crate::registry::Registry;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// Reloads the config file into the shared state.
pub struct Reloader {
    path: PathBuf,
    /// The boot part the process started with, which stays in force whatever a reload says.
    boot: BootConfig,
    /// The largest `retries` the process started with, from which Pingora's bound on attempts
    /// per request was fixed (server.rs).
    most_retries: u32,
    current: Arc<ArcSwap<State>>,
    metrics: Arc<Metrics>,
    /// What every state borrows, for the life of the process.
    registry: Arc<Registry>,
    changes: watch::Sender<Arc<State>>,
    /// One reload at a time: two SIGHUPs in a row must not interleave.
    serial: Mutex<()>,
}

impl Reloader {
    /// `boot` is the boot part the process started with; `state` was built from its live part
    /// (over `registry`), which also fixed the bound on retries.
    pub fn new(
        path: PathBuf,
        boot: BootConfig,
        state: Arc<State>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> Reloader {
        let (changes, _) = watch::channel(Arc::clone(&state));
        Reloader {
            path,
            boot,
            most_retries: state.config.most_retries(),
            current: Arc::new(ArcSwap::new(state)),
            metrics,
            registry,
            changes,
            serial: Mutex::new(()),
        }
    }

    /// The state requests read; swapped on each valid reload.
    pub fn shared_state(&self) -> Arc<ArcSwap<State>> {
        Arc::clone(&self.current)
    }

    /// Follows every state change, starting with the current state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.changes.subscribe()
    }

    /// Reads the config file again and swaps it in if valid. Returns what happened, for the
    /// admin endpoint and the `triage reload` command.
    pub async fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.serial.lock().await;
        let config = match config::load(&self.path) {
            Ok(config) => config,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(file = %self.path.display(), line = e.line, column = e.column, "reload refused: {}", e.message);
                }
                return Err(format!(
                    "{} has errors; the running config is unchanged:\n{errors}",
                    self.path.display()
                ));
            }
        };
        // Against what runs, not against the previous reload: a boot-only change stays unapplied
        // until a restart, however many reloads come after it.
        let kept = needs_restart(&self.boot, &config.boot);
        if let Some(reason) = retries_beyond(&config.live, self.most_retries) {
            return Err(self.refuse(&reason));
        }
        let state = match State::new(config.live, &self.metrics, &self.registry) {
            Ok(state) => Arc::new(state),
            Err(reason) => return Err(self.refuse(&reason)),
        };
        self.current.store(Arc::clone(&state));
        self.changes.send_replace(state);
        for what in &kept {
            tracing::warn!("reload: {what} changed, which needs a restart or a binary upgrade; the old value stays in force");
        }
        tracing::info!(file = %self.path.display(), "config reloaded");
        let mut message = format!("{} reloaded\n", self.path.display());
        for what in kept {
            message.push_str(&format!("not applied until restart: {what}\n"));
        }
        Ok(message)
    }

    /// Logs why a valid config cannot be applied, and says so for the caller.
    fn refuse(&self, reason: &str) -> String {
        tracing::error!(file = %self.path.display(), "reload refused: {reason}");
        format!("reload refused; the running config is unchanged: {reason}")
    }
}

/// Why `live` asks for more retries than a process started with `most_retries` can make, if it
/// does. Applying such a config would cap the retries below what the file says, silently.
fn retries_beyond(live: &config::LiveConfig, most_retries: u32) -> Option<String> {
    let over: Vec<String> = live
        .upstreams
        .iter()
        .filter(|u| u.retries > most_retries)
        .map(|u| format!("[upstreams.{}] retries = {}", u.name, u.retries))
        .collect();
    (!over.is_empty()).then(|| {
        format!(
            "{}: more retries than the {most_retries} this process was started with allows; the \
             bound on attempts per request is fixed at start, so restart triage (or upgrade the \
             binary) to raise it",
            over.join(", ")
        )
    })
}

/// What differs between two boot configs, which a running process cannot apply.
fn needs_restart(old: &BootConfig, new: &BootConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if old.listen != new.listen {
        kept.push("[listen]");
    }
    if old.server != new.server {
        kept.push("[server]");
    }
    if old.client != new.client {
        kept.push("[client]");
    }
    if old.admin != new.admin {
        kept.push("[admin]");
    }
    if old.log != new.log {
        kept.push("[log]");
    }
    if (
        old.reports.max_count,
        old.reports.max_bytes,
        &old.reports.keep_headers,
    ) != (
        new.reports.max_count,
        new.reports.max_bytes,
        &new.reports.keep_headers,
    ) {
        kept.push("[reports]");
    }
    if old.reports.url != new.reports.url {
        kept.push("[diagnosis] report_url");
    }
    if old.certificates != new.certificates {
        kept.push("[tls]");
    }
    kept
}

/// Runs the background loops of the current state (DNS refresh, health checks), restarting
/// them whenever a reload swaps the state, until `stop` resolves.
pub async fn supervise(
    mut changes: watch::Receiver<Arc<State>>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let state = changes.borrow_and_update().clone();
        let resolver = {
            let resolver = Arc::clone(&state.resolver);
            tokio::spawn(async move { resolver.run().await })
        };
        let checks = tokio::spawn(health::run(Arc::clone(&state)));
        let keep_going = tokio::select! {
            changed = changes.changed() => changed.is_ok(),
            _ = &mut stop => false,
        };
        resolver.abort();
        checks.abort();
        if !keep_going {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str, upstream: &str) -> config::Config {
        let text = format!(
            "[listen]\nhttp = [\"127.0.0.1:8080\"]\n{extra}\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n{upstream}\n[upstreams.api]\nservers = [\"127.0.0.1:3001\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
        );
        config::parse(&text, std::path::Path::new(".")).unwrap_or_else(|errors| panic!("{errors}"))
    }

    fn boot(extra: &str) -> BootConfig {
        parse(extra, "").boot
    }

    /// Retries up to the largest the process started with are fine, on any upstream; more are
    /// refused, naming each upstream over the bound and the bound.
    #[test]
    fn retries_above_the_start_bound_are_refused() {
        let started = parse("", "retries = 3").live.most_retries();
        assert_eq!(started, 3);
        assert_eq!(
            retries_beyond(&parse("", "retries = 0").live, started),
            None
        );
        assert_eq!(
            retries_beyond(&parse("", "retries = 3").live, started),
            None
        );
        let reason = retries_beyond(&parse("", "retries = 4").live, 1).unwrap_or_default();
        assert!(
            reason.starts_with("[upstreams.app] retries = 4: more retries than the 1 this process")
                && reason.contains("restart triage"),
            "{reason}"
        );
    }

    /// Live sections never need a restart; each boot section is named as the file names it,
    /// and report_url apart from the ring's bounds.
    #[test]
    fn needs_restart_names_the_boot_sections() {
        let running = boot("");
        let live_only = boot("[diagnosis]\ndetail = \"none\"\n[resolver]\nrefresh = \"5s\"\n");
        assert!(needs_restart(&running, &live_only).is_empty());
        for (extra, section) in [
            ("[server]\nthreads = 3\n", "[server]"),
            ("[client]\nkeepalive_timeout = \"5s\"\n", "[client]"),
            ("[admin]\nlisten = \"127.0.0.1:9999\"\n", "[admin]"),
            ("[log]\naccess = false\n", "[log]"),
            ("[reports]\nmax_count = 5\n", "[reports]"),
            ("[reports]\nkeep_headers = [\"x-tenant\"]\n", "[reports]"),
            (
                "[diagnosis]\nreport_url = \"https://support.example/\"\n",
                "[diagnosis] report_url",
            ),
        ] {
            assert_eq!(needs_restart(&running, &boot(extra)), [section], "{extra}");
        }
        let mut listen = running.clone();
        listen.listen.http.push("127.0.0.1:8081".parse().unwrap());
        assert_eq!(needs_restart(&running, &listen), ["[listen]"]);
    }
}
