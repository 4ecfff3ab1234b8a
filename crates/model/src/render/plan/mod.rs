//! `plan`: host by host, what a render would change compared with the last one.
//!
//! The last render is remembered as `state.json` in the output directory ([`RenderedState`]),
//! and a plan compares it with the state a render would record now. Since every rendered
//! file is a function of that state, the plan is empty exactly when a render would write the
//! same bytes. Every part of the state is compared, each shown in the inventory's terms
//! (`keepalive 25 -> 10`, `tunnel split -> full`).

mod state;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use state::{HostExports, NetworkState, RenderedState, STATE_FILE};
pub use text::plan_text;

use crate::cidr::Cidr;
use crate::config::{Failover, HostConfig, PeerConfig};
use crate::diff::{diff_peers, FieldChange, PeerChange, PeerState};
use crate::names::Name;
use crate::paths::DirectPaths;
use crate::policy::{FirewallRule, Strict};

/// A setting that changes, both sides written as the inventory would write them (lists
/// comma-separated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// Which setting (`addresses`, `listen_port`, `mtu`, `key_file`, `endpoint`, ...).
    pub setting: &'static str,
    /// Before, as text; `None` when unset or empty.
    pub old: Option<String>,
    /// After, as text; `None` when unset or empty.
    pub new: Option<String>,
}

/// What happens to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum HostPlan {
    /// A host rendered for the first time.
    Added {
        /// The host.
        host: Name,
        /// Its peers.
        peers: Vec<Name>,
    },
    /// A host that is no longer in the inventory.
    Removed {
        /// The host.
        host: Name,
    },
    /// A host whose configuration or exported facts change.
    Changed {
        /// The host.
        host: Name,
        /// Settings that change.
        settings: Vec<SettingChange>,
        /// Peers added, removed or changed, by name.
        peers: Vec<PeerChange<Name>>,
    },
}

/// What happens to one network, as the fabric-wide exports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum NetworkPlan {
    /// A network that is new.
    Added {
        /// The network.
        network: Name,
    },
    /// A network that is no longer in the inventory.
    Removed {
        /// The network.
        network: Name,
    },
    /// A network whose settings change.
    Changed {
        /// The network.
        network: Name,
        /// Settings that change.
        settings: Vec<SettingChange>,
    },
}

/// Everything a render would change, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Hosts that change.
    pub hosts: Vec<HostPlan>,
    /// Networks that change.
    pub networks: Vec<NetworkPlan>,
}

impl Plan {
    /// Whether a render would write exactly the files of the last one.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.networks.is_empty()
    }
}

/// Compares the state a render would record now with the last one.
pub fn plan(desired: &RenderedState, last: &RenderedState) -> Plan {
    let mut plan = Plan::default();
    let hosts: BTreeSet<&Name> = desired.hosts.keys().chain(last.hosts.keys()).collect();
    for host in hosts {
        match (desired.hosts.get(host), last.hosts.get(host)) {
            (Some(new), None) => plan.hosts.push(HostPlan::Added {
                host: host.clone(),
                peers: new.peers.iter().map(|peer| peer.name.clone()).collect(),
            }),
            (None, Some(_)) => plan.hosts.push(HostPlan::Removed { host: host.clone() }),
            (Some(new), Some(old)) => {
                let mut settings = changes(&host_settings(old), &host_settings(new));
                settings.extend(changes(
                    &export_settings(last.exports.get(host)),
                    &export_settings(desired.exports.get(host)),
                ));
                let peers = peer_changes(&old.peers, &new.peers);
                if !settings.is_empty() || !peers.is_empty() {
                    plan.hosts.push(HostPlan::Changed { host: host.clone(), settings, peers });
                }
            }
            (None, None) => {}
        }
    }
    let networks: BTreeSet<&Name> = desired.networks.keys().chain(last.networks.keys()).collect();
    for network in networks {
        let change = match (desired.networks.get(network), last.networks.get(network)) {
            (Some(_), None) => NetworkPlan::Added { network: network.clone() },
            (None, Some(_)) => NetworkPlan::Removed { network: network.clone() },
            (Some(new), Some(old)) => {
                let settings = changes(&network_settings(old), &network_settings(new));
                if settings.is_empty() {
                    continue;
                }
                NetworkPlan::Changed { network: network.clone(), settings }
            }
            (None, None) => continue,
        };
        plan.networks.push(change);
    }
    plan
}

