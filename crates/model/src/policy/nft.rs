//! A [`Firewall`] as an nftables table: `table inet wgfabric`, replaced whole in one
//! transaction, for the kernel through nft's JSON API ([`Table::to_json`], what the agent
//! loads with `wgfabric-host`'s `nftables`) or as an `nft -f` file ([`Table::to_text`], what `render` writes for hosts without
//! the agent). Both are written from one description of the table, so they cannot disagree.
//!
//! ```text
//! table inet wgfabric
//!   chain antispoof  (prerouting)  overlay sources arriving elsewhere than the tunnel: drop
//!   chain input      (input)       tunnel → tunnel_input; other interfaces → underlay_input (strict)
//!   chain forward    (forward)     tunnel → tunnel_forward
//!   chain tunnel_input / tunnel_forward: replies pass, then the policy's rules, then drop
//! ```
//!
//! Every rule that accepts or drops counts: `wgfabric exporter` reads the counters back as
//! `wgfabric_policy_packets_total{chain, rule, verdict}`.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::firewall::{Firewall, FirewallRule};
use super::{PortSpec, Protocol, Verdict};
use crate::cidr::Cidr;

/// The table's name, in family `inet`.
pub const TABLE: &str = "wgfabric";

/// An address family of the `inet` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    const BOTH: [Self; 2] = [Self::V4, Self::V6];

    const fn payload(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }

    const fn set_type(self) -> &'static str {
        match self {
            Self::V4 => "ipv4_addr",
            Self::V6 => "ipv6_addr",
        }
    }

    const fn suffix(self) -> char {
        match self {
            Self::V4 => '4',
            Self::V6 => '6',
        }
    }

    const fn icmp(self) -> &'static str {
        match self {
            Self::V4 => "icmp",
            Self::V6 => "ipv6-icmp",
        }
    }

    fn holds(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == Self::V4)
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    /// `iifname NAME`.
    InterfaceIs(String),
    /// `iifname != { NAME, ... }`.
    InterfaceNotIn(Vec<String>),
    /// `ct state { ... }`.
    CtState(&'static [&'static str]),
    /// `ip saddr @SET` (or `ip6`, `daddr`).
    Address { family: Family, source: bool, set: String },
    /// `meta l4proto PROTO`.
    L4Proto(&'static str),
    /// `th dport FIRST-LAST`.
    Port(u16, u16),
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Accept,
    Drop,
    Jump(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NftRule {
    matches: Vec<Match>,
    counter: bool,
    action: Action,
    comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NftSet {
    name: String,
    family: Family,
    elements: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    name: &'static str,
    /// Hook and priority of a base chain (its policy is accept); `None` for a regular chain.
    hook: Option<(&'static str, i32)>,
    rules: Vec<NftRule>,
}

/// A whole `table inet wgfabric`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    sets: Vec<NftSet>,
    chains: Vec<Chain>,
}

impl NftRule {
    fn new(matches: Vec<Match>, action: Action) -> Self {
        Self { matches, counter: false, action, comment: None }
    }

    fn counted(mut self, comment: &str) -> Self {
        self.counter = true;
        self.comment = Some(comment.to_owned());
        self
    }
}

/// Replies and related packets pass; invalid ones are dropped.
fn conntrack() -> [NftRule; 2] {
    [
        NftRule::new(vec![Match::CtState(&["established", "related"])], Action::Accept),
        NftRule::new(vec![Match::CtState(&["invalid"])], Action::Drop),
    ]
}

/// The protocol and port conditions of `spec` in `family`.
fn traffic(spec: &PortSpec, family: Family) -> Vec<Match> {
    let protocol = match spec.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => family.icmp(),
    };
    let mut matches = vec![Match::L4Proto(protocol)];
    if let Some((first, last)) = spec.ports {
        matches.push(Match::Port(first, last));
    }
    matches
}

impl Table {
    /// The table of `firewall`.
    pub fn of(firewall: &Firewall) -> Self {
        let mut table = Self { sets: Vec::new(), chains: Vec::new() };
        let tunnel = firewall.interface.clone();
        let elsewhere = vec![tunnel.clone(), "lo".to_owned()];

        let mut antispoof = Vec::new();
        for family in Family::BOTH {
            if let Some(set) =
                table.set(format!("overlay{}", family.suffix()), family, &firewall.overlay)
            {
                antispoof.push(
                    NftRule::new(
                        vec![
                            Match::InterfaceNotIn(elsewhere.clone()),
                            Match::Address { family, source: true, set },
                        ],
                        Action::Drop,
                    )
                    .counted("antispoof"),
                );
            }
        }
        table.chains.push(Chain {
            name: "antispoof",
            hook: Some(("prerouting", -150)),
            rules: antispoof,
        });

        let mut input = Vec::new();
        if let Some(rules) = &firewall.input {
            input.push(NftRule::new(
                vec![Match::InterfaceIs(tunnel.clone())],
                Action::Jump("tunnel_input"),
            ));
            let chain = table.policy_chain("tunnel_input", "in", rules);
            table.chains.push(chain);
        }
        if let Some(strict) = &firewall.strict {
            input.push(NftRule::new(
                vec![Match::InterfaceNotIn(elsewhere)],
                Action::Jump("underlay_input"),
            ));
            let mut rules = conntrack().to_vec();
            let mut open: Vec<PortSpec> = strict
                .wireguard_port
                .map(|port| PortSpec { protocol: Protocol::Udp, ports: Some((port, port)) })
                .into_iter()
                .collect();
            // ICMP keeps path MTU discovery and IPv6 neighbour discovery working.
            open.push(PortSpec { protocol: Protocol::Icmp, ports: None });
            open.extend(strict.open.iter().copied());
            for spec in &open {
                for family in Family::BOTH {
                    rules.push(NftRule::new(traffic(spec, family), Action::Accept));
                }
            }
            rules.push(NftRule::new(Vec::new(), Action::Drop).counted("strict-underlay"));
            table.chains.push(Chain { name: "underlay_input", hook: None, rules });
        }
        table.chains.push(Chain { name: "input", hook: Some(("input", 0)), rules: input });

        if let Some(rules) = &firewall.forward {
            let jump =
                NftRule::new(vec![Match::InterfaceIs(tunnel)], Action::Jump("tunnel_forward"));
            let chain = table.policy_chain("tunnel_forward", "fwd", rules);
            table.chains.push(chain);
            table.chains.push(Chain {
                name: "forward",
                hook: Some(("forward", 0)),
                rules: vec![jump],
            });
        }
        table
    }

    /// A set of the `family` members of `prefixes`, if there are any and they are not the
    /// whole family (which needs no match); returns its name.
    fn set(&mut self, name: String, family: Family, prefixes: &[Cidr]) -> Option<String> {
        let elements: Vec<Cidr> = prefixes.iter().filter(|c| family.holds(c)).copied().collect();
        if elements.is_empty() {
            return None;
        }
        self.sets.push(NftSet { name: name.clone(), family, elements });
        Some(name)
    }

    /// A regular chain: replies, then `rules` in order, then drop.
    fn policy_chain(&mut self, name: &'static str, prefix: &str, rules: &[FirewallRule]) -> Chain {
        let mut chain = conntrack().to_vec();
        for (index, rule) in rules.iter().enumerate() {
            for family in Family::BOTH {
                let Some(from) = self.side(
                    format!("{prefix}{index}_from{}", family.suffix()),
                    family,
                    &rule.from,
                    true,
                ) else {
                    continue;
                };
                let to = if rule.to.is_empty() {
                    Some(Vec::new())
                } else {
                    self.side(
                        format!("{prefix}{index}_to{}", family.suffix()),
                        family,
                        &rule.to,
                        false,
                    )
                };
                let Some(to) = to else { continue };
                let addresses: Vec<Match> = from.into_iter().chain(to).collect();
                let action = match rule.verdict {
                    Verdict::Allow => Action::Accept,
                    Verdict::Deny => Action::Drop,
                };
                let specs: Vec<Option<&PortSpec>> = if rule.ports.is_empty() {
                    vec![None]
                } else {
                    rule.ports.iter().map(Some).collect()
                };
                for spec in specs {
                    let mut matches = addresses.clone();
                    if let Some(spec) = spec {
                        matches.extend(traffic(spec, family));
                    }
                    chain.push(NftRule::new(matches, action.clone()).counted(rule.name.as_str()));
                }
            }
        }
        chain.push(NftRule::new(Vec::new(), Action::Drop).counted("default-deny"));
        Chain { name, hook: None, rules: chain }
    }

    /// The address condition of one side of a rule in `family`: `None` when the side has no
    /// prefix of that family (the rule cannot match there), no condition for a whole family.
    fn side(
        &mut self,
        name: String,
        family: Family,
        prefixes: &[Cidr],
        source: bool,
    ) -> Option<Vec<Match>> {
        let mine: Vec<Cidr> = prefixes.iter().filter(|c| family.holds(c)).copied().collect();
        if mine.is_empty() {
            return None;
        }
        if mine.iter().any(Cidr::is_default_route) {
            return Some(Vec::new());
        }
        let set = self.set(name, family, &mine)?;
        Some(vec![Match::Address { family, source, set }])
    }

    /// The nft JSON batch that replaces the table in one transaction (`nft -j -f -`).
    pub fn to_json(&self) -> Value {
        let table = json!({"family": "inet", "name": TABLE});
        let mut batch = vec![
            json!({"add": {"table": table}}),
            json!({"delete": {"table": table}}),
            json!({"add": {"table": table}}),
        ];
        for set in &self.sets {
            let elements: Vec<Value> = set.elements.iter().map(prefix_json).collect();
            batch.push(json!({"add": {"set": {
                "family": "inet", "table": TABLE, "name": set.name,
                "type": set.family.set_type(), "flags": ["interval"], "elem": elements,
            }}}));
        }
        for chain in &self.chains {
            let mut object = json!({"family": "inet", "table": TABLE, "name": chain.name});
            if let Some((hook, priority)) = chain.hook {
                object["type"] = json!("filter");
                object["hook"] = json!(hook);
                object["prio"] = json!(priority);
                object["policy"] = json!("accept");
            }
            batch.push(json!({"add": {"chain": object}}));
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                let mut expr: Vec<Value> = rule.matches.iter().map(match_json).collect();
                if rule.counter {
                    expr.push(json!({"counter": null}));
                }
                expr.push(match &rule.action {
                    Action::Accept => json!({"accept": null}),
                    Action::Drop => json!({"drop": null}),
                    Action::Jump(target) => json!({"jump": {"target": target}}),
                });
                let mut object =
                    json!({"family": "inet", "table": TABLE, "chain": chain.name, "expr": expr});
                if let Some(comment) = &rule.comment {
                    object["comment"] = json!(comment);
                }
                batch.push(json!({"add": {"rule": object}}));
            }
        }
        json!({"nftables": batch})
    }

    /// The table as an `nft -f` file, replacing any table of the same name when loaded.
    pub fn to_text(&self) -> String {
        let mut out =
            format!("table inet {TABLE}\ndelete table inet {TABLE}\n\ntable inet {TABLE} {{\n");
        for set in &self.sets {
            let elements: Vec<String> = set.elements.iter().map(prefix_text).collect();
            let _ = writeln!(
                out,
                "\tset {} {{\n\t\ttype {}\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}\n",
                set.name,
                set.family.set_type(),
                elements.join(", ")
            );
        }
        for chain in &self.chains {
            let _ = writeln!(out, "\tchain {} {{", chain.name);
            if let Some((hook, priority)) = chain.hook {
                let _ = writeln!(
                    out,
                    "\t\ttype filter hook {hook} priority {priority}; policy accept;"
                );
            }
            for rule in &chain.rules {
                let mut words: Vec<String> = rule.matches.iter().map(match_text).collect();
                if rule.counter {
                    words.push("counter".into());
                }
                words.push(match &rule.action {
                    Action::Accept => "accept".into(),
                    Action::Drop => "drop".into(),
                    Action::Jump(target) => format!("jump {target}"),
                });
                if let Some(comment) = &rule.comment {
                    words.push(format!("comment \"{comment}\""));
                }
                let _ = writeln!(out, "\t\t{}", words.join(" "));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }
}

fn prefix_json(cidr: &Cidr) -> Value {
    if cidr.is_host() {
        json!(cidr.addr().to_string())
    } else {
        json!({"prefix": {"addr": cidr.addr().to_string(), "len": cidr.prefix_len()}})
    }
}

fn prefix_text(cidr: &Cidr) -> String {
    if cidr.is_host() {
        cidr.addr().to_string()
    } else {
        cidr.to_string()
    }
}

fn match_json(condition: &Match) -> Value {
    let (left, op, right) = match condition {
        Match::InterfaceIs(name) => (json!({"meta": {"key": "iifname"}}), "==", json!(name)),
        Match::InterfaceNotIn(names) => {
            (json!({"meta": {"key": "iifname"}}), "!=", json!({"set": names}))
        }
        Match::CtState(states) => (json!({"ct": {"key": "state"}}), "in", json!(states)),
        Match::Address { family, source, set } => (
            json!({"payload": {"protocol": family.payload(), "field": if *source { "saddr" } else { "daddr" }}}),
            "==",
            json!(format!("@{set}")),
        ),
        Match::L4Proto(protocol) => (json!({"meta": {"key": "l4proto"}}), "==", json!(protocol)),
        Match::Port(first, last) if first == last => {
            (json!({"payload": {"protocol": "th", "field": "dport"}}), "==", json!(first))
        }
        Match::Port(first, last) => (
            json!({"payload": {"protocol": "th", "field": "dport"}}),
            "==",
            json!({"range": [first, last]}),
        ),
    };
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn match_text(condition: &Match) -> String {
    match condition {
        Match::InterfaceIs(name) => format!("iifname \"{name}\""),
        Match::InterfaceNotIn(names) => {
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            format!("iifname != {{ {} }}", quoted.join(", "))
        }
        Match::CtState(states) => format!("ct state {}", states.join(",")),
        Match::Address { family, source, set } => {
            format!("{} {} @{set}", family.payload(), if *source { "saddr" } else { "daddr" })
        }
        Match::L4Proto(protocol) => format!("meta l4proto {protocol}"),
        Match::Port(first, last) if first == last => format!("th dport {first}"),
        Match::Port(first, last) => format!("th dport {first}-{last}"),
    }
}

/// What one rule of the table counted, added up over its address families and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// The chain (`tunnel_input`, `tunnel_forward`, `antispoof`, `underlay_input`).
    pub chain: String,
    /// The policy rule's name, or the table's own (`default-deny`, `antispoof`, ...).
    pub rule: String,
    /// `accept` or `drop`.
    pub verdict: &'static str,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// The counters of the table in `listing` (`nft -j list table inet wgfabric`), one per
/// chain, rule and verdict, in listing order.
pub fn parse_counters(listing: &Value) -> Vec<RuleCounter> {
    let mut counters: Vec<RuleCounter> = Vec::new();
    let rules =
        listing["nftables"].as_array().into_iter().flatten().filter_map(|item| item.get("rule"));
    for rule in rules {
        let (Some(chain), Some(name)) = (rule["chain"].as_str(), rule["comment"].as_str()) else {
            continue;
        };
        let expr = rule["expr"].as_array().map_or(&[][..], Vec::as_slice);
        let Some(counter) = expr.iter().find_map(|e| e.get("counter")) else { continue };
        let verdict = if expr.iter().any(|e| e.get("accept").is_some()) {
            "accept"
        } else if expr.iter().any(|e| e.get("drop").is_some()) {
            "drop"
        } else {
            continue;
        };
        let (packets, bytes) =
            (counter["packets"].as_u64().unwrap_or(0), counter["bytes"].as_u64().unwrap_or(0));
        match counters
            .iter_mut()
            .find(|c| c.chain == chain && c.rule == name && c.verdict == verdict)
        {
            Some(known) => {
                known.packets += packets;
                known.bytes += bytes;
            }
            None => counters.push(RuleCounter {
                chain: chain.to_owned(),
                rule: name.to_owned(),
                verdict,
                packets,
                bytes,
            }),
        }
    }
    counters
}
