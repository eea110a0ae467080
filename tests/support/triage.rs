//! Runs the real `triage` binary for a test: free loopback ports, a config file in a fresh temp
//! dir, the child process with its output captured to files, and a bounded wait until it
//! listens. Dropping [`Triage`] kills the child and removes the temp dir.
//!
//! The config is the `[listen]` and `[admin]` sections this module writes, followed by the
//! test's own sections (`[diagnosis]`, `[upstreams.x]`, `[[routes]]`, ...), which must not
//! repeat `[listen]` or `[admin]` (keys before the body's first table header extend the
//! generated `[admin]`). [`Triage::start_https`] adds an `https` listener and its
//! certificate, for HTTPS and HTTP/2 clients. The `[server]` keys `upgrade_socket` and
//! `pid_file` are set to paths in the test's temp dir ([`with_runtime_paths`]), in the test's
//! own `[server]` table when it has one: the default `/run/triage` would be shared by every
//! test, and an unprivileged user cannot make it.
//!
//! Triage logs (access log included) go to its stdout; [`Triage::wait_for_output`] polls both
//! captured streams, since a log line may be written just after the response left.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::certs::CertifiedKey;
use super::client;

/// How long triage may take to listen on both ports.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often readiness and logs are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Starts tried when triage exits early (another process took a port between our probe and
/// its bind).
const START_ATTEMPTS: usize = 3;
/// How long `triage -t` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Set this environment variable to keep temp dirs (config, logs) for a look after the test.
pub const KEEP_TEMP_ENV: &str = "TRIAGE_TEST_KEEP_TEMP";

/// The triage binary under test: Cargo's for integration tests of this package, else the debug
/// build (so the support code also compiles outside the package, e.g. in a scratch crate).
pub fn triage_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_triage") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/debug/triage")),
    }
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop unless
/// [`KEEP_TEMP_ENV`] is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

/// Makes a fresh temp dir, e.g. to write a CA file into before the config that names it.
pub fn temp_dir() -> TempDir {
    TempDir::new()
}

impl TempDir {
    pub fn new() -> Self {
        // Unique across the tests of one process (counter) and across processes (pid, time).
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "triage-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in this dir and returns the file's path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The contents of `name` in this dir as text, empty if it does not exist.
    pub fn read_file(&self, name: &str) -> String {
        std::fs::read(self.path.join(name))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            // The placeholder left behind by `Triage::into_dir`: nothing to remove.
        } else if std::env::var_os(KEEP_TEMP_ENV).is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A running triage process.
pub struct Triage {
    /// The proxy's HTTP listener.
    pub http: SocketAddr,
    /// The admin listener (/healthz, /readyz).
    pub admin: SocketAddr,
    /// The HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN), when started by [`Triage::start_https`].
    pub https: Option<SocketAddr>,
    child: Child,
    config_path: PathBuf,
    /// Holds the config and the logs; removed after Drop has killed the child.
    dir: TempDir,
}

/// The sections most tests need: one upstream `app` at `addr` (with `extra` keys in its table)
/// behind the catch-all route `/`.
pub fn single_upstream(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[upstreams.app]\nservers = [\"{addr}\"]\n{extra}\n\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    )
}

/// `config_body` with `[server] upgrade_socket` and `pid_file` set to `dir/run/...`: added
/// under the body's own `[server]` header when it has one (TOML allows one), else in a
/// `[server]` table of their own after the body (so keys the body has before its first table
/// still extend the generated `[admin]`). triage makes `dir/run` itself (mode 0700).
pub fn with_runtime_paths(dir: &Path, config_body: &str) -> String {
    let run = dir.join("run");
    let keys = format!(
        "upgrade_socket = \"{}\"\npid_file = \"{}\"\n",
        run.join("upgrade.sock").display(),
        run.join("triage.pid").display()
    );
    let mut lines: Vec<&str> = config_body.lines().collect();
    match lines.iter().position(|line| line.trim() == "[server]") {
        Some(header) => {
            lines.insert(header + 1, keys.trim_end());
            lines.join("\n") + "\n"
        }
        None => format!("{}\n[server]\n{keys}", config_body.trim_end()),
    }
}

/// The config file triage gets: the listeners this harness picked, then the test's sections.
pub fn config_text(http: SocketAddr, admin: SocketAddr, config_body: &str) -> String {
    format!("[listen]\nhttp = [\"{http}\"]\n[admin]\nlisten = \"{admin}\"\n\n{config_body}\n")
}

/// Like [`config_text`] with an `https` listener too, serving the certificate in `cert_file`
/// and `key_file`; the `[[tls.certificates]]` table comes before `[admin]`, so the test's
/// sections still follow `[admin]` as they do in [`config_text`].
pub fn https_config_text(
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    cert_file: &Path,
    key_file: &Path,
    config_body: &str,
) -> String {
    format!(
        "[listen]\nhttp = [\"{http}\"]\nhttps = [\"{https}\"]\n[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[admin]\nlisten = \"{admin}\"\n\n{config_body}\n",
        cert_file.display(),
        key_file.display()
    )
}

/// `n` distinct free ports on 127.0.0.1: all bound at once (so they differ), then released.
/// Another process may take one before triage binds it; [`Triage::start`] retries then.
pub fn free_loopback_addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, super::ports::pick())))
        .collect()
}

