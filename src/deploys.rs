//! Deploy markers: "version V of upstream U went out at T", recorded by a deploy script
//! (`POST /deploys` on the admin listener, or `triage deployed`), so a failure soon after a
//! deploy can name it as the likely cause.
//!
//! The markers live in a [`DeployLog`] created once at start and shared (like the report
//! store): a config reload replaces routes and upstreams, never the log. It is a ring of the
//! last [`MAX_DEPLOYS`] markers, so a deploy script in a loop cannot grow memory. A marker names
//! one upstream, or none, meaning all of them (a deploy of the whole site).
//!
//! [`DeployLog::latest`] is the query the cause derivation asks on a failure: the most recent
//! marker for an upstream within `[diagnosis] deploy_window` before the failure. It takes no
//! lock when no marker is that recent, which is the common case.
//!
//! What a client sends is checked here ([`MarkerRequest::parse`]) before it is recorded: a
//! bounded JSON object, an upstream the running config names, a version of printable ASCII.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many markers the log keeps; the oldest goes first.
pub const MAX_DEPLOYS: usize = 256;

/// The largest `POST /deploys` body read; larger is refused (413).
pub const MAX_BODY: usize = 4096;

/// The longest version string, in bytes: a commit hash, a semver with build metadata, an
/// image tag.
pub const MAX_VERSION: usize = 128;

/// The version recorded when the marker gives none (the key left out, null or empty).
pub const UNKNOWN_VERSION: &str = "unknown";

/// One deploy marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    /// The upstream deployed, a name of the config at the time; `None`: all of them.
    pub upstream: Option<String>,
    /// Visible ASCII (no spaces, no control characters), 1 to [`MAX_VERSION`] bytes, so it can
    /// go into a header or a log field as it is; [`UNKNOWN_VERSION`] when none was given.
    pub version: String,
    /// When the marker was recorded.
    pub time: SystemTime,
}

impl Deploy {
    /// Whether this marker covers `upstream`: it names it, or it names none (all of them).
    pub fn covers(&self, upstream: &str) -> bool {
        self.upstream.as_deref().is_none_or(|u| u == upstream)
    }
}

/// The deploy markers of this process, newest last.
pub struct DeployLog {
    ring: Mutex<VecDeque<Deploy>>,
    capacity: usize,
    /// The newest marker's time in milliseconds since the epoch (0: none yet), so that
    /// [`DeployLog::latest`] can answer "nothing that recent" without taking the lock.
    newest_millis: AtomicU64,
}

impl Default for DeployLog {
    fn default() -> Self {
        DeployLog::new(MAX_DEPLOYS)
    }
}

