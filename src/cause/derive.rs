//! The one function that turns a diagnosis, the attempt's facts, the server's history, a deploy
//! marker and a probe into a [`CauseFinding`].

use super::facts::{AppObserved, Observed, Probe, ServerPast};
use super::reading::{
    bytes, climbing, clock, database_error, decimal, human, median, public_value, same_age, times,
};
use super::signs::{Seen, Signs};
use super::template::fill_hint;
use super::{Cause, CauseFinding, Evidence, EvidenceSource, Filled};
use crate::diagnosis::{Diagnosis, Fault};
use crate::render::text::AddrText;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The cause of one failure: one exhaustive decision on the diagnosis, then the evidence.
pub fn derive(o: &Observed<'_>) -> CauseFinding {
    let mut e = Explanation::new(o);
    let cause = match o.diagnosis {
        Diagnosis::ConnectRefused
        | Diagnosis::ConnectUnreachable
        | Diagnosis::ConnectFailed
        | Diagnosis::ConnectTimeout
        | Diagnosis::SocketMissing
        | Diagnosis::SocketRefused => e.not_accepting(),
        Diagnosis::SocketBacklogFull => e.backlog_full(),
        Diagnosis::ConnectionReset | Diagnosis::ConnectionClosed | Diagnosis::RequestSendFailed => {
            e.broken_before_answer()
        }
        Diagnosis::BodyReset | Diagnosis::BodyClosed => e.broken_in_body(),
        Diagnosis::ResponseTimeout | Diagnosis::RequestSendTimeout | Diagnosis::BodyTimeout => {
            e.timed_out()
        }
        Diagnosis::UpstreamExpectsTls => e.wrong_protocol("TLS", "response"),
        Diagnosis::TlsUpstreamPlaintext => e.wrong_protocol("plain HTTP", "response"),
        Diagnosis::InvalidResponse => e.invalid_response(),
        Diagnosis::UpstreamStatus => e.app_answered(),
        Diagnosis::FastcgiOverloaded => {
            e.pool_exhausted("it ended the request with FCGI_OVERLOADED".to_owned())
        }
        Diagnosis::ScriptNotFound => e.script_not_found(),
        // The socket's mode, not the app: the detail says whose and which.
        Diagnosis::DnsError
        | Diagnosis::SocketPermissionDenied
        | Diagnosis::TlsHandshakeFailed
        | Diagnosis::TlsCertificateExpired
        | Diagnosis::TlsCertificateUntrusted
        | Diagnosis::TlsCertificateNameMismatch
        | Diagnosis::ResponseHeadersTooLarge
        | Diagnosis::NoHealthyUpstream
        | Diagnosis::UpgradeFailed
        | Diagnosis::UpgradeRefused
        | Diagnosis::FastcgiRejected
        | Diagnosis::ScriptDenied
        | Diagnosis::InternalError => Cause::Unknown,
        Diagnosis::OutsideRoot
        | Diagnosis::NoRoute
        | Diagnosis::RequestBodyTooLarge
        | Diagnosis::ClientClosed
        | Diagnosis::BadRequest
        | Diagnosis::RequestHeadersTooLarge
        | Diagnosis::ClientHeaderTimeout
        | Diagnosis::ClientBodyTimeout
        | Diagnosis::ClientSendTimeout => Cause::ClientError,
    };
    let context = AppContext {
        diagnosis: o.diagnosis,
        at: o.now,
        age: o.age,
        failing_since: o.past.and_then(|p| p.failing_since),
    };
    let cause = match o.app {
        Some(app) => e.notes.app_explains(&context, app, cause),
        None => cause,
    };
    let cause = e.host_explains(cause);
    // The table's fault column and the cause cannot disagree: a client's failure is never
    // explained by the server, and the other way round.
    let cause = match (o.diagnosis.fault(), cause) {
        (Fault::Client, _) => Cause::ClientError,
        (Fault::Server | Fault::App | Fault::Proxy, Cause::ClientError) => Cause::Unknown,
        (Fault::Server | Fault::App | Fault::Proxy, cause) => cause,
    };
    e.finish(cause)
}

/// The cause of a failure known only by its diagnosis (a request Pingora could not parse):
/// the client's, or unknown.
pub fn without_evidence(diagnosis: Diagnosis) -> CauseFinding {
    let cause = match diagnosis.fault() {
        Fault::Client => Cause::ClientError,
        Fault::Server | Fault::App | Fault::Proxy => Cause::Unknown,
    };
    CauseFinding {
        cause,
        hint: diagnosis.hint().to_owned(),
        public_hint: diagnosis.hint().to_owned(),
        evidence: Vec::new(),
        filled: Vec::new(),
    }
}

