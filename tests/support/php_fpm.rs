//! A real php-fpm for a test (Debian's `php-fpm8.2`, which `scripts/setup.sh` installs): started
//! in the foreground (`-F`) in a process group of its own, with a config and a document root in
//! a temp dir, each pool listening on a free loopback port; killed with its workers on drop.
//!
//! No php.ini is read (`-n`): each pool sets what production php.ini files set (errors logged,
//! not displayed), so a test does not depend on the machine's PHP configuration. Errors then go
//! to FastCGI's stderr, as nginx users see them ("FastCGI sent in stderr"). The one set of
//! extensions loaded is PDO with its MySQL driver (Debian's `php8.2-mysql`, which setup installs
//! too), as an app that talks to MySQL has them.

use super::triage::{free_loopback_addrs, temp_dir, TempDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long php-fpm may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One pool of workers.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    pub name: &'static str,
    /// `pm = static` with this many workers.
    pub workers: u32,
    /// php-fpm's `request_terminate_timeout`, in seconds (0: none).
    pub terminate_after: u32,
}

/// A running php-fpm.
pub struct PhpFpm {
    child: Child,
    /// Each pool's address, in the order given (none when the pool is on a unix socket).
    pub pools: Vec<SocketAddr>,
    /// The unix socket of the pool, with [`PhpFpm::start_on_unix_socket`].
    pub socket: Option<PathBuf>,
    dir: TempDir,
}

/// The php-fpm binary: Debian's versioned name, else the plain one.
fn binary() -> PathBuf {
    for name in ["php-fpm8.2", "php-fpm"] {
        for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("php-fpm is not installed: run scripts/setup.sh");
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

impl PhpFpm {
    /// Starts php-fpm with `pools`, serving the scripts `files` (name, content) written under
    /// `public/` of its temp dir.
    pub async fn start(pools: &[Pool], files: &[(&str, &str)]) -> PhpFpm {
        PhpFpm::start_listening(pools, files, false).await
    }

    /// Starts php-fpm with one pool listening on a unix socket in its temp dir (`fpm.sock`,
    /// mode 0660, as Debian's `/run/php/php8.2-fpm.sock`), as `fastcgi_pass unix:...` setups
    /// have it.
    pub async fn start_on_unix_socket(pool: Pool, files: &[(&str, &str)]) -> PhpFpm {
        PhpFpm::start_listening(&[pool], files, true).await
    }

    async fn start_listening(pools: &[Pool], files: &[(&str, &str)], unix: bool) -> PhpFpm {
        let dir = temp_dir();
        for (name, content) in files {
            let path = dir.path().join("public").join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write a script");
        }
        let addrs = if unix {
            Vec::new()
        } else {
            free_loopback_addrs(pools.len())
        };
        let socket = unix.then(|| dir.path().join("fpm.sock"));
        let root = running_as_root();
        let mut conf = format!(
            "[global]\npid = {0}/fpm.pid\nerror_log = {0}/fpm.log\ndaemonize = no\nlog_level = notice\n",
            dir.path().display()
        );
        let listen: Vec<String> = match &socket {
            Some(path) => vec![format!("{}\nlisten.mode = 0660", path.display())],
            None => addrs.iter().map(|a| a.to_string()).collect(),
        };
        for (pool, addr) in pools.iter().zip(&listen) {
            conf.push_str(&format!(
                "\n[{}]\nlisten = {addr}\npm = static\npm.max_children = {}\nrequest_terminate_timeout = {}\nping.path = /ping\n\
                 catch_workers_output = yes\nphp_admin_flag[log_errors] = on\nphp_admin_flag[display_errors] = off\n\
                 php_admin_value[post_max_size] = 32M\nphp_admin_value[output_buffering] = 4096\n",
                pool.name, pool.workers, pool.terminate_after
            ));
            if root {
                conf.push_str("user = root\ngroup = root\n");
            }
        }
        let conf_path = dir.path().join("php-fpm.conf");
        std::fs::write(&conf_path, conf).expect("write php-fpm.conf");
        let mut command = Command::new(binary());
        command
            .arg("-F")
            .arg("-n")
            .args(["-d", "extension=pdo", "-d", "extension=mysqlnd"])
            .args(["-d", "extension=pdo_mysql"])
            .arg("-y")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).expect("stdout"))
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("stderr"));
        if root {
            command.arg("-R");
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start php-fpm");
        let mut fpm = PhpFpm {
            child,
            pools: addrs,
            socket,
            dir,
        };
        fpm.wait_until_listening().await;
        fpm
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("php-fpm exited with {status}: {}", self.log());
            }
            let mut all = true;
            for addr in &self.pools {
                all &= tokio::net::TcpStream::connect(addr).await.is_ok();
            }
            if let Some(path) = &self.socket {
                all &= tokio::net::UnixStream::connect(path).await.is_ok();
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "php-fpm did not listen within {STARTUP_TIMEOUT:?}: {}",
            self.log()
        );
    }

    /// The document root, as php-fpm and triage both see it.
    pub fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("public")).expect("public dir")
    }

    /// The temp dir php-fpm runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// php-fpm's own log and output, for a failed assertion.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "fpm.log:\n{}\nstderr:\n{}",
            read("fpm.log"),
            read("stderr.log")
        )
    }

    /// Kills php-fpm and its workers at once (SIGKILL to its process group): the pool stops.
    /// Returns once every process of the group is gone, not only the master: a worker that is
    /// still exiting holds the listening socket, and a request sent then is accepted and reset
    /// instead of refused.
    pub fn stop(&mut self) {
        let group = self.child.id();
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{group}"))
            .status();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(group) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether a process of group `group` is still running: one that has closed its descriptors
/// (the listening socket among them) is a zombie at most, waiting for whoever reaps it.
fn group_alive(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let group = group.to_string();
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`: the command may hold spaces and parentheses, so the
        // fields are counted from the last `)`.
        let Some((_, fields)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = fields.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).unwrap_or("");
        pgrp == group && !matches!(state, "Z" | "X")
    })
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGKILL to one process (a php-fpm worker).
pub fn kill_worker(pid: u32) {
    let status = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid} failed");
}

/// Waits for a script to write its worker's pid to `path`, then reads it.
pub async fn wait_for_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pid in {} within 10 s", path.display());
}
