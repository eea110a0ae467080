//! Durations as operators write them: `250ms`, `5s`, `1m`, `1h`, each within the range of its
//! kind ([`TIMEOUT`], [`WAIT`], [`INTERVAL`]).
//!
//! Every duration of the config is bounded, so none can overflow the `Instant` it is added to
//! (Pingora's timers add it unchecked: `9223372036854775807s` would pass the parser and panic
//! on every request), and no interval is so short that a loop spins. A reader takes the bounds
//! of a key's kind: `t.value("connect_timeout", duration(TIMEOUT))`.

use std::time::Duration;

/// The range a kind of duration is allowed, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationBounds {
    pub min: Duration,
    pub max: Duration,
}

/// Timeouts of one step and hold times: `connect_timeout`, `health_check.timeout`,
/// `fail_timeout`, `refused_holdoff`, `shutdown_timeout`, `[diagnosis] deploy_window`. An hour:
/// longer is a hang, not a wait (and a deploy an hour old is no longer the likely cause).
pub const TIMEOUT: DurationBounds = DurationBounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(3600),
};

/// Waits on the app while it works or streams: `read_timeout`, `write_timeout`,
/// `total_timeout`. A day, since an idle WebSocket or a long download can need hours (nginx's
/// `proxy_read_timeout` is often set to a day for WebSockets).
pub const WAIT: DurationBounds = DurationBounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(24 * 3600),
};

/// The periods of background loops: `health_check.interval`, `[resolver] refresh`. At least
/// 50ms, so a typo cannot make a loop probe or query without pause; at most an hour, so a
/// change is still noticed the same day.
pub const INTERVAL: DurationBounds = DurationBounds {
    min: Duration::from_millis(50),
    max: Duration::from_secs(3600),
};

/// How late the access log may write a line (`[log] access_flush`): at least 10ms, so the
/// flusher cannot spin; at most 10s, so `tail -f` still follows.
pub const FLUSH: DurationBounds = DurationBounds {
    min: Duration::from_millis(10),
    max: Duration::from_secs(10),
};

/// How far before a failure the app's log lines go into its report (`[upstreams.NAME.evidence]
/// log_before`): a minute at most, which the follower's ring of lines covers.
pub const LOG_BEFORE: DurationBounds = DurationBounds {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};

/// How far after a failure (`log_after`): the report is amended once this passed, so it is
/// short; ten seconds at most.
pub const LOG_AFTER: DurationBounds = DurationBounds {
    min: Duration::ZERO,
    max: Duration::from_secs(10),
};

/// The parser of a duration within `bounds`, for [`Table::value`](super::table::Table::value).
pub fn duration(bounds: DurationBounds) -> impl Fn(&str) -> Result<Duration, String> {
    move |text| bounded_duration(text, bounds)
}

/// Parses a duration such as `"250ms"` and checks it lies within `bounds`.
pub fn bounded_duration(text: &str, bounds: DurationBounds) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > bounds.max {
        return Err(format!(
            "`{text}` is longer than the {} maximum",
            written(bounds.max)
        ));
    }
    if duration < bounds.min {
        return Err(format!(
            "`{text}` is shorter than the {} minimum",
            written(bounds.min)
        ));
    }
    Ok(duration)
}

/// A duration as an operator would write it, in the largest unit that divides it.
pub fn written(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0 => "0ms".to_owned(),
        _ if millis.is_multiple_of(3_600_000) => format!("{}h", millis / 3_600_000),
        _ if millis.is_multiple_of(60_000) => format!("{}m", millis / 60_000),
        _ if millis.is_multiple_of(1000) => format!("{}s", millis / 1000),
        _ => format!("{millis}ms"),
    }
}

const ACCEPTED_FORM: &str =
    "expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m";

/// Parses a duration such as `"250ms"` or `"5s"`, of any length a `Duration` holds. Zero is
/// refused because every duration in the config is a timeout or an interval, where zero would
/// mean "fail at once" or "spin". Readers use `duration(bounds)`, which also bounds it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration; {ACCEPTED_FORM}");
    let unit_start = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_start);
    if number.is_empty() {
        return Err(invalid());
    }
    // Only digits remain, so the parse can fail only by overflow.
    let count: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too long a duration"))?;
    if count == 0 {
        return Err(format!("`{text}` is zero; {ACCEPTED_FORM}"));
    }
    let duration = match unit {
        "ms" => Some(Duration::from_millis(count)),
        "s" => Some(Duration::from_secs(count)),
        "m" => count.checked_mul(60).map(Duration::from_secs),
        "h" => count.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(invalid()),
    };
    duration.ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted unit scales the number correctly.
    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    /// Zero, signs, fractions, spaces, a missing or unknown unit are all refused with the accepted form.
    #[test]
    fn rejects_everything_else() {
        for text in [
            "0s", "-5s", "+5s", "1.5s", "5", "s", "", "5 s", "5sec", "5d", "5us", "5S", " 5s", "٣s",
        ] {
            let message = parse_duration(text).expect_err(text);
            assert!(message.contains("250ms, 5s or 1m"), "{text}: {message}");
        }
    }

    /// Each kind's ends are accepted, and one step past either end is refused in the units
    /// the operator would write.
    #[test]
    fn bounds_are_inclusive_and_named() {
        for bounds in [TIMEOUT, WAIT, INTERVAL] {
            assert_eq!(
                bounded_duration(&written(bounds.max), bounds),
                Ok(bounds.max)
            );
            assert_eq!(
                bounded_duration(&written(bounds.min), bounds),
                Ok(bounds.min)
            );
            let over = format!("{}ms", bounds.max.as_millis() + 1);
            let message = bounded_duration(&over, bounds).expect_err(&over);
            assert!(message.ends_with(&format!("the {} maximum", written(bounds.max))));
        }
        assert_eq!(
            bounded_duration("49ms", INTERVAL),
            Err("`49ms` is shorter than the 50ms minimum".to_owned())
        );
        assert_eq!(
            bounded_duration("9223372036854775807s", WAIT),
            Err("`9223372036854775807s` is longer than the 24h maximum".to_owned())
        );
        assert_eq!(written(Duration::from_millis(1500)), "1500ms");
        assert_eq!(written(Duration::from_secs(90)), "90s");
    }

    /// Numbers too large to represent are an error, not a wrap-around or a panic.
    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }
}