/// `prior` again, once the app's log has its lines from after the failure too (`app`, the
/// whole window): the same step of the derivation ([`Notes::app_explains`]) on the values and
/// evidence `prior` was filled from, so a well-known line the app server wrote after triage
/// answered (gunicorn reaps a killed worker up to a second later) upgrades the cause, quoted
/// as evidence. `None` when it changes nothing. `at` is the failure's time, `age` how long
/// the request had been in flight.
pub fn amend(
    prior: &CauseFinding,
    diagnosis: Diagnosis,
    app: &AppObserved,
    at: SystemTime,
    age: Option<Duration>,
) -> Option<CauseFinding> {
    match diagnosis.fault() {
        Fault::Client => return None,
        Fault::Server | Fault::App | Fault::Proxy => {}
    }
    // The app's evidence of the answer is read again, whole: what it found then is in the
    // window now too.
    let mut notes = Notes {
        filled: prior.filled.clone(),
        evidence: prior
            .evidence
            .iter()
            .filter(|e| {
                !matches!(
                    e.source,
                    EvidenceSource::AppLog | EvidenceSource::AppProcess
                )
            })
            .cloned()
            .collect(),
    };
    let context = AppContext {
        diagnosis,
        at,
        age,
        failing_since: None,
    };
    let cause = notes.app_explains(&context, app, prior.cause);
    let amended = notes.finish(cause, diagnosis);
    (amended != *prior).then_some(amended)
}

/// Whether the diagnosis is a timeout.
fn timeout(diagnosis: Diagnosis) -> bool {
    matches!(
        diagnosis,
        Diagnosis::ConnectTimeout
            | Diagnosis::ResponseTimeout
            | Diagnosis::RequestSendTimeout
            | Diagnosis::BodyTimeout
    )
}

/// The values of a hint and the evidence, gathered while deciding; then the hints filled.
struct Notes {
    filled: Vec<Filled>,
    evidence: Vec<Evidence>,
}

impl Notes {
    /// Sets `name` (a later value replaces an earlier one: the last decision speaks).
    fn set(&mut self, name: &'static str, value: String, public: Option<String>) {
        let filled = Filled {
            name,
            value,
            public,
        };
        match self.filled.iter_mut().find(|f| f.name == name) {
            Some(earlier) => *earlier = filled,
            None => self.filled.push(filled),
        }
    }

    fn value(&mut self, name: &'static str, value: String) {
        self.set(name, value, None);
    }

    /// A value untrusted clients see as `public` (the app's own words are never theirs).
    fn value_public(&mut self, name: &'static str, value: String, public: String) {
        self.set(name, value, Some(public));
    }

    fn has(&self, name: &str) -> bool {
        self.filled.iter().any(|f| f.name == name)
    }

    fn fact(&mut self, source: EvidenceSource, fact: String) {
        self.evidence.push(Evidence { source, fact });
    }

    fn finish(mut self, cause: Cause, diagnosis: Diagnosis) -> CauseFinding {
        if matches!(cause, Cause::Unknown | Cause::ClientError) {
            self.value("diagnosis_hint", diagnosis.hint().to_owned());
        }
        let values: Vec<(&str, &str)> = self
            .filled
            .iter()
            .map(|f| (f.name, f.value.as_str()))
            .collect();
        let public: Vec<(&str, &str)> = self
            .filled
            .iter()
            .map(|f| {
                let value = f
                    .public
                    .as_deref()
                    .or_else(|| public_value(f.name))
                    .unwrap_or(f.value.as_str());
                (f.name, value)
            })
            .collect();
        CauseFinding {
            cause,
            hint: fill_hint(cause, &values),
            public_hint: fill_hint(cause, &public),
            evidence: self.evidence,
            filled: self.filled,
        }
    }

