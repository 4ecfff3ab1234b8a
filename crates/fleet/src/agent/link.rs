//! The kernel side of the interface that the userspace API does not cover: addresses, MTU,
//! link state, routes into the tunnel and IP forwarding, set with `ip` and `sysctl` as
//! wg-quick would.
//!
//! The agent changes only what differs from what it set last, and removes what it added that
//! the desired state no longer has. Default routes (`0.0.0.0/0`, `::/0`, full tunnels) are
//! never installed here: they need the policy routing of wg-quick or networkd, which the agent
//! leaves to them (run it with `--no-link` on such hosts).

use std::collections::BTreeSet;
use std::process::Command;

use crate::cidr::{Cidr, IfAddr};
use crate::config::HostConfig;
use crate::inventory::Role;
use crate::netns::{run, CommandError};

/// What the agent has put on the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Link {
    addresses: BTreeSet<IfAddr>,
    routes: BTreeSet<Cidr>,
    mtu: Option<u16>,
    forwarding: bool,
}

impl Link {
    /// What `config` needs on `interface`.
    pub(crate) fn of(config: &HostConfig) -> Self {
        Self {
            addresses: config.addresses.iter().copied().collect(),
            routes: config
                .tunnel_routes()
                .into_iter()
                .filter(|cidr| !cidr.is_default_route())
                .collect(),
            mtu: Some(config.mtu),
            forwarding: config.role == Role::Relay || !config.routes.is_empty(),
        }
    }

    /// Brings `interface` from `self` (what was set before; empty at start) to `wanted`.
    ///
    /// # Errors
    /// The first command that failed; what came before it stays applied.
    pub(crate) fn apply(&self, wanted: &Self, interface: &str) -> Result<(), CommandError> {
        for address in wanted.addresses.difference(&self.addresses) {
            let address = address.to_string();
            let mut ip = Command::new("ip");
            ip.args(["address", "replace", &address, "dev", interface]);
            if address.contains(':') {
                ip.arg("nodad");
            }
            run(&mut ip)?;
        }
        if wanted.mtu != self.mtu || self.addresses.is_empty() {
            let mut ip = Command::new("ip");
            ip.args(["link", "set", "dev", interface]);
            if let Some(mtu) = wanted.mtu {
                ip.args(["mtu", &mtu.to_string()]);
            }
            run(ip.arg("up"))?;
        }
        for route in wanted.routes.difference(&self.routes) {
            run(Command::new("ip").args([
                "route",
                "replace",
                &route.to_string(),
                "dev",
                interface,
            ]))?;
        }
        for route in self.routes.difference(&wanted.routes) {
            // Already gone is fine.
            let _ = run(Command::new("ip").args([
                "route",
                "del",
                &route.to_string(),
                "dev",
                interface,
            ]));
        }
        for address in self.addresses.difference(&wanted.addresses) {
            let _ = run(Command::new("ip").args([
                "address",
                "del",
                &address.to_string(),
                "dev",
                interface,
            ]));
        }
        if wanted.forwarding && !self.forwarding {
            for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
                run(Command::new("sysctl").args(["-qw", &format!("{key}=1")]))?;
            }
        }
        Ok(())
    }
}
