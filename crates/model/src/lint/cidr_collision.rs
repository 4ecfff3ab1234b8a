//! `cidr-collision`: an overlay prefix that overlaps a declared external network (a cloud VPC,
//! a pod CIDR), another network's overlay, or a host's routed subnet. Hosts inside the
//! colliding network could not tell overlay addresses from local ones.

use super::intervals::nested;
use super::Finding;
use crate::cidr::Cidr;
use crate::inventory::Inventory;

pub(super) const NAME: &str = "cidr-collision";

/// Where a prefix comes from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Overlay { network: &'a str, key: &'static str, line: usize },
    External { name: &'a str },
    Route { host: &'a crate::inventory::Host },
}

impl Origin<'_> {
    fn describe(&self, cidr: &Cidr) -> String {
        match self {
            Self::Overlay { network, .. } => format!("overlay {cidr} of network `{network}`"),
            Self::External { name, .. } => format!("external network `{name}` ({cidr})"),
            Self::Route { host } => format!("route {cidr} of host `{}`", host.name),
        }
    }
}

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let overlays = inventory.networks.values().flat_map(|network| {
        let entry = move |cidr: Option<Cidr>, key| {
            cidr.map(|cidr| {
                (cidr, Origin::Overlay { network: network.name.as_str(), key, line: network.line })
            })
        };
        entry(network.ipv4, "ipv4").into_iter().chain(entry(network.ipv6, "ipv6"))
    });
    let others = inventory
        .externals
        .values()
        .map(|e| (e.cidr, Origin::External { name: e.name.as_str() }))
        .chain(
            inventory
                .hosts
                .values()
                .flat_map(|host| host.routes.iter().map(move |r| (*r, Origin::Route { host }))),
        );
    let items: Vec<(Cidr, Origin<'_>)> = overlays.chain(others).collect();
    for ((outer_cidr, outer), (inner_cidr, inner)) in nested(items) {
        // Report each collision at the overlay's side, once.
        let (overlay_cidr, network, key, line, other, other_cidr) = match (outer, inner) {
            (Origin::Overlay { network, key, line }, other) => {
                (outer_cidr, network, key, line, other, inner_cidr)
            }
            (other, Origin::Overlay { network, key, line }) => {
                (inner_cidr, network, key, line, other, outer_cidr)
            }
            _ => continue,
        };
        let message = format!(
            "overlay {overlay_cidr} of network `{network}` overlaps {}",
            other.describe(&other_cidr)
        );
        let fix = match other {
            Origin::Route { host } => {
                format!("remove {other_cidr} from the routes of `{}`", host.name)
            }
            Origin::Overlay { .. } | Origin::External { .. } => {
                format!("move the overlay of `{network}` to a prefix that no declared network uses")
            }
        };
        findings.push(Finding::error(NAME, line, format!("network.{network}.{key}"), message, fix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::tests::findings_of;

    /// An overlay that holds an external which itself holds a route collides with both, and
    /// both are reported at once.
    #[test]
    fn nested_collisions_are_all_reported() {
        let findings = findings_of(
            check,
            "[network.n]\nipv4 = \"10.0.0.0/8\"\n\
             [external.vpc]\ncidr = \"10.1.0.0/16\"\nhost = \"router\"\n\
             [host.router]\nroutes = [\"10.1.2.0/24\"]\n",
        );
        let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "overlay 10.0.0.0/8 of network `n` overlaps external network `vpc` (10.1.0.0/16)",
                "overlay 10.0.0.0/8 of network `n` overlaps route 10.1.2.0/24 of host `router`",
            ]
        );
    }
}
