//! A host's [`Firewall`]: the chains of its `table inet wgfabric`, as data that desired states
//! carry and [`super::nft`] writes out. The fabric computes each host's from the inventory's
//! rules (`crate::fabric`).
//!
//! Where each packet is judged:
//!
//! | host | chain | packets |
//! |---|---|---|
//! | every host | `input` | from the tunnel to the host itself |
//! | relays, subnet routers | `forward` | from the tunnel through the host: to other peers, routed subnets, the internet |
//!
//! A relay judges by source address, which cryptokey routing binds to the peer's key: a spoke
//! that widens its own AllowedIPs still sends from its own address, and the relay drops what
//! that address may not reach. Each rule's sources and destinations become sets, so a table
//! has as many rules as the policy, whatever the number of hosts.

use serde::{Deserialize, Serialize};

use super::{PortSpec, Protocol, Verdict};
use crate::cidr::Cidr;
use crate::names::Name;

/// A host's firewall: what its `table inet wgfabric` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    /// The tunnel interface.
    pub interface: String,
    /// The overlay prefixes: sources that may arrive only through the tunnel (anti-spoofing).
    pub overlay: Vec<Cidr>,
    /// Rules for packets from the tunnel to this host, first match wins, then drop; `None`
    /// when the inventory has no policy (everything passes).
    pub input: Option<Vec<FirewallRule>>,
    /// Rules for packets from the tunnel that this host forwards; `None` when it forwards
    /// nothing or the inventory has no policy.
    pub forward: Option<Vec<FirewallRule>>,
    /// Strict underlay input, when the host opts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<Strict>,
}

/// One rule of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    /// The policy rule it comes from (counters and logs are named after it).
    pub name: Name,
    /// What it does.
    pub verdict: Verdict,
    /// Source prefixes.
    pub from: Vec<Cidr>,
    /// Destination prefixes; empty in `input`, where the destination is the host.
    pub to: Vec<Cidr>,
    /// Protocols and ports; empty for all traffic.
    pub ports: Vec<PortSpec>,
}

/// Strict underlay input: on interfaces other than the tunnel and loopback, only replies, the
/// WireGuard port, ICMP and the listed ports are let in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strict {
    /// The WireGuard listen port, if fixed.
    pub wireguard_port: Option<u16>,
    /// Other ports open on the underlay (SSH unless the inventory says otherwise).
    pub open: Vec<PortSpec>,
}

/// The name of the relays' own rule, which lets the failover probes through.
pub const PROBES: &str = "failover-probes";

/// The relays' own rule: echo requests from the overlay, which failover monitors send to tell
/// whether a relay is alive, always reach them.
pub(crate) fn probes(overlay: Vec<Cidr>) -> FirewallRule {
    FirewallRule {
        name: PROBES.parse().expect("a valid name"),
        verdict: Verdict::Allow,
        from: overlay,
        to: Vec::new(),
        ports: vec![PortSpec { protocol: Protocol::Icmp, ports: None }],
    }
}
