//! The cause: why a failure happened, from the evidence triage holds, beyond what failed.
//!
//! A [`Diagnosis`](crate::diagnosis::Diagnosis) names the symptom (`connect_refused`); a
//! [`Cause`] names the likely reason (`app_down`: the address answered until a moment ago and
//! refuses since), derived in one place ([`derive`]) from the diagnosis, the failed attempt's
//! facts, the server's history, a deploy marker and, where they decide, one-off probes. Each
//! cause comes with its hint, a sentence filled from the evidence with its numbers and times
//! (the template is the table's), and the evidence itself, each fact with where it came from.
//! Nothing a hint says may contradict the facts beside it: a cause is only chosen when its
//! evidence is there.

mod derive;
mod facts;
mod reading;
pub mod signs;
mod template;

pub use derive::{amend, derive, without_evidence};
pub use facts::{
    AppObserved, DeployMark, FastcgiObserved, HostState, LogLine, Observed, OomKill, Probe,
    ServerPast, Thresholds,
};

use crate::diagnosis::taxonomy::taxonomy;

/// A cause's row of the table: when it is chosen, and the hint's template.
#[derive(Debug, Clone, Copy)]
struct CauseRow {
    /// When this cause is chosen, in one line (the README's "when" column).
    when: &'static str,
    /// The hint, with `{name}` where the evidence fills in a value.
    hint: &'static str,
}

