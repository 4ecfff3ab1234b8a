//! `nat-keepalive`: a host behind NAT with no PersistentKeepalive. Its NAT mapping expires
//! while it is idle and nobody can reach it until it sends something.
//!
//! The fix depends on why there is none: `keepalive = 0` on the host turns it off, a
//! `[defaults] keepalive = 0` is inherited, and relays never inherit `[defaults]` at all.

use super::Finding;
use crate::inventory::{Host, Inventory, Role};

pub(super) const NAME: &str = "nat-keepalive";

/// The keepalive the fixes suggest: well under the shortest common NAT UDP timeout (30 s).
const SUGGESTED: u16 = 25;

pub(super) fn check(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let positions = &inventory.positions;
    let defaults_written = positions.of("defaults.keepalive").is_some();
    for host in inventory.hosts.values().filter(|host| host.nat && host.keepalive.is_none()) {
        let field = format!("host.{}.keepalive", host.name);
        // A validated host without keepalive that writes one wrote 0.
        let cause = if positions.of(&field).is_some() {
            Cause::ZeroOnHost
        } else if host.role == Role::Relay {
            Cause::RelayWithout
        } else if defaults_written {
            Cause::ZeroInDefaults
        } else {
            Cause::Unset
        };
        let (message, fix) = cause.explain(host);
        findings.push(Finding::error(NAME, host.line, field, message, fix).on_host(host));
    }
}

/// Why a host behind NAT sends no keepalive.
enum Cause {
    /// `keepalive = 0` in its own table.
    ZeroOnHost,
    /// A relay that sets none (relays do not inherit `[defaults]`).
    RelayWithout,
    /// `[defaults] keepalive = 0`, inherited.
    ZeroInDefaults,
    /// Nothing sets one.
    Unset,
}

impl Cause {
    fn explain(&self, host: &Host) -> (String, String) {
        let unreachable = "so it is unreachable once idle";
        match self {
            Self::ZeroOnHost => (
                format!(
                    "host is behind NAT but `keepalive = 0` turns keepalive off, {unreachable}"
                ),
                format!("replace `keepalive = 0` with `keepalive = {SUGGESTED}` on the host"),
            ),
            Self::RelayWithout => (
                format!(
                    "relay is behind NAT but sends no keepalive (relays do not inherit \
                     [defaults] keepalive), {unreachable}"
                ),
                format!("set keepalive = {SUGGESTED} in [host.{}] itself", host.name),
            ),
            Self::ZeroInDefaults => (
                format!(
                    "host is behind NAT but inherits `keepalive = 0` from [defaults], which turns \
                     keepalive off, {unreachable}"
                ),
                format!("set keepalive = {SUGGESTED} on the host, or in [defaults] instead of 0"),
            ),
            Self::Unset => (
                format!("host is behind NAT but sends no keepalive, {unreachable}"),
                format!("set keepalive = {SUGGESTED} on the host (or in [defaults])"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::tests::findings_of;

    fn fix_for(text: &str) -> String {
        let mut findings =
            findings_of(check, &format!("[network.n]\nipv4 = \"10.0.0.0/24\"\n{text}"));
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings.remove(0).fix
    }

    #[test]
    fn each_fix_turns_keepalive_on() {
        let relay = "[defaults]\nkeepalive = 25\n[host.r]\nrole = \"relay\"\nnat = true\n";
        assert_eq!(fix_for(relay), "set keepalive = 25 in [host.r] itself");
        let zero = "[defaults]\nkeepalive = 25\n[host.s]\nnat = true\nkeepalive = 0\n";
        assert_eq!(fix_for(zero), "replace `keepalive = 0` with `keepalive = 25` on the host");
        let inherited = "[defaults]\nkeepalive = 0\n[host.s]\nnat = true\n";
        assert!(fix_for(inherited).ends_with("or in [defaults] instead of 0"));
        let unset = "[host.s]\nnat = true\n";
        assert_eq!(fix_for(unset), "set keepalive = 25 on the host (or in [defaults])");
    }

    /// Following the fix clears the finding.
    #[test]
    fn following_the_fix_clears_the_finding() {
        let findings = findings_of(
            check,
            "[network.n]\nipv4 = \"10.0.0.0/24\"\n[defaults]\nkeepalive = 25\n\
             [host.r]\nrole = \"relay\"\nnat = true\nkeepalive = 25\n[host.s]\nnat = true\n",
        );
        assert!(findings.is_empty(), "{findings:?}");
    }
}
