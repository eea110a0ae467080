//! What a FastCGI server writes to `FCGI_STDERR`, kept bounded: php-fpm sends there its own
//! refusals ("Primary script unknown", "Access to the script ... has been denied") and, with
//! `fastcgi.logging` (its default), the script's errors ("PHP message: PHP Fatal error: ...").
//! nginx logs them as "FastCGI sent in stderr"; triage keeps the first [`MAX_STDERR`] bytes of a
//! request's for its log line, its detail and its report, and counts the rest.

use crate::render::text;

/// The most bytes of a request's stderr kept.
pub const MAX_STDERR: usize = 4096;

/// What php-fpm writes when `SCRIPT_FILENAME` names no file it can open.
const SCRIPT_UNKNOWN: &[u8] = b"Primary script unknown";
/// What php-fpm writes when `security.limit_extensions` refuses the script.
const ACCESS_DENIED: &[u8] = b"has been denied (see security.limit_extensions)";
/// What php-fpm puts before each message of the script's.
const PHP_MESSAGE: &str = "PHP message: ";

/// The start of a request's stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stderr {
    kept: Vec<u8>,
    /// Bytes received beyond [`MAX_STDERR`].
    dropped: u64,
}

/// What php-fpm's own words say about a request it refused to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// "Primary script unknown": no file at `SCRIPT_FILENAME`, as php-fpm sees its files.
    ScriptUnknown,
    /// "Access to the script ... has been denied": not an extension `security.limit_extensions`
    /// allows.
    AccessDenied,
}

impl Stderr {
    /// Stderr that began with `bytes` (at most [`MAX_STDERR`] of them are kept).
    pub fn from_bytes(bytes: &[u8]) -> Stderr {
        let mut stderr = Stderr::default();
        stderr.push(bytes);
        stderr
    }

    /// Keeps what fits of `bytes`.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = MAX_STDERR - self.kept.len();
        let keep = bytes.len().min(room);
        self.kept.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The bytes kept.
    pub fn bytes(&self) -> &[u8] {
        &self.kept
    }

    /// Whether php-fpm refused to run the script, and why.
    pub fn refused(&self) -> Option<Refused> {
        let has = |needle: &[u8]| self.kept.windows(needle.len()).any(|w| w == needle);
        if has(SCRIPT_UNKNOWN) {
            Some(Refused::ScriptUnknown)
        } else if has(ACCESS_DENIED) {
            Some(Refused::AccessDenied)
        } else {
            None
        }
    }

    /// The first message, for a detail: the first line of the first "PHP message: " (a fatal
    /// error names its file and line there), else the first line; printable ASCII, at most
    /// `max` bytes.
    pub fn first_message(&self, max: usize) -> String {
        let all = String::from_utf8_lossy(&self.kept);
        let message = match all.find(PHP_MESSAGE) {
            Some(at) => &all[at + PHP_MESSAGE.len()..],
            None => &all,
        };
        let line = message
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("");
        text::header_text(line, max)
    }

    /// All of it as one line of printable ASCII, for the log: at most `max` bytes, with how
    /// much more there was.
    pub fn summary(&self, max: usize) -> String {
        let all = String::from_utf8_lossy(&self.kept);
        let joined: Vec<&str> = all
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut out = text::header_text(&joined.join(" | "), max);
        if self.dropped > 0 {
            out.push_str(&format!(" (and {} more bytes)", self.dropped));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However much arrives, MAX_STDERR bytes are kept and the rest counted.
    #[test]
    fn keeps_a_bounded_start() {
        let mut stderr = Stderr::default();
        for _ in 0..100 {
            stderr.push(&[b'x'; 1000]);
        }
        assert_eq!(stderr.bytes().len(), MAX_STDERR);
        assert!(stderr.summary(64).ends_with("(and 95904 more bytes)"));
    }

    /// php-fpm's refusals are recognized by its own words; a fatal error's message is the
    /// first line after "PHP message: ", control characters removed.
    #[test]
    fn reads_php_fpms_words() {
        let mut stderr = Stderr::default();
        stderr.push(b"Primary script unknown");
        assert_eq!(stderr.refused(), Some(Refused::ScriptUnknown));
        let mut stderr = Stderr::default();
        stderr.push(
            b"Access to the script '/srv/a.css' has been denied (see security.limit_extensions)",
        );
        assert_eq!(stderr.refused(), Some(Refused::AccessDenied));
        let mut stderr = Stderr::default();
        stderr.push(b"PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function nope() in /srv/fatal.php:3\nStack trace:\n#0 {main}\x1b[0m");
        assert_eq!(stderr.refused(), None);
        assert_eq!(
            stderr.first_message(200),
            "PHP Fatal error:  Uncaught Error: Call to undefined function nope() in /srv/fatal.php:3"
        );
        assert!(!stderr.summary(1024).contains('\x1b'));
    }
}