/// A setting's name and its value as text, `None` when unset or empty.
type Setting = (&'static str, Option<String>);

/// The settings that differ between two lists of the same settings.
fn changes(old: &[Setting], new: &[Setting]) -> Vec<SettingChange> {
    old.iter()
        .zip(new)
        .filter(|((_, old), (_, new))| old != new)
        .map(|((setting, old), (_, new))| SettingChange {
            setting,
            old: old.clone(),
            new: new.clone(),
        })
        .collect()
}

fn optional(value: Option<impl ToString>) -> Option<String> {
    value.map(|value| value.to_string())
}

fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

fn list<T: ToString>(values: &[T]) -> Option<String> {
    (!values.is_empty())
        .then(|| values.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

/// Every setting of a host's configuration except its peers' own fields (compared peer by
/// peer). The destructuring is exhaustive on purpose: a new field of [`HostConfig`] or
/// [`Failover`] does not compile until the plan shows it.
fn host_settings(config: &HostConfig) -> Vec<Setting> {
    let HostConfig {
        host: _,
        network,
        role,
        interface,
        addresses,
        listen_port,
        mtu,
        routes,
        tunnel,
        public_key,
        key_source,
        failover,
        peers,
        firewall,
        paths,
    } = config;
    let (relays, active, failover_routes) = match failover {
        Some(Failover { relays, active, routes }) => (list(relays), text(active), list(routes)),
        None => (None, None, None),
    };
    let peer_order: Vec<&Name> = peers.iter().map(|peer| &peer.name).collect();
    vec![
        ("network", text(network)),
        ("role", text(role.as_str())),
        ("interface", text(interface)),
        ("addresses", list(addresses)),
        ("listen_port", optional(*listen_port)),
        ("mtu", text(mtu)),
        ("routes", list(routes)),
        ("tunnel", text(tunnel.as_str())),
        ("public_key", text(public_key.to_base64())),
        ("key_source", text(key_source)),
        ("relay_order", relays),
        ("active_relay", active),
        ("failover_routes", failover_routes),
        ("peer_order", list(&peer_order)),
        ("firewall_input", firewall.as_ref().and_then(|f| chain(f.input.as_deref()))),
        ("firewall_forward", firewall.as_ref().and_then(|f| chain(f.forward.as_deref()))),
        ("firewall_strict", firewall.as_ref().and_then(|f| f.strict.as_ref()).map(strict)),
        ("firewall_antispoof", firewall.as_ref().and_then(|f| list(&f.overlay))),
        ("site", paths.as_ref().and_then(|p| optional(p.site.as_ref()))),
        ("lan", paths.as_ref().and_then(|p| list(&p.lan))),
        ("direct_paths", paths.as_ref().and_then(direct_paths)),
    ]
}

/// The spokes a spoke may go direct with, and those it never does with the reason.
fn direct_paths(paths: &DirectPaths) -> Option<String> {
    let pairs: Vec<String> = paths
        .peers
        .iter()
        .map(|peer| match peer.never {
            None => peer.name.to_string(),
            Some(never) => format!("{} (never: {never})", peer.name),
        })
        .collect();
    list(&pairs)
}

/// A firewall chain's rules, each with everything that reaches the table.
fn chain(rules: Option<&[FirewallRule]>) -> Option<String> {
    let describe = |rule: &FirewallRule| {
        let FirewallRule { name, verdict, from, to, ports } = rule;
        let to = if to.is_empty() { "this host".to_owned() } else { cidrs(to) };
        let ports = if ports.is_empty() {
            "all traffic".to_owned()
        } else {
            list(ports).unwrap_or_default()
        };
        format!("{name} ({} from {} to {to}, {ports})", verdict.as_str(), cidrs(from))
    };
    rules.map(|rules| {
        let decided: Vec<String> = rules.iter().map(describe).collect();
        decided.into_iter().chain(["then drop the rest".to_owned()]).collect::<Vec<_>>().join("; ")
    })
}

fn strict(strict: &Strict) -> String {
    let Strict { wireguard_port, open } = strict;
    let open = list(open).unwrap_or_else(|| "nothing".into());
    format!(
        "WireGuard port {}, open {open}",
        optional(*wireguard_port).unwrap_or_else(|| "random".into())
    )
}

/// A host's exported facts; a host without any (a state written before they were recorded)
/// shows as unset.
fn export_settings(exports: Option<&HostExports>) -> Vec<Setting> {
    let HostExports { endpoint, nat, groups } = exports.cloned().unwrap_or_default();
    vec![("endpoint", optional(endpoint)), ("nat", text(nat)), ("groups", list(&groups))]
}

fn network_settings(network: &NetworkState) -> Vec<Setting> {
    let NetworkState { ipv4, ipv6, topology, interface, relay_order } = network;
    vec![
        ("ipv4", optional(*ipv4)),
        ("ipv6", optional(*ipv6)),
        ("topology", text(topology.as_str())),
        ("interface", text(interface)),
        ("relay_order", list(relay_order)),
    ]
}

/// Peers added, removed or changed, by name: what WireGuard applies, and the role the files
/// name.
fn peer_changes(old: &[PeerConfig], new: &[PeerConfig]) -> Vec<PeerChange<Name>> {
    let by_name = |peers: &[PeerConfig]| -> BTreeMap<Name, PeerState> {
        peers.iter().map(|p| (p.name.clone(), PeerState::from(p))).collect()
    };
    let mut changes = diff_peers(&by_name(new), &by_name(old));
    for peer in new {
        let Some(before) = old.iter().find(|old| old.name == peer.name) else { continue };
        let Some(role) = role_change(before, peer) else { continue };
        match changes.iter_mut().find(|change| changed_peer(change) == Some(&peer.name)) {
            Some(PeerChange::Changed { fields, .. }) => fields.push(role),
            _ => changes.push(PeerChange::Changed { peer: peer.name.clone(), fields: vec![role] }),
        }
    }
    changes.sort_by(|a, b| peer_name(a).cmp(peer_name(b)));
    changes
}

/// The part of a peer that [`PeerState`] leaves out. The destructuring is exhaustive on
/// purpose: a new field of [`PeerConfig`] does not compile until the plan shows it.
fn role_change(old: &PeerConfig, new: &PeerConfig) -> Option<FieldChange> {
    let PeerConfig {
        name: _,
        role,
        public_key: _,
        endpoint: _,
        allowed_ips: _,
        persistent_keepalive: _,
    } = new;
    (old.role != *role).then_some(FieldChange::Role { old: old.role, new: *role })
}

fn changed_peer(change: &PeerChange<Name>) -> Option<&Name> {
    match change {
        PeerChange::Changed { peer, .. } => Some(peer),
        PeerChange::Added { .. } | PeerChange::Removed { .. } => None,
    }
}

fn peer_name(change: &PeerChange<Name>) -> &Name {
    match change {
        PeerChange::Added { peer, .. }
        | PeerChange::Removed { peer, .. }
        | PeerChange::Changed { peer, .. } => peer,
    }
}

/// Prefixes as a plan writes them.
pub(crate) fn cidrs(list: &[Cidr]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
