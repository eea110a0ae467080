//! Upstream servers on unix sockets (`servers = ["unix:/run/app.sock"]`), as nginx's
//! `server unix:/run/app.sock;`: a real gunicorn answers through triage beside a TCP server,
//! and each way a socket's connect fails is its own diagnosis, with what the socket's path
//! shows: no socket file, a socket triage's user may not connect to, the file a killed app
//! left behind, a full listen queue. Health checks reach a unix socket as requests do.
//!
//! Every socket lives in a temp dir of the test's own. gunicorn (installed by
//! `scripts/setup.sh`) runs in a process group of its own ([`support::apps`]), killed whole at
//! the end.

mod support;

use socket2::{Domain, SockAddr, Socket, Type};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::apps::App;
use support::client::{self, Response};
use support::origin::{self, Behavior};
use support::triage::{metric_becomes, temp_dir, triage_binary, TempDir, Triage};

/// How long gunicorn may take to be gone once killed.
const GUNICORN_WAIT: Duration = Duration::from_secs(20);

/// A real gunicorn (one sync worker, answering `ok`) on the unix socket `dir/name`, once it
/// accepts connections; `args` are gunicorn's own.
fn gunicorn(dir: &Path, name: &str, args: &[&str]) -> App<PathBuf> {
    App::gunicorn_unix(dir, &dir.join(name), &[&["--workers", "1"], args].concat())
}

/// `unix:/path`, as the config and every output write it.
fn unix_addr(socket: &Path) -> String {
    format!("unix:{}", socket.display())
}

/// The catch-all route to one upstream `app` with these servers and keys.
fn upstream(servers: &[&str], extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[upstreams.app]\nservers = [{}]\n{extra}\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        servers.join(", ")
    )
}

/// The headers of a failure triage answered itself at `addr`, a unix socket.
fn assert_socket_failure(resp: &Response, status: u16, token: &str, addr: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some(token), "{resp:?}");
    assert_eq!(
        resp.header("x-diagnosis-phase"),
        Some("connect"),
        "{resp:?}"
    );
    assert_eq!(
        resp.header("x-diagnosis-upstream"),
        Some(format!("app {addr}").as_str()),
        "{resp:?}"
    );
    assert!(
        resp.header("proxy-status")
            .is_some_and(|v| v.ends_with(&format!("; next-hop=\"{addr}\""))),
        "{resp:?}"
    );
    assert!(resp.body_text().contains(token), "{}", resp.body_text());
}

/// A gunicorn on a unix socket (weight 3) and a TCP server (weight 1) share one upstream:
/// eight requests go six to gunicorn and two to the TCP server, and the access log names the
/// socket as the address.
#[tokio::test]
async fn a_unix_socket_server_answers_beside_a_tcp_one() {
    let sockets = temp_dir();
    let gunicorn = gunicorn(sockets.path(), "app.sock", &[]);
    let addr = unix_addr(&gunicorn.addr);
    let tcp = origin::spawn(Behavior::ok("tcp")).await;
    let triage = Triage::start(&upstream(
        &[&format!("{addr} weight=3"), &tcp.addr.to_string()],
        "",
    ))
    .await;
    let mut bodies = Vec::new();
    for _ in 0..8 {
        let resp = client::get(triage.http, "/hello").await;
        assert_eq!(resp.status, 200, "{resp:?}");
        bodies.push(resp.body_text());
    }
    let by_gunicorn = bodies.iter().filter(|b| *b == "ok\n").count();
    let by_tcp = bodies.iter().filter(|b| *b == "tcp").count();
    assert_eq!((by_gunicorn, by_tcp), (6, 2), "{bodies:?}");
    assert_eq!(tcp.requests(), 2);
    triage
        .wait_for_output(
            &format!("source=upstream address={addr}"),
            Duration::from_secs(5),
        )
        .await;
}

/// No file at the socket's path: 502 socket_missing, whose detail says that the directory
/// exists but holds no such socket; where the directory itself is missing, it names it. A
/// server that never answered: the cause is never_answered, naming the socket.
#[tokio::test]
async fn a_missing_socket_file_is_socket_missing() {
    let sockets = temp_dir();
    let socket = sockets.path().join("app.sock");
    let addr = format!("unix:{}", socket.display());
    let triage = Triage::start(&upstream(&[&addr], "")).await;
    let resp = client::get(triage.http, "/").await;
    assert_socket_failure(&resp, 502, "socket_missing", &addr);
    assert_eq!(
        resp.header("x-diagnosis-detail"),
        Some(
            format!(
                "No such file or directory (os error 2): {} exists but holds no app.sock: the app has not made its socket there (not started, or still starting), or removed it as it stopped",
                sockets.path().display()
            )
            .as_str()
        )
    );
    assert_eq!(resp.header("x-diagnosis-cause"), Some("never_answered"));
    let hint = resp.header("x-diagnosis-hint").unwrap_or("");
    assert!(
        hint.starts_with(&format!("{addr} has not answered once")),
        "{hint}"
    );
    triage
        .wait_for_output(
            &format!("address={addr} diagnosis=socket_missing phase=connect"),
            Duration::from_secs(5),
        )
        .await;

    let deeper = sockets.path().join("run/gunicorn/app.sock");
    let addr = format!("unix:{}", deeper.display());
    let triage = Triage::start(&upstream(&[&addr], "")).await;
    let resp = client::get(triage.http, "/").await;
    assert_socket_failure(&resp, 502, "socket_missing", &addr);
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    assert!(
        detail.contains(&format!(
            "the directory {} does not exist:",
            sockets.path().join("run").display()
        )),
        "{detail}"
    );
}

