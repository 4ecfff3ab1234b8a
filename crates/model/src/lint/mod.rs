//! `wgfabric check`: rules that find mistakes an inventory can parse with but should not be
//! deployed with. Each rule is one module; each finding names the host, the field, what is
//! wrong and how to fix it.
//!
//! Rules must stay near-linear in the number of hosts (fleets of 10,000 hosts are linted in
//! well under a second): prefix overlaps are found by sorting, never by comparing all pairs.

mod cidr_collision;
mod default_route;
mod duplicate_key;
mod intervals;
mod mtu;
mod nat_keepalive;
mod overlapping_routes;
mod policy;
mod route_leak;
mod unreachable;

use std::fmt::Write as _;

use serde::Serialize;

use crate::inventory::{Host, Inventory};
use crate::toml_position::Positions;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The fabric would misroute, leak or not connect: `check` exits 1.
    Error,
    /// Suspicious, worth a look.
    Warning,
}

/// One problem found in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's name, such as `nat-keepalive`.
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The host concerned, if any.
    pub host: Option<String>,
    /// Dotted path of the field, such as `host.laptop.keepalive`.
    pub field: String,
    /// Line of the field in the inventory, or of its table when the value is inherited.
    pub line: usize,
    /// Column of the field (or of its table).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Finding {
    fn error(rule: &'static str, line: usize, field: String, message: String, fix: String) -> Self {
        Self { rule, severity: Severity::Error, host: None, field, line, column: 1, message, fix }
    }

    fn warning(
        rule: &'static str,
        line: usize,
        field: String,
        message: String,
        fix: String,
    ) -> Self {
        Self { severity: Severity::Warning, ..Self::error(rule, line, field, message, fix) }
    }

    /// A finding about one field of a host.
    fn on_host(mut self, host: &Host) -> Self {
        self.host = Some(host.name.to_string());
        self
    }

    /// Points the finding at its field where the inventory writes it, else at the nearest
    /// table that does (rules give the table's line, which stays when neither is found).
    fn locate(mut self, positions: &Positions) -> Self {
        if let Some(position) = positions.nearest(&self.field) {
            self.line = position.line;
            self.column = position.column;
        }
        self
    }
}

type Rule = fn(&Inventory, &mut Vec<Finding>);

/// Every rule, by name. The names are stable: they appear in JSON output and in docs.
pub const RULES: &[(&str, &str)] = &[
    (overlapping_routes::NAME, "two hosts claim the same or overlapping routed subnets"),
    (route_leak::NAME, "a route is broader than the subnets behind its host"),
    (default_route::NAME, "0.0.0.0/0 or ::/0 outside a declared full-tunnel host"),
    (
        cidr_collision::NAME,
        "an overlay prefix collides with an external network, route or other overlay",
    ),
    (duplicate_key::NAME, "two hosts share a public key"),
    (nat_keepalive::NAME, "a host behind NAT sends no keepalive"),
    (mtu::NAME, "the MTU leaves no room for the 80-byte overhead or is too small"),
    (unreachable::NAME, "a host has no path to a relay or to its mesh peers"),
    (policy::NAME, "no access policy, or a rule that never decides or can never match"),
];

const CHECKS: &[Rule] = &[
    overlapping_routes::check,
    route_leak::check,
    default_route::check,
    cidr_collision::check,
    duplicate_key::check,
    nat_keepalive::check,
    mtu::check,
    unreachable::check,
    policy::check,
];

/// Runs every rule. Findings come sorted by position, then rule, then field.
pub fn check(inventory: &Inventory) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in CHECKS {
        rule(inventory, &mut findings);
    }
    let mut findings: Vec<Finding> =
        findings.into_iter().map(|finding| finding.locate(&inventory.positions)).collect();
    findings.sort_by(|a, b| {
        (a.line, a.column, a.rule, &a.field, &a.message)
            .cmp(&(b.line, b.column, b.rule, &b.field, &b.message))
    });
    findings
}

/// The findings with their counts, as `--format json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// Every finding, in [`check`]'s order.
    pub findings: &'a [Finding],
    /// How many are errors.
    pub errors: usize,
    /// How many are warnings.
    pub warnings: usize,
}

impl<'a> Report<'a> {
    /// The report of `findings`.
    pub fn of(findings: &'a [Finding]) -> Self {
        let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
        Self { findings, errors, warnings: findings.len() - errors }
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Findings for people, `file` being the inventory's path as the user gave it.
pub fn findings_text(findings: &[Finding], file: &str) -> String {
    let mut out = String::new();
    for finding in findings {
        let severity = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(
            out,
            "{severity}[{}]: {file}:{}:{}: {}: {}\n  fix: {}",
            finding.rule, finding.line, finding.column, finding.field, finding.message, finding.fix
        );
    }
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use wgfabric_proto::keys::PrivateKey;

    use super::*;

    /// An inventory from `text` in which every `[host.NAME]` table gets a distinct public key.
    pub(crate) fn inventory_with(text: &str) -> Inventory {
        let mut keyed = String::new();
        for (index, line) in text.lines().enumerate() {
            keyed.push_str(line);
            keyed.push('\n');
            if line.starts_with("[host.") {
                let seed = u8::try_from(index % 250).unwrap() + 1;
                let key = PrivateKey::from_bytes([seed; 32]).public_key();
                keyed.push_str(&format!("public_key = \"{key}\"\n"));
            }
        }
        Inventory::parse(Path::new("fabric.toml"), &keyed).unwrap()
    }

    /// What `rule` alone finds in the inventory [`inventory_with`] makes of `text`.
    pub(crate) fn findings_of(rule: Rule, text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        rule(&inventory_with(text), &mut findings);
        findings
    }

    #[test]
    fn findings_point_at_the_field_or_its_table() {
        let inventory = inventory_with(
            "[defaults]\nkeepalive = 0\n\n[network.n]\nipv4 = \"10.0.0.0/24\"\n\n\
             [host.a]\nnat = true\n    keepalive = 0\n\n[host.b]\nnat = true\n",
        );
        let findings = check(&inventory);
        let at = |host: &str| {
            let finding = findings
                .iter()
                .find(|f| f.rule == "nat-keepalive" && f.host.as_deref() == Some(host))
                .unwrap();
            (finding.line, finding.column)
        };
        assert_eq!(at("a"), (10, 5), "the host's own `keepalive = 0`");
        assert_eq!(at("b"), (12, 1), "b inherits it: its table");
        let text = findings_text(&findings, "fabric.toml");
        assert!(
            text.contains("error[nat-keepalive]: fabric.toml:10:5: host.a.keepalive: "),
            "{text}"
        );
    }
}
