//! Upstream server addresses and the hostname rules shared by servers, SNI and route hosts.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Where an upstream server listens: an IP address, or a hostname re-resolved while running.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    Ip(SocketAddr),
    /// `host` is lowercased, since DNS names are case-insensitive and it doubles as the SNI.
    Host {
        host: String,
        port: u16,
    },
}

impl ServerAddr {
    pub fn port(&self) -> u16 {
        match self {
            ServerAddr::Ip(addr) => addr.port(),
            ServerAddr::Host { port, .. } => *port,
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;

    /// Parses `1.2.3.4:80`, `[::1]:80` or `app.internal:80`; the port is required and non-zero.
    fn from_str(text: &str) -> Result<Self, String> {
        const FORM: &str = "expected ip:port, [ipv6]:port or hostname:port";
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
        ] {
            assert_eq!(text.parse::<ServerAddr>().unwrap().to_string(), text);
        }
        assert!(matches!("[::1]:80".parse(), Ok(ServerAddr::Ip(_))));
        assert_eq!(
            "App-1.Internal:3000".parse::<ServerAddr>(),
            Ok(ServerAddr::Host {
                host: "app-1.internal".into(),
                port: 3000
            })
        );
        assert_eq!("app:8443".parse::<ServerAddr>().unwrap().port(), 8443);
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