/// A real gunicorn answers, then is SIGKILLed (master and worker) and leaves its socket file
/// behind: the next request is 502 socket_refused, whose detail says the socket file exists
/// but nothing listens on it, and the cause is app_down (it answered 200 until a moment ago).
/// A request right after is answered the same, within the refusal hold-off or not.
#[tokio::test]
async fn a_killed_gunicorn_leaves_its_socket_file_behind() {
    let sockets = temp_dir();
    let gunicorn = gunicorn(sockets.path(), "app.sock", &[]);
    let addr = unix_addr(&gunicorn.addr);
    let triage = Triage::start(&upstream(&[&addr], "max_fails = 0\n")).await;
    let resp = client::get(triage.http, "/before").await;
    assert_eq!((resp.status, resp.body_text()), (200, "ok\n".to_owned()));
    // As the OOM killer or a `kill -9` would: master and worker at once.
    gunicorn.kill_group("KILL");
    gunicorn.wait_refusing(GUNICORN_WAIT);
    let left = std::fs::symlink_metadata(&gunicorn.addr).expect("the socket file is left");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&left.file_type()));

    let resp = client::get(triage.http, "/after").await;
    assert_socket_failure(&resp, 502, "socket_refused", &addr);
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    assert!(
        detail.starts_with("Connection refused (os error 111): the socket file exists (srwx")
            && detail.ends_with("but nothing listens on it: the app died and left it behind"),
        "{detail}"
    );
    assert_eq!(
        resp.header("x-diagnosis-cause"),
        Some("app_down"),
        "{resp:?}"
    );
    let hint = resp.header("x-diagnosis-hint").unwrap_or("");
    assert!(
        hint.starts_with(&format!("{addr} answered 200 until")),
        "{hint}"
    );
    let resp = client::get(triage.http, "/again").await;
    assert_socket_failure(&resp, 502, "socket_refused", &addr);
}

/// The uid the tests run as: the owner of `/proc/self`.
fn test_uid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

/// A socket triage's user may not connect to: 502 socket_permission_denied, whose detail says
/// which user triage runs as and the mode and owner of what denies it: the socket file
/// (`srw-------`, no write permission for triage's user), or a directory on its path that it
/// may not search. Root passes every such check, so as root (the usual test machine) triage
/// runs as `nobody` (`setpriv`) in front of root's sockets; as another user, the sockets are
/// that user's own, with the owner's permissions taken away.
#[tokio::test]
async fn a_socket_triage_may_not_connect_to_says_who_and_why() {
    let sockets = temp_dir();
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let as_root = test_uid() == 0;
    let file_mode = if as_root { 0o600 } else { 0o000 };
    let file_socket = sockets.path().join("app.sock");
    let _file_listener =
        std::os::unix::net::UnixListener::bind(&file_socket).expect("bind app.sock");
    std::fs::set_permissions(&file_socket, std::fs::Permissions::from_mode(file_mode))
        .expect("chmod the socket");
    let closed = sockets.path().join("closed");
    std::fs::create_dir(&closed).expect("mkdir");
    let dir_socket = closed.join("app.sock");
    let _dir_listener = std::os::unix::net::UnixListener::bind(&dir_socket).expect("bind");
    let dir_mode = if as_root { 0o700 } else { 0o600 };
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(dir_mode)).expect("chmod");

    let file_addr = format!("unix:{}", file_socket.display());
    let dir_addr = format!("unix:{}", dir_socket.display());
    let config = format!(
        "[upstreams.app]\nservers = [\"{file_addr}\"]\n[upstreams.dir]\nservers = [\"{dir_addr}\"]\n\
         [[routes]]\npath_prefix = \"/dir\"\nupstream = \"dir\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
    );
    let dir: TempDir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let triage_uid = if as_root { 65534 } else { test_uid() };
    let triage = Triage::start_command(dir, &config, |config| {
        let mut command = if as_root {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(triage_binary());
            setpriv
        } else {
            Command::new(triage_binary())
        };
        command.arg("-c").arg(config);
        command
    })
    .await;

    let resp = client::get(triage.http, "/").await;
    assert_socket_failure(&resp, 502, "socket_permission_denied", &file_addr);
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    let owner = std::fs::metadata(&file_socket).expect("stat");
    let mode = if as_root { "srw-------" } else { "s---------" };
    assert!(
        detail.starts_with(&format!(
            "Permission denied (os error 13): triage runs as uid {triage_uid}"
        )) && detail.contains(&format!(
            "and may not write to {} ({mode}, owner ",
            file_socket.display()
        )) && detail.contains(&format!("({}:{}))", owner.uid(), owner.gid())),
        "{detail}"
    );
    assert_eq!(resp.header("x-diagnosis-cause"), Some("unknown"));

    let resp = client::get(triage.http, "/dir").await;
    assert_eq!(resp.header("x-diagnosis"), Some("socket_permission_denied"));
    assert_eq!(
        resp.header("x-diagnosis-upstream"),
        Some(format!("dir {dir_addr}").as_str())
    );
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    let dir_text = if as_root { "drwx------" } else { "drw-------" };
    assert!(
        detail.contains(&format!(
            "and may not search the directory {} ({dir_text}, owner ",
            closed.display()
        )),
        "{detail}"
    );
    // So that the temp dir can be removed.
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A socket whose listen queue is full (backlog 0, one connection waiting, never accepted):
/// 503 socket_backlog_full, the app overloaded rather than gone.
#[tokio::test]
async fn a_full_listen_queue_is_socket_backlog_full() {
    let sockets = temp_dir();
    let socket = sockets.path().join("busy.sock");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    let address = SockAddr::unix(&socket).expect("a unix address");
    listener.bind(&address).expect("bind");
    listener.listen(0).expect("listen");
    // Non-blocking connects until one is refused for a full queue: a blocking one would wait.
    let mut waiting = Vec::new();
    for _ in 0..16 {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("nonblocking");
        match client.connect(&address) {
            Ok(()) => waiting.push(client),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("connect: {e}"),
        }
    }
    assert!(!waiting.is_empty(), "no connection waits in the queue");
    let addr = format!("unix:{}", socket.display());
    let triage = Triage::start(&upstream(&[&addr], "")).await;
    let resp = client::get(triage.http, "/").await;
    assert_socket_failure(&resp, 503, "socket_backlog_full", &addr);
    assert_eq!(
        resp.header("x-diagnosis-detail"),
        Some("Resource temporarily unavailable (os error 11)")
    );
    assert_eq!(
        resp.header("x-diagnosis-cause"),
        Some("overloaded"),
        "{resp:?}"
    );
}