    /// The app's own evidence decides where it names the cause: an out-of-memory line or an
    /// OOM kill for an app or worker that died (or answered a failure), the app server's
    /// timeout line for a worker that died, php-fpm's `pm.max_children` line for a timeout, a
    /// startup error for an app that accepts nothing. A cause it does not fit (a wrong port or
    /// protocol, a moved address, a stale keep-alive) stands: a line elsewhere in the log
    /// says nothing about it. A cause it confirms gains the line as evidence.
    fn app_explains(&mut self, c: &AppContext, app: &AppObserved, cause: Cause) -> Cause {
        let signs = Signs::of(&app.lines);
        let d = c.diagnosis;
        // What the app's own failure can look like from here: a connection that broke, an
        // address that stopped accepting, a timeout, its own 5xx. (A TLS or DNS failure, a
        // client's, is no app's death, whatever its log said at the time.)
        let broke = matches!(
            d,
            Diagnosis::ConnectionReset
                | Diagnosis::ConnectionClosed
                | Diagnosis::RequestSendFailed
                | Diagnosis::BodyReset
                | Diagnosis::BodyClosed
        );
        let app_failed = broke || not_accepting(d) || timeout(d) || d == Diagnosis::UpstreamStatus;
        let died = app_failed
            && matches!(
                cause,
                Cause::AppCrashed
                    | Cause::WorkerKilled
                    | Cause::WorkerTimeout
                    | Cause::AppDown
                    | Cause::CrashLoop
                    | Cause::AppError
                    | Cause::OutOfMemory
                    | Cause::Unknown
            );
        if died {
            if let Some(seen) = signs.out_of_memory {
                let quoted = self.quote_line(seen);
                self.value_public(
                    "oom",
                    format!("its log says {quoted}"),
                    "its log says so".to_owned(),
                );
                return Cause::OutOfMemory;
            }
            if let Some(kill) = app.oom_kill {
                self.fact(
                    EvidenceSource::AppProcess,
                    format!(
                        "the oom_kill count in its cgroup's memory.events rose from {} to {} at {}",
                        kill.from,
                        kill.to,
                        clock(kill.at)
                    ),
                );
                self.value(
                    "oom",
                    format!(
                        "the kernel's OOM killer killed a process in its cgroup at {}",
                        clock(kill.at)
                    ),
                );
                return Cause::OutOfMemory;
            }
        }
        if let Some(seen) = signs.worker_timeout {
            let killed = broke || d == Diagnosis::UpstreamStatus;
            if killed
                && matches!(
                    cause,
                    Cause::WorkerKilled | Cause::WorkerTimeout | Cause::AppError | Cause::Unknown
                )
            {
                let quoted = self.quote_line(seen);
                if cause != Cause::WorkerTimeout {
                    self.value("failed", "the request failed".to_owned());
                    if !self.has("age") {
                        let age = c.age.map_or_else(|| "some time".to_owned(), human);
                        self.value("age", age);
                    }
                    self.value_public(
                        "why",
                        format!("its log says {quoted}"),
                        "its log says so".to_owned(),
                    );
                }
                return Cause::WorkerTimeout;
            }
        }
        if let Some(seen) = signs.pool_exhausted {
            let waited = timeout(c.diagnosis) || c.diagnosis == Diagnosis::FastcgiOverloaded;
            if waited
                && matches!(
                    cause,
                    Cause::Overloaded | Cause::SlowRequest | Cause::Unknown | Cause::PoolExhausted
                )
            {
                let quoted = self.quote_line(seen);
                if cause != Cause::PoolExhausted {
                    self.value_public(
                        "evidence",
                        format!("its log says {quoted}"),
                        "its log says every worker was busy".to_owned(),
                    );
                }
                return Cause::PoolExhausted;
            }
        }
        if let Some(seen) = signs.startup_error {
            let refused = not_accepting(c.diagnosis);
            let fits = matches!(
                cause,
                Cause::AppDown
                    | Cause::CrashLoop
                    | Cause::NeverAnswered
                    | Cause::AppCrashed
                    | Cause::Unknown
                    | Cause::BrokenDeploy
            );
            if fits && (refused || (broke && app.restarted.is_some())) {
                let quoted = self.quote_line(seen);
                if cause != Cause::BrokenDeploy {
                    let restart = app.restarted.unwrap_or(seen.line.at);
                    let since = c.failing_since.unwrap_or(c.at);
                    if !self.has("failing_since") {
                        self.value("failing_since", clock(since));
                    }
                    self.value(
                        "deploy_gap",
                        human(since.duration_since(restart).unwrap_or_default()),
                    );
                    self.value_public(
                        "deployed",
                        format!(
                            "the app's restart at {}, whose log says {quoted}",
                            clock(restart)
                        ),
                        format!(
                            "the app's restart at {}, with a startup error in its log",
                            clock(restart)
                        ),
                    );
                }
                return Cause::BrokenDeploy;
            }
        }
        cause
    }

