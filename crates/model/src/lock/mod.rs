//! The lock file (`fabric.lock`): every host's overlay addresses, committed beside the
//! inventory the way `Cargo.lock` is.
//!
//! Assignment is deterministic and sticky. A host keeps the addresses the lock gives it for as
//! long as it stays in its network. A new host gets the lowest free index of its network (new
//! hosts taken in name order), the same index in both families when the network has both. A
//! removed host's addresses are kept as a `[[removed]]` entry and are not handed out again
//! until `wgfabric addresses release HOST`; a host that comes back under the same name gets
//! them back. So adding, removing or reordering hosts never moves anybody else.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::cidr::Cidr;
use crate::error::{Error, SourceError};
use crate::inventory::{Inventory, Network};
use crate::names::Name;
use crate::toml_position::SourceText;

/// The lock file's name, next to the inventory.
pub const LOCK_FILE: &str = "fabric.lock";
const VERSION: u32 = 1;

/// The overlay addresses of one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assignment {
    /// The network the addresses belong to.
    pub network: Name,
    /// Address in the network's IPv4 overlay, if it has one.
    pub ipv4: Option<IpAddr>,
    /// Address in the network's IPv6 overlay, if it has one.
    pub ipv6: Option<IpAddr>,
}

impl Assignment {
    /// Both addresses, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4.iter().chain(self.ipv6.iter()).copied()
    }
}

/// Addresses of a removed host, held until released.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Removed {
    /// The host that had them.
    pub host: Name,
    /// What it had.
    pub assignment: Assignment,
}