impl Triage {
    /// Starts triage with `config_body` after the generated `[listen]`/`[admin]` sections, in
    /// a temp dir of its own; panics with triage's output if it does not come up.
    pub async fn start(config_body: &str) -> Triage {
        Triage::start_in(temp_dir(), config_body).await
    }

    /// Like [`Triage::start`], in a temp dir the test already wrote files into (CA files).
    pub async fn start_in(dir: TempDir, config_body: &str) -> Triage {
        Triage::start_command(dir, config_body, |config| {
            let mut command = Command::new(triage_binary());
            command.arg("-c").arg(config);
            command
        })
        .await
    }

    /// Like [`Triage::start`], with an `https` listener too (in [`Triage::https`]) serving
    /// `cert`, for HTTPS and HTTP/2 clients.
    pub async fn start_https(cert: &CertifiedKey, config_body: &str) -> Triage {
        let dir = temp_dir();
        let cert_file = dir.write_file("cert.pem", &cert.cert_pem);
        let key_file = dir.write_file("key.pem", &cert.key_pem);
        Triage::launch(dir, config_body, Some((&cert_file, &key_file)), |config| {
            let mut command = Command::new(triage_binary());
            command.arg("-c").arg(config);
            command
        })
        .await
    }

    /// Like [`Triage::start_in`] with the command line made by `command` from the config
    /// file's path, e.g. to set environment variables (`RUST_LOG`) for the child.
    pub async fn start_command(
        dir: TempDir,
        config_body: &str,
        command: impl Fn(&Path) -> Command,
    ) -> Triage {
        Triage::launch(dir, config_body, None, command).await
    }

    /// Starts triage on free ports, with an `https` listener when `tls` names a certificate
    /// and key file; retried when another process took a port first.
    async fn launch(
        mut dir: TempDir,
        config_body: &str,
        tls: Option<(&Path, &Path)>,
        command: impl Fn(&Path) -> Command,
    ) -> Triage {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let addrs = free_loopback_addrs(3);
            let (http, admin) = (addrs[0], addrs[1]);
            let https = tls.map(|_| addrs[2]);
            let body = with_runtime_paths(dir.path(), config_body);
            let text = match (tls, https) {
                (Some((cert_file, key_file)), Some(https)) => {
                    https_config_text(http, https, admin, cert_file, key_file, &body)
                }
                _ => config_text(http, admin, &body),
            };
            let config_path = dir.write_file("triage.toml", text);
            let child = spawn_logged(&mut command(&config_path), &dir);
            let mut triage = Triage {
                http,
                admin,
                https,
                child,
                config_path,
                dir,
            };
            match triage.wait_until_listening().await {
                Ready::Listening => return triage,
                Ready::Exited(status) => {
                    failures.push(format!(
                        "attempt {attempt}: triage exited with {status} before listening; stderr:\n{}\nstdout:\n{}",
                        triage.stderr(),
                        triage.stdout()
                    ));
                    dir = triage.into_dir();
                }
                Ready::TimedOut => {
                    let stderr = triage.stderr();
                    let stdout = triage.stdout();
                    drop(triage);
                    panic!(
                        "triage did not listen on {http}, {admin} (and https {https:?}) within {STARTUP_TIMEOUT:?}; stderr:\n{stderr}\nstdout:\n{stdout}"
                    );
                }
            }
        }
        panic!(
            "triage did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Polls until every port accepts TCP connections, the child exits, or the startup timeout.
    async fn wait_until_listening(&mut self) -> Ready {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ready::Exited(status.to_string());
            }
            let https_accepts = match self.https {
                Some(https) => accepts(https).await,
                None => true,
            };
            if accepts(self.http).await && accepts(self.admin).await && https_accepts {
                return Ready::Listening;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ready::TimedOut
    }

    /// Kills the child and hands back the temp dir (for another start attempt).
    fn into_dir(mut self) -> TempDir {
        self.kill();
        let placeholder = TempDir {
            path: PathBuf::new(),
        };
        // Drop on `self` must not remove the dir we hand back: swap in an empty placeholder,
        // whose removal is a no-op.
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything triage wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.dir.read_file("stderr.log")
    }

    /// Everything triage wrote to stdout so far (its logs).
    pub fn stdout(&self) -> String {
        self.dir.read_file("stdout.log")
    }

    /// Polls stdout and stderr (every 20 ms, up to `timeout`) until one contains `needle`;
    /// returns that stream's text, or panics showing both.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_output_times(needle, 1, timeout).await
    }