    /// The line, quoted and bounded for a hint (which goes into a header), with its fact.
    fn quote_line(&mut self, seen: Seen<'_>) -> String {
        let quoted = format!("\"{}\"", quoted_line(&seen.line.text, seen.needle));
        self.fact(
            EvidenceSource::AppLog,
            format!(
                "a line of {} in the app's log, read at {}: {quoted}",
                seen.writer,
                clock(seen.line.at)
            ),
        );
        quoted
    }
}

/// What the app's evidence step reads besides the evidence: the same in [`derive`] and in
/// [`amend`].
struct AppContext {
    diagnosis: Diagnosis,
    /// The failure's time.
    at: SystemTime,
    /// How long the request had been in flight when it broke.
    age: Option<Duration>,
    /// When the current failure streak began, from the server's history.
    failing_since: Option<SystemTime>,
}

/// The most of a log line a hint quotes.
const QUOTED_LINE: usize = 160;

/// A log line as a hint and its evidence quote it: printable ASCII (anything else a `?`), at
/// most [`QUOTED_LINE`] bytes, and of a longer line the part that holds `needle`, the words
/// that made it known (php-fpm's lines start with a long script path). The whole line is in
/// the report's `app_log`.
fn quoted_line(text: &str, needle: &str) -> String {
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.len() <= QUOTED_LINE {
        return ascii;
    }
    // ASCII only now: byte offsets are character boundaries.
    let needle_end = ascii.find(needle).map_or(0, |at| at + needle.len());
    let end = (needle_end + 40).clamp(QUOTED_LINE, ascii.len());
    let start = end - QUOTED_LINE;
    let mut out = String::with_capacity(QUOTED_LINE + 6);
    if start > 0 {
        out.push_str("...");
    }
    out.push_str(&ascii[start..end]);
    if end < ascii.len() {
        out.push_str("...");
    }
    out
}

/// Whether the diagnosis says the address accepts no connections.
fn not_accepting(diagnosis: Diagnosis) -> bool {
    matches!(
        diagnosis,
        Diagnosis::ConnectRefused
            | Diagnosis::ConnectUnreachable
            | Diagnosis::ConnectFailed
            | Diagnosis::ConnectTimeout
            | Diagnosis::SocketMissing
            | Diagnosis::SocketRefused
    )
}

/// The values and evidence gathered while deciding, then the hint filled from them.
struct Explanation<'a, 'o> {
    o: &'a Observed<'o>,
    notes: Notes,
}

impl<'a, 'o> Explanation<'a, 'o> {
    fn new(o: &'a Observed<'o>) -> Self {
        let mut e = Explanation {
            o,
            notes: Notes {
                filled: Vec::with_capacity(12),
                evidence: Vec::with_capacity(4),
            },
        };
        let address = e.address();
        e.value("address", address);
        e.value("id", o.id.to_owned());
        e.value("time", clock(o.now));
        e
    }

    fn value(&mut self, name: &'static str, value: String) {
        self.notes.value(name, value);
    }

    fn fact(&mut self, source: EvidenceSource, fact: String) {
        self.notes.fact(source, fact);
    }

