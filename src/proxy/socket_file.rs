//! What a unix socket's path shows after a connect to it failed, for the detail of its
//! diagnosis: which part of the path is missing, whether the file left behind is a socket, and
//! who triage runs as against the mode and owner of what denied it.
//!
//! Read only when a connect to a unix socket failed with one of the `socket_*` diagnoses,
//! never on the way of a request that works: a few `stat`s of the path's directories, and, for
//! a permission failure, `/etc/passwd` and `/etc/group` for the owner's names (triage's own
//! identity is read from `/proc/self/status` once). Every piece of text read from the system is
//! sanitized and bounded, and so is the whole detail.

use crate::config::UnixPath;
use crate::diagnosis::classify::bounded;
use crate::diagnosis::{Diagnosis, Finding};
use crate::render::text::header_text;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

/// The longest user or group name shown.
const MAX_NAME: usize = 32;
/// The most supplementary groups of triage's user shown.
const MAX_GROUPS: usize = 8;
/// The most of `/etc/passwd` or `/etc/group` read for a name.
const MAX_DATABASE: u64 = 1 << 20;

/// `finding`, a failed connect to `path`, with what the path shows after the OS's words, for
/// the diagnoses the path explains; any other finding as it is.
pub(crate) fn explained(mut finding: Finding, path: &UnixPath) -> Finding {
    let facts = match finding.diagnosis {
        Diagnosis::SocketMissing => missing(path.as_path()),
        Diagnosis::SocketRefused => left_behind(path.as_path()),
        Diagnosis::SocketPermissionDenied => denied(path.as_path()),
        // A full listen queue is all there is to say; the rest are no failure of the path.
        Diagnosis::SocketBacklogFull
        | Diagnosis::DnsError
        | Diagnosis::ConnectRefused
        | Diagnosis::ConnectUnreachable
        | Diagnosis::ConnectFailed
        | Diagnosis::ConnectTimeout
        | Diagnosis::TlsHandshakeFailed
        | Diagnosis::TlsCertificateExpired
        | Diagnosis::TlsCertificateUntrusted
        | Diagnosis::TlsCertificateNameMismatch
        | Diagnosis::TlsUpstreamPlaintext
        | Diagnosis::UpstreamExpectsTls
        | Diagnosis::ConnectionReset
        | Diagnosis::ConnectionClosed
        | Diagnosis::RequestSendFailed
        | Diagnosis::RequestSendTimeout
        | Diagnosis::ResponseTimeout
        | Diagnosis::InvalidResponse
        | Diagnosis::ResponseHeadersTooLarge
        | Diagnosis::FastcgiOverloaded
        | Diagnosis::FastcgiRejected
        | Diagnosis::OutsideRoot
        | Diagnosis::ScriptNotFound
        | Diagnosis::ScriptDenied
        | Diagnosis::BodyReset
        | Diagnosis::BodyClosed
        | Diagnosis::BodyTimeout
        | Diagnosis::NoRoute
        | Diagnosis::NoHealthyUpstream
        | Diagnosis::RequestBodyTooLarge
        | Diagnosis::UpgradeFailed
        | Diagnosis::UpgradeRefused
        | Diagnosis::UpstreamStatus
        | Diagnosis::ClientClosed
        | Diagnosis::BadRequest
        | Diagnosis::RequestHeadersTooLarge
        | Diagnosis::ClientHeaderTimeout
        | Diagnosis::ClientBodyTimeout
        | Diagnosis::ClientSendTimeout
        | Diagnosis::InternalError => return finding,
    };
    finding.detail = bounded(format!("{}: {facts}", finding.detail));
    finding
}

/// Which part of the path is missing: the file in a directory that exists, or a directory.
fn missing(path: &Path) -> String {
    if path.exists() {
        return "it exists now: the app made it just after".to_owned();
    }
    let mut missing = path;
    for ancestor in path.ancestors().skip(1) {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() && missing == path => {
                return format!(
                    "{} exists but holds no {}: the app has not made its socket there (not started, or still starting), or removed it as it stopped",
                    ancestor.display(),
                    file_name(path)
                );
            }
            Ok(meta) if meta.is_dir() => {
                return format!(
                    "the directory {} does not exist: the path in the config is wrong, or the app's runtime directory is made only when it starts",
                    missing.display()
                );
            }
            Ok(_) => {
                return format!(
                    "{} is not a directory: the path in the config is wrong",
                    ancestor.display()
                );
            }
            Err(_) => missing = ancestor,
        }
    }
    "no part of the path exists".to_owned()
}

