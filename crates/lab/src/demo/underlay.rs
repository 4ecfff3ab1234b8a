//! The network under the fabric, built from namespaces: an "internet" (a bridge) where the
//! relays and other public hosts sit, an office router that hides the inventory's NATed
//! hosts behind nftables masquerade, and a small network behind each subnet router.
//!
//! ```text
//!   relay-fra 192.0.2.1 ─┐                         ┌─ laptop-ana 192.168.77.10
//!   relay-iad 192.0.2.2 ─┼─ internet (bridge) ─ nat ┼─ ci-runner-1 192.168.77.11   …
//!                        │   192.0.2.0/24   .100 │.1  (masquerade out of `uplink`)
//!                                                  └─ router-aws ── aws-prod-vpc 10.20.0.2
//! ```
//!
//! Addresses come from the documentation and private ranges the example inventory does not
//! use, so they never collide with the overlay or the routed subnets.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::Error;
use crate::netns::{veth, CommandError, Netns};
use wgfabric_host::nftables;
use wgfabric_model::cidr::Cidr;

/// The public underlay (TEST-NET-1).
pub(crate) const INTERNET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);
/// The office LAN behind NAT.
pub(crate) const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 0);
/// Both underlay prefixes are /24.
const UNDERLAY_PREFIX: u8 = 24;
/// The NAT router's public address.
pub(crate) const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The NAT router's LAN address, the NATed hosts' gateway.
pub(crate) const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// Name of every host's underlay device.
pub(crate) const UPLINK: &str = "uplink";
const BRIDGE: &str = "inet";
const LAN_BRIDGE: &str = "lan";
/// The NAT router's nftables table.
const NAT_TABLE: &str = "wgfabric_demo";

/// Where a host is plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// On the internet, with this public address.
    Public(Ipv4Addr),
    /// On the office LAN behind the NAT router, with this private address.
    BehindNat(Ipv4Addr),
}

impl Site {
    /// The host's own underlay address.
    pub const fn address(self) -> Ipv4Addr {
        match self {
            Self::Public(addr) | Self::BehindNat(addr) => addr,
        }
    }

    /// The `n`-th public site (0-based): `192.0.2.(n+1)`.
    pub(crate) fn public(n: usize) -> Result<Self, Error> {
        offset(INTERNET, n + 1, 99).map(Self::Public)
    }

    /// The `n`-th site behind NAT (0-based): `192.168.77.(n+10)`.
    pub(crate) fn behind_nat(n: usize) -> Result<Self, Error> {
        offset(LAN, n + 10, 254).map(Self::BehindNat)
    }
}

fn offset(base: Ipv4Addr, n: usize, max: usize) -> Result<Ipv4Addr, Error> {
    let n = u8::try_from(n).ok().filter(|n| usize::from(*n) <= max).ok_or_else(|| {
        Error::Setup("the demo's underlay holds at most 99 hosts per site".into())
    })?;
    let [a, b, c, _] = base.octets();
    Ok(Ipv4Addr::new(a, b, c, n))
}

/// The shared part of the underlay: the internet and, when some host is behind NAT, the
/// office router. Its namespaces are deleted when it drops.
#[derive(Debug)]
pub(crate) struct Underlay {
    pub(crate) internet: Netns,
    pub(crate) nat: Option<Netns>,
    ports: usize,
}

impl Underlay {
    /// Builds the internet bridge and, if `with_nat`, the NAT router on it.
    pub(crate) fn build(prefix: &str, with_nat: bool) -> Result<Self, Error> {
        let internet = Netns::create(&format!("{prefix}-internet"))?;
        bridge(&internet, BRIDGE)?;
        let mut underlay = Self { internet, nat: None, ports: 0 };
        if with_nat {
            let nat = Netns::create(&format!("{prefix}-nat"))?;
            underlay.plug_public(&nat, NAT_PUBLIC)?;
            bridge(&nat, LAN_BRIDGE)?;
            nat.add_address(LAN_BRIDGE, &format!("{NAT_GATEWAY}/{UNDERLAY_PREFIX}"))?;
            nat.sysctl("net.ipv4.ip_forward", "1")?;
            masquerade(&nat)?;
            underlay.nat = Some(nat);
        }
        Ok(underlay)
    }

