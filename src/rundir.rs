//! The runtime directory: where the binary-upgrade socket (`[server] upgrade_socket`) and the
//! pid file (`[server] pid_file`) live, by default `/run/triage`.
//!
//! On SIGQUIT triage sends its listening sockets to whatever listens on the upgrade socket, and
//! a process started with `--upgrade` serves whatever sockets arrive there. So the socket's
//! directory must be one nobody but triage (or root) can write: in a shared directory such as
//! `/tmp`, any local user could take the name first and be handed the listeners. At start,
//! [`prepare`] creates a missing directory with mode 0700 and refuses to start when a directory
//! is writable by group or others or owned by another user. A directory that cannot be
//! created (an unprivileged user and the default `/run/triage`) only costs the binary upgrade
//! and the pid file: a warning says so, and the process runs, unless it was started with
//! `--upgrade`, which needs the socket.
//!
//! Pingora writes a pid file only when it daemonizes, which triage never does; so triage writes
//! its own, like nginx: at start (moving a previous process's to `<pid_file>.old` on
//! `--upgrade`, as Pingora does), removed at exit while it still names this process.

use crate::config::ServerSettings;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory cannot hold the upgrade socket or the pid file.
#[derive(Debug)]
enum Refusal {
    /// It does not exist and cannot be made, or cannot be looked at.
    Unavailable(String),
    /// It exists, but others could create files in it.
    Unsafe(String),
}

/// Makes `dir` (mode 0700, with any missing parent) if it is missing, and checks that only its
/// owner, this process's user or root, can create files in it.
fn private_dir(dir: &Path) -> Result<(), Refusal> {
    let shown = dir.display();
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Refusal::Unavailable(format!("cannot create {shown}: {e}")))?;
    }
    let metadata = std::fs::metadata(dir)
        .map_err(|e| Refusal::Unavailable(format!("cannot look at {shown}: {e}")))?;
    if !metadata.is_dir() {
        return Err(Refusal::Unavailable(format!("{shown} is not a directory")));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(Refusal::Unsafe(format!(
            "{shown} is writable by other users (mode {:o}), who could take the upgrade socket's \
             name and be handed the listening sockets; use a directory only triage can write, \
             like {}",
            mode & 0o7777,
            crate::config::DEFAULT_RUNTIME_DIR
        )));
    }
    let owner = metadata.uid();
    if let Some(user) = process_user() {
        if owner != user && owner != 0 {
            return Err(Refusal::Unsafe(format!(
                "{shown} belongs to user {owner}, not to triage's user ({user}) or root"
            )));
        }
    }
    Ok(())
}

