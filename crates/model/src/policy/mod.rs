//! Access policy: who may reach what over the fabric, as `[[policy]]` rules in the inventory.
//!
//! Rules are read in order and the first that matches a packet decides; once any rule exists,
//! what no rule allows is dropped. Replies to allowed flows pass (connection tracking). A rule
//! names its sources and destinations as hosts, `group:NAME`, `external:NAME` (a network
//! outside the overlay, usually routed behind a host) or `*` (any address), and optionally
//! protocols and ports:
//!
//! ```toml
//! [[policy]]
//! name = "ci-deploys"
//! from = ["group:ci"]
//! to = ["external:aws-prod-vpc"]
//! ports = ["tcp/22", "tcp/443"]
//! ```
//!
//! The fabric turns the rules into each host's [`Firewall`]: what its `table inet wgfabric`
//! holds. [`nft`] writes that table for the kernel, and [`crate::explain`] answers "may A reach B?".

pub mod firewall;
pub mod nft;

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::Name;
use crate::serde_text::serde_as_text;

pub use firewall::{Firewall, FirewallRule, Strict, PROBES};

/// What a rule does with the packets it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let them through (the default).
    #[default]
    Allow,
    /// Drop them.
    Deny,
}

impl Verdict {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One side of a rule.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Any address.
    Any,
    /// A host's overlay addresses.
    Host(Name),
    /// The overlay addresses of every host in a group.
    Group(Name),
    /// An external network's prefix.
    External(Name),
}

/// Why a selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a policy selector: use a host name, `group:NAME`, `external:NAME` or `*`")]
pub struct SelectorError(String);

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || SelectorError(text.escape_debug().collect());
        if text == "*" {
            return Ok(Self::Any);
        }
        let (kind, name) = text.split_once(':').unwrap_or(("host", text));
        let name: Name = name.parse().map_err(|_| error())?;
        match kind {
            "host" => Ok(Self::Host(name)),
            "group" => Ok(Self::Group(name)),
            "external" => Ok(Self::External(name)),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Host(name) => write!(f, "{name}"),
            Self::Group(name) => write!(f, "group:{name}"),
            Self::External(name) => write!(f, "external:{name}"),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A transport protocol a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl Protocol {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
        }
    }
}

/// A protocol, and for TCP and UDP a range of destination ports (all when `None`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    /// The protocol.
    pub protocol: Protocol,
    /// First and last destination port, inclusive.
    pub ports: Option<(u16, u16)>,
}

/// Why a port specification was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` {problem}")]
pub struct PortSpecError {
    text: String,
    problem: &'static str,
}

impl PortSpec {
    /// Whether a packet of `protocol` to `port` matches.
    pub fn matches(&self, protocol: Protocol, port: Option<u16>) -> bool {
        self.protocol == protocol
            && match (self.ports, port) {
                (None, _) => true,
                (Some((first, last)), Some(port)) => (first..=last).contains(&port),
                (Some(_), None) => false,
            }
    }

    /// Whether every packet this matches, `other` matches too.
    pub fn within(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && match (self.ports, other.ports) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some((a, b)), Some((c, d))) => c <= a && b <= d,
            }
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem| PortSpecError { text: text.escape_debug().collect(), problem };
        let syntax =
            "is not a protocol and ports: use tcp/22, udp/53, tcp/8000-8999, tcp, udp or icmp";
        let (protocol, ports) = match text.split_once('/') {
            Some((protocol, ports)) => (protocol, Some(ports)),
            None => (text, None),
        };
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => return Err(error(syntax)),
        };
        let Some(ports) = ports else { return Ok(Self { protocol, ports: None }) };
        if protocol == Protocol::Icmp {
            return Err(error("names ports, which ICMP does not have; write icmp"));
        }
        let port = |text: &str| -> Result<u16, PortSpecError> {
            let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            match text.parse::<u16>() {
                Ok(port) if all_digits && port != 0 => Ok(port),
                _ if all_digits => Err(error("has a port out of range: ports are 1 to 65535")),
                _ => Err(error(syntax)),
            }
        };
        let (first, last) = match ports.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(error("is a range that ends before it starts: write FIRST-LAST"));
        }
        Ok(Self { protocol, ports: Some((first, last)) })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ports {
            None => f.write_str(self.protocol.as_str()),
            Some((first, last)) if first == last => write!(f, "{}/{first}", self.protocol.as_str()),
            Some((first, last)) => write!(f, "{}/{first}-{last}", self.protocol.as_str()),
        }
    }
}

impl fmt::Debug for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

serde_as_text!(Selector, PortSpec);

/// One `[[policy]]` rule, its names checked against the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its name: given, or `policy-N` for the Nth rule.
    pub name: Name,
    /// Where packets come from.
    pub from: Vec<Selector>,
    /// Where they go.
    pub to: Vec<Selector>,
    /// Which protocols and ports; empty for all traffic.
    pub ports: Vec<PortSpec>,
    /// What happens to them.
    pub verdict: Verdict,
    /// Line of the rule in the inventory.
    pub line: usize,
}

impl Rule {
    /// Whether a packet of `protocol` to `port` is of the kind this rule names.
    pub fn matches_traffic(&self, protocol: Protocol, port: Option<u16>) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|spec| spec.matches(protocol, port))
    }
}

#[cfg(test)]
mod tests;
