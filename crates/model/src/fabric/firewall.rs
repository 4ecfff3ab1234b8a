//! From the inventory's `[[policy]]` rules to each host's [`Firewall`]: every selector is
//! resolved to prefixes once per fabric, then each host takes the rules that concern it.

use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::config::HostConfig;
use crate::inventory::{Inventory, Role};
use crate::lock::Lock;
use crate::names::Name;
use crate::policy::firewall::probes;
use crate::policy::{Firewall, FirewallRule, Rule, Selector, Strict, Verdict};

/// The policy with every selector turned into prefixes, computed once per fabric.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    rules: Vec<ResolvedRule>,
}

#[derive(Debug, Clone)]
struct ResolvedRule {
    rule: Rule,
    from: Vec<Cidr>,
    to: Vec<Cidr>,
}

/// The prefixes a selector stands for.
pub(crate) fn prefixes(inventory: &Inventory, lock: &Lock, selector: &Selector) -> Vec<Cidr> {
    let host_addresses =
        |name: &Name| lock.hosts.get(name).into_iter().flat_map(|a| a.addresses().map(Cidr::host));
    let mut prefixes: Vec<Cidr> = match selector {
        Selector::Any => vec![Cidr::default_route(true), Cidr::default_route(false)],
        Selector::Host(name) => host_addresses(name).collect(),
        Selector::Group(group) => inventory
            .hosts
            .values()
            .filter(|host| host.groups.contains(group))
            .flat_map(|host| host_addresses(&host.name))
            .collect(),
        Selector::External(name) => {
            inventory.externals.get(name).map(|e| e.cidr).into_iter().collect()
        }
    };
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

fn union(inventory: &Inventory, lock: &Lock, selectors: &[Selector]) -> Vec<Cidr> {
    let mut all: Vec<Cidr> = selectors.iter().flat_map(|s| prefixes(inventory, lock, s)).collect();
    all.sort();
    all.dedup();
    // Drop prefixes inside an earlier one: sorted, an enclosing prefix comes first.
    let mut kept: Vec<Cidr> = Vec::with_capacity(all.len());
    for cidr in all {
        if !kept.last().is_some_and(|last: &Cidr| last.contains_net(&cidr)) {
            kept.push(cidr);
        }
    }
    kept
}

impl Resolved {
    /// Resolves every rule of `inventory` against the addresses in `lock`.
    pub(crate) fn new(inventory: &Inventory, lock: &Lock) -> Self {
        let rules = inventory
            .policy
            .iter()
            .map(|rule| ResolvedRule {
                rule: rule.clone(),
                from: union(inventory, lock, &rule.from),
                to: union(inventory, lock, &rule.to),
            })
            .collect();
        Self { rules }
    }

    /// The firewall of the host `config` describes, or `None` when it needs no table: the
    /// inventory has no policy and the host did not ask for strict underlay input.
    pub(crate) fn firewall(&self, inventory: &Inventory, config: &HostConfig) -> Option<Firewall> {
        let host = inventory.hosts.get(&config.host)?;
        let strict = host
            .strict_input
            .then(|| Strict { wireguard_port: config.listen_port, open: host.open_ports.clone() });
        if self.rules.is_empty() && strict.is_none() {
            return None;
        }
        let network = &inventory.networks[&config.network];
        let own: Vec<Cidr> = config.addresses.iter().map(|a| Cidr::host(a.addr)).collect();
        let enforced = !self.rules.is_empty();
        let input = enforced.then(|| {
            let mut rules = Vec::new();
            if config.role == Role::Relay {
                rules.push(probes(network.overlays().collect()));
            }
            rules.extend(
                self.rules
                    .iter()
                    .filter(|r| r.to.iter().any(|to| own.iter().any(|addr| to.contains_net(addr))))
                    .map(|r| r.chain_rule(Vec::new())),
            );
            rules
        });
        let forwards = config.role == Role::Relay || !config.routes.is_empty();
        let forward = (enforced && forwards).then(|| {
            self.rules
                .iter()
                .filter(|r| {
                    config.role == Role::Relay
                        || r.to
                            .iter()
                            .any(|to| config.routes.iter().any(|route| to.overlaps(route)))
                })
                .map(|r| r.chain_rule(r.to.clone()))
                .collect()
        });
        Some(Firewall {
            interface: config.interface.clone(),
            overlay: network.overlays().collect(),
            input,
            forward,
            strict,
        })
    }
}

impl Resolved {
    /// Whether the policy restricts any traffic between hosts with addresses `a` and `b`, in
    /// either direction: there is a policy, and for some pair of their addresses the first
    /// rule that matches is not an allow for all traffic (or no rule matches, and the packet
    /// is dropped). Pairs the policy restricts keep to the relays, which enforce it.
    pub(crate) fn restricts(&self, a: &[IpAddr], b: &[IpAddr]) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        // The first rule naming both addresses decides; one that names ports leaves other
        // traffic to later rules, which is a restriction all the same.
        let open = |from: IpAddr, to: IpAddr| {
            self.rules
                .iter()
                .find(|rule| {
                    rule.from.iter().any(|cidr| cidr.contains(from))
                        && rule.to.iter().any(|cidr| cidr.contains(to))
                })
                .is_some_and(|rule| {
                    rule.rule.verdict == Verdict::Allow && rule.rule.ports.is_empty()
                })
        };
        let pairs = a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y)));
        pairs.filter(|(x, y)| x.is_ipv4() == y.is_ipv4()).any(|(x, y)| !open(x, y) || !open(y, x))
    }
}

impl ResolvedRule {
    fn chain_rule(&self, to: Vec<Cidr>) -> FirewallRule {
        FirewallRule {
            name: self.rule.name.clone(),
            verdict: self.rule.verdict,
            from: self.from.clone(),
            to,
            ports: self.rule.ports.clone(),
        }
    }
}
