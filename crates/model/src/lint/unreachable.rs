//! `unreachable`: a host with no path through the fabric. A relay needs an endpoint; a spoke
//! or mesh member needs a relay that has one (or an endpoint of its own for the relay to
//! dial); two peers that talk directly need an endpoint on at least one side.

use std::collections::BTreeMap;

use super::Finding;
use crate::inventory::{Host, Inventory, Role, Topology};
use crate::names::Name;

pub(super) const NAME: &str = "unreachable";

#[derive(Default)]
struct NetworkHosts<'a> {
    relays: Vec<&'a Host>,
    /// Hosts that peer directly with each other without a relay in between.
    direct: Vec<&'a Host>,
    /// Hosts that need a relay.
    relayed: Vec<&'a Host>,
}

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let mut networks: BTreeMap<&Name, NetworkHosts<'_>> = BTreeMap::new();
    for host in inventory.hosts.values() {
        let entry = networks.entry(&host.network).or_default();
        let mesh_network = inventory.networks[&host.network].topology == Topology::Mesh;
        match host.role {
            Role::Relay => entry.relays.push(host),
            Role::Mesh if mesh_network => entry.direct.push(host),
            Role::Mesh => {
                entry.direct.push(host);
                entry.relayed.push(host);
            }
            Role::Spoke => entry.relayed.push(host),
        }
    }
    for (network, hosts) in networks {
        for relay in hosts.relays.iter().filter(|relay| relay.endpoint.is_none()) {
            findings.push(
                Finding::error(
                    NAME,
                    relay.line,
                    format!("host.{}.endpoint", relay.name),
                    "relay has no endpoint, so no host behind NAT can reach it".into(),
                    "set endpoint = \"HOST:PORT\" to the relay's stable public address".into(),
                )
                .on_host(relay),
            );
        }
        let dialable_relay = hosts.relays.iter().any(|relay| relay.endpoint.is_some());
        for host in &hosts.relayed {
            let (message, fix) = if hosts.relays.is_empty() {
                (
                    format!("network `{network}` has no relay"),
                    "add a host with role = \"relay\"".to_owned(),
                )
            } else if !dialable_relay && host.endpoint.is_none() {
                (
                    "neither this host nor any relay has an endpoint, so no handshake can start"
                        .into(),
                    "set an endpoint on the relays".to_owned(),
                )
            } else {
                continue;
            };
            let field = format!("host.{}.role", host.name);
            findings.push(Finding::error(NAME, host.line, field, message, fix).on_host(host));
        }
        let silent: Vec<&&Host> =
            hosts.direct.iter().filter(|host| host.endpoint.is_none()).collect();
        if silent.len() >= 2 {
            for (index, host) in silent.iter().enumerate() {
                let other = silent[if index == 0 { 1 } else { 0 }];
                findings.push(
                    Finding::error(
                        NAME,
                        host.line,
                        format!("host.{}.endpoint", host.name),
                        format!(
                            "mesh peers `{}` and `{}` both lack an endpoint and cannot connect directly",
                            host.name, other.name
                        ),
                        "give mesh members an endpoint, or make this host a spoke of a mixed network".into(),
                    )
                    .on_host(host),
                );
            }
        }
    }
}
