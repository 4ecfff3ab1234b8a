//! `mtu`: the tunnel MTU must leave room for the encapsulation (80 bytes with an IPv6 outer
//! header: 40 IPv6 + 8 UDP + 32 WireGuard) under the underlay's MTU, and must not drop below
//! what the inner protocols require (1280 for IPv6, 576 for IPv4). When the underlay cannot
//! carry even the smallest such tunnel MTU, no `mtu` helps: the fix is the underlay's.

use super::Finding;
use crate::inventory::{Host, Inventory};

pub(super) const NAME: &str = "mtu";

/// IPv6 outer header, UDP header, WireGuard data message header and tag.
const OVERHEAD: u16 = 40 + 8 + 32;
const IPV6_MIN_MTU: u16 = 1280;
const IPV4_MIN_MTU: u16 = 576;

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    for host in inventory.hosts.values() {
        let network = inventory.network_of(host);
        let (minimum, inner) =
            if network.ipv6.is_some() { (IPV6_MIN_MTU, "IPv6") } else { (IPV4_MIN_MTU, "IPv4") };
        if let Some(finding) = check_host(host, minimum, inner) {
            findings.push(finding.on_host(host));
        }
    }
}

/// At most one finding per host: the one whose fix makes the MTU right.
fn check_host(host: &Host, minimum: u16, inner: &str) -> Option<Finding> {
    let name = &host.name;
    let fitting = host.underlay_mtu.saturating_sub(OVERHEAD);
    if fitting < minimum {
        let needed = minimum + OVERHEAD;
        return Some(Finding::error(
            NAME,
            host.line,
            format!("host.{name}.underlay_mtu"),
            format!(
                "underlay MTU {} is too small for WireGuard: an overlay carrying {inner} needs a \
                 tunnel MTU of at least {minimum}, plus {OVERHEAD} bytes of encapsulation, so \
                 no mtu fits",
                host.underlay_mtu
            ),
            format!(
                "raise underlay_mtu to at least {needed} (and make sure the path under the \
                 tunnel carries packets that large)"
            ),
        ));
    }
    let field = format!("host.{name}.mtu");
    if host.mtu > fitting {
        return Some(Finding::error(
            NAME,
            host.line,
            field,
            format!(
                "MTU {} leaves no room for the {OVERHEAD}-byte overhead on a {}-byte underlay; \
                 packets would fragment or vanish",
                host.mtu, host.underlay_mtu
            ),
            format!("set mtu = {fitting} (or lower, down to {minimum})"),
        ));
    }
    if host.mtu < minimum {
        let fix = if fitting == minimum {
            format!("set mtu = {minimum}")
        } else {
            format!("set mtu between {minimum} and {fitting}")
        };
        return Some(Finding::error(
            NAME,
            host.line,
            field,
            format!("MTU {} is below the {minimum} bytes {inner} requires", host.mtu),
            fix,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::tests::findings_of;

    fn findings(host: &str, ipv6: bool) -> Vec<Finding> {
        let network = if ipv6 { "ipv6 = \"fd00::/64\"\n" } else { "" };
        findings_of(
            check,
            &format!("[network.n]\nipv4 = \"10.0.0.0/24\"\n{network}\n[host.a]\n{host}"),
        )
    }

    /// Every fix the rule suggests is possible: an mtu it names lies in the valid range, and
    /// when no mtu is valid it asks for a larger underlay instead.
    #[test]
    fn every_fix_is_possible() {
        for underlay in [0u16, 40, 600, 1300, 1359, 1360, 1361, 1400, 1500, 9000] {
            for mtu in [0u16, 500, 576, 1000, 1280, 1281, 1420, 1500, 8920, 9000] {
                for ipv6 in [false, true] {
                    let host = format!("mtu = {mtu}\nunderlay_mtu = {underlay}\n");
                    let found = findings(&host, ipv6);
                    let minimum = if ipv6 { IPV6_MIN_MTU } else { IPV4_MIN_MTU };
                    let fitting = underlay.saturating_sub(OVERHEAD);
                    let valid = (minimum..=fitting).contains(&mtu);
                    assert_eq!(found.is_empty(), valid, "{host} ipv6={ipv6}: {found:?}");
                    for finding in found {
                        let numbers: Vec<u16> = finding
                            .fix
                            .split(|c: char| !c.is_ascii_digit())
                            .filter_map(|word| word.parse().ok())
                            .collect();
                        if fitting < minimum {
                            assert!(finding.fix.starts_with("raise underlay_mtu"), "{finding:?}");
                            assert_eq!(finding.field, "host.a.underlay_mtu");
                            assert_eq!(numbers[0], minimum + OVERHEAD);
                        } else {
                            assert!(finding.fix.starts_with("set mtu"), "{finding:?}");
                            assert!(
                                numbers.iter().all(|n| (minimum..=fitting).contains(n)),
                                "{finding:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_tiny_underlay_asks_for_a_larger_underlay() {
        let found = findings("underlay_mtu = 40\n", true);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("underlay MTU 40 is too small for WireGuard"));
        assert_eq!(found[0].fix.split(" (").next(), Some("raise underlay_mtu to at least 1360"));
    }
}
