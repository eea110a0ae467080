//! Each cause from the facts that make it, and only from them.

use super::*;
use crate::cause::facts::{AppObserved, DeployMark, FastcgiObserved, HostState, Thresholds};
use crate::cause::reading::{clock, human, times};

const T0: Duration = Duration::from_secs(1_800_000_000);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
}

fn thresholds() -> Thresholds {
    Thresholds {
        stale_race: Duration::from_millis(250),
        deploy_window: Duration::from_secs(600),
        address_window: Duration::from_secs(600),
        crash_loop_comebacks: 2,
        overload_in_flight: 50,
        pool_idle: Duration::from_secs(60),
        ..Thresholds::default()
    }
}

fn observed(diagnosis: Diagnosis, past: Option<&ServerPast>) -> Observed<'_> {
    Observed {
        diagnosis,
        id: "0123456789abcdef",
        address: Some("127.0.0.1:3000".parse().expect("address")),
        host: None,
        upstream_tls: false,
        reused: false,
        connection_age: None,
        age: None,
        path: "/report",
        read_timeout: Duration::from_secs(5),
        status: None,
        body_start: b"",
        past,
        deploy: None,
        machine: None,
        probe: Probe::NotRun,
        now: at(100),
        thresholds: thresholds(),
        fastcgi: None,
        app: None,
    }
}

/// An attempt at a FastCGI server: `root` /srv/public, SCRIPT_FILENAME its index.php.
fn at_fastcgi<'a>(mut o: Observed<'a>, on_disk: bool, stderr: &'a [u8]) -> Observed<'a> {
    o.fastcgi = Some(FastcgiObserved {
        root: "/srv/public",
        script_filename: "/srv/public/index.php",
        script_on_disk: on_disk,
        stderr,
    });
    o
}

fn answered_until(secs: u64) -> ServerPast {
    ServerPast {
        first_seen: Some(at(0)),
        last_success: Some((at(secs), 200)),
        failing_since: Some(at(secs + 1)),
        failures: 3,
        comeback_window: Duration::from_secs(60),
        in_flight: 1,
        ..ServerPast::default()
    }
}

/// Every hint is filled: no `{name}` is left.
fn check(found: &CauseFinding, cause: Cause) {
    assert_eq!(found.cause, cause, "{found:#?}");
    assert!(!found.hint.contains('{'), "unfilled: {}", found.hint);
    assert!(
        !found.public_hint.contains("127.0.0.1"),
        "{}",
        found.public_hint
    );
    assert!(!found.evidence.is_empty() || matches!(cause, Cause::Unknown | Cause::ClientError));
}

/// A refusal at an address that never answered: never_answered, not "it crashed".
#[test]
fn refused_never_answered() {
    let past = ServerPast {
        first_seen: Some(at(0)),
        ..ServerPast::default()
    };
    let found = derive(&observed(Diagnosis::ConnectRefused, Some(&past)));
    check(&found, Cause::NeverAnswered);
    assert!(
        found.hint.contains("has not answered once"),
        "{}",
        found.hint
    );
    assert!(found.hint.contains("100 s ago"), "{}", found.hint);
}

/// A refusal after answers: app_down, with the last answer's time and status, and no word of a
/// wrong port.
#[test]
fn refused_after_answering() {
    let past = answered_until(62);
    let found = derive(&observed(Diagnosis::ConnectRefused, Some(&past)));
    check(&found, Cause::AppDown);
    assert!(found.hint.contains("answered 200 until"), "{}", found.hint);
    assert!(found.hint.contains("38 s ago"), "{}", found.hint);
    assert!(!found.hint.contains("port"), "{}", found.hint);
}

/// Comebacks within the window make a crash loop, before app_down.
#[test]
fn comebacks_are_a_crash_loop() {
    let past = ServerPast {
        comebacks: 4,
        ..answered_until(99)
    };
    let found = derive(&observed(Diagnosis::ConnectRefused, Some(&past)));
    check(&found, Cause::CrashLoop);
    assert!(
        found.hint.contains("4 times in the last 60 s"),
        "{}",
        found.hint
    );
}

