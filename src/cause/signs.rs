//! The well-known lines app servers write when they fail, as a closed table: each pattern, the
//! sign it is of, and who writes it. A line of the app's log (`[upstreams.NAME.evidence]
//! log_file`) that holds a pattern is evidence of its sign's cause, quoted as it was written.
//!
//! Patterns are plain substrings, matched case-sensitively, of the wordings the programs
//! really print (pinned by the tests below, one per wording): a substring survives the
//! timestamps, pids and levels each server puts around it, and costs one scan per line.

use super::facts::LogLine;

/// What a well-known line says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// The app, or one of its workers, ran out of memory (or was killed as if it had).
    OutOfMemory,
    /// The app server killed a worker at its own timeout.
    WorkerTimeout,
    /// The app server had no free worker for a request.
    PoolExhausted,
    /// The app failed as it started: an import or boot error.
    StartupError,
}

/// One well-known line: the substring that identifies it, its sign, and who writes it.
struct Pattern {
    needle: &'static str,
    sign: Sign,
    writer: &'static str,
}

/// Every well-known line, in the order they are tried (the first that matches a line wins).
const PATTERNS: &[Pattern] = &[
    Pattern {
        // 21+: `Worker (pid:123) was sent SIGKILL! Perhaps out of memory?`
        needle: "was sent SIGKILL! Perhaps out of memory?",
        sign: Sign::OutOfMemory,
        writer: "gunicorn 21+",
    },
    Pattern {
        // 20.1 (Debian 12): `Worker with pid 123 was terminated due to signal 9`. A worker
        // only gets SIGKILL from the OOM killer or an operator's kill -9; the first is the
        // likely one, as gunicorn 21 itself says.
        needle: "was terminated due to signal 9",
        sign: Sign::OutOfMemory,
        writer: "gunicorn 20.1",
    },
    Pattern {
        // `FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory`
        needle: "JavaScript heap out of memory",
        sign: Sign::OutOfMemory,
        writer: "node",
    },
    Pattern {
        // `PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to ...)`
        needle: "Allowed memory size of",
        sign: Sign::OutOfMemory,
        writer: "PHP",
    },
    Pattern {
        // The last line of a traceback: `MemoryError`, or `MemoryError: ...`.
        needle: "MemoryError",
        sign: Sign::OutOfMemory,
        writer: "Python",
    },
    Pattern {
        // `[CRITICAL] WORKER TIMEOUT (pid:123)`
        needle: "WORKER TIMEOUT",
        sign: Sign::WorkerTimeout,
        writer: "gunicorn",
    },
    Pattern {
        // `WARNING: [pool www] child 123, script '/srv/index.php' (request: "GET /index.php")
        // execution timed out (30.012 sec), terminating`
        needle: "execution timed out",
        sign: Sign::WorkerTimeout,
        writer: "php-fpm",
    },
    Pattern {
        // `PHP Fatal error:  Maximum execution time of 30 seconds exceeded`
        needle: "Maximum execution time of",
        sign: Sign::WorkerTimeout,
        writer: "PHP",
    },
    Pattern {
        // `WARNING: [pool www] server reached pm.max_children setting (5), consider raising it`
        needle: "reached pm.max_children setting",
        sign: Sign::PoolExhausted,
        writer: "php-fpm",
    },
    Pattern {
        // Older php-fpm: `server reached max_children setting (5), consider raising it`
        needle: "reached max_children setting",
        sign: Sign::PoolExhausted,
        writer: "php-fpm",
    },
    Pattern {
        // `Reason: Worker failed to boot.` / `Worker failed to boot.`
        needle: "Worker failed to boot",
        sign: Sign::StartupError,
        writer: "gunicorn",
    },
    Pattern {
        // `ModuleNotFoundError: No module named 'settings'`
        needle: "ModuleNotFoundError:",
        sign: Sign::StartupError,
        writer: "Python",
    },
    Pattern {
        // `ImportError: cannot import name 'x' from 'y'`
        needle: "ImportError:",
        sign: Sign::StartupError,
        writer: "Python",
    },
    Pattern {
        // `Error: Cannot find module './config/production'`
        needle: "Cannot find module",
        sign: Sign::StartupError,
        writer: "node",
    },
];

/// The sign a line is of, and who writes such a line, if it is a well-known one.
pub fn sign_of(line: &str) -> Option<(Sign, &'static str)> {
    pattern_of(line).map(|p| (p.sign, p.writer))
}

fn pattern_of(line: &str) -> Option<&'static Pattern> {
    PATTERNS.iter().find(|p| line.contains(p.needle))
}

/// A well-known line found in the app's log, who writes such lines, and the words that made
/// it known (what a quote of a long line must keep).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub line: &'a LogLine,
    pub writer: &'static str,
    pub needle: &'static str,
}

