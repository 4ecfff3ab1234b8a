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

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use model::{External, Host, Inventory, KeySettings, Network, Role, Topology, Tunnel};
use raw::{RawHost, RawInventory, RawNetwork, RawRule};
use toml::Spanned;

use crate::cidr::Cidr;
use crate::error::{Error, SourceError};
use crate::host_path::HostPath;
use crate::key_source::KeySource;
use crate::names::Name;
use crate::paths::{is_lan_address, DirectMode};
use crate::policy::{PortSpec, Protocol, Rule, Selector};
use crate::toml_position::{Positions, SourceText};

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
        let default_key_source = defaults.key_source.clone().unwrap_or_else(|| {
            let dir = defaults.key_dir.clone().unwrap_or_else(|| {
                DEFAULT_KEY_DIR.parse().expect("the default key directory is a plain path")
            });
            KeySource::File(dir.join(PRIVATE_KEY_FILE))
        });
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
            let lan = self.direct_knobs(&name, role, &host)?;
            let host = Host {
                network: network.name.clone(),
                role,
                listen_port: host.listen_port.or(host.endpoint.as_ref().map(|e| e.port())),
                endpoint: host.endpoint,
                public_key: host.public_key,
                nat: host.nat,
                routes: self.routes(&name, host.routes)?,
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
                key_source: self
                    .key_source(&name, host.key_file, host.key_source)?
                    .unwrap_or_else(|| default_key_source.clone()),
                strict_input: host.strict_input,
                open_ports: host.open_ports.unwrap_or_else(|| {
                    vec![PortSpec { protocol: Protocol::Tcp, ports: Some((22, 22)) }]
                }),
                direct: host.direct.map_or(DirectMode::Auto, Spanned::into_inner),
                site: host.site.map(Spanned::into_inner),
                lan,
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
        let policy = self.policy(raw.policy, &hosts, &externals)?;
        Ok(Inventory {
            path: path.to_owned(),
            networks,
            hosts,
            externals,
            keys,
            policy,
            positions: Positions::default(),
        })
    }

    /// Checks a host's direct-path knobs (`direct`, `site`, `lan`: spokes only; `lan` needs a
    /// `site` and unicast addresses) and returns its LAN addresses.
    fn direct_knobs(
        &self,
        name: &Spanned<Name>,
        role: Role,
        host: &RawHost,
    ) -> Result<Vec<IpAddr>, SourceError> {
        let field = |key: &str| format!("host.{}.{key}", name.get_ref());
        if role != Role::Spoke {
            let knobs = [
                ("direct", host.direct.as_ref().map(|d| d.span().start)),
                ("site", host.site.as_ref().map(|s| s.span().start)),
                ("lan", host.lan.as_ref().map(|l| l.span().start)),
            ];
            if let Some((key, Some(offset))) = knobs.into_iter().find(|(_, at)| at.is_some()) {
                return self.error(
                    offset,
                    field(key),
                    format!(
                        "direct paths are between spokes, and this host is a {}; remove `{key}`",
                        role.as_str()
                    ),
                );
            }
        }
        let Some(lan) = &host.lan else { return Ok(Vec::new()) };
        if host.site.is_none() {
            return self.error(
                lan.span().start,
                field("lan"),
                "LAN addresses are offered to hosts of the same site only; set `site` too".into(),
            );
        }
        for addr in lan.get_ref() {
            let ip = *addr.get_ref();
            if !is_lan_address(ip) {
                return self.error(
                    addr.span().start,
                    field("lan"),
                    format!("{ip} is not a unicast address another host can reach"),
                );
            }
        }
        Ok(lan.get_ref().iter().map(|addr| *addr.get_ref()).collect())
    }

    /// A host's routed subnets, refusing special-use ranges: a default route is the `tunnel`
    /// setting's job (and the `default-route` lint's), anything else there cannot be a subnet
    /// behind a host.
    fn routes(
        &self,
        host: &Spanned<Name>,
        routes: Vec<Spanned<Cidr>>,
    ) -> Result<Vec<Cidr>, SourceError> {
        for route in &routes {
            let cidr = route.get_ref();
            if let Some(why) = cidr.special_use().filter(|_| !cidr.is_default_route()) {
                return self.error(
                    route.span().start,
                    format!("host.{}.routes", host.get_ref()),
                    format!("route {cidr} {why}; a routed subnet is unicast space behind the host"),
                );
            }
        }
        Ok(routes.into_iter().map(Spanned::into_inner).collect())
    }

    /// The `[[policy]]` rules, every name they use checked.
    fn policy(
        &self,
        raw: Vec<Spanned<RawRule>>,
        hosts: &BTreeMap<Name, Host>,
        externals: &BTreeMap<Name, External>,
    ) -> Result<Vec<Rule>, SourceError> {
        let groups: BTreeSet<&Name> = hosts.values().flat_map(|h| h.groups.iter()).collect();
        let mut rules = Vec::with_capacity(raw.len());
        let mut names = BTreeSet::new();
        for (index, rule) in raw.into_iter().enumerate() {
            let line = self.source.line(rule.span().start);
            let rule = rule.into_inner();
            let field = |key: &str| format!("policy[{index}].{key}");
            let name = match rule.name {
                Some(name) if !names.insert(name.get_ref().clone()) => {
                    return self.error(
                        name.span().start,
                        field("name"),
                        format!(
                            "another rule is already named `{}`; names identify rules in \
                             counters and `explain`",
                            name.get_ref()
                        ),
                    )
                }
                Some(name) => name.into_inner(),
                None => format!("policy-{}", index + 1).parse().expect("a valid name"),
            };
            let mut sides = Vec::new();
            for (key, side) in [("from", rule.from), ("to", rule.to)] {
                if side.get_ref().is_empty() {
                    return self.error(
                        side.span().start,
                        field(key),
                        format!(
                            "`{key}` is empty; name hosts, `group:NAME`, `external:NAME` or `*`"
                        ),
                    );
                }
                let mut selectors = Vec::new();
                for selector in side.into_inner() {
                    if let Some(message) = unknown(selector.get_ref(), hosts, &groups, externals) {
                        return self.error(selector.span().start, field(key), message);
                    }
                    selectors.push(selector.into_inner());
                }
                sides.push(selectors);
            }
            let to = sides.pop().unwrap_or_default();
            let from = sides.pop().unwrap_or_default();
            rules.push(Rule { name, from, to, ports: rule.ports, verdict: rule.action, line });
        }
        Ok(rules)
    }

    /// A host's own key source: `key_source`, or `key_file` (not both).
    fn key_source(
        &self,
        host: &Spanned<Name>,
        key_file: Option<Spanned<HostPath>>,
        key_source: Option<Spanned<KeySource>>,
    ) -> Result<Option<KeySource>, SourceError> {
        match (key_file, key_source) {
            (Some(_), Some(source)) => self.error(
                source.span().start,
                format!("host.{}.key_source", host.get_ref()),
                "`key_file` and `key_source` both say where the key is; keep one \
                 (`key_file = \"/x\"` is `key_source = \"file:/x\"`)"
                    .into(),
            ),
            (Some(file), None) => Ok(Some(KeySource::File(file.into_inner()))),
            (None, source) => Ok(source.map(Spanned::into_inner)),
        }
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
        for (cidr, key) in [(&raw.ipv4, "ipv4"), (&raw.ipv6, "ipv6")] {
            let Some(cidr) = cidr else { continue };
            if let Some(problem) = overlay_problem(cidr.get_ref()) {
                return self.error(
                    cidr.span().start,
                    format!("network.{name}.{key}"),
                    format!("overlay {} {problem}", cidr.get_ref()),
                );
            }
        }
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
        Ok(Network {
            name,
            ipv4,
            ipv6,
            topology: raw.topology,
            interface,
            direct: raw.direct,
            line,
        })
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

/// What is wrong with a selector that names nothing in the inventory.
fn unknown(
    selector: &Selector,
    hosts: &BTreeMap<Name, Host>,
    groups: &BTreeSet<&Name>,
    externals: &BTreeMap<Name, External>,
) -> Option<String> {
    match selector {
        Selector::Any => None,
        Selector::Host(name) => (!hosts.contains_key(name)).then(|| {
            format!(
                "no host named `{name}`; groups are written `group:NAME`, externals \
                 `external:NAME`"
            )
        }),
        Selector::Group(name) => (!groups.contains(name)).then(|| {
            let known: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
            format!("no host is in group `{name}`; groups in use: {}", known.join(", "))
        }),
        Selector::External(name) => (!externals.contains_key(name)).then(|| {
            format!("no external network named `{name}`; declare it as [external.{name}]")
        }),
    }
}

/// Why `cidr` cannot be an overlay, if it cannot: a special-use range, or too small to hold a
/// host besides the network and broadcast addresses the lock never hands out.
fn overlay_problem(cidr: &Cidr) -> Option<String> {
    if let Some(why) = cidr.special_use() {
        return Some(format!(
            "{why}; use a private range such as 10.77.0.0/16 (IPv4) or a ULA such as \
             fd77:77::/64 (IPv6)"
        ));
    }
    let max = if cidr.is_ipv4() { 30 } else { 126 };
    (cidr.prefix_len() > max)
        .then(|| format!("has no room for hosts; use a prefix of /{max} or shorter"))
}

/// Whether `name` is usable as a Linux interface name (and as a file name).
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests;
