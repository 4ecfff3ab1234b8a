//! `route-leak`: a host's route is broader than the subnets actually behind it, so the fabric
//! would send it traffic for networks it does not own.
//!
//! Ownership comes from the declared external networks: an external with `host = "H"` is
//! behind H. A route of H is fine when it lies inside such an external. It is an error when it
//! covers an external behind another host (or behind none), or when it is wider than the
//! externals behind H that it covers; it is a warning when it matches no declared network,
//! since collisions cannot then be checked.

use std::collections::HashMap;

use super::Finding;
use crate::cidr::Cidr;
use crate::inventory::{External, Host, Inventory};

pub(super) const NAME: &str = "route-leak";

/// Externals indexed for "which contain this prefix" and "which lie inside it".
struct Externals<'a> {
    by_cidr: HashMap<Cidr, Vec<&'a External>>,
    sorted: Vec<&'a External>,
}

impl<'a> Externals<'a> {
    fn new(inventory: &'a Inventory) -> Self {
        let mut sorted: Vec<&External> = inventory.externals.values().collect();
        sorted.sort_by_key(|e| e.cidr);
        let mut by_cidr: HashMap<Cidr, Vec<&External>> = HashMap::new();
        for external in &sorted {
            by_cidr.entry(external.cidr).or_default().push(external);
        }
        Self { by_cidr, sorted }
    }

    /// Externals equal to or containing `cidr`: one lookup per shorter prefix length.
    fn containing(&self, cidr: Cidr) -> impl Iterator<Item = &'a External> + '_ {
        (0..=cidr.prefix_len())
            .filter_map(move |len| Cidr::new(cidr.addr(), len).ok())
            .filter_map(|shorter| self.by_cidr.get(&shorter))
            .flatten()
            .copied()
    }

    /// Externals strictly inside `cidr`: a range of the sorted list.
    fn inside(&self, cidr: Cidr) -> impl Iterator<Item = &'a External> + '_ {
        let start = self.sorted.partition_point(|e| e.cidr < cidr);
        self.sorted[start..]
            .iter()
            .take_while(move |e| cidr.contains_net(&e.cidr))
            .filter(move |e| e.cidr != cidr)
            .copied()
    }
}

fn owned_by(external: &External, host: &Host) -> bool {
    external.host.as_ref() == Some(&host.name)
}

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let externals = Externals::new(inventory);
    for host in inventory.hosts.values() {
        for route in host.routes.iter().filter(|route| !route.is_default_route()) {
            if let Some(finding) = check_route(&externals, host, *route) {
                findings.push(finding.on_host(host));
            }
        }
    }
}

fn check_route(externals: &Externals<'_>, host: &Host, route: Cidr) -> Option<Finding> {
    let field = format!("host.{}.routes", host.name);
    let error = |message: String, fix: String| {
        Some(Finding::error(NAME, host.line, field.clone(), message, fix))
    };
    let name = &host.name;
    if let Some(foreign) = externals.inside(route).find(|e| !owned_by(e, host)) {
        let behind = foreign.host.as_ref().map_or("no host".to_owned(), |h| format!("host `{h}`"));
        return error(
            format!(
                "route {route} covers external `{}` ({}), which is behind {behind}",
                foreign.name, foreign.cidr
            ),
            format!(
                "narrow the route to the subnets behind `{name}`, or set host = \"{name}\" on `{}`",
                foreign.name
            ),
        );
    }
    let containing: Vec<&External> = externals.containing(route).collect();
    if containing.iter().any(|e| owned_by(e, host)) {
        return None;
    }
    let owned: Vec<String> = externals.inside(route).map(|e| e.cidr.to_string()).collect();
    if !owned.is_empty() {
        return error(
            format!(
                "route {route} is broader than the subnets behind `{name}` ({})",
                owned.join(", ")
            ),
            format!("narrow the route to {}", owned.join(", ")),
        );
    }
    match containing.last() {
        Some(external) if external.host.is_some() => error(
            format!(
                "route {route} lies inside external `{}` ({}), which is behind host `{}`",
                external.name,
                external.cidr,
                external.host.as_ref().map(ToString::to_string).unwrap_or_default()
            ),
            "route the subnet from the host it is behind".into(),
        ),
        Some(external) => Some(Finding::warning(
            NAME,
            host.line,
            field.clone(),
            format!("route {route} lies inside external `{}`, which names no host", external.name),
            format!("set host = \"{name}\" on external `{}`", external.name),
        )),
        None => Some(Finding::warning(
            NAME,
            host.line,
            field.clone(),
            format!("route {route} matches no declared external network, so collisions cannot be checked"),
            format!("declare it: [external.NAME] cidr = \"{route}\", host = \"{name}\""),
        )),
    }
}
