//! `overlapping-routes`: two hosts claim the same subnet, or one's subnet lies inside
//! another's. Each allowed IP belongs to one peer, so relays would silently route part of it
//! to the wrong host.

use super::intervals::nested;
use super::Finding;
use crate::inventory::Inventory;

pub(super) const NAME: &str = "overlapping-routes";

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let routes = inventory
        .hosts
        .values()
        .flat_map(|host| host.routes.iter().map(move |route| (*route, host)))
        .collect();
    for ((outer, owner), (inner, host)) in nested(routes) {
        let (message, fix) = if owner.name == host.name {
            (
                format!("route {inner} is listed twice or inside {outer} on the same host"),
                format!("keep only {outer} in routes"),
            )
        } else if outer == inner {
            (
                format!("route {inner} is also claimed by host `{}`", owner.name),
                "keep the route on the one host the subnet is behind".to_owned(),
            )
        } else {
            (
                format!("route {inner} lies inside {outer}, which host `{}` routes", owner.name),
                format!("remove {inner} here or narrow {outer} on `{}`", owner.name),
            )
        };
        let field = format!("host.{}.routes", host.name);
        findings.push(Finding::error(NAME, host.line, field, message, fix).on_host(host));
    }
}