taxonomy! {
    /// The likely reason of a failure. The token is sent in `X-Diagnosis-Cause`, logged as
    /// `cause=` and used as a metric label: never renamed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Cause {
        unknown: UnknownCause,
        row: CauseRow,
        NeverAnswered => "never_answered" {
            when: "refused, unreachable or a connect timeout at an address that has not answered once since triage started",
            hint: "{address} has not answered once since triage started {started_ago} ago: nothing listens there; the port or host in the config is wrong, or the app was never started; check that the app listens on {address}",
        },
        AppDown => "app_down" {
            when: "refused (or unreachable, or a connect timeout) after the address had answered",
            hint: "{address} answered {last_status} until {last_success} ({last_success_ago} ago) and has failed to accept connections since {failing_since} ({failures}): the app stopped or crashed and is not back; read the end of its log, then restart it",
        },
        CrashLoop => "crash_loop" {
            when: "the address went down and came back several times within the crash-loop window",
            hint: "{address} came back and died {comebacks} times in the last {window}: a crash loop, kept alive by its supervisor; read the app's startup log: the first error before each exit is the cause",
        },
        BrokenDeploy => "broken_deploy" {
            when: "failures that began within the deploy window after a deploy marker for the upstream, with nothing answering successfully since; or a startup error in the app's log (an import error, gunicorn's Worker failed to boot) while it accepts no connections",
            hint: "failing since {failing_since}, {deploy_gap} after {deployed}, and nothing has answered since: the new release is broken; roll back first, diagnose second",
        },
        AppCrashed => "app_crashed" {
            when: "the connection broke mid-request and the app's whole process is gone: the next connect is refused",
            hint: "the connection broke {age} into the request and {address} has refused connections since: the app's whole process died (a crash, or the OOM killer: look for \"Out of memory\" in the kernel log); read the end of its log",
        },
        WorkerKilled => "worker_killed" {
            when: "the connection broke with no response after the request had been in flight longer than a stale keep-alive race explains, while the app still accepts connections",
            hint: "the connection broke {age} into the request while {address} still accepts connections: one worker died, not the app (the OOM killer, the app server's own timeout, a crash); look in the app's log for the worker's exit at {time}",
        },
        WorkerTimeout => "worker_timeout" {
            when: "as worker_killed, or the app's 5xx, three times or more at the same request age of a second or more, or with the app server's timeout line in its log (gunicorn's WORKER TIMEOUT, php-fpm's execution timed out): the app server's own timeout",
            hint: "{failed} at about {age} into the request while {address} still accepts connections ({why}): a worker timeout of about {age} kills them (gunicorn --timeout, PHP max_execution_time, php-fpm request_terminate_timeout); make these requests faster or raise that timeout",
        },
        OutOfMemory => "out_of_memory" {
            when: "the app or one of its workers died, or its answer failed, with an out-of-memory line in its log (gunicorn's SIGKILL, node's heap limit, PHP's memory size exhausted, Python's MemoryError) or an OOM kill in its cgroup",
            hint: "{address} failed because the app ran out of memory: {oom}; find what allocates so much (a leak, a large query or upload), or give the app more memory (or fewer workers)",
        },
        StaleKeepalive => "stale_keepalive" {
            when: "a reused pooled connection that the app had already closed, failing at once",
            hint: "a pooled connection ({connection}) was closed by the app just as triage reused it: the app's keep-alive timeout ({app_timeout}) is shorter than the {pool_idle} triage keeps idle connections; raise it above {pool_idle} (gunicorn --keep-alive, node's server.keepAliveTimeout, nginx's keepalive_timeout)",
        },
        Overloaded => "overloaded" {
            when: "a timeout while the server has many requests in flight or its response times have been climbing",
            hint: "{address} had {in_flight} requests in flight and its recent answers took {recent} (usually {usual}): it is overloaded; add capacity, or find what slows it down",
        },
        PoolExhausted => "pool_exhausted" {
            when: "a FastCGI server with no free worker: a timeout while a probe right after got no FastCGI answer, FCGI_OVERLOADED, or php-fpm's pm.max_children line in its log",
            hint: "every worker of {address} was busy: {evidence}; requests queue for a free worker until they time out; raise pm.max_children, or find the slow requests holding the workers (php-fpm's slowlog)",
        },
        SlowRequest => "slow_request" {
            when: "a response timeout at a server that is not overloaded: few requests in flight, its other answers in normal time",
            hint: "{path} got no answer within {timeout}, while {address} answers other requests in {usual} with {in_flight} in flight: this request itself is slow (a slow query, a long job); look at what {path} does",
        },
        WrongProtocol => "wrong_protocol" {
            when: "the port speaks another protocol than the one configured (TLS, plain HTTP, FastCGI, or another banner)",
            hint: "{address} speaks {protocol}, not {configured}: {fix}",
        },
        WrongRoot => "wrong_root" {
            when: "php-fpm found no script at the SCRIPT_FILENAME triage sent (Primary script unknown)",
            hint: "{address} has no file {script_filename}: root = {root} is not the document root as php-fpm sees it (another container, chroot or host?), or the script is not deployed there; set root to php-fpm's path of the app's public directory",
        },
        AddressChanged => "address_changed" {
            when: "a hostname whose address changed recently, with the old or new address failing",
            hint: "{host} changed from {old} to {new} {changed_ago} ago and {address} fails: check the DNS record, and that the app moved with it",
        },
        HostOutOfMemory => "host_out_of_memory" {
            when: "the app's process died, was killed or stopped answering while the machine's available memory was below host_memory_available_percent",
            hint: "{address} failed while the machine had {mem_available} of {mem_total} memory available: the kernel's OOM killer most likely killed the app (look for \"Out of memory: Killed process\" in dmesg or journalctl -k); give it more memory or find what uses it",
        },
        HostDiskFull => "host_disk_full" {
            when: "a failure of the app while a sampled disk had less than host_disk_free_percent free",
            hint: "{disk} has {disk_free} of {disk_total} free: a full disk fails writes to logs, sessions, uploads and databases; free space there first",
        },
        HostCpuSaturated => "host_cpu_saturated" {
            when: "a timeout while the machine's CPU was at least host_cpu_busy_percent busy",
            hint: "the machine's CPU was {cpu_busy} busy when {address} timed out: the app is starved of CPU, by itself or by another process; find what uses it (top) before blaming the app",
        },
        AppError => "app_error" {
            when: "the app's own 5xx",
            hint: "the app itself answered {status}: the failure is in the app, not between triage and the app; read the app's log for request {id}",
        },
        DatabaseDown => "database_down" {
            when: "the app's 5xx, whose first bytes carry a well-known database connection error",
            hint: "the app answered {status} because it cannot reach its database ({match}): check the database server first, then the app's connection settings",
        },
        ClientError => "client_error" {
            when: "the client's request or the client itself: nothing went wrong upstream",
            hint: "{diagnosis_hint}",
        },
        Unknown => "unknown" {
            when: "the evidence decides nothing beyond the diagnosis",
            hint: "{diagnosis_hint}",
        },
    }
}

