//! The kernel side of the interface that the userspace API does not cover: addresses, MTU,
//! link state, routes into the tunnel and IP forwarding, set over netlink
//! ([`crate::netlink`]) and `/proc/sys` ([`crate::sysctl`]) as wg-quick would set them with
//! `ip` and `sysctl`.
//!
//! [`Link::live`] reads what the kernel has; [`Link::apply`] changes only what differs between
//! two states, and removes what the first has and the second does not. Default routes
//! (`0.0.0.0/0`, `::/0`, full tunnels) never go into the main table: they go into the
//! tunnel's own table with the policy routing that `wgfabric up` sets too
//! ([`tunnel::Policy`]).
//!
//! Forwarding is switched on per interface, never for the whole host: IPv4 on the tunnel and,
//! for a host that routes subnets, on the interfaces towards them (where the replies come in);
//! IPv6 with `force_forwarding` on the tunnel. These settings go away with their interface.
//! Only a kernel older than 6.17, which has no per-interface IPv6 forwarding, gets
//! `net/ipv6/conf/all/forwarding`; the interfaces that accepted router advertisements then get
//! `accept_ra=2`, so that a default route learned from them is not lost. Both are returned as
//! [`sysctl::Changes`], for the caller to restore.

use std::collections::BTreeSet;

use crate::hostup::tunnel::{self, Policy};
use crate::netlink::{Netlink, NetlinkError, Route, MAIN_TABLE};
use crate::sysctl::{self, SysctlError};
use wgfabric_model::cidr::{Cidr, IfAddr};
use wgfabric_model::config::HostConfig;
use wgfabric_model::inventory::Role;

/// Why the link could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LinkError {
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A kernel parameter could not be read or written.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// The kernel side of an interface, as wanted or as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Link {
    addresses: BTreeSet<IfAddr>,
    /// Routes into the interface in the main table.
    routes: BTreeSet<Cidr>,
    /// The prefixes of the addresses, which the kernel routes into the interface by itself:
    /// wanted, or as the kernel has them.
    on_link: BTreeSet<Cidr>,
    mtu: Option<u16>,
    up: bool,
    /// Whether the interface forwards.
    forwarding: bool,
    /// Subnets behind the host, whose interfaces forward too. Configuration, not state:
    /// [`Link::live`] leaves it empty.
    subnets: BTreeSet<Cidr>,
    /// The full-tunnel table and its policy routing.
    full_tunnel: Option<(u32, Policy)>,
}

/// `net/ipv6/conf/IFACE/force_forwarding`: per-interface IPv6 forwarding (Linux 6.17).
fn force_forwarding(interface: &str) -> String {
    format!("net/ipv6/conf/{interface}/force_forwarding")
}

fn ipv4_forwarding(interface: &str) -> String {
    format!("net/ipv4/conf/{interface}/forwarding")
}

impl Link {
    /// What `config` needs on its interface, with its default routes (if any) in `table`.
    pub(crate) fn of(config: &HostConfig, table: Option<u32>) -> Self {
        let defaults = tunnel::default_routes(config);
        let full_tunnel = table
            .filter(|_| !defaults.is_empty())
            .map(|table| (table, Policy::wanted(table, &defaults)));
        let forwarding = config.role == Role::Relay || !config.routes.is_empty();
        Self {
            addresses: config.addresses.iter().copied().collect(),
            on_link: config
                .addresses
                .iter()
                .filter_map(|address| Cidr::new(address.addr, address.prefix).ok())
                .collect(),
            routes: config
                .tunnel_routes()
                .into_iter()
                .filter(|cidr| !cidr.is_default_route())
                .collect(),
            mtu: Some(config.mtu),
            up: true,
            forwarding,
            subnets: if forwarding {
                config.routes.iter().copied().collect()
            } else {
                BTreeSet::new()
            },
            full_tunnel,
        }
    }

    /// The full-tunnel table, when there is one.
    pub(crate) fn table(&self) -> Option<u32> {
        self.full_tunnel.as_ref().map(|(table, _)| *table)
    }