/// Failures that began after a deploy, with nothing answering since it: broken_deploy.
#[test]
fn failures_after_a_deploy() {
    let past = answered_until(50);
    let deploy = DeployMark {
        version: "v2".to_owned(),
        time: at(48),
    };
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.deploy = Some(&deploy);
    let found = derive(&o);
    check(&found, Cause::BrokenDeploy);
    assert!(found.hint.contains("roll back first"), "{}", found.hint);
    assert!(found.hint.contains("v2"), "{}", found.hint);
    // Failures that began long after the deploy are not the deploy's.
    let later = ServerPast {
        last_success: Some((at(60), 200)),
        failing_since: Some(at(61)),
        ..past
    };
    let old_deploy = DeployMark {
        version: "v2".to_owned(),
        time: SystemTime::UNIX_EPOCH + T0 - Duration::from_secs(3600),
    };
    let mut o = observed(Diagnosis::ConnectRefused, Some(&later));
    o.deploy = Some(&old_deploy);
    assert_eq!(derive(&o).cause, Cause::AppDown);
}

/// A broken connection whose address refuses right after: app_crashed, whether the kernel sent
/// a reset or a close.
#[test]
fn broken_and_refused_is_a_crash() {
    let past = answered_until(99);
    for diagnosis in [Diagnosis::ConnectionReset, Diagnosis::ConnectionClosed] {
        let mut o = observed(diagnosis, Some(&past));
        o.age = Some(Duration::from_millis(311));
        o.probe = Probe::Refused;
        check(&derive(&o), Cause::AppCrashed);
    }
}

/// Broken after the race window while the app still listens: one worker died; at the same age
/// as two before it: a worker timeout, saying the age.
#[test]
fn broken_while_listening_is_a_worker() {
    let mut past = answered_until(99);
    for diagnosis in [Diagnosis::ConnectionReset, Diagnosis::ConnectionClosed] {
        let mut o = observed(diagnosis, Some(&past));
        o.age = Some(Duration::from_millis(2900));
        o.probe = Probe::Accepted;
        let found = derive(&o);
        check(&found, Cause::WorkerKilled);
        assert!(
            found.hint.contains("2.9 s into the request"),
            "{}",
            found.hint
        );
        assert!(!found.hint.contains("idle"), "{}", found.hint);
    }
    past.broken_ages = vec![Duration::from_millis(3010), Duration::from_millis(2950)];
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(3000));
    o.probe = Probe::Accepted;
    let found = derive(&o);
    check(&found, Cause::WorkerTimeout);
    assert!(
        found.hint.contains("3 requests failed at about 3.0 s"),
        "{}",
        found.hint
    );
}

/// A reused connection that fails at once is the keep-alive race; a new one is not.
#[test]
fn stale_keepalive_needs_a_reused_connection() {
    let past = answered_until(99);
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(1));
    o.reused = true;
    check(&derive(&o), Cause::StaleKeepalive);
    // The connection's age bounds the app's keep-alive timeout.
    o.connection_age = Some(Duration::from_millis(2600));
    let found = derive(&o);
    check(&found, Cause::StaleKeepalive);
    assert!(
        found.hint.contains("(opened 2.6 s ago)") && found.hint.contains("(at most 2.6 s,"),
        "{}",
        found.hint
    );
    // A new connection had the request: a worker died with it, however soon.
    o.reused = false;
    assert_eq!(derive(&o).cause, Cause::WorkerKilled);
}

/// A TLS or FastCGI server found by the probe is a wrong protocol, not a crash.
#[test]
fn probe_finds_the_protocol() {
    let mut o = observed(Diagnosis::ConnectionReset, None);
    o.probe = Probe::SpeaksFastcgi;
    let found = derive(&o);
    check(&found, Cause::WrongProtocol);
    assert!(
        found.hint.contains("protocol = \"fastcgi\""),
        "{}",
        found.hint
    );
    o.probe = Probe::SpeaksTls;
    o.diagnosis = Diagnosis::ConnectionClosed;
    let found = derive(&o);
    check(&found, Cause::WrongProtocol);
    assert!(found.hint.contains("set tls = true"), "{}", found.hint);
    let o = observed(Diagnosis::UpstreamExpectsTls, None);
    check(&derive(&o), Cause::WrongProtocol);
}