fn millis(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl DeployLog {
    /// A log keeping the last `capacity` markers (at least one).
    pub fn new(capacity: usize) -> DeployLog {
        let capacity = capacity.max(1);
        DeployLog {
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            newest_millis: AtomicU64::new(0),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Deploy>> {
        // A panic while holding the lock leaves a ring that is still a valid ring.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a marker, dropping the oldest when the log is full.
    pub fn record(&self, deploy: Deploy) {
        // Rounded up, so the hint is never older than the marker it stands for.
        let time = millis(deploy.time).saturating_add(1);
        let mut ring = self.ring();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(deploy);
        self.newest_millis.fetch_max(time, Ordering::Relaxed);
    }

    /// Every marker kept, newest first.
    pub fn recent(&self) -> Vec<Deploy> {
        self.ring().iter().rev().cloned().collect()
    }

    /// The most recent marker for `upstream` (one naming it, or one naming all upstreams)
    /// recorded within `window` before `now`; markers after `now` do not count.
    pub fn latest(&self, upstream: &str, now: SystemTime, window: Duration) -> Option<Deploy> {
        let since = now.checked_sub(window).unwrap_or(UNIX_EPOCH);
        let newest = self.newest_millis.load(Ordering::Relaxed);
        if newest == 0 || newest < millis(since) {
            return None;
        }
        self.ring()
            .iter()
            .filter(|d| d.covers(upstream) && since <= d.time && d.time <= now)
            // The last of equal times is the one recorded last.
            .max_by_key(|d| d.time)
            .cloned()
    }
}

/// A marker as a client asked for it, checked: what [`DeployLog::record`] gets, with the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    pub upstream: Option<String>,
    pub version: String,
}

/// Why a marker request is refused: the HTTP status and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 400 (not the expected JSON), 413 (too large) or 422 (an upstream the config lacks).
    pub status: u16,
    pub message: String,
}

impl Refused {
    fn bad(message: impl Into<String>) -> Refused {
        Refused {
            status: 400,
            message: message.into(),
        }
    }
}

const BODY_FORM: &str =
    "the body must be a JSON object {\"upstream\": \"NAME\", \"version\": \"V\"}; both keys \
     are optional (no upstream: all of them)";

impl MarkerRequest {
    /// Checks a `POST /deploys` body against the upstreams the running config names
    /// (`upstreams`). An empty body is `{}`: all upstreams, version unknown.
    pub fn parse(body: &[u8], upstreams: &[&str]) -> Result<MarkerRequest, Refused> {
        if body.len() > MAX_BODY {
            return Err(Refused {
                status: 413,
                message: format!("the body is larger than {MAX_BODY} bytes"),
            });
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return MarkerRequest::parse(b"{}", upstreams);
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| Refused::bad(format!("{BODY_FORM}: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(Refused::bad(BODY_FORM));
        };
        if let Some(key) = object
            .keys()
            .find(|key| !matches!(key.as_str(), "upstream" | "version"))
        {
            return Err(Refused::bad(format!(
                "unknown key {}: {BODY_FORM}",
                shown(key)
            )));
        }
        let string = |key: &str| match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Refused::bad(format!("`{key}` must be a string or null"))),
        };
        let upstream = match string("upstream")? {
            None => None,
            Some(name) if upstreams.contains(&name) => Some(name.to_owned()),
            Some(name) => {
                let configured = match upstreams {
                    [] => "none".to_owned(),
                    names => names.join(", "),
                };
                return Err(Refused {
                    status: 422,
                    message: format!(
                        "no upstream {} in the running config; its upstreams: {configured} \
                         (leave `upstream` out for all of them)",
                        shown(name)
                    ),
                });
            }
        };
        let version = match string("version")? {
            None | Some("") => UNKNOWN_VERSION.to_owned(),
            Some(v) if v.len() > MAX_VERSION => {
                return Err(Refused::bad(format!(
                    "`version` is longer than {MAX_VERSION} bytes"
                )))
            }
            Some(v) if !v.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(Refused::bad(
                    "`version` must be visible ASCII: no spaces, no control characters",
                ))
            }
            Some(v) => v.to_owned(),
        };
        Ok(MarkerRequest { upstream, version })
    }
}

/// A client's string in a message: quoted when it could be an upstream name, else withheld,
/// so no message echoes what a client made up.
fn shown(text: &str) -> String {
    let name_like = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match name_like {
        true => format!("`{text}`"),
        false => "(not a name)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn deploy(upstream: Option<&str>, version: &str, secs: u64) -> Deploy {
        Deploy {
            upstream: upstream.map(str::to_owned),
            version: version.to_owned(),
            time: at(secs),
        }
    }

    fn version(found: Option<Deploy>) -> Option<String> {
        found.map(|d| d.version)
    }

    /// Only markers within the window before `now` count: not older ones, not later ones;
    /// both ends of the window included.
    #[test]
    fn latest_looks_only_within_the_window() {
        let log = DeployLog::default();
        assert_eq!(log.latest("app", at(0), 10 * MINUTE), None);
        log.record(deploy(Some("app"), "v1", 0));
        assert_eq!(
            version(log.latest("app", at(0), 10 * MINUTE)),
            Some("v1".into())
        );
        assert_eq!(
            version(log.latest("app", at(600), 10 * MINUTE)),
            Some("v1".into())
        );
        assert_eq!(log.latest("app", at(601), 10 * MINUTE), None);
        assert_eq!(log.latest("app", at(60), Duration::from_secs(59)), None);
        // A marker recorded after the failure did not cause it.
        log.record(deploy(Some("app"), "v2", 300));
        assert_eq!(
            version(log.latest("app", at(299), 10 * MINUTE)),
            Some("v1".into())
        );
        assert_eq!(
            version(log.latest("app", at(300), 10 * MINUTE)),
            Some("v2".into())
        );
        assert_eq!(version(log.latest("app", at(299), MINUTE)), None);
    }

    /// A marker for one upstream says nothing about another; a marker for all of them covers
    /// each; the most recent covering marker wins.
    #[test]
    fn latest_is_per_upstream_or_for_all() {
        let log = DeployLog::default();
        log.record(deploy(Some("api"), "api-7", 100));
        assert_eq!(log.latest("app", at(120), 10 * MINUTE), None);
        assert_eq!(
            log.latest("api", at(120), 10 * MINUTE),
            Some(deploy(Some("api"), "api-7", 100))
        );
        log.record(deploy(None, "site-3", 110));
        assert_eq!(
            version(log.latest("app", at(120), 10 * MINUTE)),
            Some("site-3".into())
        );
        assert_eq!(
            version(log.latest("api", at(120), 10 * MINUTE)),
            Some("site-3".into())
        );
        log.record(deploy(Some("api"), "api-8", 115));
        assert_eq!(
            version(log.latest("api", at(120), 10 * MINUTE)),
            Some("api-8".into())
        );
        assert_eq!(
            version(log.latest("app", at(120), 10 * MINUTE)),
            Some("site-3".into())
        );
        // By time, not by the order of recording; of equal times, the one recorded last.
        log.record(deploy(Some("app"), "late-record-early-time", 50));
        assert_eq!(
            version(log.latest("app", at(120), 10 * MINUTE)),
            Some("site-3".into())
        );
        log.record(deploy(Some("app"), "same-time", 110));
        assert_eq!(
            version(log.latest("app", at(120), 10 * MINUTE)),
            Some("same-time".into())
        );
    }

    /// The ring keeps the last markers, newest first; what fell out is no longer found.
    #[test]
    fn the_ring_is_bounded() {
        let log = DeployLog::new(3);
        for i in 0..5 {
            log.record(deploy(Some("app"), &format!("v{i}"), i));
        }
        let versions: Vec<_> = log.recent().into_iter().map(|d| d.version).collect();
        assert_eq!(versions, ["v4", "v3", "v2"]);
        assert_eq!(version(log.latest("app", at(1), 10 * MINUTE)), None);
        assert_eq!(DeployLog::default().capacity, MAX_DEPLOYS);
    }

    fn parse(body: &str) -> Result<MarkerRequest, Refused> {
        MarkerRequest::parse(body.as_bytes(), &["app", "api"])
    }

    fn marker(upstream: Option<&str>, version: &str) -> MarkerRequest {
        MarkerRequest {
            upstream: upstream.map(str::to_owned),
            version: version.to_owned(),
        }
    }

    /// Both keys are optional: no upstream means all, no version (or null, or empty) means
    /// unknown.
    #[test]
    fn a_marker_may_leave_out_either_key() {
        assert_eq!(
            parse(r#"{"upstream": "api", "version": "1.4.2+g3e1f"}"#),
            Ok(marker(Some("api"), "1.4.2+g3e1f"))
        );
        assert_eq!(parse(r#"{"version": "v2"}"#), Ok(marker(None, "v2")));
        assert_eq!(
            parse(r#"{"upstream": null, "version": null}"#),
            Ok(marker(None, UNKNOWN_VERSION))
        );
        assert_eq!(
            parse(r#"{"upstream": "app", "version": ""}"#),
            Ok(marker(Some("app"), UNKNOWN_VERSION))
        );
        assert_eq!(parse(""), Ok(marker(None, UNKNOWN_VERSION)));
        assert_eq!(parse(" \n"), Ok(marker(None, UNKNOWN_VERSION)));
        let longest = "x".repeat(MAX_VERSION);
        assert_eq!(
            parse(&format!(r#"{{"version": "{longest}"}}"#)),
            Ok(marker(None, &longest))
        );
    }

    /// An upstream the running config lacks is 422, naming the ones it has; a name no config
    /// could have is not echoed.
    #[test]
    fn an_unknown_upstream_is_refused_naming_the_configured_ones() {
        let refused = parse(r#"{"upstream": "web"}"#).unwrap_err();
        assert_eq!(refused.status, 422);
        assert!(
            refused
                .message
                .starts_with("no upstream `web` in the running config; its upstreams: app, api"),
            "{}",
            refused.message
        );
        let refused = parse(r#"{"upstream": "<script>"}"#).unwrap_err();
        assert_eq!(refused.status, 422);
        assert!(!refused.message.contains("<script>"), "{}", refused.message);
        let none = MarkerRequest::parse(br#"{"upstream": "app"}"#, &[]).unwrap_err();
        assert!(
            none.message.contains("its upstreams: none"),
            "{}",
            none.message
        );
    }

    /// Anything but the expected object is 400; more than 4 KiB is 413.
    #[test]
    fn a_bad_body_is_refused() {
        let long = "x".repeat(MAX_VERSION + 1);
        for body in [
            "not json",
            "[]",
            "\"app\"",
            "{\"upstream\": 3}",
            "{\"version\": 1.5}",
            "{\"version\": [\"v1\"]}",
            "{\"version\": \"v1\", \"verison\": \"v2\"}",
            "{\"version\": \"v1\\n\"}",
            "{\"version\": \"v1\\u0000\"}",
            "{\"version\": \"caf\u{e9}\"}",
            "{\"version\": \"release 42\"}",
            &format!("{{\"version\": \"{long}\"}}"),
            "{\"version\": \"v1\"} trailing",
        ] {
            let refused = parse(body).unwrap_err();
            assert_eq!(refused.status, 400, "{body}: {refused:?}");
            assert!(!refused.message.contains('\n'), "{body}: {refused:?}");
        }
        let huge = format!(
            "{{\"version\": \"v\", \"pad\": \"{}\"}}",
            " ".repeat(MAX_BODY)
        );
        assert_eq!(parse(&huge).unwrap_err().status, 413);
    }
}
