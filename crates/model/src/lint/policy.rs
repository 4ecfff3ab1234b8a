//! `policy`: the access policy's mistakes. No policy at all (everything reaches everything);
//! a rule that an earlier one takes all the traffic of (it never decides: an error when it
//! says the opposite, a warning when it repeats it); a rule that can never match because no
//! route joins its sources and destinations.

use super::Finding;
use crate::inventory::Inventory;
use crate::names::Name;
use crate::policy::{PortSpec, Rule, Selector};

pub(super) const NAME: &str = "policy";

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    if inventory.policy.is_empty() {
        if inventory.hosts.len() > 1 {
            findings.push(Finding::warning(
                NAME,
                1,
                "policy".into(),
                "no [[policy]] rule: every host reaches every other host and routed subnet".into(),
                "add [[policy]] rules saying who may reach what (docs/policy.md); once one \
                 exists, what no rule allows is dropped"
                    .into(),
            ));
        }
        return;
    }
    for (index, rule) in inventory.policy.iter().enumerate() {
        let field = format!("policy[{index}]");
        if let Some(earlier) = inventory.policy[..index].iter().find(|e| covers(inventory, e, rule))
        {
            let finding = if earlier.verdict == rule.verdict {
                Finding::warning(
                    NAME,
                    rule.line,
                    field.clone(),
                    format!(
                        "rule `{}` never decides anything: rule `{}` (line {}) already {}s all of \
                         its traffic",
                        rule.name,
                        earlier.name,
                        earlier.line,
                        earlier.verdict.as_str()
                    ),
                    format!("remove rule `{}`", rule.name),
                )
            } else {
                Finding::error(
                    NAME,
                    rule.line,
                    field.clone(),
                    format!(
                        "rule `{}` ({}) contradicts rule `{}` (line {}), which {}s all of its \
                         traffic first",
                        rule.name,
                        rule.verdict.as_str(),
                        earlier.name,
                        earlier.line,
                        earlier.verdict.as_str()
                    ),
                    format!(
                        "move rule `{}` above rule `{}` if it is the exception, or remove it",
                        rule.name, earlier.name
                    ),
                )
            };
            findings.push(finding);
        }
        if let Some(why) = unroutable(inventory, rule) {
            findings.push(Finding::warning(
                NAME,
                rule.line,
                field,
                format!("rule `{}` can never match: {why}", rule.name),
                "point it at hosts or routed externals of the same network, or remove it".into(),
            ));
        }
    }
}

/// Whether every packet `later` matches, `earlier` matches too.
fn covers(inventory: &Inventory, earlier: &Rule, later: &Rule) -> bool {
    let side = |outer: &[Selector], inner: &[Selector]| {
        inner.iter().all(|s| outer.iter().any(|o| selector_covers(inventory, o, s)))
    };
    let traffic = earlier.ports.is_empty()
        || (!later.ports.is_empty()
            && later.ports.iter().all(|l| earlier.ports.iter().any(|e: &PortSpec| l.within(e))));
    traffic && side(&earlier.from, &later.from) && side(&earlier.to, &later.to)
}

/// Whether the addresses of `inner` all lie in those of `outer`.
fn selector_covers(inventory: &Inventory, outer: &Selector, inner: &Selector) -> bool {
    let in_group = |host: &Name, group: &Name| {
        inventory.hosts.get(host).is_some_and(|h| h.groups.contains(group))
    };
    match (outer, inner) {
        (Selector::Any, _) => true,
        (_, Selector::Any) => false,
        (Selector::Group(group), Selector::Host(host)) => in_group(host, group),
        (Selector::Group(outer), Selector::Group(inner)) => {
            outer == inner
                || inventory
                    .hosts
                    .values()
                    .filter(|h| h.groups.contains(inner))
                    .all(|h| h.groups.contains(outer))
        }
        (Selector::External(outer), Selector::External(inner)) => {
            match (inventory.externals.get(outer), inventory.externals.get(inner)) {
                (Some(outer), Some(inner)) => outer.cidr.contains_net(&inner.cidr),
                _ => false,
            }
        }
        (outer, inner) => outer == inner,
    }
}

/// Why no packet can go from the rule's sources to its destinations, if none can: they are
/// all in other networks, or the destinations are externals no host routes.
fn unroutable(inventory: &Inventory, rule: &Rule) -> Option<String> {
    let networks = |selectors: &[Selector]| -> Option<Vec<&Name>> {
        let mut networks = Vec::new();
        for selector in selectors {
            match selector {
                Selector::Any => return None,
                Selector::Host(name) => {
                    networks.extend(inventory.hosts.get(name).map(|h| &h.network))
                }
                Selector::Group(group) => networks.extend(
                    inventory
                        .hosts
                        .values()
                        .filter(|h| h.groups.contains(group))
                        .map(|h| &h.network),
                ),
                Selector::External(name) => {
                    let host = inventory.externals.get(name).and_then(|e| e.host.as_ref());
                    networks.extend(host.and_then(|h| inventory.hosts.get(h)).map(|h| &h.network));
                }
            }
        }
        Some(networks)
    };
    let unrouted: Vec<String> = rule
        .to
        .iter()
        .filter_map(|s| match s {
            Selector::External(name) => inventory
                .externals
                .get(name)
                .is_some_and(|e| e.host.is_none())
                .then(|| format!("external `{name}` is routed by no host")),
            _ => None,
        })
        .collect();
    let (Some(from), Some(to)) = (networks(&rule.from), networks(&rule.to)) else { return None };
    if to.is_empty() && !unrouted.is_empty() {
        return Some(unrouted.join(", "));
    }
    (!from.is_empty() && !to.is_empty() && from.iter().all(|n| !to.contains(n))).then(|| {
        "its sources and destinations are in different networks, which the fabric does not join"
            .to_owned()
    })
}
