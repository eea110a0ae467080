//! The one function that turns a diagnosis, the attempt's facts, the server's history, a deploy
//! marker and a probe into a [`CauseFinding`].

use super::template::fill;
use super::{Cause, CauseFinding, Evidence, EvidenceSource};
use crate::diagnosis::{Diagnosis, Fault};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// What the server's history in this process says, as the cause reads it.
#[derive(Debug, Clone, Default)]
pub struct ServerPast {
    /// When triage first had this server in its config.
    pub first_seen: Option<SystemTime>,
    /// The last final answer: when, and its status.
    pub last_success: Option<(SystemTime, u16)>,
    /// The start of the current failure streak (failures with no answer since).
    pub failing_since: Option<SystemTime>,
    /// Failures in the current streak.
    pub failures: u32,
    /// Times the server came back (answered after failing to accept connections) within
    /// `comeback_window`.
    pub comebacks: u32,
    pub comeback_window: Duration,
    /// Requests in flight at the server when this one failed (this one included).
    pub in_flight: u32,
    /// The server's recent successful response times, oldest first.
    pub recent_response_times: Vec<Duration>,
    /// The last change of the hostname's addresses: when, from, to.
    pub address_change: Option<(SystemTime, Vec<IpAddr>, Vec<IpAddr>)>,
    /// How long each recent request that broke with no answer had been in flight (this one
    /// excluded), newest last.
    pub broken_ages: Vec<Duration>,
}

/// What a one-off look at the failed address found, after the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No probe ran (rate-limited, or nothing to decide).
    NotRun,
    /// A plain connect was refused: nothing listens any more.
    Refused,
    /// A plain connect was accepted: something still listens.
    Accepted,
    /// A TLS ClientHello got a TLS answer: the port speaks TLS.
    SpeaksTls,
    /// An FCGI_GET_VALUES got a FastCGI answer: the port speaks FastCGI (and, at a FastCGI
    /// server, a worker was free to answer it).
    SpeaksFastcgi,
    /// A connect was accepted, but an FCGI_GET_VALUES got no answer in `waited`: no worker of
    /// the FastCGI server was free to read it.
    FastcgiBusy { waited: Duration },
}

/// A deploy marker, as the cause reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployMark {
    pub version: String,
    pub time: SystemTime,
}

/// The thresholds the cause uses (`[causes]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A failure of a reused connection sooner than this after sending is the stale keep-alive
    /// race; later, the app had the request.
    pub stale_race: Duration,
    /// Failures within this long after a deploy marker are the deploy's.
    pub deploy_window: Duration,
    /// An address change this recent may explain a failure.
    pub address_window: Duration,
    /// Comebacks within the window that make a crash loop.
    pub crash_loop_comebacks: u32,
    /// Requests in flight at one server from which a timeout is overload.
    pub overload_in_flight: u32,
    /// How long triage keeps an idle pooled connection.
    pub pool_idle: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            stale_race: Duration::from_millis(250),
            deploy_window: Duration::from_secs(600),
            address_window: Duration::from_secs(600),
            crash_loop_comebacks: 2,
            overload_in_flight: 64,
            pool_idle: Duration::from_secs(60),
        }
    }
}

/// Everything [`derive`] reads about one failure.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub diagnosis: Diagnosis,
    /// The request's id, for hints that point at the app's log.
    pub id: &'a str,
    /// The address that failed.
    pub address: Option<SocketAddr>,
    /// The upstream's hostname, when it is configured by name.
    pub host: Option<&'a str>,
    pub upstream_tls: bool,
    /// Whether the failed attempt reused a pooled connection.
    pub reused: bool,
    /// How long the request had been in flight at the server when it broke.
    pub age: Option<Duration>,
    pub path: &'a str,
    /// The read timeout that expired, for a response timeout.
    pub read_timeout: Duration,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    /// The first bytes of the app's body, when it answered with an error.
    pub body_start: &'a [u8],
    pub past: Option<&'a ServerPast>,
    pub deploy: Option<&'a DeployMark>,
    pub probe: Probe,
    pub now: SystemTime,
    pub thresholds: Thresholds,
    /// What a FastCGI upstream's attempt adds; `None` for an HTTP upstream.
    pub fastcgi: Option<FastcgiObserved<'a>>,
}