    /// Like [`Triage::wait_for_output`], until one stream contains `needle` at least `times`
    /// times (a request is logged after its upstream connection went back to the pool, so
    /// waiting for the n-th access line orders a test's next request after that).
    pub async fn wait_for_output_times(
        &self,
        needle: &str,
        times: usize,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            for text in [self.stdout(), self.stderr()] {
                if text.matches(needle).count() >= times {
                    return text;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "triage did not write {needle:?} {times} times within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The temp dir holding the config and the logs.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// Writes a file into the temp dir.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        self.dir.write_file(name, contents)
    }

    /// The config file triage was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// A config for this triage, to rewrite its file before a reload: its listeners and
    /// runtime paths, then `config_body` (without an https listener).
    pub fn config_text(&self, config_body: &str) -> String {
        config_text(
            self.http,
            self.admin,
            &with_runtime_paths(self.dir.path(), config_body),
        )
    }

    /// The process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal named `signal` (`TERM`, `INT`, `HUP`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill -{signal}: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Polls (every 20 ms, up to `timeout`) until the process exits; returns how long that
    /// took and its status, or `None` if it is still running at the deadline.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Option<(Duration, std::process::ExitStatus)> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((start.elapsed(), status));
            }
            if start.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Triage {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what triage said, which usually explains the failure.
        if std::thread::panicking() && !self.dir.path.as_os_str().is_empty() {
            eprintln!(
                "--- triage stdout ---\n{}\n--- triage stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }
}

enum Ready {
    Listening,
    Exited(String),
    TimedOut,
}

async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Spawns `command` with stdout and stderr going to `stdout.log` and `stderr.log` in `dir`
/// (files, not pipes: nobody has to drain them, and they survive the process).
fn spawn_logged(command: &mut Command, dir: &TempDir) -> Child {
    let stdout = File::create(dir.path().join("stdout.log")).expect("create stdout.log");
    let stderr = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", command.get_program()))
}

/// Writes `config_text` verbatim to a temp file and runs `triage -t -c FILE` on it (bounded:
/// killed after 15 s). Error messages name the file, `.../triage.toml`.
pub fn check_config(config_text: &str) -> Output {
    check_config_command(config_text, |config| {
        let mut command = Command::new(triage_binary());
        command.arg("-t").arg("-c").arg(config);
        command
    })
}

/// Like [`check_config`] with the command line made by `command` from the file's path.
pub fn check_config_command(config_text: &str, command: impl FnOnce(&Path) -> Command) -> Output {
    let dir = temp_dir();
    let path = dir.write_file("triage.toml", config_text);
    let mut child = spawn_logged(&mut command(&path), &dir);
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the config check of {} did not exit within {CHECK_TIMEOUT:?}; stderr:\n{}",
                    path.display(),
                    dir.read_file("stderr.log")
                );
            }
        }
    };
    Output {
        status,
        stdout: std::fs::read(dir.path().join("stdout.log")).unwrap_or_default(),
        stderr: std::fs::read(dir.path().join("stderr.log")).unwrap_or_default(),
    }
}

/// Polls `/metrics` until `series` has `value`, for at most `within`; returns whether it did.
pub async fn metric_becomes(triage: &Triage, series: &str, value: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let m = client::get(triage.admin, "/metrics").await.body_text();
        if m.lines().any(|l| l == format!("{series} {value}")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The JSON report of request `id`, polled for at most 5 s: a report is stored as its request
/// is logged, just after the answer went out, so a client asking at once may be first.
#[allow(dead_code)] // Not every test binary reads reports.
pub async fn report_of(triage: &Triage, id: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client::get(triage.admin, &format!("/diagnoses/{id}?format=json")).await;
        if resp.status == 200 {
            return serde_json::from_slice(&resp.body).expect("a report is JSON");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report {id} within 5 s: {}",
            resp.body_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