    /// What the kernel has on `interface` now: its addresses (but the link-local ones the
    /// kernel made), MTU, state, the routes into it in the main table, whether it forwards
    /// and, with a `table`, the full-tunnel policy routing in it.
    ///
    /// # Errors
    /// [`NetlinkError::NoSuchInterface`] and the other failures to read.
    pub(crate) fn live(interface: &str, table: Option<u32>) -> Result<Self, LinkError> {
        let mut netlink = Netlink::open()?;
        let state = netlink.link(interface)?;
        let addresses: BTreeSet<IfAddr> = netlink.addresses(state.index)?.into_iter().collect();
        let routes = netlink
            .routes(MAIN_TABLE)?
            .into_iter()
            .filter(|route| route == &Route::via(route.destination, state.index))
            .map(|route| route.destination)
            .collect();
        let on_link = netlink.kernel_routes(state.index)?.into_iter().collect();
        let mut forwarding = sysctl::read(&ipv4_forwarding(interface))? == "1";
        if addresses.iter().any(|address| address.addr.is_ipv6()) {
            let key = force_forwarding(interface);
            let v6 = if sysctl::exists(&key) {
                sysctl::read(&key)?
            } else {
                sysctl::read("net/ipv6/conf/all/forwarding")?
            };
            forwarding &= v6 == "1";
        }
        let full_tunnel = match table {
            Some(table) => Some((table, Policy::live(&mut netlink, table, state.index)?)),
            None => None,
        };
        Ok(Self {
            addresses,
            routes,
            on_link,
            mtu: u16::try_from(state.mtu).ok(),
            up: state.up,
            forwarding,
            subnets: BTreeSet::new(),
            full_tunnel,
        })
    }

    /// The live policy in the table `wanted` has: none when `self` read another table.
    fn policy_for(&self, table: u32) -> Policy {
        match &self.full_tunnel {
            Some((live, policy)) if *live == table => policy.clone(),
            _ => Policy::default(),
        }
    }

    /// What `self` (the live state) lacks or has wrong against `wanted`, in words; empty when
    /// it matches. Addresses and routes the desired state does not name are not drift: others
    /// (wg-quick, an operator) may add their own.
    pub(crate) fn drift_from(&self, wanted: &Self) -> Vec<String> {
        let mut drift: Vec<String> = wanted
            .addresses
            .difference(&self.addresses)
            .map(|address| format!("address {address} missing"))
            .collect();
        drift.extend(
            wanted.routes.difference(&self.routes).map(|route| format!("route {route} missing")),
        );
        drift.extend(
            self.missing_on_link(wanted).into_iter().map(|route| format!("route {route} missing")),
        );
        if wanted.mtu.is_some() && wanted.mtu != self.mtu {
            drift.push(format!(
                "MTU {} instead of {}",
                self.mtu.map_or_else(|| "unknown".to_owned(), |mtu| mtu.to_string()),
                wanted.mtu.unwrap_or_default()
            ));
        }
        if wanted.up && !self.up {
            drift.push("link down".to_owned());
        }
        if wanted.forwarding && !self.forwarding {
            drift.push("forwarding off".to_owned());
        }
        if let Some((table, policy)) = &wanted.full_tunnel {
            drift.extend(self.policy_for(*table).drift_from(policy));
        }
        drift
    }

    /// The on-link routes of `wanted` that `self` (the live state) lost although it has their
    /// address and is up: removed by hand. An address added, or a link set up, brings its
    /// route back by itself.
    fn missing_on_link(&self, wanted: &Self) -> BTreeSet<Cidr> {
        if !self.up {
            return BTreeSet::new();
        }
        self.addresses
            .intersection(&wanted.addresses)
            .filter_map(|address| Cidr::new(address.addr, address.prefix).ok())
            .filter(|prefix| !self.on_link.contains(prefix) && !self.routes.contains(prefix))
            .collect()
    }

