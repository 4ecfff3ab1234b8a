//! The desired configuration of one host's interface, as plain data: what every renderer
//! prints, what `plan` compares, and what an agent diffs against a live device.
//!
//! Relay failover is part of the data. A spoke (or a mesh member) peers with every relay of
//! its network, but an allowed IP belongs to one peer only, so the rest of the overlay and the
//! subnets behind hosts it does not peer with (its *failover routes*) ride on its *active*
//! relay: the first of the network's relay order at render time. Every other relay carries
//! only its own addresses and routes. Failing over means moving the failover routes to the
//! next relay in [`Failover::relays`], which [`HostConfig::with_active_relay`] computes.

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use crate::cidr::{Cidr, IfAddr};
use crate::endpoint::Endpoint;
use crate::inventory::{Role, Tunnel};
use crate::key_source::KeySource;
use crate::names::Name;
use crate::paths::DirectPaths;
use crate::policy::Firewall;

/// One host's desired WireGuard interface. Contains no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// The host.
    pub host: Name,
    /// Its network.
    pub network: Name,
    /// Its role there.
    pub role: Role,
    /// Interface name, such as `wg0`.
    pub interface: String,
    /// Overlay addresses with the overlay's prefix length, IPv4 first.
    pub addresses: Vec<IfAddr>,
    /// Fixed UDP listen port, or `None` for a random one.
    pub listen_port: Option<u16>,
    /// Interface MTU.
    pub mtu: u16,
    /// Subnets behind this host that it routes for the fabric (it must forward).
    pub routes: Vec<Cidr>,
    /// Split or full tunnel.
    pub tunnel: Tunnel,
    /// The host's public key.
    #[serde(with = "crate::serde_keys")]
    pub public_key: PublicKey,
    /// Where the host reads its private key. Documents written before key sources call it
    /// `private_key_file` and hold a path.
    #[serde(alias = "private_key_file")]
    pub key_source: KeySource,
    /// Relay order and the routes that move between relays; `None` for relays and for full
    /// mesh members, whose peers are all direct.
    pub failover: Option<Failover>,
    /// Peers: relays in priority order, then the others by name.
    pub peers: Vec<PeerConfig>,
    /// The host's nftables table, when the inventory has a policy or the host asked for
    /// strict underlay input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    /// The other spokes this spoke may try direct paths with (spokes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<DirectPaths>,
}

/// One peer of a host's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    /// The peer host.
    pub name: Name,
    /// Its role.
    pub role: Role,
    /// Its public key.
    #[serde(with = "crate::serde_keys")]
    pub public_key: PublicKey,
    /// Where to reach it, if it has a stable endpoint.
    pub endpoint: Option<Endpoint>,
    /// Its allowed IPs, sorted (IPv4 first); for the active relay this includes the
    /// failover routes.
    pub allowed_ips: Vec<Cidr>,
    /// PersistentKeepalive in seconds, if any.
    pub persistent_keepalive: Option<u16>,
}

/// How a spoke or mesh member moves between relays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// The network's relays, most preferred first.
    pub relays: Vec<Name>,
    /// The relay that carries `routes` in this configuration.
    pub active: Name,
    /// Routes carried by the active relay on top of its own allowed IPs.
    pub routes: Vec<Cidr>,
}

impl HostConfig {
    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|peer| peer.name.as_str() == name)
    }

    /// The prefixes to route into the interface: every peer's allowed IPs except those already
    /// on-link through the interface's own addresses, sorted. This is what wg-quick and
    /// networkd install by themselves, and what a host brought up with `ip` and `wg setconf`
    /// must add. Moving the failover routes between relays does not change it.
    pub fn tunnel_routes(&self) -> Vec<Cidr> {
        let on_link: Vec<Cidr> =
            self.addresses.iter().filter_map(|a| Cidr::new(a.addr, a.prefix).ok()).collect();
        let mut routes: Vec<Cidr> = self
            .peers
            .iter()
            .flat_map(|peer| peer.allowed_ips.iter().copied())
            .filter(|cidr| !on_link.iter().any(|prefix| prefix.contains_net(cidr)))
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }

    /// This configuration with the failover routes moved to `relay`.
    ///
    /// `None` if the host has no failover or `relay` is not one of its relays.
    pub fn with_active_relay(&self, relay: &str) -> Option<Self> {
        let failover = self.failover.as_ref()?;
        let next = failover.relays.iter().find(|name| name.as_str() == relay)?;
        if *next == failover.active {
            // Already there: taking the routes off the active relay would drop them.
            return Some(self.clone());
        }
        let mut moved = self.clone();
        for peer in &mut moved.peers {
            if peer.name == failover.active {
                peer.allowed_ips.retain(|cidr| !failover.routes.contains(cidr));
            } else if peer.name == *next {
                peer.allowed_ips.extend(failover.routes.iter().copied());
                peer.allowed_ips.sort();
                peer.allowed_ips.dedup();
            }
        }
        if let Some(failover) = &mut moved.failover {
            failover.active = next.clone();
        }
        Some(moved)
    }
}
