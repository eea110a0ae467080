//! Real app servers as child processes, for the causes: node and gunicorn servers, and a
//! supervisor that restarts a child that keeps dying. Each runs in a process group of its own
//! on a loopback port (or gunicorn on a unix socket), and is killed (the whole group) when
//! dropped; nothing here outlives its test.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where an app listens: a loopback address, or a unix socket's path.
pub trait Endpoint: std::fmt::Debug {
    /// Whether a connect to it is accepted now.
    fn accepts(&self) -> bool;
}

impl Endpoint for SocketAddr {
    fn accepts(&self) -> bool {
        // `free_port` ports lie in the ephemeral range, so a connect to one nobody listens on
        // yet can pick that very port as its source and connect to itself (TCP simultaneous
        // open): that is no listener, and the app may still be starting.
        TcpStream::connect_timeout(self, Duration::from_millis(200))
            .is_ok_and(|s| s.local_addr().ok() != Some(*self))
    }
}

impl Endpoint for PathBuf {
    fn accepts(&self) -> bool {
        UnixStream::connect(self).is_ok()
    }
}

/// A running app server (or supervisor), its process group killed on drop.
pub struct App<A: Endpoint = SocketAddr> {
    child: Child,
    pub addr: A,
}

/// A free loopback port (bound, then released for the app to take), given to no other test.
pub fn free_port() -> u16 {
    super::ports::pick()
}

/// A node HTTP server on 127.0.0.1:`port` with these routes: `/` answers `ok`; `/pid` its
/// pid; `/slow` answers after 10 s; `/exit` exits the process in the middle of the request
/// (before reading a request body); `/fail` answers 500 as an app does.
pub const NODE_APP: &str = r#"
const http = require('http');
const port = +process.env.PORT;
http.createServer((req, res) => {
  if (req.url === '/slow') { setTimeout(() => res.end('slow\n'), 10000); return; }
  if (req.url === '/exit') { process.exit(1); }
  if (req.url === '/pid') { res.end(String(process.pid)); return; }
  if (req.url === '/fail') { res.statusCode = 500; res.end('Internal Server Error\n'); return; }
  res.end('ok\n');
}).listen(port, '127.0.0.1');
"#;

/// The same app, but only for `SERVE_MS` milliseconds: then it exits (a process that crashes
/// soon after every start, under a supervisor).
pub const NODE_SHORT_LIVED: &str = r#"
const http = require('http');
http.createServer((req, res) => res.end('ok\n')).listen(+process.env.PORT, '127.0.0.1');
setTimeout(() => process.exit(1), +process.env.SERVE_MS);
"#;

/// A release that dies at startup, before it listens (a failed import).
pub const NODE_BROKEN_RELEASE: &str = r#"
console.error("Error: Cannot find module './config/production'");
process.exit(1);
"#;

/// A node app that logs each request to stdout (`GET /path`) and with `/grow` allocates on its
/// JavaScript heap until it dies (run it with `--max-old-space-size`: node then prints
/// `FATAL ERROR: ... JavaScript heap out of memory` to stderr and aborts); `/buffers` allocates
/// outside the heap (Buffers), which only a memory limit (a cgroup's) stops; `/slow` answers
/// after 10 s.
pub const NODE_LOGGING_APP: &str = r#"
const http = require('http');
const kept = [];
http.createServer((req, res) => {
  console.log(`${new Date().toISOString()} GET ${req.url}`);
  if (req.url === '/grow') { for (let i = 0; ; i++) kept.push({ i, pad: new Array(1000).fill(i) }); }
  if (req.url === '/buffers') { for (;;) { const b = Buffer.alloc(1 << 20, 1); kept.push(b); } }
  if (req.url === '/slow') { setTimeout(() => res.end('slow\n'), 10000); return; }
  if (req.url === '/pid') { res.end(String(process.pid)); return; }
  res.end('ok\n');
}).listen(+process.env.PORT, '127.0.0.1');
"#;