/// The contents of `fabric.lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// Addresses of the hosts in the inventory.
    pub hosts: BTreeMap<Name, Assignment>,
    /// Addresses held for removed hosts, sorted.
    pub removed: Vec<Removed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: Spanned<u32>,
    #[serde(default)]
    host: BTreeMap<Name, Spanned<RawAssignment>>,
    #[serde(default)]
    removed: Vec<Spanned<RawRemoved>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssignment {
    network: Name,
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoved {
    host: Name,
    network: Name,
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
}

impl Lock {
    /// The lock file of an inventory: `fabric.lock` in the same directory.
    pub fn path_for(inventory: &Path) -> PathBuf {
        inventory.with_file_name(LOCK_FILE)
    }

    /// Reads a lock file; a missing file is an empty lock.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Source`] for a malformed file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parses lock file text, refusing an address given to two hosts.
    ///
    /// # Errors
    /// The first mistake, located by file, line and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SourceError> {
        let source = SourceText::new(path, text);
        let raw: RawLock = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        if *raw.version.get_ref() != VERSION {
            return Err(source.error_at(
                raw.version.span().start,
                "version".into(),
                format!(
                    "lock file version {} is not supported (expected {VERSION})",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut claim = |assignment: &Assignment, span: core::ops::Range<usize>, field: String| {
            for addr in assignment.addresses() {
                if !seen.insert(addr) {
                    return Err(source.error_at(
                        span.start,
                        field.clone(),
                        format!("address {addr} is given twice in the lock file"),
                    ));
                }
            }
            Ok(())
        };
        let mut lock = Self::default();
        for (host, entry) in raw.host {
            let span = entry.span();
            let RawAssignment { network, ipv4, ipv6 } = entry.into_inner();
            let assignment = Assignment { network, ipv4, ipv6 };
            claim(&assignment, span, format!("host.{host}"))?;
            lock.hosts.insert(host, assignment);
        }
        for entry in raw.removed {
            let span = entry.span();
            let RawRemoved { host, network, ipv4, ipv6 } = entry.into_inner();
            let assignment = Assignment { network, ipv4, ipv6 };
            claim(&assignment, span, "removed".into())?;
            lock.removed.push(Removed { host, assignment });
        }
        lock.removed.sort();
        Ok(lock)
    }

    /// The lock file's text: sorted, stable, with a header saying what it is.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Overlay addresses assigned by wgfabric. Commit this file beside fabric.toml.\n\
             # Addresses of removed hosts stay reserved until `wgfabric addresses release HOST`.\n",
        );
        let _ = writeln!(out, "version = {VERSION}");
        let write_addresses = |out: &mut String, assignment: &Assignment| {
            let _ = writeln!(out, "network = \"{}\"", assignment.network);
            if let Some(ipv4) = assignment.ipv4 {
                let _ = writeln!(out, "ipv4 = \"{ipv4}\"");
            }
            if let Some(ipv6) = assignment.ipv6 {
                let _ = writeln!(out, "ipv6 = \"{ipv6}\"");
            }
        };
        for (host, assignment) in &self.hosts {
            let _ = writeln!(out, "\n[host.{host}]");
            write_addresses(&mut out, assignment);
        }
        for removed in &self.removed {
            let _ = writeln!(out, "\n[[removed]]\nhost = \"{}\"", removed.host);
            write_addresses(&mut out, &removed.assignment);
        }
        out
    }

    /// The lock for `inventory`: existing assignments kept, removed hosts held, new hosts
    /// given the lowest free addresses.
    ///
    /// # Errors
    /// [`Error::Address`] if a network is full, or if a locked address no longer lies inside
    /// its network's prefix (the network was renumbered).
    pub fn update(&self, inventory: &Inventory) -> Result<Self, Error> {
        let mut next = Self { hosts: BTreeMap::new(), removed: self.removed.clone() };
        let mut new_hosts = Vec::new();
        for host in inventory.hosts.values() {
            match self.hosts.get(&host.name) {
                Some(locked) if locked.network == host.network => {
                    let network = inventory.network_of(host);
                    next.hosts.insert(host.name.clone(), fit(&host.name, locked, network)?);
                }
                _ => new_hosts.push(host),
            }
        }
        for (name, locked) in &self.hosts {
            let still_there = next.hosts.contains_key(name);
            if !still_there {
                next.removed.push(Removed { host: name.clone(), assignment: locked.clone() });
            }
        }
        let mut free = FreeAddresses::new(&next);
        // `inventory.hosts` is a sorted map, so new hosts come in name order.
        for host in new_hosts {
            let network = inventory.network_of(host);
            let revived = next
                .removed
                .iter()
                .position(|r| r.host == host.name && r.assignment.network == host.network);
            let assignment = match revived {
                Some(index) => fit(&host.name, &next.removed.remove(index).assignment, network)?,
                None => free.take(&host.name, network, None)?,
            };
            next.hosts.insert(host.name.clone(), assignment);
        }
        // Fill families a network gained since the host was locked.
        let incomplete: Vec<Name> = next
            .hosts
            .iter()
            .filter(|(name, a)| {
                let network = &inventory.networks[&inventory.hosts[*name].network];
                (network.ipv4.is_some() && a.ipv4.is_none())
                    || (network.ipv6.is_some() && a.ipv6.is_none())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in incomplete {
            let network = &inventory.networks[&inventory.hosts[&name].network];
            let assignment = &next.hosts[&name];
            let filled = free.take(&name, network, Some(assignment))?;
            next.hosts.insert(name, filled);
        }
        next.removed.sort();
        Ok(next)
    }

    /// Frees the addresses held for a removed host.
    ///
    /// # Errors
    /// [`Error::Refused`] if the host is still in the lock as a live host, [`Error::NotFound`]
    /// if nothing is held for it.
    pub fn release(&mut self, host: &str) -> Result<Vec<Removed>, Error> {
        if self.hosts.contains_key(host) {
            return Err(Error::Refused(format!(
                "host `{host}` is still in the inventory; remove it from fabric.toml first"
            )));
        }
        let (released, kept) = self.removed.drain(..).partition(|r| r.host.as_str() == host);
        self.removed = kept;
        if released.is_empty() {
            return Err(Error::NotFound(format!(
                "no addresses are held for removed host `{host}`"
            )));
        }
        Ok(released)
    }
}

/// Checks that a locked assignment still fits its network (inside the prefix, and not an
/// address the lock never hands out), dropping a family the network no longer has.
fn fit(host: &Name, locked: &Assignment, network: &Network) -> Result<Assignment, Error> {
    let refuse = |addr: IpAddr, prefix: Cidr, what: &str| {
        Err(Error::Address(format!(
            "{LOCK_FILE}: host.{host}: locked address {addr} is {what} network `{}` ({prefix}); \
             delete the host's entry in {LOCK_FILE} to assign a new address",
            network.name
        )))
    };
    let check = |addr: Option<IpAddr>, prefix: Option<Cidr>| match (addr, prefix) {
        (Some(addr), Some(prefix)) => match prefix.index_of(addr) {
            None => refuse(addr, prefix, "outside"),
            Some(0) if prefix.is_ipv4() => refuse(addr, prefix, "the network address of"),
            Some(0) => refuse(addr, prefix, "the subnet-router anycast address of"),
            Some(index) if FreeAddresses::usable(&prefix, index).is_none() => {
                refuse(addr, prefix, "the broadcast address of")
            }
            Some(_) => Ok(Some(addr)),
        },
        (None, Some(_)) => Ok(None),
        (_, None) => Ok(None),
    };
    Ok(Assignment {
        network: locked.network.clone(),
        ipv4: check(locked.ipv4, network.ipv4)?,
        ipv6: check(locked.ipv6, network.ipv6)?,
    })
}

/// Hands out the lowest free index of each network.
struct FreeAddresses {
    used: HashSet<IpAddr>,
    /// The part of `used` held for removed hosts, for the error when a network is full.
    held: HashSet<IpAddr>,
    /// Per network, the lowest index not yet examined.
    cursors: BTreeMap<Name, u128>,
}

impl FreeAddresses {
    fn new(lock: &Lock) -> Self {
        let removed = lock.removed.iter().map(|r| &r.assignment);
        let held: HashSet<IpAddr> = removed.clone().flat_map(Assignment::addresses).collect();
        let used = lock.hosts.values().chain(removed).flat_map(Assignment::addresses).collect();
        Self { used, held, cursors: BTreeMap::new() }
    }

    /// Usable addresses of a prefix: not the first (the network, or IPv6's subnet-router
    /// anycast address) and, for IPv4, not the last (broadcast).
    fn usable(prefix: &Cidr, index: u128) -> Option<IpAddr> {
        let last = prefix.size() - 1;
        let broadcast = prefix.is_ipv4() && prefix.prefix_len() < 31 && index == last;
        (index > 0 && !broadcast).then(|| prefix.nth(index)).flatten()
    }

    /// Addresses for `host` in `network`, completing `partial` if given (keeping the family it
    /// has and preferring its index for the other).
    fn take(
        &mut self,
        host: &Name,
        network: &Network,
        partial: Option<&Assignment>,
    ) -> Result<Assignment, Error> {
        let keep4 = partial.and_then(|a| a.ipv4);
        let keep6 = partial.and_then(|a| a.ipv6);
        let preferred = keep4
            .zip(network.ipv4)
            .and_then(|(addr, prefix)| prefix.index_of(addr))
            .or_else(|| keep6.zip(network.ipv6).and_then(|(addr, prefix)| prefix.index_of(addr)));
        let fits = |this: &Self, index: u128| -> Option<(Option<IpAddr>, Option<IpAddr>)> {
            let pick = |keep: Option<IpAddr>, prefix: Option<Cidr>| match (keep, prefix) {
                (Some(addr), _) => Some(Some(addr)),
                (None, None) => Some(None),
                (None, Some(prefix)) => {
                    let addr = Self::usable(&prefix, index)?;
                    (!this.used.contains(&addr)).then_some(Some(addr))
                }
            };
            Some((pick(keep4, network.ipv4)?, pick(keep6, network.ipv6)?))
        };
        let found = match preferred.and_then(|index| fits(self, index)) {
            Some(found) => Some(found),
            None => self.scan(network, fits),
        };
        let (ipv4, ipv6) = found
            .ok_or_else(|| exhausted::no_address_left(host, network, &self.used, &self.held))?;
        self.used.extend(ipv4.iter().chain(ipv6.iter()));
        Ok(Assignment { network: network.name.clone(), ipv4, ipv6 })
    }

    fn scan<T>(&mut self, network: &Network, fits: impl Fn(&Self, u128) -> Option<T>) -> Option<T> {
        let size = network.overlays().map(|prefix| prefix.size()).min().unwrap_or(0);
        let cursor = self.cursors.entry(network.name.clone()).or_insert(1);
        let start = *cursor;
        for index in start..size {
            if let Some(found) = fits(self, index) {
                // Everything below `index` is taken, so later scans can start here.
                self.cursors.insert(network.name.clone(), index);
                return Some(found);
            }
        }
        self.cursors.insert(network.name.clone(), size);
        None
    }
}

mod exhausted;
#[cfg(test)]
mod tests;