    /// Brings `interface` from `self` (what it has: [`Link::live`], or what was set before)
    /// to `wanted`. Returns the host-wide parameters it had to change (see the module's doc).
    ///
    /// # Errors
    /// The first request that failed, naming what it asked; what came before it stays
    /// applied.
    pub(crate) fn apply(
        &self,
        wanted: &Self,
        interface: &str,
    ) -> Result<sysctl::Changes, LinkError> {
        let mut netlink = Netlink::open()?;
        let index = netlink.link(interface)?.index;
        let mut changes = sysctl::Changes::default();
        // A full tunnel given up, or moved to another table, goes first.
        if let Some((table, policy)) = &self.full_tunnel {
            if wanted.table() != Some(*table) {
                policy.apply(&Policy::default(), &mut netlink, *table, index, interface)?;
            }
        }
        // An on-link route put back after it was removed by hand stays while its address does.
        let removed =
            self.routes.difference(&wanted.routes).filter(|r| !wanted.on_link.contains(r));
        for route in removed {
            netlink.delete_route(&Route::via(*route, index), interface)?;
        }
        for address in self.addresses.difference(&wanted.addresses) {
            netlink.delete_address(interface, index, *address)?;
        }
        for address in wanted.addresses.difference(&self.addresses) {
            netlink.add_address(interface, index, *address)?;
        }
        if wanted.mtu != self.mtu || wanted.up != self.up {
            let mtu = wanted.mtu.filter(|mtu| Some(*mtu) != self.mtu).map(u32::from);
            let up = (wanted.up != self.up).then_some(wanted.up);
            netlink.set_link(interface, mtu, up)?;
        }
        for route in wanted.routes.difference(&self.routes).chain(&self.missing_on_link(wanted)) {
            netlink.add_route(&Route::via(*route, index), interface)?;
        }
        if wanted.forwarding && (!self.forwarding || wanted.subnets != self.subnets) {
            // Per-interface keys disappear with their interface, so they need no restoring.
            let ipv6 = wanted.addresses.iter().any(|address| address.addr.is_ipv6());
            let mut per_interface = sysctl::Changes::default();
            let subnets = wanted.subnets.iter().copied();
            forward(&mut netlink, interface, subnets, ipv6, &mut per_interface, &mut changes)?;
        } else if self.forwarding && !wanted.forwarding {
            sysctl::write(&ipv4_forwarding(interface), "0")?;
            let key = force_forwarding(interface);
            if sysctl::exists(&key) {
                sysctl::write(&key, "0")?;
            }
        }
        if let Some((table, policy)) = &wanted.full_tunnel {
            self.policy_for(*table).apply(policy, &mut netlink, *table, index, interface)?;
        }
        Ok(changes)
    }
}