/// What is at a path that refused the connection: a socket nobody listens on any more, or a
/// file that is no socket at all.
fn left_behind(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let mut made = String::new();
            if let Ok(at) = meta.modified() {
                made.push_str(", made ");
                crate::render::text::rfc3339(&mut made, at);
            }
            format!(
                "the socket file exists ({}{made}) but nothing listens on it: the app died and left it behind",
                mode_text(&meta)
            )
        }
        Ok(meta) => format!(
            "{} is not a socket but {} ({}): the path in the config is wrong, or something else made a file there",
            path.display(),
            kind_name(&meta),
            mode_text(&meta)
        ),
        Err(e) => format!("the socket file could not be read after the refusal: {e}"),
    }
}

/// Who triage runs as, and the first directory of the path it may not search, or the socket
/// file it may not write to (connecting to a unix socket needs write permission on it).
fn denied(path: &Path) -> String {
    let me = identity();
    let who = format!("triage runs as {}", me.text);
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        let Ok(meta) = std::fs::metadata(dir) else {
            return format!("{who} and may not look into {}", dir.display());
        };
        if !me.may(&meta, 0o1) {
            return format!(
                "{who} and may not search the directory {} ({}): give triage's user search (x) permission on it",
                dir.display(),
                mode_and_owner(&meta)
            );
        }
    }
    match std::fs::metadata(path) {
        Ok(meta) if !me.may(&meta, 0o2) => format!(
            "{who} and may not write to {} ({}): make the socket writable for a group of triage's user (gunicorn --umask 007), or run triage as its owner",
            path.display(),
            mode_and_owner(&meta)
        ),
        Ok(meta) => format!(
            "{who}; {} is {}, which allows it: a security module (AppArmor, SELinux) or a mount option denies it",
            path.display(),
            mode_and_owner(&meta)
        ),
        Err(e) => format!("{who}; the socket file could not be read: {e}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

fn kind_name(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else if kind.is_fifo() {
        "a named pipe"
    } else {
        "a special file"
    }
}

/// The mode as `ls -l` shows it, without the set-id and sticky bits: `srw-rw----`.
fn mode_text(meta: &Metadata) -> String {
    let kind = meta.file_type();
    let mut out = String::with_capacity(10);
    out.push(if kind.is_socket() {
        's'
    } else if kind.is_dir() {
        'd'
    } else if kind.is_file() {
        '-'
    } else {
        '?'
    });
    let mode = meta.mode();
    for shift in [6, 3, 0] {
        for (bit, letter) in [(4, 'r'), (2, 'w'), (1, 'x')] {
            out.push(if mode >> shift & bit != 0 {
                letter
            } else {
                '-'
            });
        }
    }
    out
}

/// `srw-rw----, owner www-data:www-data (33:33)`.
fn mode_and_owner(meta: &Metadata) -> String {
    let user = name_of("/etc/passwd", meta.uid());
    let group = name_of("/etc/group", meta.gid());
    format!(
        "{}, owner {}:{} ({}:{})",
        mode_text(meta),
        user.as_deref().unwrap_or("?"),
        group.as_deref().unwrap_or("?"),
        meta.uid(),
        meta.gid()
    )
}

/// The name of `id` in a `name:password:id:...` database, sanitized; `None` when it has none
/// (or the file cannot be read: names from NSS services are not looked up).
fn name_of(database: &str, id: u32) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(database)
        .ok()?
        .take(MAX_DATABASE)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found = fields.nth(1)?.parse::<u32>().ok()? == id;
        found.then(|| header_text(name, MAX_NAME))
    })
}

/// triage's effective user and groups, as the kernel checks them.
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// `uid 65534 (nobody), gid 65534 (nogroup)`, with the supplementary groups.
    text: String,
}

impl Identity {
    /// Whether the mode of `meta` grants `want` (0o2 write, 0o1 search) to this identity.
    fn may(&self, meta: &Metadata, want: u32) -> bool {
        if self.uid == 0 {
            // Root passes every permission check on a socket or a directory.
            return true;
        }
        let shift = if meta.uid() == self.uid {
            6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            3
        } else {
            0
        };
        meta.mode() >> shift & want == want
    }
}

