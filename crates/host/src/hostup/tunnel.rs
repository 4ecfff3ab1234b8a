//! Full-tunnel policy routing, as wg-quick sets it up when a peer's allowed IPs include a
//! default route.
//!
//! The device marks its own encrypted UDP packets with a firewall mark; the default route
//! into the tunnel goes into a routing table of the same number; and two rules per family
//! send every unmarked packet to that table, after letting the main table answer for
//! everything but its default route:
//!
//! ```text
//!  ip rule add not fwmark M table M                       (all but the tunnel's own packets)
//!  ip rule add table main suppress_prefixlength 0         (main, minus its default route)
//!  ip route add 0.0.0.0/0 dev IFACE table M
//!  sysctl net.ipv4.conf.all.src_valid_mark=1             (reverse path checks see the mark)
//! ```
//!
//! So no packet leaves by the underlay's default route while the tunnel is up: only the
//! marked ones, which are the tunnel's own, and those to the main table's more specific
//! routes (the local networks).

use crate::netlink::{Netlink, NetlinkError, Rule, MAIN_TABLE};

/// The first table number wg-quick tries (its default port).
const FIRST_TABLE: u32 = 51820;

/// The kernel parameter that lets reverse path filtering use the firewall mark.
pub(crate) const SRC_VALID_MARK: &str = "net/ipv4/conf/all/src_valid_mark";

/// The table (and firewall mark) for the tunnel: the device's mark when it has one, else the
/// first table from 51820 that holds no route of either family.
///
/// # Errors
/// [`NetlinkError`] when the tables cannot be read.
pub(crate) fn choose_table(netlink: &mut Netlink, fwmark: u32) -> Result<u32, NetlinkError> {
    if fwmark != 0 {
        return Ok(fwmark);
    }
    let mut table = FIRST_TABLE;
    while netlink.table_in_use(table)? {
        table += 1;
    }
    Ok(table)
}

/// The two rules of one family, in the order they are added.
pub(crate) fn rules(table: u32, ipv4: bool) -> [Rule; 2] {
    let to_tunnel = Rule {
        ipv4,
        priority: None,
        fwmark: Some(table),
        invert: true,
        table,
        suppress_prefix_len: None,
    };
    let main_but_default = Rule {
        ipv4,
        priority: None,
        fwmark: None,
        invert: false,
        table: MAIN_TABLE,
        suppress_prefix_len: Some(0),
    };
    [to_tunnel, main_but_default]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_read_like_wg_quicks() {
        let [tunnel, main] = rules(51820, false);
        assert_eq!(tunnel.to_string(), "-6 rule not fwmark 0xca6c table 51820");
        assert_eq!(main.to_string(), "-6 rule table 254 suppress_prefixlength 0");
    }
}
