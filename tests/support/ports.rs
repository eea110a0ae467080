//! Loopback ports picked for a server that binds them later (a child process: triage, an app
//! server, php-fpm), handed out at most once per test process.
//!
//! A port is picked by binding `127.0.0.1:0` and closing the socket; the kernel may give the
//! same port to the next such bind, and tests run in parallel threads, so two tests could be
//! handed one port: the first server to bind it wins, and the other test talks to a stranger
//! (in the ephemeral range, a few hundred picks already repeat one). Here a port is handed out
//! once, and this process's own servers that bind port 0 ([`bind_unpicked`]) pass over the ones
//! handed out, so that none of them takes a port a child is about to bind.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn handed_out() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A free loopback port no other caller in this process has been given.
pub fn pick() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if handed_out().insert(port) {
            return port;
        }
    }
}

/// Whether `port` was handed out by [`pick`].
pub fn is_picked(port: u16) -> bool {
    handed_out().contains(&port)
}

/// Binds with `bind` (to a port-0 address) until the kernel gives a port not handed out by
/// [`pick`]; the rejected sockets are held until then, so that the kernel does not give the
/// same port again.
pub fn bind_unpicked<L, E>(
    mut bind: impl FnMut() -> Result<L, E>,
    port_of: impl Fn(&L) -> Result<u16, E>,
) -> Result<L, E> {
    let mut rejected = Vec::new();
    loop {
        let listener = bind()?;
        if !is_picked(port_of(&listener)?) {
            return Ok(listener);
        }
        rejected.push(listener);
    }
}
