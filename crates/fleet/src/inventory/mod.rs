//! The inventory (`fabric.toml`): networks, hosts and external networks, read from TOML and
//! validated into [`Inventory`].
//!
//! Reading happens in two steps. `raw` lets serde check types, unknown fields, prefixes,
//! endpoints and keys, so `toml` points at the offending value. Then [`Inventory::parse`]
//! resolves names and defaults and checks what serde cannot (a host naming an unknown
//! network, a role its topology does not allow), pointing at the offending table.
//! Mistakes that still make a usable fabric are lint findings, not errors.

mod model;
mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use model::{External, Host, Inventory, KeySettings, Network, Role, Topology, Tunnel};
use raw::{RawHost, RawInventory, RawNetwork};
use toml::Spanned;

use crate::cidr::Cidr;
use crate::error::{Error, SourceError};
use crate::names::Name;
use crate::source::{Positions, SourceText};

/// Interface MTU when neither the host nor `[defaults]` sets one: 1500 minus the 80 bytes of
/// an IPv6 outer header, UDP header and WireGuard data header.
pub const DEFAULT_MTU: u16 = 1420;
/// Underlay MTU assumed by the MTU lint unless set.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
/// Relay priority when a relay does not set one.
pub const DEFAULT_RELAY_PRIORITY: u32 = 100;
/// Where a host keeps its private key unless `key_dir` or `key_file` says otherwise.
pub const DEFAULT_KEY_DIR: &str = "/etc/wgfabric";
/// The private key's file name inside the key directory.
pub const PRIVATE_KEY_FILE: &str = "private.key";
/// Interface name unless the network sets one.
pub const DEFAULT_INTERFACE: &str = "wg0";
/// Directory of encrypted private keys (central mode), relative to the inventory.
pub const DEFAULT_KEYS_DIR: &str = "keys";

impl Inventory {
    /// Reads and validates an inventory file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::Source`] naming the file, line and field
    /// of the first mistake.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::parse(path, &text)?)
    }

    /// Validates inventory text; `path` is only used in messages and to locate the lock file.
    ///
    /// # Errors
    /// The first mistake, located by file, line and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SourceError> {
        let source = SourceText::new(path, text);
        let raw: RawInventory = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        let mut inventory = Resolver { source: &source }.resolve(path, raw)?;
        inventory.positions = Positions::index(text);
        Ok(inventory)
    }
}

/// Turns the raw inventory into the validated one, reporting errors against `source`.
struct Resolver<'a, 'text> {
    source: &'a SourceText<'text>,
}

impl Resolver<'_, '_> {
    fn error<T>(&self, offset: usize, field: String, message: String) -> Result<T, SourceError> {
        Err(self.source.error_at(offset, field, message))
    }

