//! The value parsers: each turns one string of the file into a typed value or says what is wrong
//! with it. Durations, addresses and networks have their own modules.

use super::duration::{bounded_duration, TIMEOUT};
use super::{addr, DetailPolicy, LogFormat, LogLevel, ReportExport, ServerAddr, Upstream};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest string value: a path's limit (`PATH_MAX`), far beyond any real hostname, URL or
/// path prefix.
pub const MAX_STRING: usize = 4096;

/// What every string value of the file must be, whatever its key: at most [`MAX_STRING`] bytes,
/// without control characters. No value has a use for one (TOML lets one in only through an
/// escape such as `\n`), and one in a path prefix, a health-check path or a name would reach a
/// request line, a header or a log line. Checked before any parser sees the value, so no
/// parser's message quotes a control character either.
pub(super) fn usable_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_STRING {
        return Err(format!(
            "a value of {} bytes is longer than the {MAX_STRING}-byte maximum",
            text.len()
        ));
    }
    match text.chars().find(|c| c.is_control()) {
        Some(control) => Err(format!(
            "`{}` contains the control character U+{:04X}",
            text.escape_debug(),
            u32::from(control)
        )),
        None => Ok(()),
    }
}

/// `addr` or `addr weight=N` (as nginx's `server addr weight=N;`), N from 1 to 1000.
pub(super) fn server_with_weight(text: &str) -> Result<(ServerAddr, u32), String> {
    let mut parts = text.split_whitespace();
    let addr = parts.next().unwrap_or("").parse::<ServerAddr>()?;
    let weight = match parts.next() {
        None => 1,
        Some(option) => {
            let n = option
                .strip_prefix("weight=")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    format!("`{option}`: expected weight=N with N from 1 to 1000 after the address")
                })?;
            n
        }
    };
    if let Some(extra) = parts.next() {
        return Err(format!("`{extra}`: only `weight=N` may follow the address"));
    }
    Ok((addr, weight))
}

/// A Host header value: a hostname, optionally with a port.
pub(super) fn host_header(text: &str) -> Result<String, String> {
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => text,
    };
    addr::hostname(host)?;
    Ok(text.to_ascii_lowercase())
}

pub(super) fn detail_policy(text: &str) -> Result<DetailPolicy, String> {
    one_of(
        text,
        &[
            ("all", DetailPolicy::All),
            ("trusted", DetailPolicy::Trusted),
            ("none", DetailPolicy::None),
        ],
    )
}

pub(super) fn log_level(text: &str) -> Result<LogLevel, String> {
    one_of(
        text,
        &[
            ("error", LogLevel::Error),
            ("warn", LogLevel::Warn),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("trace", LogLevel::Trace),
        ],
    )
}

pub(super) fn log_format(text: &str) -> Result<LogFormat, String> {
    one_of(
        text,
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    )
}

/// A health check's `kind`: true for `http`, false for `tcp`.
pub(super) fn is_http_check(text: &str) -> Result<bool, String> {
    one_of(text, &[("tcp", false), ("http", true)])
}

/// Upstream names become metric labels and header values, so they are kept to a safe alphabet.
pub(super) fn upstream_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "upstream name `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -, since it is used as a metric label and a header value",
            name.escape_debug()
        )),
    }
}

/// `"off"` (zero: connect for every request) or a duration, at most [`TIMEOUT`]'s maximum.
pub(super) fn holdoff(text: &str) -> Result<Duration, String> {
    match text {
        "off" => Ok(Duration::ZERO),
        _ => bounded_duration(text, TIMEOUT),
    }
}

fn one_of<T: Clone>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(value.clone()),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("`{text}` is not one of: {}", names.join(", ")))
        }
    }
}

pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not a socket address; expected ip:port, like 0.0.0.0:8080 or [::]:8080"
        )
    })
}

