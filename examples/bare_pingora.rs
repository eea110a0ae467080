//! The load benchmark's baseline: the smallest Pingora proxy, built from the same Pingora
//! version as triage, so `benches/load.py` can tell what triage costs on top of Pingora itself.
//!
//! It forwards every request to one fixed upstream over plain HTTP, with Pingora's defaults
//! for everything else (one worker thread, a work-stealing runtime, no timeouts, Pingora's own
//! error responses). It adds no headers, no logging and no metrics.
//!
//! ```text
//! bare_pingora LISTEN UPSTREAM [--fail-upstream ADDR] [--read-timeout-ms N] [--no-work-stealing]
//! ```
//!
//! - `LISTEN`: address to listen on, e.g. `127.0.0.1:8081`.
//! - `UPSTREAM`: `ip:port` every request goes to (or the `BARE_PINGORA_UPSTREAM` env var).
//! - `--fail-upstream ADDR`: requests whose path starts with `/fail` go there instead; the
//!   benchmark's "10% failing" scenario points it at a port where nothing listens. One prefix
//!   compare per request, the least routing that scenario needs.
//! - `--read-timeout-ms N`: the upstream read timeout, for the "slow upstream near its timeout"
//!   scenario (triage and nginx get the same value there).
//! - `--no-work-stealing`: Pingora's pool of single-threaded runtimes instead of its default
//!   work-stealing one; the runtime triage runs on by default, so that comparing the two
//!   isolates what triage's own work costs.
//!
//! Run: `cargo run --release --example bare_pingora -- 127.0.0.1:8081 127.0.0.1:3000`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::time::Duration;

struct Bare {
    upstream: String,
    fail_upstream: Option<String>,
    read_timeout: Option<Duration>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let addr = match &self.fail_upstream {
            Some(fail) if session.req_header().uri.path().starts_with("/fail") => fail,
            _ => &self.upstream,
        };
        let mut peer = HttpPeer::new(addr.as_str(), false, String::new());
        peer.options.read_timeout = self.read_timeout;
        Ok(Box::new(peer))
    }
}

const USAGE: &str =
    "usage: bare_pingora LISTEN UPSTREAM [--fail-upstream ADDR] [--read-timeout-ms N] [--no-work-stealing]";

fn main() {
    let mut positional = Vec::new();
    let mut fail_upstream = None;
    let mut read_timeout = None;
    let mut work_stealing = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fail-upstream" => fail_upstream = Some(args.next().expect(USAGE)),
            "--read-timeout-ms" => {
                let ms: u64 = args.next().and_then(|v| v.parse().ok()).expect(USAGE);
                read_timeout = Some(Duration::from_millis(ms));
            }
            "--no-work-stealing" => work_stealing = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => positional.push(arg),
        }
    }
    let listen = positional.first().cloned().expect(USAGE);
    let upstream = positional
        .get(1)
        .cloned()
        .or_else(|| std::env::var("BARE_PINGORA_UPSTREAM").ok())
        .expect(USAGE);

    // ServerConf::default(): threads = 1, like nginx's one worker and triage's benchmark config.
    let conf = ServerConf {
        work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = Bare {
        upstream,
        fail_upstream,
        read_timeout,
    };
    let mut service = http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
