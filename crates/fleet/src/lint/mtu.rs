//! `mtu`: the tunnel MTU must leave room for the encapsulation (80 bytes with an IPv6 outer
//! header: 40 IPv6 + 8 UDP + 32 WireGuard) under the underlay's MTU, and must not drop below
//! what the inner protocols require (1280 for IPv6, 576 for IPv4).

use super::Finding;
use crate::inventory::Inventory;

pub(super) const NAME: &str = "mtu";

/// IPv6 outer header, UDP header, WireGuard data message header and tag.
const OVERHEAD: u16 = 40 + 8 + 32;
const IPV6_MIN_MTU: u16 = 1280;
const IPV4_MIN_MTU: u16 = 576;

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    for host in inventory.hosts.values() {
        let field = format!("host.{}.mtu", host.name);
        let fitting = host.underlay_mtu.saturating_sub(OVERHEAD);
        if host.mtu > fitting {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    field.clone(),
                    format!(
                        "MTU {} leaves no room for the {OVERHEAD}-byte overhead on a {}-byte underlay; \
                         packets would fragment or vanish",
                        host.mtu, host.underlay_mtu
                    ),
                    format!("set mtu = {fitting} (or lower)"),
                )
                .on_host(host),
            );
        }
        let network = inventory.network_of(host);
        let minimum = if network.ipv6.is_some() { IPV6_MIN_MTU } else { IPV4_MIN_MTU };
        if host.mtu < minimum {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    field,
                    format!(
                        "MTU {} is below the {minimum} bytes the overlay's protocols require",
                        host.mtu
                    ),
                    format!("set mtu between {minimum} and {fitting}"),
                )
                .on_host(host),
            );
        }
    }
}