/// The latest line of each sign among `lines` (oldest first).
#[derive(Debug, Default, Clone, Copy)]
pub struct Signs<'a> {
    pub out_of_memory: Option<Seen<'a>>,
    pub worker_timeout: Option<Seen<'a>>,
    pub pool_exhausted: Option<Seen<'a>>,
    pub startup_error: Option<Seen<'a>>,
}

impl<'a> Signs<'a> {
    pub fn of(lines: &'a [LogLine]) -> Signs<'a> {
        let mut signs = Signs::default();
        for line in lines {
            let Some(pattern) = pattern_of(&line.text) else {
                continue;
            };
            let slot = match pattern.sign {
                Sign::OutOfMemory => &mut signs.out_of_memory,
                Sign::WorkerTimeout => &mut signs.worker_timeout,
                Sign::PoolExhausted => &mut signs.pool_exhausted,
                Sign::StartupError => &mut signs.startup_error,
            };
            *slot = Some(Seen {
                line,
                writer: pattern.writer,
                needle: pattern.needle,
            });
        }
        signs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each real wording, as the program prints it with its own prefix, is read as its sign;
    /// lines that only look alike are not.
    #[test]
    fn real_wordings() {
        for (line, sign) in [
            (
                "[2026-12-02 13:40:00 +0000] [311] [ERROR] Worker (pid:312) was sent SIGKILL! Perhaps out of memory?",
                Sign::OutOfMemory,
            ),
            (
                "[2026-12-02 13:40:00 +0000] [311] [WARNING] Worker with pid 312 was terminated due to signal 9",
                Sign::OutOfMemory,
            ),
            (
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                Sign::OutOfMemory,
            ),
            (
                "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
                Sign::OutOfMemory,
            ),
            (
                "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /srv/index.php on line 3",
                Sign::OutOfMemory,
            ),
            ("MemoryError", Sign::OutOfMemory),
            ("MemoryError: Unable to allocate 8.00 GiB", Sign::OutOfMemory),
            (
                "[2026-12-02 13:40:00 +0000] [311] [CRITICAL] WORKER TIMEOUT (pid:312)",
                Sign::WorkerTimeout,
            ),
            (
                "[02-Dec-2026 13:40:00] WARNING: [pool www] child 312, script '/srv/index.php' (request: \"GET /index.php\") execution timed out (30.012 sec), terminating",
                Sign::WorkerTimeout,
            ),
            (
                "PHP Fatal error:  Maximum execution time of 30 seconds exceeded in /srv/index.php on line 4",
                Sign::WorkerTimeout,
            ),
            (
                "[02-Dec-2026 13:40:00] WARNING: [pool www] server reached pm.max_children setting (5), consider raising it",
                Sign::PoolExhausted,
            ),
            (
                "[02-Dec-2026 13:40:00] WARNING: [pool www] server reached max_children setting (5), consider raising it",
                Sign::PoolExhausted,
            ),
            (
                "[2026-12-02 13:40:00 +0000] [311] [INFO] Reason: Worker failed to boot.",
                Sign::StartupError,
            ),
            (
                "ModuleNotFoundError: No module named 'settings'",
                Sign::StartupError,
            ),
            (
                "ImportError: cannot import name 'app' from 'wsgi'",
                Sign::StartupError,
            ),
            (
                "Error: Cannot find module './config/production'",
                Sign::StartupError,
            ),
        ] {
            assert_eq!(sign_of(line).map(|(s, _)| s), Some(sign), "{line}");
        }
        for line in [
            "[2026-12-02 13:40:00 +0000] [311] [INFO] Booting worker with pid: 312",
            "GET /memory 200",
            "[2026-12-02 13:40:00 +0000] [311] [WARNING] Worker (pid:312) was sent SIGTERM!",
            "worker timeout set to 30",
        ] {
            assert_eq!(sign_of(line), None, "{line}");
        }
    }

    /// Every pattern is reachable: no earlier one swallows it.
    #[test]
    fn every_pattern_matches_itself_first() {
        for p in PATTERNS {
            assert_eq!(
                sign_of(p.needle).map(|(s, _)| s),
                Some(p.sign),
                "{} ({})",
                p.needle,
                p.writer
            );
        }
    }

    /// The latest line of each sign is the one kept.
    #[test]
    fn latest_of_each_sign() {
        let t = std::time::SystemTime::UNIX_EPOCH;
        let line = |s: u64, text: &str| LogLine {
            at: t + std::time::Duration::from_secs(s),
            text: text.into(),
        };
        let lines = [
            line(1, "WORKER TIMEOUT (pid:1)"),
            line(2, "hello"),
            line(3, "WORKER TIMEOUT (pid:2)"),
            line(4, "MemoryError"),
        ];
        let signs = Signs::of(&lines);
        assert_eq!(
            signs.worker_timeout.map(|s| &*s.line.text),
            Some("WORKER TIMEOUT (pid:2)")
        );
        assert_eq!(
            signs.out_of_memory.map(|s| &*s.line.text),
            Some("MemoryError")
        );
        assert!(signs.pool_exhausted.is_none() && signs.startup_error.is_none());
    }
}
