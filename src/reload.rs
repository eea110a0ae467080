//! Hot reload: a new config takes effect for new requests without dropping in-flight ones.
//!
//! `SIGHUP`, `POST /reload` on the admin listener, or `triage reload -c FILE` read the config
//! file again. An invalid one is refused, its errors logged with their positions, and the old
//! one keeps serving. A valid one becomes a new [`State`] swapped in atomically: each request
//! holds the state it started with until it ends, so a reload under load fails nothing. The
//! background loops (DNS refresh, health checks) restart for the new state.
//!
//! What a reload cannot change in a running process (listeners, worker threads, the admin
//! address, log format, the report ring's size, certificates) is kept, with a warning that it
//! needs a restart or a binary upgrade.

use crate::config;
use crate::metrics::Metrics;
use crate::proxy::{health, State};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// Reloads the config file into the shared state.
pub struct Reloader {
    path: PathBuf,
    current: Arc<ArcSwap<State>>,
    metrics: Arc<Metrics>,
    changes: watch::Sender<Arc<State>>,
    /// One reload at a time: two SIGHUPs in a row must not interleave.
    serial: Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, state: Arc<State>, metrics: Arc<Metrics>) -> Reloader {
        let (changes, _) = watch::channel(Arc::clone(&state));
        Reloader {
            path,
            current: Arc::new(ArcSwap::new(state)),
            metrics,
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
        let old = self.current.load_full();
        let kept = needs_restart(&old.config, &config);
        let state = match State::new(config, &self.metrics) {
            Ok(state) => Arc::new(state),
            Err(reason) => {
                tracing::error!(file = %self.path.display(), "reload refused: {reason}");
                return Err(format!(
                    "reload refused; the running config is unchanged: {reason}"
                ));
            }
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
}

/// What differs between two configs that a running process cannot apply.
fn needs_restart(old: &config::Config, new: &config::Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if old.listen != new.listen {
        kept.push("[listen]");
    }
    if old.server != new.server {
        kept.push("[server]");
    }
    if old.admin != new.admin {
        kept.push("[admin]");
    }
    if old.log != new.log {
        kept.push("[log]");
    }
    if old.reports != new.reports {
        kept.push("[reports]");
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
