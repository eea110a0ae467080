//! IP networks in CIDR notation, for deciding which clients are trusted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address with its host bits clear, and a prefix length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// 127.0.0.0/8 and ::1/128: the clients trusted when the config names none.
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix_len: 8,
            },
            Cidr {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix_len: 128,
            },
        ]
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside this network. A dual-stack listener reports IPv4 clients as
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), so those are compared as the IPv4 address
    /// they carry, and an IPv6 network sees IPv4 clients in their mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (_, canonical) => canonical,
        };
        let (network, width) = bits(self.network);
        let (address, address_width) = bits(ip);
        width == address_width && (network ^ address) & !host_mask(self.prefix_len, width) == 0
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address meaning that one host.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!("`{text}` is not a network; expected an address with an optional /prefix, like 10.0.0.0/8 or fd00::/8")
        })?;
        let (network_bits, width) = bits(network);
        let prefix_len = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= width && prefix.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    format!("`{text}` has an invalid prefix length; expected 0 to {width}")
                })?,
        };
        // A network written with host bits set is almost always a typo for a single host or the
        // wrong prefix; silently masking would trust a different range than the operator meant.
        let mask = host_mask(prefix_len, width);
        if network_bits & mask != 0 {
            let intended = from_bits(network_bits & !mask, width);
            return Err(format!(
                "`{text}` has host bits set; did you mean {intended}/{prefix_len}?"
            ));
        }
        Ok(Cidr {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The address as an integer, and how many of its bits are significant.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn from_bits(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// Ones in the host part of an address `width` bits wide.
fn host_mask(prefix_len: u8, width: u8) -> u128 {
    let host_bits = u32::from(width.saturating_sub(prefix_len));
    if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// IPv4 networks contain exactly the addresses under their prefix.
    #[test]
    fn v4_contains() {
        let net = cidr("10.1.0.0/16");
        assert!(net.contains(ip("10.1.0.0")));
        assert!(net.contains(ip("10.1.255.255")));
        assert!(!net.contains(ip("10.2.0.0")));
        assert!(!net.contains(ip("::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    }

    /// IPv6 networks contain exactly the addresses under their prefix.
    #[test]
    fn v6_contains() {
        let net = cidr("fd00::/8");
        assert!(net.contains(ip("fd12:3456::1")));
        assert!(!net.contains(ip("fe80::1")));
        assert!(!net.contains(ip("10.0.0.1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(!cidr("::1/128").contains(ip("::2")));
    }

    /// An IPv4-mapped IPv6 client matches an IPv4 network, and an IPv4 client matches a mapped IPv6 network.
    #[test]
    fn mapped_v6_matches_v4() {
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!cidr("127.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.0.0.7")));
        // ::1 is not a mapped address and must not be read as 0.0.0.1.
        assert!(!cidr("0.0.0.0/8").contains(ip("::1")));
    }

    /// A bare address is a single-host network of full width.
    #[test]
    fn bare_address_is_one_host() {
        assert_eq!(cidr("192.0.2.1").prefix_len(), 32);
        assert_eq!(cidr("2001:db8::1").prefix_len(), 128);
        assert_eq!(cidr("192.0.2.1").to_string(), "192.0.2.1/32");
    }

    /// Host bits set, bad prefixes and non-addresses are refused with a helpful message.
    #[test]
    fn rejects_invalid() {
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err(),
            "`10.0.0.1/8` has host bits set; did you mean 10.0.0.0/8?"
        );
        assert!("fd00::1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("fd00::/8"));
        for text in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host/8",
            "",
        ] {
            assert!(text.parse::<Cidr>().is_err(), "{text}");
        }
    }
}
