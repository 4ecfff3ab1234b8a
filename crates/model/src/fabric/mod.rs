//! A [`Fabric`]: the inventory together with its lock, from which every host's
//! [`HostConfig`] is derived.
//!
//! Who peers with whom, per topology:
//!
//! | host is | peers with | AllowedIPs of each peer |
//! |---|---|---|
//! | relay | every other host of its network | the peer's addresses and routes |
//! | mesh member | relays, other mesh members | own addresses and routes; the active relay also carries the failover routes |
//! | spoke | relays | same as a mesh member |
//! | member of a `mesh` network | every other host | the peer's addresses and routes |
//!
//! The failover routes of a host are its network's overlay prefixes and the routes of every
//! non-relay host it does not peer with directly, or `0.0.0.0/0` and `::/0` for a full tunnel.

pub(crate) mod firewall;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use self::firewall::Resolved;
use crate::cidr::{Cidr, IfAddr};
use crate::config::{Failover, HostConfig, PeerConfig};
use crate::error::Error;
use crate::inventory::{Host, Inventory, Role, Topology, Tunnel};
use crate::lock::{Assignment, Lock};
use crate::names::Name;
use crate::paths::{DirectMode, DirectPaths, DirectPeer, Never};

/// An inventory whose every host has addresses.
#[derive(Debug, Clone)]
pub struct Fabric {
    inventory: Inventory,
    lock: Lock,
    networks: BTreeMap<Name, Members>,
    policy: Resolved,
}

/// A network's hosts, grouped the way peering needs them.
#[derive(Debug, Clone, Default)]
struct Members {
    /// Relays in priority order.
    relays: Vec<Name>,
    /// Mesh members by name.
    mesh: Vec<Name>,
    /// Non-relay hosts with routes, by name.
    routed: Vec<Name>,
}

impl Fabric {
    /// Reads an inventory and its lock file (`fabric.lock` beside it) and assigns addresses to
    /// new hosts in memory. Returns the fabric and whether the lock changed; writing the new
    /// lock is the caller's decision.
    ///
    /// # Errors
    /// Whatever [`Inventory::load`], [`Lock::load`] or [`Lock::update`] report.
    pub fn load(inventory_path: &Path) -> Result<(Self, bool), Error> {
        let inventory = Inventory::load(inventory_path)?;
        let old = Lock::load(&Lock::path_for(inventory_path))?;
        let lock = old.update(&inventory)?;
        let changed = lock != old;
        Ok((Self::new(inventory, lock)?, changed))
    }

    /// Like [`Fabric::load`], but refuses a lock that would change: what an agent wants, since
    /// only the controller's repository may assign addresses.
    ///
    /// # Errors
    /// [`Error::Address`] if the lock does not cover the inventory; else as [`Fabric::load`].
    pub fn load_locked(inventory_path: &Path) -> Result<Self, Error> {
        let inventory = Inventory::load(inventory_path)?;
        let lock_path = Lock::path_for(inventory_path);
        let old = Lock::load(&lock_path)?;
        let lock = old.update(&inventory)?;
        if lock != old {
            return Err(Error::Address(format!(
                "{} is out of date with {}: {}; run `wgfabric addresses update` and commit it",
                lock_path.display(),
                inventory_path.display(),
                stale_lock_hosts(&old, &lock)
            )));
        }
        Self::new(inventory, lock)
    }