    /// Plugs `host` in at `site`: an `uplink` device with its address and a default route.
    pub(crate) fn plug(&mut self, host: &Netns, site: Site) -> Result<(), Error> {
        match (site, &self.nat) {
            (Site::Public(addr), _) => self.plug_public(host, addr),
            (Site::BehindNat(addr), Some(nat)) => {
                self.ports += 1;
                let port = format!("h{}", self.ports);
                veth(host, UPLINK, nat, &port)?;
                nat.exec(&["ip", "link", "set", &port, "master", LAN_BRIDGE])?;
                host.add_address(UPLINK, &format!("{addr}/{UNDERLAY_PREFIX}"))?;
                host.exec(&["ip", "route", "add", "default", "via", &NAT_GATEWAY.to_string()])?;
                Ok(())
            }
            (Site::BehindNat(_), None) => {
                Err(Error::Setup("a host behind NAT needs the underlay built with NAT".into()))
            }
        }
    }

    fn plug_public(&mut self, host: &Netns, addr: Ipv4Addr) -> Result<(), Error> {
        self.ports += 1;
        let port = format!("h{}", self.ports);
        veth(host, UPLINK, &self.internet, &port)?;
        self.internet.exec(&["ip", "link", "set", &port, "master", BRIDGE])?;
        host.add_address(UPLINK, &format!("{addr}/{UNDERLAY_PREFIX}"))?;
        Ok(())
    }
}

/// The gateway a host at `site` reaches the internet through, if it is not on it.
pub(crate) fn gateway(site: Site) -> Option<Ipv4Addr> {
    match site {
        Site::Public(_) => None,
        Site::BehindNat(_) => Some(NAT_GATEWAY),
    }
}

fn bridge(ns: &Netns, name: &str) -> Result<(), CommandError> {
    ns.exec(&["ip", "link", "add", name, "type", "bridge"])?;
    ns.link_up(name, None)
}

/// Source NAT of everything leaving the office through `uplink`, loaded through the same
/// nftables path as the agent's firewall.
fn masquerade(nat: &Netns) -> Result<(), Error> {
    let table = json!({"family": "ip", "name": NAT_TABLE});
    let chain = json!({
        "family": "ip", "table": NAT_TABLE, "name": "postrouting",
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept",
    });
    let rule = json!({
        "family": "ip", "table": NAT_TABLE, "chain": "postrouting",
        "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": UPLINK}},
            {"masquerade": null},
        ],
    });
    let batch = json!({"nftables": [{"add": {"table": table}}, {"add": {"chain": chain}}, {"add": {"rule": rule}}]});
    Ok(nftables::load_in(Some(nat.name()), &batch)?)
}

/// A routed subnet's stand-in: a namespace behind its router holding one address of it.
#[derive(Debug)]
pub(crate) struct SubnetSite {
    pub(crate) ns: Netns,
    /// The subnet host's address, which the matrix pings.
    pub(crate) target: IpAddr,
}

impl SubnetSite {
    /// Builds `ns_name` behind `router` (device `device` there) for `cidr`: the router gets
    /// the subnet's first address, the subnet host the second.
    pub(crate) fn build(
        ns_name: &str,
        router: &Netns,
        device: &str,
        cidr: &Cidr,
    ) -> Result<Self, Error> {
        let (Some(gateway), Some(target)) = (cidr.nth(1), cidr.nth(2)) else {
            return Err(Error::Setup(format!("{cidr} is too small to stand in for")));
        };
        let ns = Netns::create(ns_name)?;
        veth(&ns, UPLINK, router, device)?;
        let prefix = cidr.prefix_len();
        router.add_address(device, &format!("{gateway}/{prefix}"))?;
        ns.add_address(UPLINK, &format!("{target}/{prefix}"))?;
        ns.exec(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
        Ok(Self { ns, target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_numbered_from_their_ranges() {
        assert_eq!(Site::public(0).unwrap(), Site::Public(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(Site::behind_nat(2).unwrap().address(), Ipv4Addr::new(192, 168, 77, 12));
        assert!(Site::public(99).is_err(), "192.0.2.100 is the NAT router's");
        assert_eq!(gateway(Site::behind_nat(0).unwrap()), Some(NAT_GATEWAY));
        assert_eq!(gateway(Site::public(0).unwrap()), None);
    }
}
