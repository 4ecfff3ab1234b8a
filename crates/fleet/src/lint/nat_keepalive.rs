//! `nat-keepalive`: a host behind NAT with no PersistentKeepalive. Its NAT mapping expires
//! while it is idle and nobody can reach it until it sends something.

use super::Finding;
use crate::inventory::Inventory;

pub(super) const NAME: &str = "nat-keepalive";

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    for host in inventory.hosts.values().filter(|host| host.nat && host.keepalive.is_none()) {
        findings.push(
            Finding::error(
                NAME,
                host.line,
                format!("host.{}.keepalive", host.name),
                "host is behind NAT but sends no keepalive, so it is unreachable once idle".into(),
                "set keepalive = 25 on the host (or in [defaults])".into(),
            )
            .on_host(host),
        );
    }
}