/// A timeout with many requests in flight is overload; with few and normal answers, this
/// request is slow.
#[test]
fn timeouts_overloaded_or_slow() {
    let busy = ServerPast {
        in_flight: 80,
        recent_response_times: vec![Duration::from_millis(20); 10],
        ..answered_until(99)
    };
    let found = derive(&observed(Diagnosis::ResponseTimeout, Some(&busy)));
    check(&found, Cause::Overloaded);
    assert!(
        found.hint.contains("80 requests in flight"),
        "{}",
        found.hint
    );
    let quiet = ServerPast {
        in_flight: 2,
        ..busy
    };
    let found = derive(&observed(Diagnosis::ResponseTimeout, Some(&quiet)));
    check(&found, Cause::SlowRequest);
    assert!(
        found.hint.contains("/report got no answer within 5.0 s"),
        "{}",
        found.hint
    );
    assert!(found.hint.contains("20 ms"), "{}", found.hint);
    // Climbing response times are overload too, even with few in flight.
    let mut climbing = quiet.clone();
    climbing.recent_response_times = [
        vec![Duration::from_millis(20); 8],
        vec![Duration::from_millis(900); 3],
    ]
    .concat();
    let found = derive(&observed(Diagnosis::ResponseTimeout, Some(&climbing)));
    check(&found, Cause::Overloaded);
}

/// The app's 5xx is app_error, database_down when its body names a database error.
#[test]
fn app_status_and_database() {
    let mut o = observed(Diagnosis::UpstreamStatus, None);
    o.status = Some(500);
    let found = derive(&o);
    check(&found, Cause::AppError);
    assert!(found.hint.contains("answered 500"), "{}", found.hint);
    for body in [
        &b"SQLSTATE[HY000] [2002] Connection refused"[..],
        b"psycopg2.OperationalError: could not connect to server: Connection refused",
        b"Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap",
    ] {
        o.status = Some(503);
        o.body_start = body;
        let found = derive(&o);
        check(&found, Cause::DatabaseDown);
    }
    // A refusal to another port is not a database.
    o.body_start = b"Error: connect ECONNREFUSED 127.0.0.1:8081";
    assert_eq!(derive(&o).cause, Cause::AppError);
}

/// A recent address change explains a refusal.
#[test]
fn moved_address() {
    let past = ServerPast {
        address_change: Some((
            at(90),
            vec!["10.0.0.1".parse().expect("ip")],
            vec!["10.0.0.2".parse().expect("ip")],
        )),
        ..answered_until(80)
    };
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.host = Some("app.internal");
    let found = derive(&o);
    check(&found, Cause::AddressChanged);
    assert!(
        found
            .hint
            .contains("app.internal changed from 10.0.0.1 to 10.0.0.2 10 s ago"),
        "{}",
        found.hint
    );
}

/// A client's failure is the client's, whatever the server's history.
#[test]
fn client_failures_are_the_clients() {
    let past = answered_until(10);
    for d in Diagnosis::ALL {
        let found = derive(&observed(d, Some(&past)));
        if d.fault() == Fault::Client {
            check(&found, Cause::ClientError);
            assert_eq!(found.hint, d.hint());
        } else {
            assert_ne!(found.cause, Cause::ClientError, "{}", d.token());
        }
        assert!(!found.hint.contains('{'), "{}: {}", d.token(), found.hint);
    }
}

/// At a FastCGI server, a timeout while no worker answered a probe is pool_exhausted, before
/// overload or a slow request; with a worker free, the HTTP reading holds.
#[test]
fn fastcgi_timeouts_and_the_pool() {
    let past = answered_until(90);
    let mut o = at_fastcgi(observed(Diagnosis::ResponseTimeout, Some(&past)), true, b"");
    o.probe = Probe::FastcgiBusy {
        waited: Duration::from_millis(300),
    };
    let found = derive(&o);
    check(&found, Cause::PoolExhausted);
    assert!(found.hint.contains("pm.max_children"), "{}", found.hint);
    assert!(found.hint.contains("no answer in 300 ms"), "{}", found.hint);
    o.probe = Probe::SpeaksFastcgi;
    assert_ne!(derive(&o).cause, Cause::PoolExhausted);
    // The same probe result at an HTTP upstream means nothing of a pool.
    let mut http = observed(Diagnosis::ResponseTimeout, Some(&past));
    http.probe = Probe::FastcgiBusy {
        waited: Duration::from_millis(300),
    };
    assert_ne!(derive(&http).cause, Cause::PoolExhausted);
    let overloaded = at_fastcgi(
        observed(Diagnosis::FastcgiOverloaded, Some(&past)),
        true,
        b"",
    );
    let found = derive(&overloaded);
    check(&found, Cause::PoolExhausted);
    assert!(found.hint.contains("FCGI_OVERLOADED"), "{}", found.hint);
}