/// HTTP health checks reach a unix socket as requests do: gunicorn gets `GET /health` from
/// triage's checker and stays in rotation; a missing socket fails its checks as
/// socket_missing and goes out, so every request is answered by gunicorn, and an upstream with
/// only the missing socket answers no_healthy_upstream saying why.
#[tokio::test]
async fn health_checks_reach_unix_sockets() {
    let sockets = temp_dir();
    let access_log = sockets.path().join("access.log");
    let access_arg = access_log.to_str().expect("a utf-8 temp dir");
    let gunicorn = gunicorn(
        sockets.path(),
        "app.sock",
        &["--access-logfile", access_arg],
    );
    let addr = unix_addr(&gunicorn.addr);
    let missing = format!("unix:{}", sockets.path().join("missing.sock").display());
    let check = "[upstreams.{name}.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\nunhealthy_threshold = 1\n";
    let config = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{missing}\"]\nretries = 0\nmax_fails = 0\n{}\
         [upstreams.gone]\nservers = [\"{missing}\"]\n{}\
         [[routes]]\npath_prefix = \"/gone\"\nupstream = \"gone\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        addr,
        check.replace("{name}", "app"),
        check.replace("{name}", "gone"),
    );
    let triage = Triage::start(&config).await;
    let gauge = |upstream: &str, server: &str| {
        format!("triage_upstream_server_healthy{{server=\"{server}\",upstream=\"{upstream}\"}}")
    };
    assert!(
        metric_becomes(
            &triage,
            &gauge("app", &missing),
            "0",
            Duration::from_secs(5)
        )
        .await,
        "the missing socket stayed in rotation"
    );
    assert!(metric_becomes(&triage, &gauge("app", &addr), "1", Duration::from_secs(1)).await);
    for _ in 0..4 {
        let resp = client::get(triage.http, "/x").await;
        assert_eq!(
            (resp.status, resp.body_text()),
            (200, "ok\n".to_owned()),
            "{resp:?}"
        );
    }
    let requests = std::fs::read_to_string(&access_log).unwrap_or_default();
    assert!(
        requests.lines().any(
            |l| l.contains("\"GET /health HTTP/1.1\" 200") && l.contains("triage-health-check")
        ),
        "{requests}"
    );
    assert!(
        metric_becomes(
            &triage,
            &gauge("gone", &missing),
            "0",
            Duration::from_secs(5)
        )
        .await
    );
    let resp = client::get(triage.http, "/gone").await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("x-diagnosis"), Some("no_healthy_upstream"));
    let detail = resp.header("x-diagnosis-detail").unwrap_or("");
    assert!(
        detail.starts_with(&format!(
            "{missing}: failed health checks (socket_missing: No such file or directory (os error 2): {} exists but holds no missing.sock",
            sockets.path().display()
        )),
        "{detail}"
    );
}