    /// A fabric from an inventory and a lock that covers it (as [`Lock::update`] returns).
    ///
    /// # Errors
    /// [`Error::Address`] if a host has no addresses, or addresses in another network.
    pub fn new(inventory: Inventory, lock: Lock) -> Result<Self, Error> {
        let mut networks: BTreeMap<Name, Members> =
            inventory.networks.keys().map(|name| (name.clone(), Members::default())).collect();
        for host in inventory.hosts.values() {
            match lock.hosts.get(&host.name) {
                Some(assignment) if assignment.network == host.network => {}
                _ => {
                    return Err(Error::Address(format!(
                        "host `{}` has no addresses in network `{}` in the lock; run \
                         `wgfabric addresses update`",
                        host.name, host.network
                    )))
                }
            }
            let members = networks.entry(host.network.clone()).or_default();
            match host.role {
                Role::Relay => members.relays.push(host.name.clone()),
                Role::Mesh => members.mesh.push(host.name.clone()),
                Role::Spoke => {}
            }
            if host.role != Role::Relay && !host.routes.is_empty() {
                members.routed.push(host.name.clone());
            }
        }
        for members in networks.values_mut() {
            let hosts = &inventory.hosts;
            members.relays.sort_by(|a, b| (hosts[a].priority, a).cmp(&(hosts[b].priority, b)));
        }
        let policy = Resolved::new(&inventory, &lock);
        Ok(Self { inventory, lock, networks, policy })
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The lock, with every host of the inventory assigned.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// The overlay addresses of a host.
    pub fn addresses(&self, host: &str) -> Option<&Assignment> {
        self.lock.hosts.get(host)
    }

    /// The relays of a network, most preferred first.
    pub fn relay_order(&self, network: &str) -> &[Name] {
        self.networks.get(network).map_or(&[], |members| &members.relays)
    }

    /// The desired configuration of one host.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no such host.
    pub fn host_config(&self, host: &str) -> Result<HostConfig, Error> {
        let host =
            self.inventory.hosts.get(host).ok_or_else(|| {
                Error::NotFound(format!("no host named `{host}` in the inventory"))
            })?;
        Ok(self.config_of(host))
    }

    /// The desired configuration of every host, in name order.
    pub fn host_configs(&self) -> impl Iterator<Item = HostConfig> + '_ {
        self.inventory.hosts.values().map(|host| self.config_of(host))
    }