/// php-fpm's "Primary script unknown" for a script triage saw under root is wrong_root, naming
/// root and SCRIPT_FILENAME (for trusted readers only); for a script triage never looked at, the
/// evidence decides nothing.
#[test]
fn script_not_found_names_the_root() {
    let past = answered_until(90);
    let found = derive(&at_fastcgi(
        observed(Diagnosis::ScriptNotFound, Some(&past)),
        true,
        b"",
    ));
    check(&found, Cause::WrongRoot);
    assert!(found.hint.contains("root = /srv/public"), "{}", found.hint);
    assert!(
        found.hint.contains("/srv/public/index.php"),
        "{}",
        found.hint
    );
    assert!(
        !found.public_hint.contains("/srv/public"),
        "{}",
        found.public_hint
    );
    let found = derive(&at_fastcgi(
        observed(Diagnosis::ScriptNotFound, Some(&past)),
        false,
        b"",
    ));
    assert_eq!(found.cause, Cause::Unknown);
}

/// A FastCGI port behind protocol = "http", and an HTTP port behind protocol = "fastcgi", are
/// wrong_protocol with the fix of the protocol key; a FastCGI server answering a FastCGI probe
/// after a break is no wrong protocol.
#[test]
fn fastcgi_and_http_ports_mixed_up() {
    let mut o = observed(Diagnosis::ConnectionClosed, None);
    o.probe = Probe::SpeaksFastcgi;
    let found = derive(&o);
    check(&found, Cause::WrongProtocol);
    assert!(
        found.hint.contains("protocol = \"fastcgi\""),
        "{}",
        found.hint
    );
    let mut http_answer = at_fastcgi(observed(Diagnosis::InvalidResponse, None), false, b"");
    http_answer.body_start = b"HTTP/1.1 400 Bad Request\r\n";
    let found = derive(&http_answer);
    check(&found, Cause::WrongProtocol);
    assert!(
        found.hint.contains("speaks plain HTTP, not FastCGI"),
        "{}",
        found.hint
    );
    assert!(found.hint.contains("protocol = \"http\""), "{}", found.hint);
    let mut broke = at_fastcgi(observed(Diagnosis::ConnectionClosed, None), false, b"");
    broke.probe = Probe::SpeaksFastcgi;
    broke.age = Some(Duration::from_secs(2));
    assert_eq!(derive(&broke).cause, Cause::WorkerKilled);
}

/// A PHP fatal error behind the app's 500 is app_error with php-fpm's message as evidence; a
/// database error in stderr (an uncaught PDOException) is database_down.
#[test]
fn php_errors_from_stderr() {
    let mut o = at_fastcgi(
        observed(Diagnosis::UpstreamStatus, None),
        true,
        b"PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function nope() in /srv/public/index.php:3",
    );
    o.status = Some(500);
    let found = derive(&o);
    check(&found, Cause::AppError);
    assert!(
        found.evidence.iter().any(|e| e
            .fact
            .contains("PHP Fatal error:  Uncaught Error: Call to undefined function nope()")),
        "{:?}",
        found.evidence
    );
    o.fastcgi = Some(FastcgiObserved {
        stderr: b"PHP message: PHP Fatal error:  Uncaught PDOException: SQLSTATE[HY000] [2002] Connection refused",
        ..o.fastcgi.expect("fastcgi")
    });
    check(&derive(&o), Cause::DatabaseDown);
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!(human(Duration::from_millis(311)), "311 ms");
    assert_eq!(human(Duration::from_millis(2900)), "2.9 s");
    assert_eq!(human(Duration::from_secs(38)), "38 s");
    assert_eq!(human(Duration::from_secs(240)), "4 min");
    // Tenths are cut, so the last millisecond before ten seconds does not read "10.0 s".
    assert_eq!(human(Duration::from_millis(9_999)), "9.9 s");
    assert_eq!(human(Duration::from_millis(1_000)), "1.0 s");
    assert_eq!(human(Duration::from_secs(7_200)), "2 h");
    assert_eq!(times(1, "time"), "1 time");
    assert_eq!(times(13, "failure"), "13 failures");
    assert_eq!(clock(SystemTime::UNIX_EPOCH), "00:00:00");
    assert_eq!(
        clock(SystemTime::UNIX_EPOCH + Duration::from_secs(73_142)),
        "20:19:02"
    );
}

