//! Upstream server addresses and the hostname rules shared by servers, SNI and route hosts; the
//! address an attempt reached ([`PeerAddr`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// Where an upstream server listens: an IP address, a hostname re-resolved while running, or a
/// unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    Ip(SocketAddr),
    /// `host` is lowercased, since DNS names are case-insensitive and it doubles as the SNI.
    Host {
        host: String,
        port: u16,
    },
    /// `unix:/run/app.sock`, as nginx writes it.
    Unix(UnixPath),
}

/// The path of a unix socket an upstream server listens on: absolute, printable ASCII, at most
/// [`UnixPath::MAX_LEN`] bytes (what `sun_path` holds with its terminating NUL). Shared, so an
/// attempt names it without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnixPath(Arc<str>);

impl UnixPath {
    /// The longest path a `sockaddr_un` holds on Linux: 108 bytes of `sun_path`, one for the NUL.
    pub const MAX_LEN: usize = 107;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&*self.0)
    }
}

impl FromStr for UnixPath {
    type Err = String;

    /// An absolute path to a socket file: not a directory (no trailing `/`), no abstract
    /// socket, no space or non-ASCII byte (it is a metric label and a header value as written).
    fn from_str(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!(
                "`unix:{path}`: the socket's path must be absolute, like unix:/run/app.sock"
            ));
        }
        if path.len() > UnixPath::MAX_LEN {
            return Err(format!(
                "`unix:{path}`: the socket's path is {} bytes; a unix socket's path is at most {} bytes",
                path.len(),
                UnixPath::MAX_LEN
            ));
        }
        if path.ends_with('/') {
            return Err(format!(
                "`unix:{path}`: names a directory; expected the socket file's path"
            ));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "`unix:{path}`: the socket's path may only hold printable ASCII"
            ));
        }
        Ok(UnixPath(path.into()))
    }
}

impl fmt::Display for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}", self.0)
    }
}

/// The address an attempt went to: a server's IP address (configured, or resolved from its
/// hostname) and port, or its unix socket. Shown as `1.2.3.4:80`, `[::1]:80` or
/// `unix:/run/app.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    Inet(SocketAddr),
    Unix(UnixPath),
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr::Inet(addr)
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    /// What [`fmt::Display`] writes: `ip:port`, `[ipv6]:port` or `unix:/path`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix("unix:") {
            Some(path) => path.parse().map(PeerAddr::Unix),
            None => text
                .parse()
                .map(PeerAddr::Inet)
                .map_err(|_| format!("`{text}` is neither ip:port nor unix:/path")),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Inet(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(path) => write!(f, "{path}"),
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;

    /// Parses `1.2.3.4:80`, `[::1]:80`, `app.internal:80` (the port is required and non-zero)
    /// or `unix:/run/app.sock`.
    fn from_str(text: &str) -> Result<Self, String> {
        const FORM: &str = "expected ip:port, [ipv6]:port, hostname:port or unix:/path";
        if let Some(path) = text.strip_prefix("unix:") {
            return path.parse().map(ServerAddr::Unix);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(format!("`{text}` has port 0; the port must be 1 to 65535")),
                _ => Ok(ServerAddr::Ip(addr)),
            };
        }
        if text.contains("://") {
            return Err(format!("`{text}` must not include a scheme; {FORM}"));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("`{text}` has no port; {FORM}"));
        };
        if host.starts_with('[') {
            return Err(format!("`{text}` is not a valid [ipv6]:port address"));
        }
        if host.contains(':') {
            return Err(format!(
                "`{text}`: an IPv6 address needs brackets, like [::1]:80"
            ));
        }
        let port = parse_port(port)
            .ok_or_else(|| format!("`{text}` has an invalid port; the port must be 1 to 65535"))?;
        let host = hostname(host).map_err(|reason| format!("`{text}`: {reason}"))?;
        Ok(ServerAddr::Host { host, port })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Ip(addr) => write!(f, "{addr}"),
            ServerAddr::Host { host, port } => write!(f, "{host}:{port}"),
            ServerAddr::Unix(path) => write!(f, "{path}"),
        }
    }
}