/// Switches forwarding on for `interface` (IPv6 too with `ipv6`) and the interfaces towards
/// `subnets`, recording the per-interface parameters changed in `per_interface` and the
/// host-wide ones (old kernels, see the module's doc) in `host_wide`.
pub(crate) fn forward(
    netlink: &mut Netlink,
    interface: &str,
    subnets: impl Iterator<Item = Cidr>,
    ipv6: bool,
    per_interface: &mut sysctl::Changes,
    host_wide: &mut sysctl::Changes,
) -> Result<(), LinkError> {
    per_interface.set(&ipv4_forwarding(interface), "1")?;
    for subnet in subnets.filter(Cidr::is_ipv4) {
        let Some(index) = netlink.interface_to(subnet.addr())? else {
            tracing::warn!(%subnet, "no route to the subnet: no interface towards it forwards");
            continue;
        };
        let towards = netlink.link_name(index)?;
        if towards != interface {
            per_interface.set(&ipv4_forwarding(&towards), "1")?;
        }
    }
    if !ipv6 {
        return Ok(());
    }
    let key = force_forwarding(interface);
    if sysctl::exists(&key) {
        return Ok(per_interface.set(&key, "1")?);
    }
    tracing::warn!(
        "this kernel has no per-interface IPv6 forwarding: setting net.ipv6.conf.all.forwarding, \
         and accept_ra=2 where router advertisements were accepted"
    );
    // Forwarding stops `accept_ra=1` interfaces from accepting advertisements; `2` keeps them.
    let mut accepting = Vec::new();
    for entry in std::fs::read_dir("/proc/sys/net/ipv6/conf").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("net/ipv6/conf/{name}/accept_ra");
        if !matches!(name.as_str(), "all" | "default") && sysctl::read(&key).is_ok_and(|v| v == "1")
        {
            accepting.push(key);
        }
    }
    for key in accepting {
        host_wide.set(&key, "2")?;
    }
    host_wide.set("net/ipv6/conf/all/forwarding", "1")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use wgfabric_testkit::Netns;

    use super::*;
    use crate::namespace::enter;

    fn wanted() -> Link {
        Link {
            addresses: ["10.9.0.1/24", "fd09::1/64"].map(|a| a.parse().unwrap()).into(),
            routes: ["10.10.0.0/16", "fd10::/48"].map(|c| c.parse().unwrap()).into(),
            on_link: ["10.9.0.0/24", "fd09::/64"].map(|c| c.parse().unwrap()).into(),
            mtu: Some(1380),
            up: true,
            forwarding: true,
            subnets: BTreeSet::new(),
            full_tunnel: None,
        }
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn applies_what_differs_and_reads_it_back() {
        let ns = Netns::new("wgf-link");
        ns.run(&["ip", "link", "add", "wgt0", "type", "veth", "peer", "name", "wgt1"]);
        enter(Some(ns.name()), || {
            let before = Link::live("wgt0", None).unwrap();
            assert_eq!((before.up, before.addresses.len(), before.forwarding), (false, 0, false));
            before.apply(&wanted(), "wgt0").unwrap();
            assert_eq!(Link::live("wgt0", None).unwrap(), wanted());
            // Back again: everything added is removed, forwarding is off.
            wanted().apply(&before, "wgt0").unwrap();
            assert_eq!(Link::live("wgt0", None).unwrap(), before);
            Ok(())
        })
        .unwrap();
        let routes = ns.run(&["ip", "route", "show", "table", "all", "dev", "wgt0"]);
        assert!(!routes.contains("10.10."), "{routes}");
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn full_tunnel_policy_is_restored_and_removed() {
        let ns = Netns::new("wgf-link");
        ns.run(&["ip", "link", "add", "wgt0", "type", "veth", "peer", "name", "wgt1"]);
        let defaults = ["0.0.0.0/0", "::/0"].map(|c| c.parse().unwrap());
        let full =
            Link { full_tunnel: Some((51820, Policy::wanted(51820, &defaults))), ..wanted() };
        enter(Some(ns.name()), || {
            let before = Link::live("wgt0", None).unwrap();
            before.apply(&full, "wgt0").unwrap();
            assert_eq!(Link::live("wgt0", Some(51820)).unwrap().drift_from(&full), [""; 0]);
            Ok(())
        })
        .unwrap();
        ns.run(&["ip", "-6", "rule", "del", "not", "fwmark", "51820", "table", "51820"]);
        ns.run(&["ip", "route", "del", "default", "dev", "wgt0", "table", "51820"]);
        enter(Some(ns.name()), || {
            let live = Link::live("wgt0", Some(51820)).unwrap();
            assert_eq!(
                live.drift_from(&full),
                [
                    "full-tunnel route 0.0.0.0/0 missing",
                    "-6 rule not fwmark 0xca6c table 51820 missing"
                ]
            );
            live.apply(&full, "wgt0").unwrap();
            let live = Link::live("wgt0", Some(51820)).unwrap();
            assert_eq!(live.drift_from(&full), [""; 0]);
            // The default route gone from the desired state: its policy goes too.
            live.apply(&wanted(), "wgt0").unwrap();
            Ok(())
        })
        .unwrap();
        for family in ["-4", "-6"] {
            let rules = ns.run(&["ip", family, "rule"]);
            assert!(!rules.contains("51820") && !rules.contains("suppress"), "{rules}");
        }
        let table = ns.run(&["ip", "route", "show", "table", "all", "dev", "wgt0"]);
        assert!(!table.contains("51820"), "{table}");
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn unknown_interfaces_and_conflicting_routes_are_named() {
        let ns = Netns::new("wgf-link");
        ns.run(&["ip", "link", "add", "wgt0", "type", "veth", "peer", "name", "wgt1"]);
        ns.run(&["ip", "route", "add", "10.10.0.0/16", "dev", "lo"]);
        enter(Some(ns.name()), || {
            let missing = Link::live("wgt-missing", None).unwrap_err();
            assert_eq!(missing.to_string(), "no interface named `wgt-missing`");
            let conflict = Link::live("wgt0", None).unwrap().apply(&wanted(), "wgt0").unwrap_err();
            let text = conflict.to_string();
            assert!(text.starts_with("add route 10.10.0.0/16 dev wgt0: "), "{text}");
            assert!(text.contains("conflicts with one already there"), "{text}");
            Ok(())
        })
        .unwrap();
    }
}
