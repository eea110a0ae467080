//! The binary upgrade goes through `[server] upgrade_socket`, in a directory only triage can
//! write, and triage keeps its pid in `[server] pid_file`: no fixed name in the shared `/tmp`
//! that another local user could take first and be handed the listening sockets.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::client;
use support::origin::{self, Behavior};
use support::triage::{free_loopback_addrs, single_upstream, temp_dir, triage_binary, Triage};

/// Polls (every 20 ms, up to `timeout`) until `done` holds; returns whether it did.
async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// triage writes its pid to `pid_file`; a second binary started with `--upgrade` waits on the
/// configured `upgrade_socket` (its directory made private), receives the listening sockets
/// when the first gets SIGQUIT, and serves on the same port once the first has exited; the
/// pid file then names the new process, and the old one left no file of its own behind.
#[tokio::test]
async fn a_binary_upgrade_goes_through_the_configured_socket() {
    let app = origin::spawn(Behavior::ok("app\n")).await;
    let mut old = Triage::start(&single_upstream(app.addr, "")).await;
    let run = old.dir().path().join("run");
    let (socket, pid_file) = (run.join("upgrade.sock"), run.join("triage.pid"));
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    let mode = std::fs::metadata(&run)
        .expect("run dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the runtime directory is private");

    let logs = temp_dir();
    let stdout = std::fs::File::create(logs.path().join("stdout.log")).expect("log file");
    let stderr = std::fs::File::create(logs.path().join("stderr.log")).expect("log file");
    let new = Killed(
        Command::new(triage_binary())
            .arg("-c")
            .arg(old.config_path())
            .arg("--upgrade")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the new binary"),
    );
    let new_pid = new.0.id();
    let waiting = eventually(Duration::from_secs(10), || socket.exists()).await;
    assert!(
        waiting,
        "the new binary does not wait on {}; its stderr:\n{}",
        socket.display(),
        logs.read_file("stderr.log")
    );
    assert_eq!(read_pid(&pid_file), Some(new_pid));
    old.signal("QUIT");
    let exited = old.wait_exit(Duration::from_secs(30)).await;
    assert!(
        exited.is_some(),
        "the old process did not exit after SIGQUIT"
    );

    let resp = client::get(old.http, "/").await;
    assert_eq!(
        resp.status, 200,
        "the new process serves the old port: {resp:?}"
    );
    assert_eq!(resp.body_text(), "app\n");
    assert_eq!(read_pid(&pid_file), Some(new_pid));
    let old_file = run.join("triage.pid.old");
    assert!(
        !old_file.exists(),
        "the old process removed its own pid file"
    );
}

/// An upgrade socket in a directory others can write (like `/tmp`) is refused at start, with
/// the reason: another user could take its name and be handed the listening sockets.
#[test]
fn an_upgrade_socket_in_a_shared_directory_is_refused() {
    let dir = temp_dir();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("shared dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let ports = free_loopback_addrs(2);
    let config = dir.write_file(
        "triage.toml",
        format!(
            "[listen]\nhttp = [\"{}\"]\n[admin]\nlisten = \"{}\"\n[server]\n\
             upgrade_socket = \"{}\"\npid_file = \"{}\"\n{}",
            ports[0],
            ports[1],
            shared.join("upgrade.sock").display(),
            dir.path().join("run/triage.pid").display(),
            single_upstream(ports[0], "")
        ),
    );
    let mut child = Killed(
        Command::new(triage_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start triage"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "triage started anyway");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        use std::io::Read;
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("[server] upgrade_socket: ")
            && stderr.contains("is writable by other users (mode 1777)"),
        "{stderr}"
    );
    assert!(!dir.path().join("run/triage.pid").exists());
}
