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
    /// Line of the table in the inventory.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Finding {
    fn error(rule: &'static str, line: usize, field: String, message: String, fix: String) -> Self {
        Self { rule, severity: Severity::Error, host: None, field, line, message, fix }
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

/// Runs every rule. Findings come sorted by line, then rule, then field.
pub fn check(inventory: &Inventory) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in CHECKS {
        rule(inventory, &mut findings);
    }
    findings.sort_by(|a, b| {
        (a.line, a.rule, &a.field, &a.message).cmp(&(b.line, b.rule, &b.field, &b.message))
    });
    findings
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
            "{severity}[{}]: {file}:{}: {}: {}\n  fix: {}",
            finding.rule, finding.line, finding.field, finding.message, finding.fix
        );
    }
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}