/// A unix socket's failures: no socket file at a server that never answered is never_answered,
/// a refusal at a socket file after it answered is app_down, both naming the socket; a full
/// listen queue is overload; a permission failure is the socket's mode, which no history
/// explains.
#[test]
fn unix_socket_failures() {
    let unix = |diagnosis, past| {
        let mut o = observed(diagnosis, past);
        o.address = Some("unix:/run/app.sock".parse().expect("address"));
        derive(&o)
    };
    let never = ServerPast {
        first_seen: Some(at(0)),
        ..ServerPast::default()
    };
    let found = unix(Diagnosis::SocketMissing, Some(&never));
    check(&found, Cause::NeverAnswered);
    assert!(
        found
            .hint
            .starts_with("unix:/run/app.sock has not answered once"),
        "{}",
        found.hint
    );
    assert!(!found.public_hint.contains("/run/app.sock"));
    assert_eq!(
        found.evidence[0].fact,
        "unix:/run/app.sock has no socket file"
    );
    let answered = answered_until(90);
    let found = unix(Diagnosis::SocketRefused, Some(&answered));
    check(&found, Cause::AppDown);
    assert!(
        found.hint.starts_with("unix:/run/app.sock answered 200"),
        "{}",
        found.hint
    );
    let busy = ServerPast {
        in_flight: 80,
        ..answered_until(90)
    };
    let found = unix(Diagnosis::SocketBacklogFull, Some(&busy));
    check(&found, Cause::Overloaded);
    assert_eq!(
        found.evidence[0].fact,
        "the listen queue of unix:/run/app.sock was full"
    );
    let found = unix(Diagnosis::SocketPermissionDenied, Some(&answered));
    check(&found, Cause::Unknown);
    assert_eq!(found.hint, Diagnosis::SocketPermissionDenied.hint());
}

fn host(available_mib: u64, cpu: f64, disk_free_mib: u64) -> HostState {
    HostState {
        cpu_busy_percent: Some(cpu),
        mem_available_bytes: Some(available_mib << 20),
        mem_total_bytes: Some(16_384 << 20),
        disks: vec![("/".to_owned(), disk_free_mib << 20, 100_000 << 20)],
    }
}

/// A machine out of memory explains a dead app; out of disk, a failing one; a starved CPU, a
/// timeout. A healthy machine changes nothing, and a cause naming something else stands.
#[test]
fn the_machine_explains_what_it_caused() {
    let past = answered_until(62);
    let low_memory = host(100, 10.0, 50_000);
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.machine = Some(&low_memory);
    let found = derive(&o);
    check(&found, Cause::HostOutOfMemory);
    assert!(
        found.hint.contains("100 MiB of 16 GiB memory available"),
        "{}",
        found.hint
    );

    let full_disk = host(8000, 10.0, 100);
    let mut o = observed(Diagnosis::UpstreamStatus, Some(&past));
    o.status = Some(500);
    o.machine = Some(&full_disk);
    let found = derive(&o);
    check(&found, Cause::HostDiskFull);
    assert!(
        found.hint.contains("/ has 100 MiB of 97 GiB free"),
        "{}",
        found.hint
    );

    let busy = host(8000, 99.0, 50_000);
    let quiet = ServerPast {
        recent_response_times: vec![Duration::from_millis(20); 10],
        ..answered_until(99)
    };
    let mut o = observed(Diagnosis::ResponseTimeout, Some(&quiet));
    o.machine = Some(&busy);
    check(&derive(&o), Cause::HostCpuSaturated);

    let healthy = host(8000, 10.0, 50_000);
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.machine = Some(&healthy);
    assert_eq!(derive(&o).cause, Cause::AppDown);
    // A port that never answered is not the machine's doing, even short of memory.
    let never = ServerPast {
        first_seen: Some(at(0)),
        ..ServerPast::default()
    };
    let mut o = observed(Diagnosis::ConnectRefused, Some(&never));
    o.machine = Some(&low_memory);
    assert_eq!(derive(&o).cause, Cause::NeverAnswered);
}