    fn config_of(&self, host: &Host) -> HostConfig {
        let network = self.inventory.network_of(host);
        let members = &self.networks[&host.network];
        let assignment = &self.lock.hosts[&host.name];
        let addresses = [(assignment.ipv4, network.ipv4), (assignment.ipv6, network.ipv6)]
            .into_iter()
            .filter_map(|(addr, prefix)| Some(IfAddr::in_network(addr?, &prefix?)))
            .collect();

        let direct: Vec<&Name> = match (network.topology, host.role) {
            (Topology::Mesh, _) | (_, Role::Relay) => self
                .inventory
                .hosts
                .values()
                .filter(|h| h.network == host.network)
                .map(|h| &h.name)
                .collect(),
            (_, Role::Mesh) => members.relays.iter().chain(&members.mesh).collect(),
            (_, Role::Spoke) => members.relays.iter().collect(),
        };
        let mut peers: Vec<PeerConfig> = direct
            .into_iter()
            .filter(|name| **name != host.name)
            .map(|name| self.peer(host, &self.inventory.hosts[name]))
            .collect();
        // Relays first in priority order, then the rest by name.
        let rank = |peer: &PeerConfig| members.relays.iter().position(|r| *r == peer.name);
        peers.sort_by(|a, b| match (rank(a), rank(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => core::cmp::Ordering::Less,
            (None, Some(_)) => core::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });

        let failover = self.failover(host, members, &peers);
        if let Some(failover) = &failover {
            if let Some(active) = peers.iter_mut().find(|peer| peer.name == failover.active) {
                active.allowed_ips.extend(failover.routes.iter().copied());
                active.allowed_ips.sort();
                active.allowed_ips.dedup();
            }
        }
        let mut config = HostConfig {
            host: host.name.clone(),
            network: host.network.clone(),
            role: host.role,
            interface: network.interface.clone(),
            addresses,
            listen_port: host.listen_port,
            mtu: host.mtu,
            routes: host.routes.clone(),
            tunnel: host.tunnel,
            public_key: host.public_key,
            key_source: host.key_source.clone(),
            failover,
            peers,
            firewall: None,
            paths: self.direct_paths(host),
        };
        config.firewall = self.policy.firewall(&self.inventory, &config);
        config
    }

    /// What a spoke's agent needs to try direct paths: every other spoke of its network,
    /// with the reason a pair never goes direct. `None` for relays and mesh members, which
    /// peer directly already or forward.
    fn direct_paths(&self, host: &Host) -> Option<DirectPaths> {
        if host.role != Role::Spoke {
            return None;
        }
        let network = self.inventory.network_of(host);
        let own: Vec<IpAddr> = self.lock.hosts[&host.name].addresses().collect();
        let peers = self
            .inventory
            .hosts
            .values()
            .filter(|peer| {
                peer.network == host.network && peer.role == Role::Spoke && peer.name != host.name
            })
            .map(|peer| {
                let addresses: Vec<IpAddr> = self.lock.hosts[&peer.name].addresses().collect();
                let never = if network.direct == DirectMode::Never {
                    Some(Never::Network)
                } else if host.direct == DirectMode::Never {
                    Some(Never::Host)
                } else if peer.direct == DirectMode::Never {
                    Some(Never::Peer)
                } else if self.policy.restricts(&own, &addresses) {
                    Some(Never::Policy)
                } else {
                    None
                };
                DirectPeer {
                    name: peer.name.clone(),
                    public_key: peer.public_key,
                    addresses: addresses.into_iter().map(Cidr::host).collect(),
                    endpoint: peer.endpoint.clone(),
                    site: peer.site.clone(),
                    never,
                }
            })
            .collect();
        Some(DirectPaths { site: host.site.clone(), lan: host.lan.clone(), peers })
    }

    /// `peer` as seen from `host`: its own addresses and routes.
    fn peer(&self, host: &Host, peer: &Host) -> PeerConfig {
        let assignment = &self.lock.hosts[&peer.name];
        let mut allowed_ips: Vec<Cidr> =
            assignment.addresses().map(Cidr::host).chain(peer.routes.iter().copied()).collect();
        allowed_ips.sort();
        allowed_ips.dedup();
        PeerConfig {
            name: peer.name.clone(),
            role: peer.role,
            public_key: peer.public_key,
            endpoint: peer.endpoint.clone(),
            allowed_ips,
            persistent_keepalive: host.keepalive,
        }
    }

    fn failover(&self, host: &Host, members: &Members, peers: &[PeerConfig]) -> Option<Failover> {
        let network = self.inventory.network_of(host);
        if host.role == Role::Relay || network.topology == Topology::Mesh {
            return None;
        }
        let active = members.relays.first()?.clone();
        let mut routes: Vec<Cidr> = match host.tunnel {
            Tunnel::Full => vec![Cidr::default_route(true), Cidr::default_route(false)],
            Tunnel::Split => {
                let direct: HashSet<&Name> = peers.iter().map(|peer| &peer.name).collect();
                let indirect = members
                    .routed
                    .iter()
                    .filter(|name| **name != host.name && !direct.contains(name));
                network
                    .overlays()
                    .chain(
                        indirect.flat_map(|name| self.inventory.hosts[name].routes.iter().copied()),
                    )
                    .collect()
            }
        };
        routes.sort();
        routes.dedup();
        Some(Failover { relays: members.relays.clone(), active, routes })
    }
}

/// Which hosts make a lock stale, for `--locked`: those the inventory added, those it
/// removed, and those whose addresses change (moved to another network, or given an address
/// in a family their network gained).
fn stale_lock_hosts(old: &Lock, new: &Lock) -> String {
    let names = |hosts: Vec<&Name>| hosts.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
    let added: Vec<&Name> = new.hosts.keys().filter(|h| !old.hosts.contains_key(*h)).collect();
    let removed: Vec<&Name> = old.hosts.keys().filter(|h| !new.hosts.contains_key(*h)).collect();
    let changed: Vec<&Name> = new
        .hosts
        .iter()
        .filter(|(host, assignment)| old.hosts.get(*host).is_some_and(|old| old != *assignment))
        .map(|(host, _)| host)
        .collect();
    let mut parts = Vec::new();
    for (what, hosts) in [
        ("hosts added to the inventory", added),
        ("hosts removed from it", removed),
        ("hosts whose addresses change", changed),
    ] {
        if !hosts.is_empty() {
            parts.push(format!("{what}: {}", names(hosts)));
        }
    }
    if parts.is_empty() {
        // Only held addresses differ (a hand-edited `[[removed]]` entry).
        parts.push("addresses held for removed hosts differ".to_owned());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;
