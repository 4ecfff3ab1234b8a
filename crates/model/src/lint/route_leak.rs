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
            let found = check_route(&externals, host, *route);
            findings.extend(found.into_iter().map(|finding| finding.on_host(host)));
        }
    }
}

/// Every problem of one route at once: each external of another host it covers, then
/// whether it is wider than what its own host owns, or else where it lies.
fn check_route(externals: &Externals<'_>, host: &Host, route: Cidr) -> Vec<Finding> {
    let field = format!("host.{}.routes", host.name);
    let error =
        |message: String, fix: String| Finding::error(NAME, host.line, field.clone(), message, fix);
    let warning = |message: String, fix: String| {
        Finding::warning(NAME, host.line, field.clone(), message, fix)
    };
    let name = &host.name;
    let (owned, foreign): (Vec<&External>, Vec<&External>) =
        externals.inside(route).partition(|e| owned_by(e, host));
    let owned: Vec<String> = owned.iter().map(|e| e.cidr.to_string()).collect();
    let narrow = if owned.is_empty() {
        format!("narrow the route to the subnets behind `{name}`")
    } else {
        format!("narrow the route to {}", owned.join(", "))
    };
    let mut findings: Vec<Finding> = foreign
        .iter()
        .map(|external| {
            let behind =
                external.host.as_ref().map_or("no host".to_owned(), |h| format!("host `{h}`"));
            error(
                format!(
                    "route {route} covers external `{}` ({}), which is behind {behind}",
                    external.name, external.cidr
                ),
                format!("{narrow}, or set host = \"{name}\" on `{}`", external.name),
            )
        })
        .collect();
    let containing: Vec<&External> = externals.containing(route).collect();
    if containing.iter().any(|e| owned_by(e, host)) {
        return findings;
    }
    if !owned.is_empty() {
        findings.push(error(
            format!(
                "route {route} is broader than the subnets behind `{name}` ({})",
                owned.join(", ")
            ),
            narrow,
        ));
        return findings;
    }
    if !findings.is_empty() {
        return findings;
    }
    let finding = match containing.last() {
        Some(external) => match &external.host {
            Some(owner) => error(
                format!(
                    "route {route} lies inside external `{}` ({}), which is behind host `{owner}`",
                    external.name, external.cidr
                ),
                format!("remove {route} from the routes of `{name}` and route it from `{owner}`"),
            ),
            None => warning(
                format!(
                    "route {route} lies inside external `{}`, which names no host",
                    external.name
                ),
                format!("set host = \"{name}\" on external `{}`", external.name),
            ),
        },
        None => warning(
            format!(
                "route {route} matches no declared external network, so collisions cannot be \
                 checked"
            ),
            format!("declare it: [external.NAME] cidr = \"{route}\", host = \"{name}\""),
        ),
    };
    findings.push(finding);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::tests::findings_of;

    #[test]
    fn every_problem_of_a_route_is_reported_at_once() {
        let findings = findings_of(
            check,
            "[network.n]\nipv4 = \"10.0.0.0/24\"\n\
             [external.a]\ncidr = \"172.16.1.0/24\"\nhost = \"other\"\n\
             [external.b]\ncidr = \"172.16.2.0/24\"\n\
             [external.c]\ncidr = \"172.16.3.0/24\"\nhost = \"router\"\n\
             [host.router]\nroutes = [\"172.16.0.0/16\"]\n[host.other]\n",
        );
        let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(findings.len(), 3, "{messages:#?}");
        assert!(messages[0].contains("covers external `a`"), "{messages:#?}");
        assert!(messages[1].contains("covers external `b`"), "{messages:#?}");
        assert!(messages[2].contains("broader than the subnets behind `router` (172.16.3.0/24)"));
        assert!(findings.iter().all(|f| f.fix.starts_with("narrow the route to 172.16.3.0/24")));
    }
}