/// A port written as plain digits, 1 to 65535 (`u16::from_str` would also take `+80`).
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|port| *port != 0)
}

/// Checks an RFC 1123 hostname and returns it lowercased. A name whose last label is all digits
/// is refused because it is a mistyped IPv4 address (`10.0.0.256`), never a real name.
pub(crate) fn hostname(text: &str) -> Result<String, String> {
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if text.len() > 253 || !text.split('.').all(valid_label) {
        return Err(format!(
            "`{text}` is not a valid hostname; expected dot-separated labels of letters, digits and inner hyphens"
        ));
    }
    if text
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{text}` is neither a valid IP address nor a hostname"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4, bracketed IPv6 and hostnames parse to the right variant and print back unchanged.
    #[test]
    fn parses_and_displays() {
        for text in [
            "1.2.3.4:80",
            "[::1]:80",
            "app.internal:80",
            "localhost:65535",
            "unix:/run/gunicorn.sock",
            "unix:/tmp/a:b/app.sock",
        ] {
            assert_eq!(text.parse::<ServerAddr>().unwrap().to_string(), text);
        }
        assert!(matches!(
            "unix:/run/app.sock".parse(),
            Ok(ServerAddr::Unix(path)) if path.as_path() == Path::new("/run/app.sock")
        ));
        assert!(matches!("[::1]:80".parse(), Ok(ServerAddr::Ip(_))));
        assert_eq!(
            "App-1.Internal:3000".parse::<ServerAddr>(),
            Ok(ServerAddr::Host {
                host: "app-1.internal".into(),
                port: 3000
            })
        );
    }

    /// A unix socket's path is absolute, fits `sun_path` (107 bytes and its NUL), names a file
    /// and is printable ASCII; an abstract socket (`unix:@name`) is refused.
    #[test]
    fn unix_paths_are_bounded() {
        let longest = format!("/{}", "a".repeat(UnixPath::MAX_LEN - 1));
        assert!(format!("unix:{longest}").parse::<ServerAddr>().is_ok());
        for text in [
            format!("unix:{longest}a"),
            "unix:".to_owned(),
            "unix:run/app.sock".to_owned(),
            "unix:@abstract".to_owned(),
            "unix:/run/".to_owned(),
            "unix:/run/caf\u{e9}.sock".to_owned(),
            "unix:/run/\u{7f}.sock".to_owned(),
        ] {
            assert!(text.parse::<ServerAddr>().is_err(), "{text}");
        }
    }

    /// An attempt's address prints as the config writes it, and parses back.
    #[test]
    fn peer_addresses_print_and_parse_back() {
        for text in ["127.0.0.1:3000", "[::1]:80", "unix:/run/app.sock"] {
            assert_eq!(text.parse::<PeerAddr>().unwrap().to_string(), text);
        }
        assert!("app:80".parse::<PeerAddr>().is_err());
    }

    /// Missing, zero, out-of-range and signed ports, bare IPv6, and invalid hostnames are refused.
    #[test]
    fn rejects_invalid() {
        for text in [
            "app",
            "app:",
            "app:0",
            "app:65536",
            "app:+80",
            "1.2.3.4:0",
            "1.2.3.4",
            "::1:80",
            "[::1]",
            "[::g]:80",
            "-app:80",
            "app-:80",
            "a..b:80",
            "my_app:80",
            "10.0.0.256:80",
            "http://app:80",
            ":80",
            "",
        ] {
            assert!(text.parse::<ServerAddr>().is_err(), "{text}");
        }
    }

    /// Hostnames are limited to 63-character labels and 253 characters in all.
    #[test]
    fn hostname_length_limits() {
        assert!(hostname(&"a".repeat(63)).is_ok());
        assert!(hostname(&"a".repeat(64)).is_err());
        let long = vec!["a".repeat(50); 6].join(".");
        assert!(long.len() > 253 && hostname(&long).is_err());
    }
}