/// A TLS server (OpenSSL, through node) with the certificate and key in `CERT` and `KEY`.
pub const NODE_TLS: &str = r#"
const tls = require('tls'); const fs = require('fs');
tls.createServer({ cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY) },
  (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n')).listen(+process.env.PORT, '127.0.0.1');
"#;

/// A gunicorn WSGI app: `/` answers `ok`, `/pid` the worker's pid, `/slow` sleeps 10 s.
pub const WSGI_APP: &str = r#"
import os, time
def app(environ, start_response):
    path = environ.get('PATH_INFO', '/')
    if path == '/slow':
        time.sleep(10)
    body = str(os.getpid()).encode() if path == '/pid' else b'ok\n'
    start_response('200 OK', [('Content-Length', str(len(body)))])
    return [body]
"#;

impl App {
    /// `node -e script` with `PORT` and `env`, once it accepts connections.
    pub fn node(script: &str, env: &[(&str, &str)]) -> App {
        let port = free_port();
        let mut command = Command::new("node");
        command.arg("-e").arg(script).env("PORT", port.to_string());
        for (k, v) in env {
            command.env(k, v);
        }
        App::spawn(command, port)
    }

    /// `node node_args... -e script` with `PORT`, its stdout and stderr appended to `log` (as
    /// a supervisor's `StandardOutput=append:` does), once it accepts connections.
    pub fn node_logged(script: &str, node_args: &[&str], log: &Path) -> App {
        let port = free_port();
        let mut command = Command::new("node");
        command
            .args(node_args)
            .arg("-e")
            .arg(script)
            .env("PORT", port.to_string());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the app's log");
        let err = out.try_clone().expect("the log for stderr");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start node");
        let app = App {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        app.wait_listening(Duration::from_secs(15));
        app
    }

    /// The app's process id (its process group's leader).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// gunicorn serving `WSGI_APP` from `dir` with `args` (e.g. `--workers 1 --timeout 2`).
    pub fn gunicorn(dir: &Path, args: &[&str]) -> App {
        let port = free_port();
        App::spawn(gunicorn(dir, &format!("127.0.0.1:{port}"), args), port)
    }

    /// A supervisor (a shell loop, as systemd's `Restart=always` or PM2 would) that starts
    /// `node -e script` on a port of its own and starts it again `restart_ms` after each exit.
    /// It is not waited for: the child may never listen.
    pub fn supervised(script: &str, env: &[(&str, &str)], restart_ms: u64) -> App {
        App::supervised_with(free_port(), script, env, restart_ms)
    }

    /// [`App::supervised`] on a given port (a new release where the old one listened).
    pub fn supervised_on(port: u16, script: &str, restart_ms: u64) -> App {
        App::supervised_with(port, script, &[], restart_ms)
    }

    fn supervised_with(port: u16, script: &str, env: &[(&str, &str)], restart_ms: u64) -> App {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "while true; do node -e \"$SCRIPT\"; sleep {}; done",
                restart_ms as f64 / 1000.0
            ))
            .env("SCRIPT", script)
            .env("PORT", port.to_string());
        for (k, v) in env {
            command.env(k, v);
        }
        App::start(command, port)
    }

    fn spawn(command: Command, port: u16) -> App {
        App::spawn_at(command, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    fn start(command: Command, port: u16) -> App {
        App::start_at(command, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

impl App<PathBuf> {
    /// gunicorn serving `WSGI_APP` from `dir` on the unix socket `socket`, with `args`.
    pub fn gunicorn_unix(dir: &Path, socket: &Path, args: &[&str]) -> App<PathBuf> {
        let command = gunicorn(dir, &format!("unix:{}", socket.display()), args);
        App::spawn_at(command, socket.to_owned())
    }
}

impl<A: Endpoint> App<A> {
    fn spawn_at(command: Command, addr: A) -> App<A> {
        let app = App::start_at(command, addr);
        app.wait_listening(Duration::from_secs(15));
        app
    }

    fn start_at(mut command: Command, addr: A) -> App<A> {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the app");
        App { child, addr }
    }

    /// Waits (bounded) until the app accepts connections.
    pub fn wait_listening(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.addr.accepts() {
            assert!(
                Instant::now() < deadline,
                "the app never listened on {:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until nothing accepts connections any more.
    pub fn wait_refusing(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.addr.accepts() {
            assert!(Instant::now() < deadline, "{:?} still accepts", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. "KILL") to the app's whole process group.
    pub fn kill_group(&self, signal: &str) {
        kill(&format!("-{}", self.child.id()), signal);
    }

    /// SIGKILLs the app's process group and waits (bounded) until the app's process is
    /// reaped: only then has the kernel closed every socket it had. (Its listener can refuse
    /// a moment before its established connections are closed, so a request sent as soon as
    /// connects are refused can still meet a pooled connection that is closed under it.)
    #[allow(dead_code)] // Not every test binary stops apps.
    pub fn kill_and_reap(&mut self, within: Duration) {
        self.kill_group("KILL");
        let deadline = Instant::now() + within;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < deadline, "the app outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Sends `signal` to `pid` (a process, or `-pgid` for a group).
pub fn kill(pid: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), pid.to_owned()])
        .status();
}

/// Kills (SIGKILL, as the OOM killer does) the worker of the WSGI app behind `http` (triage's
/// listener) 0.6 s into a `/slow` request, and returns what the client got for it.
#[allow(dead_code)] // Not every test binary kills workers.
pub async fn sigkill_worker_mid_request(http: SocketAddr) -> super::client::Response {
    let worker = super::client::get(http, "/pid").await.body_text();
    assert!(worker.parse::<u32>().is_ok(), "{worker}");
    let slow = tokio::spawn(async move { super::client::get(http, "/slow").await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    kill(&worker, "KILL");
    slow.await.expect("the request")
}

/// The command of a gunicorn serving `WSGI_APP` (written into `dir`) on `bind`.
fn gunicorn(dir: &Path, bind: &str, args: &[&str]) -> Command {
    std::fs::write(dir.join("wsgi_app.py"), WSGI_APP).expect("write the WSGI app");
    let mut command = Command::new("python3");
    command
        .args(["-m", "gunicorn", "--bind", bind, "--chdir"])
        .arg(dir)
        .args(args)
        .arg("wsgi_app:app");
    command
}

impl<A: Endpoint> Drop for App<A> {
    fn drop(&mut self) {
        self.kill_group("KILL");
        let _ = self.child.wait();
    }
}
