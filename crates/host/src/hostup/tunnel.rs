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
//!
//! `wgfabric up` installs this once and records it; the agent keeps it as a [`Policy`], read
//! back and repaired every round. `src_valid_mark` is host-wide and other tunnels may need
//! it, so, as with wg-quick, neither takes it away again.

use std::collections::BTreeSet;

use crate::agent::LinkError;
use crate::netlink::{libc_errno, Netlink, NetlinkError, Route, Rule, MAIN_TABLE};
use crate::sysctl;
use wgfabric_model::cidr::Cidr;
use wgfabric_model::config::HostConfig;

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

/// The default routes of `config` through the tunnel: a full tunnel when there is one.
pub(crate) fn default_routes(config: &HostConfig) -> Vec<Cidr> {
    config.tunnel_routes().into_iter().filter(Cidr::is_default_route).collect()
}

/// The default route `destination` into interface `index`, in `table`.
pub(crate) fn table_route(destination: Cidr, table: u32, index: u32) -> Route {
    Route { table, ..Route::via(destination, index) }
}

/// Adds `rule`; returns whether it was added, `false` when an identical rule (another
/// tunnel's, which serves this one too) is there already.
///
/// # Errors
/// [`NetlinkError`] for any other refusal.
pub(crate) fn add_rule(netlink: &mut Netlink, rule: &Rule) -> Result<bool, NetlinkError> {
    match netlink.add_rule(rule) {
        Ok(()) => Ok(true),
        Err(error) if error.errno() == Some(libc_errno::EEXIST) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The full-tunnel policy routing of one interface in one table, as wanted or as it is: the
/// default routes in the table and the rules that lead to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    routes: BTreeSet<Cidr>,
    rules: BTreeSet<Rule>,
    src_valid_mark: bool,
}

impl Policy {
    /// What a tunnel with `defaults` (its default routes) needs in `table`.
    pub(crate) fn wanted(table: u32, defaults: &[Cidr]) -> Self {
        Self {
            routes: defaults.iter().copied().collect(),
            rules: defaults.iter().flat_map(|cidr| rules(table, cidr.is_ipv4())).collect(),
            src_valid_mark: defaults.iter().any(Cidr::is_ipv4),
        }
    }

    /// What the kernel has of the policy for interface `index` in `table`: the default routes
    /// into it there, and whichever of the four rules exist (at any priority).
    ///
    /// # Errors
    /// [`LinkError`] when the routes, rules or `src_valid_mark` cannot be read.
    pub(crate) fn live(netlink: &mut Netlink, table: u32, index: u32) -> Result<Self, LinkError> {
        let routes = netlink
            .routes(table)?
            .into_iter()
            .filter(|route| {
                route.destination.is_default_route()
                    && *route == table_route(route.destination, table, index)
            })
            .map(|route| route.destination)
            .collect();
        let wanted: BTreeSet<Rule> =
            [true, false].into_iter().flat_map(|v4| rules(table, v4)).collect();
        let rules = netlink
            .rules()?
            .into_iter()
            .map(|rule| Rule { priority: None, ..rule })
            .filter(|rule| wanted.contains(rule))
            .collect();
        Ok(Self { routes, rules, src_valid_mark: sysctl::read(SRC_VALID_MARK)? == "1" })
    }

    /// What `self` (the live policy) lacks against `wanted`, in words.
    pub(crate) fn drift_from(&self, wanted: &Self) -> Vec<String> {
        let mut drift: Vec<String> = wanted
            .routes
            .difference(&self.routes)
            .map(|route| format!("full-tunnel route {route} missing"))
            .collect();
        drift.extend(wanted.rules.difference(&self.rules).map(|rule| format!("{rule} missing")));
        if wanted.src_valid_mark && !self.src_valid_mark {
            drift.push("src_valid_mark off".to_owned());
        }
        drift
    }

    /// Brings the policy of interface `index` (`interface` in errors) in `table` from `self`
    /// to `wanted`: adds what is missing, removes what `wanted` no longer has.
    ///
    /// # Errors
    /// The first request that failed; what came before it stays applied.
    pub(crate) fn apply(
        &self,
        wanted: &Self,
        netlink: &mut Netlink,
        table: u32,
        index: u32,
        interface: &str,
    ) -> Result<(), LinkError> {
        // Rules first: without them no packet is sent to the table whose route goes away.
        for rule in self.rules.difference(&wanted.rules) {
            netlink.delete_rule(rule)?;
        }
        for route in self.routes.difference(&wanted.routes) {
            netlink.delete_route(&table_route(*route, table, index), interface)?;
        }
        for route in wanted.routes.difference(&self.routes) {
            netlink.add_route(&table_route(*route, table, index), interface)?;
        }
        for rule in wanted.rules.difference(&self.rules) {
            add_rule(netlink, rule)?;
        }
        if wanted.src_valid_mark && !self.src_valid_mark {
            sysctl::write(SRC_VALID_MARK, "1")?;
        }
        Ok(())
    }
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