/// This process's effective user: the owner of its `/proc/self`. Linux only, as Pingora's
/// socket hand-over is; `None` elsewhere, where the owner is not checked.
fn process_user() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The pid file this process wrote, removed at exit if it still names this process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's id to `path`, after moving a previous process's file to
    /// `<path>.old` when `upgrade` (the old process still runs and is told to quit by its id).
    fn write(path: &Path, upgrade: bool) -> Result<PidFile, String> {
        let pid = std::process::id();
        if upgrade && path.exists() {
            std::fs::rename(path, old_pid_file(path)).map_err(|e| {
                format!("cannot move the old pid file {} aside: {e}", path.display())
            })?;
        }
        std::fs::write(path, format!("{pid}\n"))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_owned(),
            pid,
        })
    }

    /// Removes the pid file, and the `.old` one an upgrade left, that still name this process:
    /// after an upgrade, the new process's file stays.
    pub fn remove(&self) {
        for path in [self.path.clone(), old_pid_file(&self.path)] {
            let names_us = std::fs::read_to_string(&path)
                .is_ok_and(|text| text.trim().parse::<u32>() == Ok(self.pid));
            if names_us {
                // Gone already, or not ours to remove: nothing to do at exit either way.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

fn old_pid_file(path: &Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    PathBuf::from(old)
}

/// Readies the directories of the upgrade socket and of the pid file, and writes the pid file.
/// Fails when a directory is unsafe, or when one cannot be made and `upgrade` needs it; a
/// directory that cannot be made otherwise is a warning (no binary upgrade, no pid file).
pub fn prepare(server: &ServerSettings, upgrade: bool) -> Result<Option<PidFile>, String> {
    let dir_of = |path: &Path| path.parent().unwrap_or(Path::new("/")).to_owned();
    let socket_dir = dir_of(&server.upgrade_socket);
    let pid_dir = dir_of(&server.pid_file);
    match private_dir(&socket_dir) {
        Ok(()) => {}
        Err(Refusal::Unsafe(reason)) => return Err(format!("[server] upgrade_socket: {reason}")),
        Err(Refusal::Unavailable(reason)) if upgrade => {
            return Err(format!(
                "[server] upgrade_socket: {reason}; --upgrade receives the listening sockets there"
            ))
        }
        Err(Refusal::Unavailable(reason)) => tracing::warn!(
            "[server] upgrade_socket: {reason}: a binary upgrade (--upgrade, SIGQUIT) will not \
             work; create it (systemd: RuntimeDirectory=triage) or set upgrade_socket"
        ),
    }
    let pid_dir_usable = match private_dir(&pid_dir) {
        Ok(()) => true,
        Err(Refusal::Unsafe(reason)) => return Err(format!("[server] pid_file: {reason}")),
        Err(Refusal::Unavailable(reason)) => {
            tracing::warn!(
                "[server] pid_file: {reason}: no pid file is written; create it (systemd: \
                 RuntimeDirectory=triage) or set pid_file"
            );
            false
        }
    };
    if !pid_dir_usable {
        return Ok(None);
    }
    PidFile::write(&server.pid_file, upgrade)
        .map(Some)
        .map_err(|reason| format!("[server] pid_file: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory per test, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("triage-rundir-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn settings(dir: &Path) -> ServerSettings {
        ServerSettings {
            upgrade_socket: dir.join("run/upgrade.sock"),
            pid_file: dir.join("run/triage.pid"),
            ..ServerSettings::default()
        }
    }

    /// A missing directory is made private (0700); the pid file names this process, and is
    /// removed at exit.
    #[test]
    fn a_missing_directory_is_made_private_and_holds_the_pid() {
        let scratch = Scratch::new("made");
        let server = settings(&scratch.0);
        let pid_file = prepare(&server, false).unwrap().expect("a pid file");
        let mode = std::fs::metadata(scratch.0.join("run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let written = std::fs::read_to_string(&server.pid_file).unwrap();
        assert_eq!(written, format!("{}\n", std::process::id()));
        pid_file.remove();
        assert!(!server.pid_file.exists());
    }

    /// A directory others can write (like /tmp) is refused: they could take the socket's name.
    #[test]
    fn a_directory_others_can_write_is_refused() {
        let scratch = Scratch::new("shared");
        let shared = scratch.0.join("run");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let error = prepare(&settings(&scratch.0), false).unwrap_err();
        assert!(
            error.starts_with("[server] upgrade_socket: ")
                && error.contains("is writable by other users (mode 1777)"),
            "{error}"
        );
        assert!(!scratch.0.join("run/triage.pid").exists());
    }

    /// On --upgrade the old process's pid file moves to `.old`; at exit each process removes
    /// only the files that name it.
    #[test]
    fn an_upgrade_keeps_the_old_pid_aside() {
        let scratch = Scratch::new("upgrade");
        let server = settings(&scratch.0);
        std::fs::create_dir(scratch.0.join("run")).unwrap();
        std::fs::write(&server.pid_file, "4000000\n").unwrap();
        let pid_file = prepare(&server, true).unwrap().expect("a pid file");
        let old = scratch.0.join("run/triage.pid.old");
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "4000000\n");
        pid_file.remove();
        assert!(!server.pid_file.exists());
        assert!(old.exists(), "the old process's file is not ours to remove");
    }

    /// A directory that cannot be made stops an `--upgrade` start (it needs the socket), and
    /// otherwise only costs the pid file.
    #[test]
    fn an_unavailable_directory_fails_only_an_upgrade() {
        let scratch = Scratch::new("unavailable");
        // A file where the directory should be: it can be neither made nor used.
        std::fs::write(scratch.0.join("run"), "").unwrap();
        let server = settings(&scratch.0);
        assert!(prepare(&server, false).unwrap().is_none());
        let error = prepare(&server, true).unwrap_err();
        assert!(
            error.contains("is not a directory; --upgrade receives the listening sockets there"),
            "{error}"
        );
    }
}
