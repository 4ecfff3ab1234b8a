//! The error for a network with no address left: which host went without, how full each
//! overlay prefix is, and the prefix length that would fit everybody.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::error::Error;
use crate::inventory::Network;
use crate::names::Name;

/// How many addresses of `prefix` can be handed out: all but the first (the network, or
/// IPv6's subnet-router anycast address) and, for IPv4 shorter than /31, the last
/// (broadcast). Must agree with what assignment skips.
pub(super) fn usable(prefix: &Cidr) -> u128 {
    let reserved = if prefix.is_ipv4() && prefix.prefix_len() < 31 { 2 } else { 1 };
    prefix.size().saturating_sub(reserved)
}

/// `host` could not get an address in `network`; `used` holds every address taken, `held`
/// those of them kept for removed hosts.
pub(super) fn no_address_left(
    host: &Name,
    network: &Network,
    used: &HashSet<IpAddr>,
    held: &HashSet<IpAddr>,
) -> Error {
    let mut counts = Vec::new();
    let mut fixes = Vec::new();
    let mut held_here = 0usize;
    for (key, prefix) in [("ipv4", network.ipv4), ("ipv6", network.ipv6)] {
        let Some(prefix) = prefix else { continue };
        let taken = used.iter().filter(|addr| prefix.contains(**addr)).count();
        held_here = held_here.max(held.iter().filter(|addr| prefix.contains(**addr)).count());
        let capacity = usable(&prefix);
        counts.push(format!("{key} {prefix} has {capacity} usable address(es), {taken} in use"));
        if u128::try_from(taken).unwrap_or(u128::MAX) >= capacity {
            if let Some(wider) = widened(&prefix, taken + 1) {
                fixes.push(format!("{key} = \"{wider}\""));
            }
        }
    }
    let mut fix = if fixes.is_empty() {
        "give the network a larger prefix".to_owned()
    } else {
        format!("give [network.{}] a larger prefix, such as {}", network.name, fixes.join(" and "))
    };
    if held_here > 0 {
        fix.push_str(&format!(
            ", or free the {held_here} address(es) held for removed hosts with `wgfabric \
             addresses release HOST`"
        ));
    }
    Error::Address(format!(
        "no overlay address left for host `{host}` in network `{}`: {}; {fix}",
        network.name,
        counts.join("; ")
    ))
}

/// The longest prefix containing `prefix` with room for `needed` addresses.
fn widened(prefix: &Cidr, needed: usize) -> Option<Cidr> {
    let needed = u128::try_from(needed).ok()?;
    (0..prefix.prefix_len())
        .rev()
        .filter_map(|len| Cidr::new(prefix.addr(), len).ok())
        .find(|wider| usable(wider) >= needed)
}