    fn past(&self) -> Option<&'o ServerPast> {
        self.o.past
    }

    fn ago(&self, at: SystemTime) -> String {
        human(self.o.now.duration_since(at).unwrap_or_default())
    }

    fn finish(self, cause: Cause) -> CauseFinding {
        self.notes.finish(cause, self.o.diagnosis)
    }

    /// A machine out of memory, disk or CPU at the failure explains it better than the app
    /// alone: its app died (the OOM killer), failed (a full disk) or was slow (a starved CPU).
    /// A cause that names something else (a wrong port or protocol, a moved address, a deploy)
    /// stands.
    fn host_explains(&mut self, cause: Cause) -> Cause {
        let Some(host) = self.o.machine else {
            return cause;
        };
        let t = self.o.thresholds;
        let died = matches!(
            cause,
            Cause::AppDown
                | Cause::AppCrashed
                | Cause::CrashLoop
                | Cause::WorkerKilled
                | Cause::Unknown
        );
        let failed = died || matches!(cause, Cause::AppError);
        let slow = matches!(
            cause,
            Cause::Overloaded | Cause::SlowRequest | Cause::Unknown | Cause::WorkerTimeout
        ) && timeout(self.o.diagnosis);
        if let (Some(available), Some(total)) = (host.mem_available_bytes, host.mem_total_bytes) {
            let low = total > 0
                && available.saturating_mul(100)
                    < total.saturating_mul(u64::from(t.host_memory_available_percent));
            if died && low {
                self.value("mem_available", bytes(available));
                self.value("mem_total", bytes(total));
                self.fact(
                    EvidenceSource::Machine,
                    format!("{} of {} memory available", bytes(available), bytes(total)),
                );
                return Cause::HostOutOfMemory;
            }
        }
        if failed {
            let full = host.disks.iter().find(|(_, free, total)| {
                *total > 0
                    && free.saturating_mul(100)
                        < total.saturating_mul(u64::from(t.host_disk_free_percent))
            });
            if let Some((path, free, total)) = full {
                self.value("disk", path.clone());
                self.value("disk_free", bytes(*free));
                self.value("disk_total", bytes(*total));
                self.fact(
                    EvidenceSource::Machine,
                    format!("{path}: {} of {} free", bytes(*free), bytes(*total)),
                );
                return Cause::HostDiskFull;
            }
        }
        if let Some(busy) = host.cpu_busy_percent {
            let saturated =
                t.host_cpu_busy_percent > 0 && busy >= f64::from(t.host_cpu_busy_percent);
            if slow && saturated {
                self.value("cpu_busy", format!("{busy:.0} %"));
                self.fact(EvidenceSource::Machine, format!("CPU {busy:.0} % busy"));
                return Cause::HostCpuSaturated;
            }
        }
        cause
    }

    /// Refused, unreachable or timed out at connect: a deploy, a crash loop, a moved address,
    /// an app that never answered or one that stopped.
    fn not_accepting(&mut self) -> Cause {
        let o = self.o;
        let what = match o.diagnosis {
            Diagnosis::ConnectRefused | Diagnosis::SocketRefused => "refused the connection",
            Diagnosis::SocketMissing => "has no socket file",
            Diagnosis::ConnectUnreachable => "was unreachable",
            Diagnosis::ConnectTimeout => "did not accept the connection in time",
            _ => "could not be connected to",
        };
        let address = self.address();
        self.fact(
            EvidenceSource::Attempt,
            [address.as_str(), " ", what].concat(),
        );
        let Some(past) = self.past() else {
            return Cause::Unknown;
        };
        if o.diagnosis == Diagnosis::ConnectTimeout
            && past.in_flight >= o.thresholds.overload_in_flight
        {
            return self.overloaded(past);
        }
        if let Some(cause) = self.deploy_broke_it(past) {
            return cause;
        }
        if past.comebacks >= o.thresholds.crash_loop_comebacks {
            self.value("comebacks", past.comebacks.to_string());
            self.value("window", human(past.comeback_window));
            self.fact(
                EvidenceSource::History,
                format!(
                    "came back and failed again {} times in the last {}",
                    past.comebacks,
                    human(past.comeback_window)
                ),
            );
            return Cause::CrashLoop;
        }
        if let Some(cause) = self.address_moved(past) {
            return cause;
        }
        match past.last_success {
            None => {
                let started = past
                    .first_seen
                    .map_or_else(|| "0 s".to_owned(), |t| self.ago(t));
                self.value("started_ago", started.clone());
                self.fact(
                    EvidenceSource::History,
                    [
                        "no answer from ",
                        &address,
                        " in the ",
                        &started,
                        " triage has known it",
                    ]
                    .concat(),
                );
                Cause::NeverAnswered
            }
            Some((at, status)) => {
                // Joined without the formatter: a refusal storm derives this for every
                // request that is not held off.
                let status = decimal(u64::from(status));
                let answered = clock(at);
                let ago = self.ago(at);
                let since = clock(past.failing_since.unwrap_or(o.now));
                let failures = past.failures.max(1);
                self.fact(
                    EvidenceSource::History,
                    [
                        "last answered ",
                        &status,
                        " at ",
                        &answered,
                        " (",
                        &ago,
                        " ago)",
                    ]
                    .concat(),
                );
                self.fact(
                    EvidenceSource::History,
                    [&times(failures, "failure"), " in a row since ", &since].concat(),
                );
                self.value("last_status", status);
                self.value("last_success", answered);
                self.value("last_success_ago", ago);
                self.value("failing_since", since);
                self.value("failures", times(failures, "time"));
                Cause::AppDown
            }
        }
    }

    /// A deploy marker within the window before the failures began (a streak: nothing has
    /// answered since they began).
    fn deploy_broke_it(&mut self, past: &ServerPast) -> Option<Cause> {
        let o = self.o;
        let deploy = o.deploy?;
        let since = past.failing_since.unwrap_or(o.now);
        let gap = since.duration_since(deploy.time).ok()?;
        if gap > o.thresholds.deploy_window {
            return None;
        }
        self.value("failing_since", clock(since));
        self.value("deploy_gap", human(gap));
        self.notes.value_public(
            "deployed",
            format!("the deploy of {} at {}", deploy.version, clock(deploy.time)),
            format!("the deploy of a new release at {}", clock(deploy.time)),
        );
        self.fact(
            EvidenceSource::Deploy,
            format!(
                "{} deployed at {} ({} ago)",
                deploy.version,
                clock(deploy.time),
                self.ago(deploy.time)
            ),
        );
        self.fact(
            EvidenceSource::History,
            format!(
                "failing since {} with no answer since the deploy",
                clock(since)
            ),
        );
        Some(Cause::BrokenDeploy)
    }

    /// A unix socket's listen queue was full: the app is busy, not gone.
    fn backlog_full(&mut self) -> Cause {
        let address = self.address();
        self.fact(
            EvidenceSource::Attempt,
            format!("the listen queue of {address} was full"),
        );
        match self.past() {
            Some(past) => self.overloaded(past),
            None => Cause::Unknown,
        }
    }

    /// The hostname's address changed recently.
    fn address_moved(&mut self, past: &ServerPast) -> Option<Cause> {
        let o = self.o;
        let (at, old, new) = past.address_change.as_ref()?;
        if o.now.duration_since(*at).unwrap_or_default() > o.thresholds.address_window {
            return None;
        }
        let list = |ips: &[IpAddr]| {
            ips.iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.value("host", o.host.unwrap_or("the hostname").to_owned());
        self.value("old", list(old));
        self.value("new", list(new));
        self.value("changed_ago", self.ago(*at));
        self.fact(
            EvidenceSource::Dns,
            format!(
                "{} resolved to {} until {}, to {} since",
                o.host.unwrap_or("the hostname"),
                list(old),
                clock(*at),
                list(new)
            ),
        );
        Some(Cause::AddressChanged)
    }

    /// The connection broke before any answer.
    fn broken_before_answer(&mut self) -> Cause {
        let o = self.o;
        match o.probe {
            Probe::SpeaksTls if !o.upstream_tls => return self.wrong_protocol("TLS", "probe"),
            Probe::SpeaksFastcgi if o.fastcgi.is_none() => {
                return self.wrong_protocol("FastCGI", "probe")
            }
            Probe::NotRun
            | Probe::Refused
            | Probe::Accepted
            | Probe::SpeaksTls
            | Probe::SpeaksFastcgi
            | Probe::FastcgiBusy { .. } => {}
        }
        let age = o.age.unwrap_or_default();
        self.value("age", human(age));
        // How long ago the reused connection was opened (its age bounds the app's keep-alive).
        let opened = o.connection_age.filter(|_| o.reused).map(human);
        self.fact(
            EvidenceSource::Attempt,
            format!(
                "the connection broke {} after the request was sent, on a {} connection",
                human(age),
                match (o.reused, &opened) {
                    (true, Some(opened)) => format!("reused (opened {opened} ago)"),
                    (true, None) => "reused".to_owned(),
                    (false, _) => "new".to_owned(),
                }
            ),
        );
        if o.probe == Probe::Refused {
            self.fact(
                EvidenceSource::Probe,
                "a connect right after was refused: nothing listens any more".to_owned(),
            );
            return Cause::AppCrashed;
        }
        // Only a pooled connection can have been closed by the app before the request reached
        // it, and only a failure at once can be that race; a new connection had the request.
        if o.reused && age < o.thresholds.stale_race {
            self.value("pool_idle", human(o.thresholds.pool_idle));
            let (connection, app_timeout) = match opened {
                Some(opened) => (
                    format!("opened {opened} ago"),
                    format!("at most {opened}, the connection's age"),
                ),
                None => ("of unknown age".to_owned(), "unknown".to_owned()),
            };
            self.value("connection", connection);
            self.value("app_timeout", app_timeout);
            return Cause::StaleKeepalive;
        }
        if o.probe == Probe::Accepted {
            self.fact(
                EvidenceSource::Probe,
                "a connect right after was accepted: the app still listens".to_owned(),
            );
        }
        self.worker_died(age)
    }

    /// One worker died with the request: a timeout when earlier ones died at the same age.
    fn worker_died(&mut self, age: Duration) -> Cause {
        if self.timed_out_like_others(age) {
            return Cause::WorkerTimeout;
        }
        Cause::WorkerKilled
    }

    /// Whether at least two other recent failures at this server came at the same request
    /// age, of a second or more: a timeout kills them, not chance. (A worker that dies at once
    /// on some path is a crash, however often.)
    fn timed_out_like_others(&mut self, age: Duration) -> bool {
        if age < Duration::from_secs(1) {
            return false;
        }
        let similar = self.past().map_or(0, |past| {
            past.broken_ages
                .iter()
                .filter(|a| same_age(**a, age))
                .count()
        });
        if similar < 2 {
            return false;
        }
        self.value("age", human(age));
        self.value("failed", format!("{} requests failed", similar + 1));
        self.value(
            "why",
            format!("{similar} others failed at about the same age recently"),
        );
        self.fact(
            EvidenceSource::History,
            format!(
                "{} other requests failed at about {} recently",
                similar,
                human(age)
            ),
        );
        true
    }

    /// The body was cut after the status went out.
    fn broken_in_body(&mut self) -> Cause {
        let o = self.o;
        let age = o.age.unwrap_or_default();
        self.value("age", human(age));
        self.fact(
            EvidenceSource::Attempt,
            format!(
                "the response was cut {} after the request was sent",
                human(age)
            ),
        );
        match o.probe {
            Probe::Refused => {
                self.fact(
                    EvidenceSource::Probe,
                    "a connect right after was refused: nothing listens any more".to_owned(),
                );
                Cause::AppCrashed
            }
            Probe::Accepted => {
                self.fact(
                    EvidenceSource::Probe,
                    "a connect right after was accepted: the app still listens".to_owned(),
                );
                self.worker_died(age)
            }
            Probe::NotRun | Probe::SpeaksTls | Probe::SpeaksFastcgi | Probe::FastcgiBusy { .. } => {
                Cause::Unknown
            }
        }
    }

    /// A timeout: overload when the server is busy or slowing down, else this request.
    fn timed_out(&mut self) -> Cause {
        let o = self.o;
        if let (Some(_), Probe::FastcgiBusy { waited }) = (o.fastcgi, &o.probe) {
            return self.pool_exhausted(format!(
                "an FCGI_GET_VALUES right after the timeout got no answer in {}",
                human(*waited)
            ));
        }
        let Some(past) = self.past() else {
            return Cause::Unknown;
        };
        let climbing = climbing(&past.recent_response_times);
        if past.in_flight >= o.thresholds.overload_in_flight || climbing {
            return self.overloaded(past);
        }
        if o.diagnosis != Diagnosis::ResponseTimeout {
            return Cause::Unknown;
        }
        let Some(usual) = median(&past.recent_response_times) else {
            return Cause::Unknown;
        };
        self.value("path", o.path.to_owned());
        self.value("timeout", human(o.read_timeout));
        self.value("usual", human(usual));
        self.value("in_flight", past.in_flight.to_string());
        self.fact(
            EvidenceSource::History,
            format!(
                "its other requests answered in {} (median of the last {}), with {} in flight",
                human(usual),
                past.recent_response_times.len(),
                past.in_flight
            ),
        );
        Cause::SlowRequest
    }

    fn overloaded(&mut self, past: &ServerPast) -> Cause {
        let times = &past.recent_response_times;
        let recent = times
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|t| human(*t))
            .collect::<Vec<_>>();
        let recent = if recent.is_empty() {
            "no time at all (none answered)".to_owned()
        } else {
            recent.join(", ")
        };
        let usual = median(times).map_or_else(|| "unknown".to_owned(), human);
        self.value("in_flight", past.in_flight.to_string());
        self.value("recent", recent.clone());
        self.value("usual", usual.clone());
        self.fact(
            EvidenceSource::History,
            format!("{} requests in flight at the server", past.in_flight),
        );
        self.fact(
            EvidenceSource::History,
            format!("its last answers took {recent}; the median of its recent answers is {usual}"),
        );
        Cause::Overloaded
    }

    /// The port speaks `protocol`, seen in the `from` evidence.
    fn wrong_protocol(&mut self, protocol: &'static str, from: &'static str) -> Cause {
        let o = self.o;
        let configured = match (o.fastcgi.is_some(), o.upstream_tls) {
            (true, _) => "FastCGI",
            (false, true) => "TLS",
            (false, false) => "plain HTTP",
        };
        let fix = match (protocol, configured) {
            ("plain HTTP", "FastCGI") => {
                "this is an HTTP server: set protocol = \"http\" on the upstream, or point it at the FastCGI server's port (php-fpm's listen)"
            }
            ("TLS", _) => "set tls = true on the upstream, or point it at the app's plain HTTP port",
            ("plain HTTP", _) => {
                "set tls = false on the upstream, or point it at the app's TLS port"
            }
            ("FastCGI", _) => {
                "this is a FastCGI server (php-fpm?): set protocol = \"fastcgi\" on the upstream"
            }
            _ => "point the upstream at the app's HTTP port",
        };
        self.value("protocol", protocol.to_owned());
        self.value("configured", configured.to_owned());
        self.value("fix", fix.to_owned());
        let source = match from {
            "probe" => EvidenceSource::Probe,
            _ => EvidenceSource::Response,
        };
        self.fact(
            source,
            format!("the server answered in {protocol} where {configured} is configured"),
        );
        Cause::WrongProtocol
    }

    /// Not HTTP: another protocol's banner or a TLS answer, when a probe or the bytes say so.
    /// At a FastCGI upstream, an answer starting `HTTP/` is an HTTP server's.
    fn invalid_response(&mut self) -> Cause {
        if self.o.fastcgi.is_some() && self.o.body_start.starts_with(b"HTTP/") {
            return self.wrong_protocol("plain HTTP", "response");
        }
        match self.o.probe {
            Probe::SpeaksTls if !self.o.upstream_tls => self.wrong_protocol("TLS", "probe"),
            Probe::SpeaksFastcgi => self.wrong_protocol("FastCGI", "probe"),
            Probe::NotRun
            | Probe::Refused
            | Probe::Accepted
            | Probe::SpeaksTls
            | Probe::FastcgiBusy { .. } => Cause::Unknown,
        }
    }

    /// No worker of the FastCGI server was free, as `evidence` shows.
    fn pool_exhausted(&mut self, evidence: String) -> Cause {
        self.fact(
            EvidenceSource::Probe,
            format!("{}: {evidence}", self.address()),
        );
        self.value("evidence", evidence);
        Cause::PoolExhausted
    }

    /// The failed address as text, or "the server". Written without the formatter, which
    /// costs more than the rest of a refused connect's cause.
    fn address(&self) -> String {
        self.o.address.as_ref().map_or_else(
            || "the server".to_owned(),
            |a| AddrText::peer(a).as_str().to_owned(),
        )
    }

    /// php-fpm has no file at SCRIPT_FILENAME: its files are not where root says, when triage
    /// saw the script on its own disk; otherwise, the script may just be missing.
    fn script_not_found(&mut self) -> Cause {
        let Some(fastcgi) = self.o.fastcgi else {
            return Cause::Unknown;
        };
        self.fact(
            EvidenceSource::Response,
            format!(
                "php-fpm answered \"Primary script unknown\" for SCRIPT_FILENAME {}",
                fastcgi.script_filename
            ),
        );
        if !fastcgi.script_on_disk {
            return Cause::Unknown;
        }
        self.fact(
            EvidenceSource::Attempt,
            format!(
                "triage found {} under root on its own disk",
                fastcgi.script_filename
            ),
        );
        self.value("script_filename", fastcgi.script_filename.to_owned());
        self.value("root", fastcgi.root.to_owned());
        Cause::WrongRoot
    }

    /// The app answered 5xx itself: its database, or the app.
    fn app_answered(&mut self) -> Cause {
        let o = self.o;
        let status = o.status.unwrap_or(500);
        self.value("status", status.to_string());
        self.fact(
            EvidenceSource::Response,
            format!("the app answered {status}"),
        );
        let stderr = o.fastcgi.map_or(&[][..], |f| f.stderr);
        if !stderr.is_empty() {
            let said = crate::fastcgi::Stderr::from_bytes(stderr).first_message(512);
            self.fact(
                EvidenceSource::Response,
                format!("php-fpm's stderr: {said}"),
            );
        }
        if let Some(found) = database_error(o.body_start).or_else(|| database_error(stderr)) {
            self.value("match", format!("\"{found}\""));
            self.fact(
                EvidenceSource::Response,
                format!("its body says \"{found}\""),
            );
            return Cause::DatabaseDown;
        }
        // The app's server answering for a worker it killed at its timeout (gunicorn's 500,
        // PHP's "Maximum execution time exceeded"), at the same age each time.
        if let Some(age) = o.age {
            if self.timed_out_like_others(age) {
                self.fact(
                    EvidenceSource::Response,
                    format!("answered after {}", human(age)),
                );
                return Cause::WorkerTimeout;
            }
        }
        Cause::AppError
    }
}

#[cfg(test)]
mod tests;