fn app_with(lines: &[(u64, &str)]) -> AppObserved {
    AppObserved {
        lines: lines
            .iter()
            .map(|(secs, text)| crate::cause::LogLine {
                at: at(*secs),
                text: (*text).into(),
            })
            .collect(),
        oom_kill: None,
        restarted: None,
    }
}

const GUNICORN_SIGKILL: &str =
    "[2026-12-02 13:40:00 +0000] [311] [ERROR] Worker (pid:312) was sent SIGKILL! Perhaps out of memory?";

/// A killed worker with gunicorn's SIGKILL line in the log is out of memory, the line quoted in
/// the hint and the evidence for trusted eyes; the public hint never quotes the app's log.
#[test]
fn out_of_memory_from_the_log() {
    let past = answered_until(99);
    let app = app_with(&[(98, "GET / 200"), (100, GUNICORN_SIGKILL)]);
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(600));
    o.probe = Probe::Accepted;
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::OutOfMemory);
    assert!(
        found.hint.contains("Perhaps out of memory?"),
        "{}",
        found.hint
    );
    assert!(
        !found.public_hint.contains("SIGKILL"),
        "{}",
        found.public_hint
    );
    assert!(found
        .evidence
        .iter()
        .any(|e| e.source == EvidenceSource::AppLog && e.fact.contains("gunicorn 21+")));
    // The whole app dying of node's heap limit: the next connect refused.
    let app = app_with(&[(
        100,
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    )]);
    o.probe = Probe::Refused;
    o.app = Some(&app);
    check(&derive(&o), Cause::OutOfMemory);
    // PHP's own 500 for its memory limit.
    let app = app_with(&[(100, "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)")]);
    let mut o = observed(Diagnosis::UpstreamStatus, Some(&past));
    o.status = Some(500);
    o.app = Some(&app);
    check(&derive(&o), Cause::OutOfMemory);
    // A line that names no cause changes nothing; nor does an OOM line at a wrong port.
    let app = app_with(&[(100, "GET / 200")]);
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(600));
    o.probe = Probe::Accepted;
    o.app = Some(&app);
    check(&derive(&o), Cause::WorkerKilled);
    let app = app_with(&[(100, GUNICORN_SIGKILL)]);
    let mut o = observed(Diagnosis::ConnectionReset, None);
    o.probe = Probe::SpeaksTls;
    o.app = Some(&app);
    check(&derive(&o), Cause::WrongProtocol);
    // Nor at a failure no dying app explains: a certificate, a DNS name.
    for diagnosis in [Diagnosis::TlsCertificateExpired, Diagnosis::DnsError] {
        let mut o = observed(diagnosis, Some(&past));
        o.app = Some(&app);
        check(&derive(&o), Cause::Unknown);
    }
}

/// An OOM kill in the app's cgroup is out of memory too, said from the counter.
#[test]
fn out_of_memory_from_the_cgroup() {
    let past = answered_until(99);
    let mut app = app_with(&[]);
    app.oom_kill = Some(crate::cause::OomKill {
        at: at(100),
        from: 0,
        to: 1,
    });
    let mut o = observed(Diagnosis::ConnectionReset, Some(&past));
    o.age = Some(Duration::from_millis(600));
    o.probe = Probe::Accepted;
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::OutOfMemory);
    assert!(found.hint.contains("OOM killer"), "{}", found.hint);
    assert!(found
        .evidence
        .iter()
        .any(|e| e.source == EvidenceSource::AppProcess && e.fact.contains("from 0 to 1")));
}