/// An http(s) URL; the report id is appended, so a trailing `/` is added when missing.
pub(super) fn report_url(text: &str) -> Result<String, String> {
    let valid = (text.starts_with("http://") || text.starts_with("https://"))
        && text.len() > "https://".len()
        && text.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if !valid {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    Ok(if text.ends_with('/') {
        text.to_owned()
    } else {
        format!("{text}/")
    })
}

/// `[server] instance`.
pub(super) fn instance(text: &str) -> Result<String, String> {
    if crate::id::valid_instance(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not an instance name: 1 to {} of A-Z a-z 0-9 . _ -",
            crate::id::MAX_INSTANCE
        ))
    }
}

/// `[reports] export`: `"stdout"`, or a file (relative to the config file's directory).
pub(super) fn report_export(text: &str, origin: &Path) -> Result<ReportExport, String> {
    match text {
        "stdout" => Ok(ReportExport::Stdout),
        "" => Err("is empty: \"stdout\" or a file path".to_owned()),
        path => file_path(origin.join(path)).map(ReportExport::File),
    }
}

pub(super) fn nameserver(text: &str) -> Result<SocketAddr, String> {
    match socket_addr(text)? {
        addr if addr.port() == 0 => Err(format!("`{text}` has port 0; DNS is usually on port 53")),
        addr => Ok(addr),
    }
}

/// A route's path prefix: it is matched against the request's path, so it must look like one
/// (an absolute path of printable ASCII, without a query or fragment), or it could never match.
pub(super) fn path_prefix(text: &str) -> Result<String, String> {
    request_target(text, false)
}

/// A health check's path, written into the check's request line as is: an origin-form
/// request target (an absolute path, optionally with a query).
pub(super) fn health_check_path(text: &str) -> Result<String, String> {
    request_target(text, true)?;
    match text.parse::<http::uri::PathAndQuery>() {
        Ok(_) => Ok(text.to_owned()),
        Err(error) => Err(format!("`{text}` is not a valid request target: {error}")),
    }
}

/// Checks `text` is an absolute path (with a query when `query` is true) as it travels in a
/// request line: printable ASCII without spaces or a fragment.
fn request_target(text: &str, query: bool) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("`{text}` must start with /"));
    }
    let unusable = text
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_graphic() || c == '#' || (c == '?' && !query));
    let Some((at, c)) = unusable else {
        return Ok(text.to_owned());
    };
    Err(match c {
        ' ' => format!(
            "`{text}` contains a space, which a request target never has; write it as %20"
        ),
        '#' => format!(
            "`{text}` contains `#`, which starts a fragment, never sent in a request"
        ),
        '?' => format!(
            "`{text}` contains `?`, which starts the query; a path_prefix is matched against the path alone"
        ),
        _ => {
            let encoded: String = text[at..at + c.len_utf8()]
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            format!(
                "`{text}` contains `{c}`, which a request target only has percent-encoded, as {encoded}"
            )
        }
    })
}

/// Route hosts are compared against the Host header's name, so a scheme, path or port here could
/// never match; saying so beats a route that silently never fires.
pub(super) fn route_host(text: &str) -> Result<String, String> {
    if text.contains("://") {
        Err(format!(
            "`{text}` must be a bare hostname, without a scheme"
        ))
    } else if text.contains('/') {
        Err(format!("`{text}` must be a bare hostname, without a path"))
    } else if text.contains(':') {
        Err(format!("`{text}` must be a bare hostname, without a port"))
    } else if text.parse::<Ipv4Addr>().is_ok() {
        Ok(text.to_owned())
    } else {
        addr::hostname(text)
    }
}

