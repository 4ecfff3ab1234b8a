//! A peer's UDP endpoint as written in the inventory: `HOST:PORT`, where HOST may be a DNS
//! name, an IPv4 address or a bracketed IPv6 address.
//!
//! Names are kept as names: `wg` and wg-quick resolve them when the configuration is loaded,
//! which is what lets a relay move to a new address behind the same name.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::serde_text::serde_as_text;

/// Why an endpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` {problem}")]
pub struct EndpointError {
    text: String,
    problem: &'static str,
}

/// What is wrong with an endpoint that is not `HOST:PORT` at all.
const SYNTAX: &str = "is not an endpoint: use HOST:PORT, e.g. relay.example.com:51820, \
    192.0.2.1:51820 or [2001:db8::1]:51820";

/// Why peers cannot send to `ip`, if they cannot.
fn unreachable_ip(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("is the unspecified address, which no peer can send to; use the host's public address or DNS name");
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Some("is a multicast or broadcast address; a WireGuard endpoint is one host's unicast address");
    }
    None
}

/// `HOST:PORT` of a peer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// The DNS name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The UDP port.
    pub const fn port(&self) -> u16 {
        self.port
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || EndpointError { text: text.escape_debug().collect(), problem: SYNTAX };
        let (host, port) = text.rsplit_once(':').ok_or_else(error)?;
        let port: u16 = port.parse().ok().filter(|port| *port != 0).ok_or_else(error)?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().map_err(|_| error())?.to_string(),
            // An IPv4 address is also a syntactically valid DNS name.
            None if is_dns_name(host) => host.to_ascii_lowercase(),
            None => return Err(error()),
        };
        if let Some(problem) = host.parse().ok().and_then(unreachable_ip) {
            return Err(EndpointError { text: text.to_owned(), problem });
        }
        Ok(Self { host, port })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

serde_as_text!(Endpoint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_round_trip() {
        for text in ["relay.example.com:51820", "192.0.2.1:1", "[2001:db8::1]:51820"] {
            assert_eq!(text.parse::<Endpoint>().unwrap().to_string(), text);
        }
        let ep: Endpoint = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!((ep.host(), ep.port()), ("2001:db8::1", 51820));
    }

    #[test]
    fn rejects_missing_ports_and_bare_ipv6() {
        for bad in ["relay", "relay:", "relay:0", "relay:65536", "2001:db8::1:51820", "a b:1", ":1"]
        {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_addresses_no_peer_can_send_to() {
        for bad in
            ["0.0.0.0:51820", "[::]:51820", "224.0.0.1:1", "[ff02::1]:1", "255.255.255.255:1"]
        {
            let error = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(error.contains("unspecified") || error.contains("multicast"), "{error}");
        }
    }
}
