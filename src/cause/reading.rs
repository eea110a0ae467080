//! Reading evidence into words: the database errors an app's body may carry, what untrusted
//! clients read instead of inside values, and durations and times as people say them.

use crate::render::text::push_decimal;
use std::time::{Duration, SystemTime};

/// What a client the `[diagnosis]` policy does not trust reads instead of a value that tells
/// about the inside: addresses, names, versions and the app's own text.
pub(super) fn public_value(name: &str) -> Option<&'static str> {
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
pub(super) fn database_error(body: &[u8]) -> Option<String> {
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
pub(super) fn sanitized(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(80)
        .collect()
}

/// Two ages within a tenth (or a second, as an app server checks its timeouts once a
/// second) of each other: the same timeout.
pub(super) fn same_age(a: Duration, b: Duration) -> bool {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    hi - lo <= (hi / 10).max(Duration::from_secs(1))
}

/// The median, when there is anything.
pub(super) fn median(times: &[Duration]) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    Some(sorted[sorted.len() / 2])
}

/// Whether the last few response times are well above the median of the rest: at least three
/// times it, and by more than 100 ms.
pub(super) fn climbing(times: &[Duration]) -> bool {
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
pub(super) fn clock(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    // Pushed digit by digit: the cause of every failure in a storm tells a time or two, and
    // the formatter costs several times these few digits.
    let mut out = String::with_capacity(8);
    for (i, part) in [secs / 3600, secs / 60 % 60, secs % 60]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(':');
        }
        push_two_digits(&mut out, part);
    }
    out
}

/// `n` (below 100) as two digits.
fn push_two_digits(out: &mut String, n: u64) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// A duration as people say it: `311 ms`, `2.9 s`, `38 s`, `4 min`, `2 h`.
pub(super) fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut out = String::with_capacity(12);
    let (n, unit) = match ms {
        0..=999 => (ms, " ms"),
        1_000..=9_999 => {
            // Tenths of a second, cut (not rounded, so 9,999 ms stays below "10 s").
            let tenths = ms / 100;
            push_decimal(&mut out, tenths / 10);
            out.push('.');
            out.push(char::from(b'0' + (tenths % 10) as u8));
            out.push_str(" s");
            return out;
        }
        10_000..=119_999 => (ms / 1000, " s"),
        120_000..=7_199_999 => (ms / 60_000, " min"),
        _ => (ms / 3_600_000, " h"),
    };
    push_decimal(&mut out, n);
    out.push_str(unit);
    out
}

/// `n` in decimal, without the formatter.
pub(super) fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, n);
    out
}

/// `n` of `what`, plural when it is not one: `1 time`, `13 times`.
pub(super) fn times(n: u32, what: &str) -> String {
    let mut out = decimal(u64::from(n));
    out.push(' ');
    out.push_str(what);
    if n != 1 {
        out.push('s');
    }
    out
}

/// A size as people say it: `512 MiB`, `1.5 GiB`.
pub(super) fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match n {
        n if n >= 10 * GIB => format!("{} GiB", n / GIB),
        n if n >= GIB => format!("{:.1} GiB", n as f64 / GIB as f64),
        n if n >= MIB => format!("{} MiB", n / MIB),
        n => format!("{} KiB", n / 1024),
    }
}
