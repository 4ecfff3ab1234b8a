//! `duplicate-key`: two hosts with one public key. WireGuard identifies peers by key, so
//! only one of them could ever connect, and each would receive the other's traffic.

use std::collections::HashMap;

use super::Finding;
use crate::inventory::Inventory;

pub(super) const NAME: &str = "duplicate-key";

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let mut first = HashMap::new();
    for host in inventory.hosts.values() {
        if let Some(other) = first.insert(host.public_key, &host.name) {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    format!("host.{}.public_key", host.name),
                    format!("public key is also the key of host `{other}`"),
                    format!(
                        "run `wgfabric keygen {}` on the host and paste its public key",
                        host.name
                    ),
                )
                .on_host(host),
            );
            first.insert(host.public_key, other);
        }
    }
}
