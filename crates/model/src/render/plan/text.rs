//! The plan for people: one block per host and per network, `+`/`-`/`~` per peer, every value
//! written as the inventory writes it.

use std::fmt::Write as _;

use super::{cidrs, HostPlan, NetworkPlan, Plan, SettingChange};
use crate::diff::{FieldChange, PeerChange};
use crate::names::Name;

/// The plan as text, ending with how many hosts and networks change.
pub fn plan_text(plan: &Plan) -> String {
    if plan.is_empty() {
        return "No changes: a render would write exactly the files of the last one.\n".into();
    }
    let mut out = String::new();
    for host_plan in &plan.hosts {
        match host_plan {
            HostPlan::Added { host, peers } => {
                let names: Vec<&str> = peers.iter().map(Name::as_str).collect();
                let peers = if names.is_empty() { NONE.to_owned() } else { names.join(", ") };
                let _ = writeln!(out, "+ {host}: new host, peers: {peers}");
            }
            HostPlan::Removed { host } => {
                let _ = writeln!(out, "- {host}: removed from the inventory");
            }
            HostPlan::Changed { host, settings, peers } => {
                let _ = writeln!(out, "~ {host}:");
                settings_lines(&mut out, settings);
                for change in peers {
                    peer_lines(&mut out, change);
                }
            }
        }
    }
    for network_plan in &plan.networks {
        match network_plan {
            NetworkPlan::Added { network } => {
                let _ = writeln!(out, "+ network {network}: new network");
            }
            NetworkPlan::Removed { network } => {
                let _ = writeln!(out, "- network {network}: removed from the inventory");
            }
            NetworkPlan::Changed { network, settings } => {
                let _ = writeln!(out, "~ network {network}:");
                settings_lines(&mut out, settings);
            }
        }
    }
    let _ = write!(out, "{} host(s)", plan.hosts.len());
    if !plan.networks.is_empty() {
        let _ = write!(out, " and {} network(s)", plan.networks.len());
    }
    out.push_str(" change.\n");
    out
}

/// What is unset or empty, in plans.
const NONE: &str = "(none)";

fn settings_lines(out: &mut String, settings: &[SettingChange]) {
    for change in settings {
        // Endpoints are quoted, as in the inventory; other values read well without quotes.
        let quote = change.setting == "endpoint";
        let old = shown(change.old.as_deref(), quote);
        let new = shown(change.new.as_deref(), quote);
        let _ = writeln!(out, "    ~ {} {old} -> {new}", change.setting);
    }
}

fn shown(value: Option<&str>, quote: bool) -> String {
    match value {
        None => NONE.to_owned(),
        Some(value) if quote => format!("\"{value}\""),
        Some(value) => value.to_owned(),
    }
}

fn peer_lines(out: &mut String, change: &PeerChange<Name>) {
    match change {
        PeerChange::Added { peer, state } => {
            let allowed: Vec<_> = state.allowed_ips.iter().copied().collect();
            let _ = writeln!(out, "    + peer {peer} (allowed {})", cidrs(&allowed));
        }
        PeerChange::Removed { peer, .. } => {
            let _ = writeln!(out, "    - peer {peer}");
        }
        PeerChange::Changed { peer, fields } => {
            let _ = writeln!(out, "    ~ peer {peer}:");
            for field in fields {
                field_lines(out, field);
            }
        }
    }
}

fn field_lines(out: &mut String, field: &FieldChange) {
    let _ = match field {
        FieldChange::PublicKey { old, new } => writeln!(out, "        public_key {old} -> {new}"),
        FieldChange::Endpoint { old, new } => writeln!(
            out,
            "        endpoint {} -> {}",
            shown(old.as_deref(), true),
            shown(new.as_deref(), true)
        ),
        FieldChange::AllowedIps { added, removed } => {
            if !added.is_empty() {
                let _ = writeln!(out, "        + allowed {}", cidrs(added));
            }
            if removed.is_empty() {
                Ok(())
            } else {
                writeln!(out, "        - allowed {}", cidrs(removed))
            }
        }
        FieldChange::PersistentKeepalive { old, new } => writeln!(
            out,
            "        keepalive {} -> {}",
            shown(old.map(|s| s.to_string()).as_deref(), false),
            shown(new.map(|s| s.to_string()).as_deref(), false)
        ),
        FieldChange::Role { old, new } => {
            writeln!(out, "        role {} -> {}", old.as_str(), new.as_str())
        }
    };
}