/// triage's identity, read once from `/proc/self/status`: it does not change while it runs.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|id| id.parse::<u32>().ok())
                .collect::<Vec<_>>()
        };
        // Real, effective, saved and filesystem ids: the kernel checks the filesystem one,
        // which follows the effective one.
        let uid = field("Uid:").get(1).copied();
        let gid = field("Gid:").get(1).copied();
        let groups = field("Groups:");
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Identity {
                uid: u32::MAX,
                gid: u32::MAX,
                groups: Vec::new(),
                text: "a user it cannot tell (no /proc/self/status)".to_owned(),
            };
        };
        let named = |database, id| match name_of(database, id) {
            Some(name) => format!("{id} ({name})"),
            None => id.to_string(),
        };
        let mut text = format!(
            "uid {}, gid {}",
            named("/etc/passwd", uid),
            named("/etc/group", gid)
        );
        let others: Vec<String> = groups
            .iter()
            .filter(|g| **g != gid)
            .take(MAX_GROUPS)
            .map(|g| named("/etc/group", *g))
            .collect();
        if !others.is_empty() {
            text.push_str(", groups ");
            text.push_str(&others.join(", "));
            if groups.iter().filter(|g| **g != gid).count() > MAX_GROUPS {
                text.push_str(", ...");
            }
        }
        Identity {
            uid,
            gid,
            groups,
            text,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("triage-socket-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn finding(diagnosis: Diagnosis) -> Finding {
        Finding {
            diagnosis,
            detail: "os words".to_owned(),
        }
    }

    fn unix_path(path: &Path) -> UnixPath {
        path.to_str().expect("utf-8").parse().expect("a unix path")
    }

    /// A missing socket says whether its directory exists; a missing directory is named.
    #[test]
    fn missing_names_the_missing_part() {
        let dir = scratch("missing");
        let found = explained(
            finding(Diagnosis::SocketMissing),
            &unix_path(&dir.join("app.sock")),
        );
        assert!(
            found.detail.starts_with("os words: ")
                && found
                    .detail
                    .contains(&format!("{} exists but holds no app.sock", dir.display())),
            "{}",
            found.detail
        );
        let found = explained(
            finding(Diagnosis::SocketMissing),
            &unix_path(&dir.join("run/app/app.sock")),
        );
        assert!(
            found.detail.contains(&format!(
                "the directory {} does not exist:",
                dir.join("run").display()
            )),
            "{}",
            found.detail
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A refusal at a socket file says it was left behind, with its mode; at a regular file,
    /// that it is no socket.
    #[test]
    fn refused_tells_a_left_socket_from_a_file() {
        let dir = scratch("refused");
        let socket = dir.join("app.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let found = explained(finding(Diagnosis::SocketRefused), &unix_path(&socket));
        assert!(
            found.detail.contains("the socket file exists (srwx")
                && found.detail.contains("the app died and left it behind"),
            "{}",
            found.detail
        );
        let file = dir.join("file.sock");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let found = explained(finding(Diagnosis::SocketRefused), &unix_path(&file));
        assert!(
            found
                .detail
                .contains("is not a socket but a regular file (-rw-r-----)"),
            "{}",
            found.detail
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The permission check follows the kernel's: owner, then group, then other bits; root
    /// passes.
    #[test]
    fn permission_classes() {
        let dir = scratch("classes");
        let file = dir.join("f");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o620)).expect("chmod");
        let meta = std::fs::metadata(&file).expect("stat");
        let who = |uid, gid, groups: &[u32]| Identity {
            uid,
            gid,
            groups: groups.to_vec(),
            text: String::new(),
        };
        let (owner, group) = (meta.uid(), meta.gid());
        let stranger = who(owner + 1000, group + 1000, &[]);
        assert!(!stranger.may(&meta, 0o2));
        assert!(who(owner + 1000, group + 1000, &[group]).may(&meta, 0o2));
        assert!(who(owner + 1000, group, &[]).may(&meta, 0o2));
        assert!(!who(owner + 1000, group, &[]).may(&meta, 0o4));
        assert!(who(0, 0, &[]).may(&meta, 0o1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Modes print as `ls -l` prints them.
    #[test]
    fn modes_print_as_ls() {
        let dir = scratch("modes");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o751)).expect("chmod");
        let meta = std::fs::metadata(&dir).expect("stat");
        assert_eq!(mode_text(&meta), "drwxr-x--x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Other findings pass unchanged.
    #[test]
    fn other_findings_pass() {
        let path: UnixPath = "/nonexistent/app.sock".parse().expect("path");
        assert_eq!(
            explained(finding(Diagnosis::ConnectTimeout), &path),
            finding(Diagnosis::ConnectTimeout)
        );
    }
}