/// The facts of an attempt at a FastCGI server.
#[derive(Debug, Clone, Copy)]
pub struct FastcgiObserved<'a> {
    /// The upstream's `root`, as sent to the server.
    pub root: &'a str,
    /// The `SCRIPT_FILENAME` sent.
    pub script_filename: &'a str,
    /// Whether triage found the script under root on its own disk (the front controller).
    pub script_on_disk: bool,
    /// The start of what the server wrote to stderr.
    pub stderr: &'a [u8],
}

/// The cause of one failure: one exhaustive decision on the diagnosis, then the evidence.
pub fn derive(o: &Observed<'_>) -> CauseFinding {
    let mut e = Explanation::new(o);
    let cause = match o.diagnosis {
        Diagnosis::ConnectRefused
        | Diagnosis::ConnectUnreachable
        | Diagnosis::ConnectFailed
        | Diagnosis::ConnectTimeout => e.not_accepting(),
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
        Diagnosis::DnsError
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
        | Diagnosis::BadRequest => Cause::ClientError,
    };
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
    }
}

/// The values and evidence gathered while deciding, then the hint filled from them.
struct Explanation<'a, 'o> {
    o: &'a Observed<'o>,
    values: Vec<(&'static str, String)>,
    evidence: Vec<Evidence>,
}

impl<'a, 'o> Explanation<'a, 'o> {
    fn new(o: &'a Observed<'o>) -> Self {
        let mut e = Explanation {
            o,
            values: Vec::with_capacity(12),
            evidence: Vec::with_capacity(4),
        };
        e.value(
            "address",
            o.address
                .map_or_else(|| "the server".to_owned(), |a| a.to_string()),
        );
        e.value("id", o.id.to_owned());
        e.value("time", clock(o.now));
        e
    }

    fn value(&mut self, name: &'static str, value: String) {
        self.values.push((name, value));
    }

    fn fact(&mut self, source: EvidenceSource, fact: String) {
        self.evidence.push(Evidence { source, fact });
    }

    fn past(&self) -> Option<&'o ServerPast> {
        self.o.past
    }

    fn ago(&self, at: SystemTime) -> String {
        human(self.o.now.duration_since(at).unwrap_or_default())
    }

    fn finish(mut self, cause: Cause) -> CauseFinding {
        if matches!(cause, Cause::Unknown | Cause::ClientError) {
            self.value("diagnosis_hint", self.o.diagnosis.hint().to_owned());
        }
        let values: Vec<(&str, &str)> = self.values.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let public: Vec<(&str, &str)> = values
            .iter()
            .map(|&(name, value)| (name, public_value(name).unwrap_or(value)))
            .collect();
        CauseFinding {
            cause,
            hint: fill(cause.hint_template(), &values),
            public_hint: fill(cause.hint_template(), &public),
            evidence: self.evidence,
        }
    }