    fn resolve(&self, path: &Path, raw: RawInventory) -> Result<Inventory, SourceError> {
        if raw.network.is_empty() {
            return Err(self.source.error_on_line(
                1,
                "network".into(),
                "no network declared; add a [network.NAME] table with ipv4 and/or ipv6".into(),
            ));
        }
        let mut networks = BTreeMap::new();
        for (name, network) in raw.network {
            let line = self.source.line(network.span().start);
            let network = self.network(name.into_inner(), network.into_inner(), line)?;
            networks.insert(network.name.clone(), network);
        }
        let defaults = raw.defaults;
        let key_dir = defaults.key_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_DIR));
        let mut hosts = BTreeMap::new();
        for (name, host) in raw.host {
            let (span, host) = (host.span(), host.into_inner());
            let network = self.host_network(&name, &host, &networks, span.start)?;
            let role = match &host.role {
                Some(role) if !network.topology.allows(*role.get_ref()) => {
                    return self.error(
                        role.span().start,
                        format!("host.{}.role", name.get_ref()),
                        format!(
                            "role `{}` is not allowed in network `{}` (topology `{}`); {}",
                            role.get_ref().as_str(),
                            network.name,
                            network.topology.as_str(),
                            "use `mixed` topology to combine mesh members, relays and spokes"
                        ),
                    )
                }
                Some(role) => *role.get_ref(),
                None => network.topology.default_role(),
            };
            if let Some(priority) = &host.priority {
                if role != Role::Relay {
                    return self.error(
                        priority.span().start,
                        format!("host.{}.priority", name.get_ref()),
                        "priority orders relays; remove it from this non-relay host".into(),
                    );
                }
            }
            let host = Host {
                network: network.name.clone(),
                role,
                listen_port: host.listen_port.or(host.endpoint.as_ref().map(|e| e.port())),
                endpoint: host.endpoint,
                public_key: host.public_key,
                nat: host.nat,
                routes: host.routes,
                groups: host.groups,
                tunnel: host.tunnel,
                mtu: host.mtu.or(defaults.mtu).unwrap_or(DEFAULT_MTU),
                underlay_mtu: host
                    .underlay_mtu
                    .or(defaults.underlay_mtu)
                    .unwrap_or(DEFAULT_UNDERLAY_MTU),
                keepalive: host
                    .keepalive
                    .or(if role == Role::Relay { None } else { defaults.keepalive })
                    .filter(|seconds| *seconds != 0),
                priority: host.priority.map_or(DEFAULT_RELAY_PRIORITY, Spanned::into_inner),
                key_file: host.key_file.unwrap_or_else(|| key_dir.join(PRIVATE_KEY_FILE)),
                line: self.source.line(span.start),
                name: name.into_inner(),
            };
            hosts.insert(host.name.clone(), host);
        }
        let mut externals = BTreeMap::new();
        for (name, external) in raw.external {
            let line = self.source.line(external.span().start);
            let external = external.into_inner();
            if let Some(host) = &external.host {
                if !hosts.contains_key(host.get_ref()) {
                    return self.error(
                        host.span().start,
                        format!("external.{}.host", name.get_ref()),
                        format!("no host named `{}` in the inventory", host.get_ref()),
                    );
                }
            }
            let name = name.into_inner();
            externals.insert(
                name.clone(),
                External {
                    name,
                    cidr: external.cidr,
                    kind: external.kind,
                    host: external.host.map(Spanned::into_inner),
                    description: external.description,
                    line,
                },
            );
        }
        for recipient in &raw.keys.recipients {
            if !recipient.get_ref().starts_with("age1") {
                return self.error(
                    recipient.span().start,
                    "keys.recipients".into(),
                    "an age recipient starts with `age1` (see `age-keygen -y IDENTITY`)".into(),
                );
            }
        }
        let keys = KeySettings {
            recipients: raw.keys.recipients.into_iter().map(Spanned::into_inner).collect(),
            dir: raw.keys.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_KEYS_DIR)),
        };
        Ok(Inventory {
            path: path.to_owned(),
            networks,
            hosts,
            externals,
            keys,
            positions: Positions::default(),
        })
    }

    fn network(&self, name: Name, raw: RawNetwork, line: usize) -> Result<Network, SourceError> {
        let family = |cidr: &Option<Spanned<Cidr>>, v4: bool, key: &str| match cidr {
            Some(cidr) if cidr.get_ref().is_ipv4() != v4 => self.error(
                cidr.span().start,
                format!("network.{name}.{key}"),
                format!(
                    "`{}` is not an {} prefix",
                    cidr.get_ref(),
                    if v4 { "IPv4" } else { "IPv6" }
                ),
            ),
            Some(cidr) => Ok(Some(*cidr.get_ref())),
            None => Ok(None),
        };
        let ipv4 = family(&raw.ipv4, true, "ipv4")?;
        let ipv6 = family(&raw.ipv6, false, "ipv6")?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(self.source.error_on_line(
                line,
                format!("network.{name}"),
                "a network needs an `ipv4` or an `ipv6` overlay prefix (or both)".into(),
            ));
        }
        let interface = match raw.interface {
            Some(interface) if !is_interface_name(interface.get_ref()) => {
                return self.error(
                    interface.span().start,
                    format!("network.{name}.interface"),
                    "an interface name is 1 to 15 letters, digits, `-`, `_` or `.`".into(),
                )
            }
            Some(interface) => interface.into_inner(),
            None => DEFAULT_INTERFACE.to_owned(),
        };
        Ok(Network { name, ipv4, ipv6, topology: raw.topology, interface, line })
    }

    fn host_network<'n>(
        &self,
        name: &Spanned<Name>,
        host: &RawHost,
        networks: &'n BTreeMap<Name, Network>,
        table: usize,
    ) -> Result<&'n Network, SourceError> {
        match &host.network {
            Some(network) => networks.get(network.get_ref()).map_or_else(
                || {
                    self.error(
                        network.span().start,
                        format!("host.{}.network", name.get_ref()),
                        format!(
                            "no network named `{}`; declared networks: {}",
                            network.get_ref(),
                            networks.keys().map(Name::as_str).collect::<Vec<_>>().join(", ")
                        ),
                    )
                },
                Ok,
            ),
            None if networks.len() == 1 => Ok(networks.values().next().expect("one network")),
            None => self.error(
                table,
                format!("host.{}.network", name.get_ref()),
                "several networks are declared; say which one this host is in".into(),
            ),
        }
    }
}

/// Whether `name` is usable as a Linux interface name (and as a file name).
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests;