impl Cause {
    /// When this cause is chosen.
    pub const fn when(self) -> &'static str {
        self.row().when
    }

    /// The hint's template.
    pub const fn hint_template(self) -> &'static str {
        self.row().hint
    }
}

taxonomy! {
    /// Where a piece of evidence came from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum EvidenceSource {
        unknown: UnknownEvidenceSource,
        /// What this request's attempts met.
        Attempt => "attempt",
        /// The server's history in this process: answers, failures, comebacks, in flight.
        History => "history",
        /// A one-off probe of the failed address after the failure.
        Probe => "probe",
        /// A deploy marker (`POST /deploys`, `triage deployed`).
        Deploy => "deploy",
        /// The app's own response.
        Response => "response",
        /// The resolver's answers for the upstream's hostname.
        Dns => "dns",
        /// The machine triage (and usually the app) runs on, sampled once a second.
        Machine => "machine",
        /// The app's own log (`[upstreams.NAME.evidence] log_file`).
        AppLog => "app_log",
        /// The app's process and cgroup (`pidfile`, `systemd_unit`, `cgroup`), sampled once a
        /// second.
        AppProcess => "app_process",
    }
}

/// One fact behind a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub source: EvidenceSource,
    pub fact: String,
}

/// The cause of one failure, with its hint and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseFinding {
    pub cause: Cause,
    /// The cause's template filled from the evidence, for trusted clients, the report and the
    /// log.
    pub hint: String,
    /// The same with addresses, names, versions and the app's text left out, for everyone
    /// else.
    pub public_hint: String,
    pub evidence: Vec<Evidence>,
    /// The values the hints were filled with, and the public value of those whose public
    /// stand-in is not fixed by name: what an amendment ([`amend`]) fills again from, when the
    /// app's log brings a line after the answer.
    filled: Vec<Filled>,
}

/// One value of a hint: its name, its value, and what untrusted clients see instead, when
/// that is not [`reading::public_value`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filled {
    name: &'static str,
    value: String,
    public: Option<String>,
}

impl CauseFinding {
    /// A finding made elsewhere than [`derive`] (a benchmark's), with nothing to amend from.
    pub fn new(
        cause: Cause,
        hint: String,
        public_hint: String,
        evidence: Vec<Evidence>,
    ) -> CauseFinding {
        CauseFinding {
            cause,
            hint,
            public_hint,
            evidence,
            filled: Vec::new(),
        }
    }

    /// A rough size in bytes, for the report ring's byte bound.
    pub fn weight(&self) -> usize {
        self.hint.len()
            + self.public_hint.len()
            + self
                .evidence
                .iter()
                .map(|e| e.fact.len() + 32)
                .sum::<usize>()
            + self
                .filled
                .iter()
                .map(|f| f.value.len() + f.public.as_ref().map_or(0, String::len) + 32)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Tokens are unique and label-safe, every template's placeholders are closed.
    #[test]
    fn tokens_and_templates_are_well_formed() {
        let mut seen = HashSet::new();
        for c in Cause::ALL {
            assert!(seen.insert(c.token()));
            assert!(c
                .token()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            let t = c.hint_template();
            assert_eq!(
                t.matches('{').count(),
                t.matches('}').count(),
                "{}",
                c.token()
            );
        }
    }

    /// The README's cause table lists every cause in order, with its "when" and its template.
    #[test]
    fn readme_table_matches_the_causes() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("## Every cause\n")
            .map(|(_, rest)| rest)
            .expect("README has an \"Every cause\" section");
        let rows: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter(|l| l.starts_with("| `"))
            .collect();
        assert_eq!(rows.len(), Cause::COUNT, "README's rows");
        for (row, cause) in rows.iter().zip(Cause::ALL) {
            let expected = format!(
                "| `{}` | {} | {} |",
                cause.token(),
                cause.when(),
                cause.hint_template().replace('|', "\\|")
            );
            assert_eq!(*row, expected);
        }
    }
}