    /// Refused, unreachable or timed out at connect: a deploy, a crash loop, a moved address,
    /// an app that never answered or one that stopped.
    fn not_accepting(&mut self) -> Cause {
        let o = self.o;
        let what = match o.diagnosis {
            Diagnosis::ConnectRefused => "refused the connection",
            Diagnosis::ConnectUnreachable => "was unreachable",
            Diagnosis::ConnectTimeout => "did not accept the connection in time",
            _ => "could not be connected to",
        };
        let address = o
            .address
            .map_or_else(|| "the server".to_owned(), |a| a.to_string());
        self.fact(EvidenceSource::Attempt, format!("{address} {what}"));
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
                    format!("no answer from {address} in the {started} triage has known it"),
                );
                Cause::NeverAnswered
            }
            Some((at, status)) => {
                self.value("last_status", status.to_string());
                self.value("last_success", clock(at));
                self.value("last_success_ago", self.ago(at));
                let since = past.failing_since.unwrap_or(o.now);
                self.value("failing_since", clock(since));
                self.value("failures", past.failures.max(1).to_string());
                self.fact(
                    EvidenceSource::History,
                    format!(
                        "last answered {status} at {} ({} ago)",
                        clock(at),
                        self.ago(at)
                    ),
                );
                self.fact(
                    EvidenceSource::History,
                    format!(
                        "{} failures in a row since {}",
                        past.failures.max(1),
                        clock(since)
                    ),
                );
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
        self.value("version", deploy.version.clone());
        self.value("deploy_time", clock(deploy.time));
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
        self.fact(
            EvidenceSource::Attempt,
            format!(
                "the connection broke {} after the request was sent, on a {} connection",
                human(age),
                if o.reused { "reused" } else { "new" }
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
        let similar = self.past().map_or(0, |past| {
            past.broken_ages
                .iter()
                .filter(|a| same_age(**a, age))
                .count()
        });
        if similar >= 2 {
            self.value("count", (similar + 1).to_string());
            self.fact(
                EvidenceSource::History,
                format!(
                    "{} other requests broke at about {} recently",
                    similar,
                    human(age)
                ),
            );
            return Cause::WorkerTimeout;
        }
        Cause::WorkerKilled
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

    fn address(&self) -> String {
        self.o
            .address
            .map_or_else(|| "the server".to_owned(), |a| a.to_string())
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
        Cause::AppError
    }
}

/// What a client the `[diagnosis]` policy does not trust reads instead of a value that tells
/// about the inside: addresses, names, versions and the app's own text.
fn public_value(name: &str) -> Option<&'static str> {
    Some(match name {
        "address" => "the server",
        "host" => "the upstream's hostname",
        "old" | "new" => "another address",
        "version" => "a new release",
        "match" => "a database connection error",
        "script_filename" => "the script's file",
        "root" => "the root in the config",
        _ => return None,
    })
}

/// The database-connection errors that frameworks and drivers print, as they print them.
const DATABASE_ERRORS: &[&str] = &[
    // libpq (PostgreSQL), psycopg, Rails' PG adapter.
    "could not connect to server",
    "connection to server at",
    "Connection refused\n\tIs the server running",
    "the database system is starting up",
    "the database system is shutting down",
    // MySQL / MariaDB through PDO, mysqli, mysqlclient.
    "SQLSTATE[HY000] [2002]",
    "SQLSTATE[HY000] [1045]",
    "SQLSTATE[08006]",
    "Can't connect to MySQL server",
    "Can't connect to local MySQL server",
    "Too many connections",
    // Python frameworks.
    "OperationalError",
    // Redis and MongoDB clients.
    "Error connecting to Redis",
    "MongoNetworkError",
    "MongoServerSelectionError",
    // Node drivers print the errno with the port.
    "ECONNREFUSED",
];

/// The first well-known database-connection error in `body`, as its text. `ECONNREFUSED` counts
/// only with a database's port after it.
fn database_error(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    for needle in DATABASE_ERRORS {
        let Some(at) = text.find(needle) else {
            continue;
        };
        if *needle == "ECONNREFUSED" {
            let rest = &text[at..text.len().min(at + 64)];
            let db_port = [":5432", ":3306", ":6379", ":27017"]
                .iter()
                .any(|port| rest.contains(port));
            if !db_port {
                continue;
            }
            return Some(sanitized(
                rest.split(['\n', '"', '<']).next().unwrap_or(needle),
            ));
        }
        return Some((*needle).replace(['\n', '\t'], " "));
    }
    None
}

/// Printable ASCII only, at most 80 bytes: the app's text goes into a header.
fn sanitized(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(80)
        .collect()
}

/// Two ages within a tenth (and 50 ms) of each other: the same timeout.
fn same_age(a: Duration, b: Duration) -> bool {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    hi - lo <= (hi / 10).max(Duration::from_millis(50))
}

/// The median, when there is anything.
fn median(times: &[Duration]) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    Some(sorted[sorted.len() / 2])
}

/// Whether the last few response times are well above the median of the rest: at least three
/// times it, and by more than 100 ms.
fn climbing(times: &[Duration]) -> bool {
    if times.len() < 8 {
        return false;
    }
    let (older, last) = times.split_at(times.len() - 3);
    let (Some(usual), Some(now)) = (median(older), median(last)) else {
        return false;
    };
    now > usual * 3 && now - usual > Duration::from_millis(100)
}

/// `HH:MM:SS` UTC.
fn clock(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A duration as people say it: `311 ms`, `2.9 s`, `38 s`, `4 min`, `2 h`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let mut out = String::new();
    let _ = match ms {
        0..=999 => write!(out, "{ms} ms"),
        1_000..=9_999 => write!(out, "{:.1} s", d.as_secs_f64()),
        10_000..=119_999 => write!(out, "{} s", ms / 1000),
        120_000..=7_199_999 => write!(out, "{} min", ms / 60_000),
        _ => write!(out, "{} h", ms / 3_600_000),
    };
    out
}

#[cfg(test)]
mod tests;