/// gunicorn's WORKER TIMEOUT line makes one killed worker a worker timeout; php-fpm's
/// pm.max_children line a timeout the pool; an import error while nothing listens a broken
/// release, without any deploy marker.
#[test]
fn other_causes_from_the_log() {
    let past = answered_until(99);
    let app = app_with(&[(
        100,
        "[2026-12-02 13:40:00 +0000] [311] [CRITICAL] WORKER TIMEOUT (pid:312)",
    )]);
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(30_100));
    o.probe = Probe::Accepted;
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::WorkerTimeout);
    assert!(
        found.hint.contains("the request failed at about 30 s"),
        "{}",
        found.hint
    );
    assert!(
        found.hint.contains("WORKER TIMEOUT (pid:312)"),
        "{}",
        found.hint
    );
    assert!(
        found.public_hint.contains("its log says so"),
        "{}",
        found.public_hint
    );

    let app = app_with(&[(95, "[02-Dec-2026 13:40:00] WARNING: [pool www] server reached pm.max_children setting (5), consider raising it")]);
    let mut o = at_fastcgi(observed(Diagnosis::ResponseTimeout, Some(&past)), true, b"");
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::PoolExhausted);
    assert!(found.hint.contains("pm.max_children"), "{}", found.hint);

    let app = app_with(&[(99, "ModuleNotFoundError: No module named 'settings'")]);
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::BrokenDeploy);
    assert!(found.hint.contains("No module named"), "{}", found.hint);
    assert!(
        !found.public_hint.contains("settings"),
        "{}",
        found.public_hint
    );
    // A deploy marker's broken deploy gains the line as evidence.
    let deploy = DeployMark {
        version: "3f9c1a7".into(),
        time: at(90),
    };
    let mut o = observed(Diagnosis::ConnectRefused, Some(&past));
    o.deploy = Some(&deploy);
    o.app = Some(&app);
    let found = derive(&o);
    check(&found, Cause::BrokenDeploy);
    assert!(
        found.hint.contains("the deploy of 3f9c1a7"),
        "{}",
        found.hint
    );
    assert!(found
        .evidence
        .iter()
        .any(|e| e.source == EvidenceSource::AppLog));
}

/// The amendment: the line gunicorn writes after triage answered upgrades the stored cause,
/// from the values the first hint was filled with; with nothing new it changes nothing.
#[test]
fn amend_upgrades_with_a_later_line() {
    let past = answered_until(99);
    let before = app_with(&[(99, "GET / 200")]);
    let mut o = observed(Diagnosis::ConnectionClosed, Some(&past));
    o.age = Some(Duration::from_millis(600));
    o.probe = Probe::Accepted;
    o.app = Some(&before);
    let first = derive(&o);
    check(&first, Cause::WorkerKilled);
    assert_eq!(
        amend(&first, o.diagnosis, &before, o.now, o.age),
        None,
        "nothing new"
    );
    let after = app_with(&[(99, "GET / 200"), (101, GUNICORN_SIGKILL)]);
    let amended = amend(&first, o.diagnosis, &after, o.now, o.age).expect("an upgrade");
    check(&amended, Cause::OutOfMemory);
    assert!(
        amended.hint.contains("127.0.0.1:3000 failed"),
        "{}",
        amended.hint
    );
    assert!(
        amended.hint.contains("Perhaps out of memory?"),
        "{}",
        amended.hint
    );
    // Amending what an amendment (or the answer) already found does not repeat its evidence.
    let again = amend(&amended, o.diagnosis, &after, o.now, o.age);
    assert_eq!(again, None);
    // A client's failure is never amended.
    let client = without_evidence(Diagnosis::BadRequest);
    assert_eq!(
        amend(&client, Diagnosis::BadRequest, &after, o.now, None),
        None
    );
}

/// A long line is quoted around the words that made it known, within the bound.
#[test]
fn long_lines_are_quoted_around_their_sign() {
    let line = format!(
        "[02-Dec-2026 13:56:43] WARNING: [pool www] child 10683, script '/srv/{}/sleep.php' (request: \"GET /sleep.php\") execution timed out (1.012 sec), terminating",
        "deep/".repeat(40)
    );
    let quoted = quoted_line(&line, "execution timed out");
    assert!(
        quoted.contains("execution timed out (1.012 sec)"),
        "{quoted}"
    );
    assert!(quoted.starts_with("..."), "{quoted}");
    assert!(quoted.len() <= QUOTED_LINE + 6, "{quoted}");
    assert_eq!(quoted_line("short \u{1b}line", "x"), "short ?line");
}
