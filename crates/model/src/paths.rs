//! Direct paths between spokes: what the inventory allows, as data a spoke's desired state
//! carries for its agent.
//!
//! Spokes reach each other through a relay. Two spokes of one network may also talk over a
//! *direct path*, a WireGuard peer of each other, when their NATs let the packets through;
//! the agents at both ends find out at run time (`wgfabric-host`'s `paths`). Here, the
//! fabric only says which pairs may try ([`DirectPeer::never`] says why a pair may not), and
//! gives each agent what it needs to try: the peer's key, overlay addresses, inventory
//! endpoint and site.
//!
//! A pair stays relayed when either host or its network says `direct = "never"`, or when
//! the access policy restricts the traffic between them: the relays enforce the policy on
//! what they forward, and a direct path would not cross them.

use core::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use crate::cidr::Cidr;
use crate::endpoint::Endpoint;
use crate::names::Name;

/// Whether hosts may use direct paths (`direct = "auto" | "never"` in the inventory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectMode {
    /// Try a direct path with every spoke that may have one (the default).
    #[default]
    Auto,
    /// Always go through a relay.
    Never,
}

impl DirectMode {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Never => "never",
        }
    }
}

/// Why a pair of spokes never goes direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Never {
    /// This host says `direct = "never"`.
    Host,
    /// The peer says `direct = "never"`.
    Peer,
    /// The network says `direct = "never"`.
    Network,
    /// The access policy restricts traffic between the two, and only relays enforce it on
    /// the way.
    Policy,
}

impl Never {
    /// The reason as `wgfabric paths` shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Host => "direct-never-host",
            Self::Peer => "direct-never-peer",
            Self::Network => "direct-never-network",
            Self::Policy => "policy",
        }
    }
}

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a spoke's agent needs to try direct paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectPaths {
    /// The host's site (`site` in the inventory): LAN addresses are offered only between
    /// hosts of one site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Name>,
    /// LAN addresses the inventory lists for the host (`lan`), offered instead of its
    /// interfaces' addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan: Vec<IpAddr>,
    /// Every other spoke of the network, by name.
    pub peers: Vec<DirectPeer>,
}

/// Another spoke, as a candidate for a direct path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectPeer {
    /// The peer host.
    pub name: Name,
    /// Its public key.
    #[serde(with = "crate::serde_keys")]
    pub public_key: PublicKey,
    /// Its overlay addresses (/32 and /128): what moves to the direct peer once it works.
    pub addresses: Vec<Cidr>,
    /// Its inventory endpoint, tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Its site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Name>,
    /// Why the pair never goes direct; `None` when it may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never: Option<Never>,
}

/// Whether `ip` can be a LAN candidate: a unicast address another host can send to (not
/// unspecified, loopback, multicast or the IPv4 broadcast address).
pub fn is_lan_address(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast)
}

impl DirectPaths {
    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&DirectPeer> {
        self.peers.iter().find(|peer| peer.name.as_str() == name)
    }

    /// Whether LAN addresses may be offered between this host and `peer`: both have the
    /// same site.
    pub fn same_site(&self, peer: &DirectPeer) -> bool {
        self.site.is_some() && self.site == peer.site
    }
}
