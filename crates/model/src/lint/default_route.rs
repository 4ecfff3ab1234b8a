//! `default-route`: `0.0.0.0/0` or `::/0` anywhere but the rendered configuration of a host
//! declared `tunnel = "full"`. A default route in a host's `routes` would pull every other
//! host's internet traffic into it; a full tunnel needs a relay to leave through.

use std::collections::HashSet;

use super::Finding;
use crate::inventory::{Inventory, Role, Tunnel};
use crate::names::Name;

pub(super) const NAME: &str = "default-route";

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let with_relays: HashSet<&Name> = inventory
        .hosts
        .values()
        .filter(|host| host.role == Role::Relay)
        .map(|host| &host.network)
        .collect();
    for host in inventory.hosts.values() {
        for route in host.routes.iter().filter(|route| route.is_default_route()) {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    format!("host.{}.routes", host.name),
                    format!("route {route} would send every host's internet traffic to `{}`", host.name),
                    "remove it; set tunnel = \"full\" on the hosts that should send all their traffic \
                     through the fabric"
                        .into(),
                )
                .on_host(host),
            );
        }
        if host.tunnel != Tunnel::Full {
            continue;
        }
        let field = format!("host.{}.tunnel", host.name);
        if host.role == Role::Relay {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    field,
                    "a relay cannot send its own traffic through a relay".into(),
                    "remove tunnel = \"full\" from the relay".into(),
                )
                .on_host(host),
            );
        } else if !with_relays.contains(&host.network) {
            findings.push(
                Finding::error(
                    NAME,
                    host.line,
                    field,
                    format!(
                        "network `{}` has no relay for a full tunnel to leave through",
                        host.network
                    ),
                    "add a relay to the network or use tunnel = \"split\"".into(),
                )
                .on_host(host),
            );
        }
    }
}