pub(super) fn upstream_index(upstreams: &[Upstream], name: &str) -> Result<usize, String> {
    if let Some(index) = upstreams.iter().position(|u| u.name == name) {
        return Ok(index);
    }
    // Names are table keys, which may hold anything: shown escaped.
    let defined: Vec<String> = upstreams
        .iter()
        .map(|u| u.name.escape_debug().to_string())
        .collect();
    Err(match defined.is_empty() {
        true => format!("no upstream named `{name}`; no [upstreams.NAME] tables are defined"),
        false => format!(
            "no upstream named `{name}`; defined: {}",
            defined.join(", ")
        ),
    })
}

/// A name of `[admin] hosts`: a hostname (lowercased) or an IP address (as `Display` writes
/// it, which is how the admin listener compares it), without a port: any port is accepted.
pub(super) fn admin_host(text: &str) -> Result<String, String> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ip.to_canonical().to_string());
    }
    if text.contains(':') {
        return Err(format!(
            "`{text}` must be a hostname or an IP address, without a port (any port is accepted)"
        ));
    }
    addr::hostname(text)
}

/// A header name of `[reports] keep_headers`, lowercased. Credentials are refused: a report is
/// read by whoever reaches the admin listener.
pub(super) fn kept_header(text: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if text.is_empty() || !text.bytes().all(token) {
        return Err(format!("`{text}` is not a header name"));
    }
    let name = text.to_ascii_lowercase();
    if crate::report::CREDENTIAL_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "`{text}` carries credentials; its value is never kept in a report"
        ));
    }
    Ok(name)
}

/// `protocol`: whether the upstream speaks FastCGI (`true`) or HTTP.
pub(super) fn is_fastcgi(text: &str) -> Result<bool, String> {
    match text {
        "http" => Ok(false),
        "fastcgi" => Ok(true),
        _ => Err(format!("`{text}`: expected \"http\" or \"fastcgi\"")),
    }
}

/// A FastCGI `root`: an absolute path without `.` or `..` segments (it is sent to the FastCGI
/// server as the start of `SCRIPT_FILENAME`, and triage checks paths against it), kept without
/// a trailing `/`, so that root and script path join with one.
pub(super) fn fastcgi_root(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("`{text}` must be an absolute path"));
    }
    if text
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!("`{text}` must not have `.` or `..` segments"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// A FastCGI `index`: a file name in the directory asked for, so without `/`.
pub(super) fn index_file(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('/') || text == "." || text == ".." {
        return Err(format!("`{text}` must be a file name, without `/`"));
    }
    Ok(text.to_owned())
}

/// The name of a FastCGI param of `params`: letters, digits and `_`, as CGI variables are
/// named (a `=` or a byte outside them would not survive as an environment variable of the
/// script).
pub(super) fn param_name(text: &str) -> Result<String, String> {
    let valid = (1..=128).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match valid {
        true => Ok(text.to_owned()),
        false => Err(format!(
            "`{}` is not a param name: 1 to 128 letters, digits or `_`",
            text.escape_debug()
        )),
    }
}

/// The longest path a unix socket can be bound at (`sun_path` holds 108 bytes with the final
/// NUL): Pingora would fail the upgrade on a longer one.
const MAX_UNIX_SOCKET_PATH: usize = 107;

/// `[server] pid_file`, and the like: a path that names a file, not a directory.
pub(super) fn file_path(path: PathBuf) -> Result<PathBuf, String> {
    // `Path::file_name` reads `/run/triage/` as `triage`: a trailing `/` is checked apart.
    let is_directory = path.as_os_str().to_string_lossy().ends_with('/');
    match path.file_name() {
        Some(_) if !is_directory => Ok(path),
        _ => Err(format!("`{}` names no file", path.display())),
    }
}

/// `[server] upgrade_socket`: a file path that fits a unix socket address.
pub(super) fn unix_socket_path(path: PathBuf) -> Result<PathBuf, String> {
    let path = file_path(path)?;
    let length = path.as_os_str().len();
    if length > MAX_UNIX_SOCKET_PATH {
        return Err(format!(
            "`{}` is {length} bytes long; a unix socket path is at most {MAX_UNIX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok(path)
}
