//! Durations as operators write them: `250ms`, `5s`, `1m`, `1h`.

use std::time::Duration;

const ACCEPTED_FORM: &str =
    "expected a positive whole number followed by ms, s, m or h, like 250ms, 5s or 1m";

/// Parses a duration such as `"250ms"` or `"5s"`. Zero is refused because every duration in the
/// config is a timeout or an interval, where zero would mean "fail at once" or "spin".
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

    /// Numbers too large to represent are an error, not a wrap-around or a panic.
    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }
}
