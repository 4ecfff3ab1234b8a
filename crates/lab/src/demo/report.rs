//! What a demo run found, as JSON for machines (`--format json`) and as text for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::lab::{Kept, Lab};
use super::matrix::Matrix;
use super::monitors::SwitchRecord;
use super::paths::{all_direct_that_may, spoke_paths, SpokePath};
use super::steady::Outage;
use super::underlay::Site;
use wgfabric_host::failover::Reason;
use wgfabric_model::cidr::{Cidr, IfAddr};
use wgfabric_model::explain::{explain, Explanation};
use wgfabric_model::inventory::Role;
use wgfabric_model::names::Name;
use wgfabric_model::policy::{PortSpec, Protocol};
use wgfabric_store::state::PathMode;

/// How fast traffic must resume after a relay dies for the run to count as a success.
pub const FAILOVER_GOAL: Duration = Duration::from_secs(10);

/// Serializes a duration as whole milliseconds.
pub(crate) fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// Everything a run did and saw.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The namespace prefix.
    pub prefix: String,
    /// The hosts.
    pub hosts: Vec<HostSummary>,
    /// The routed subnets and their stand-in hosts.
    pub subnets: Vec<SubnetSummary>,
    /// The connectivity matrix.
    pub matrix: Matrix,
    /// The hosts on which `wgfabric agent` runs: those with a pair that may go direct.
    pub agents: Vec<Name>,
    /// Every pair of spokes: direct or relayed, and why.
    pub paths: Vec<SpokePath>,
    /// Why one denied pair of the matrix is denied, as `wgfabric explain` says it.
    pub denied: Option<Explanation>,
    /// The relay failover drill, if the fabric has relays to fail over between.
    pub failover: Option<FailoverReport>,
    /// Whether every pair did what the access policy says (allowed pairs answered, denied
    /// ones did not) and traffic resumed within the goal after the failover and came back to
    /// the preferred relay.
    pub ok: bool,
    /// What was left running, with `--keep`.
    pub kept: Option<KeptSummary>,
}

/// One host of the run.
#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    /// Its name.
    pub name: Name,
    /// Its role.
    pub role: Role,
    /// Its namespace.
    pub namespace: String,
    /// Its WireGuard interface.
    pub interface: String,
    /// Its underlay address.
    pub underlay: Ipv4Addr,
    /// Whether it sits behind the NAT router.
    pub behind_nat: bool,
    /// Its overlay addresses.
    pub addresses: Vec<IfAddr>,
}

/// One routed subnet of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SubnetSummary {
    /// The external network's name.
    pub name: Name,
    /// Its prefix.
    pub cidr: Cidr,
    /// The host routing it.
    pub router: Name,
    /// The stand-in host's namespace.
    pub namespace: String,
    /// The stand-in host's address.
    pub target: IpAddr,
}

/// The failover drill: a relay killed under a steady ping, then restarted.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// The relay killed (the active one).
    pub relay: Name,
    /// The host pinging.
    pub from: Name,
    /// What it pinged.
    pub to: Name,
    /// At which address.
    pub address: IpAddr,
    /// The stop in the steady ping after the kill; `None` if it never resumed.
    pub outage: Option<Outage>,
    /// Each host's moves, timed from the kill (failover) or the restart (fail-back).
    pub switches: Vec<SwitchSummary>,
    /// Once the relay restarted: how long until every host was back on it, if they all
    /// came back, and the requests lost meanwhile.
    #[serde(serialize_with = "optional_millis", rename = "all_back_after_ms")]
    pub all_back_after: Option<Duration>,
    /// Requests the steady ping lost while hosts moved back.
    pub lost_during_fail_back: u32,
}

fn optional_millis<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => millis(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// A host's move, timed.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchSummary {
    /// The host.
    pub host: Name,
    /// From which relay.
    pub from: Name,
    /// To which relay.
    pub to: Name,
    /// Why.
    pub reason: Reason,
    /// Time since the kill (failover) or the restart (fail-back).
    #[serde(serialize_with = "millis", rename = "after_ms")]
    pub after: Duration,
}

impl SwitchSummary {
    /// A switch timed from `since`.
    pub(crate) fn new(record: &SwitchRecord, since: std::time::Instant) -> Self {
        Self {
            host: record.host.clone(),
            from: record.from.clone(),
            to: record.to.clone(),
            reason: record.reason,
            after: record.at.saturating_duration_since(since),
        }
    }
}

impl FailoverReport {
    /// Whether traffic resumed within [`FAILOVER_GOAL`] and every host came back.
    pub fn ok(&self) -> bool {
        self.outage.is_some_and(|outage| outage.resumed_after < FAILOVER_GOAL)
            && self.all_back_after.is_some()
    }
}

/// What `--keep` left running.
#[derive(Debug, Clone, Serialize)]
pub struct KeptSummary {
    /// Every namespace, hosts first.
    pub namespaces: Vec<String>,
    /// Where the daemons log.
    pub logs: PathBuf,
    /// Commands to look around with.
    pub try_commands: Vec<String>,
    /// The command that removes it all.
    pub clean_command: String,
}

impl KeptSummary {
    pub(crate) fn new(kept: Kept, prefix: &str, probe: Option<IpAddr>) -> Self {
        let wgfabric = super::daemon::invocation();
        let mut try_commands = Vec::new();
        if let Some(host) = kept.hosts.iter().find(|host| host.role != Role::Relay) {
            // `show` without an interface would list every userspace interface on the
            // machine: their sockets share one directory whatever the namespace.
            let (ns, iface) = (&host.namespace, &host.interface);
            try_commands.push(format!("sudo ip netns exec {ns} {wgfabric} show {iface}"));
            if let Some(addr) = probe {
                try_commands.push(format!("sudo ip netns exec {ns} {wgfabric} probe {addr} -c 3"));
            }
            try_commands.push(format!("sudo ip netns exec {ns} ip route"));
            try_commands
                .push(format!("sudo ip netns exec {ns} {wgfabric} show {iface} --format json"));
        }
        let clean_command = match prefix {
            super::DEFAULT_PREFIX => format!("sudo {wgfabric} demo --clean"),
            other => format!("sudo {wgfabric} demo --clean --prefix {other}"),
        };
        let mut namespaces: Vec<String> =
            kept.hosts.into_iter().map(|host| host.namespace).collect();
        namespaces.extend(kept.namespaces);
        Self { namespaces, logs: kept.run_dir, try_commands, clean_command }
    }
}

impl Summary {
    /// The hosts and subnets of `lab`, before anything ran.
    pub(crate) fn of_lab(lab: &Lab, matrix: Matrix) -> Self {
        let hosts = lab
            .hosts()
            .iter()
            .map(|host| HostSummary {
                name: host.name().clone(),
                role: host.role(),
                namespace: host.namespace().to_owned(),
                interface: host.interface().to_owned(),
                underlay: host.site().address(),
                behind_nat: matches!(host.site(), Site::BehindNat(_)),
                addresses: host.config().addresses.clone(),
            })
            .collect();
        let subnets = lab
            .subnets()
            .iter()
            .map(|subnet| SubnetSummary {
                name: subnet.name().clone(),
                cidr: subnet.cidr(),
                router: subnet.router().clone(),
                namespace: subnet.namespace().to_owned(),
                target: subnet.target(),
            })
            .collect();
        // Every pair that may go direct must have: the claim is checked like the others.
        let ok = matrix.as_the_policy_says() && all_direct_that_may(lab);
        let denied = matrix.denied().and_then(|cell| {
            let to = cell.addresses.first()?.to_string();
            let icmp = Some(PortSpec { protocol: Protocol::Icmp, ports: None });
            explain(lab.fabric(), cell.from.as_str(), &to, icmp).ok()
        });
        Self {
            denied,
            prefix: lab.settings().prefix().to_owned(),
            hosts,
            subnets,
            matrix,
            agents: lab
                .hosts()
                .iter()
                .filter(|host| host.has_agent())
                .map(|host| host.name().clone())
                .collect(),
            paths: spoke_paths(lab),
            failover: None,
            ok,
            kept: None,
        }
    }

    /// The closing summary for people.
    pub fn text(&self) -> String {
        let mut out = String::from("\nSummary\n");
        let nat = self.hosts.iter().filter(|host| host.behind_nat).count();
        let _ = writeln!(
            out,
            "  fabric:    {} hosts ({nat} behind NAT), {} routed subnet(s), namespaces {}-*",
            self.hosts.len(),
            self.subnets.len(),
            self.prefix
        );
        let answered = self.matrix.cells.iter().filter(|cell| cell.answered).count();
        let denied = self.matrix.cells.iter().filter(|cell| !cell.allowed).count();
        let verdict = if self.matrix.as_the_policy_says() {
            "every pair as the access policy says"
        } else {
            "NOT as the access policy says"
        };
        let _ = writeln!(
            out,
            "  matrix:    {answered}/{} pairs answered, {denied} denied: {verdict}",
            self.matrix.cells.len()
        );
        let direct: Vec<String> = self
            .paths
            .iter()
            .filter(|pair| pair.mode == PathMode::Direct)
            .map(|pair| format!("{} <-> {}", pair.host, pair.peer))
            .collect();
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for pair in self.paths.iter().filter(|pair| pair.mode == PathMode::Relayed) {
            *reasons.entry(pair.reason.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = reasons.iter().map(|(why, n)| format!("{why} {n}")).collect();
        let _ = writeln!(
            out,
            "  paths:     {}/{} spoke pairs direct{}; relayed: {}",
            direct.len(),
            self.paths.len(),
            if direct.is_empty() { String::new() } else { format!(" ({})", direct.join(", ")) },
            if reasons.is_empty() { "none".to_owned() } else { reasons.join(", ") }
        );
        if let Some(drill) = &self.failover {
            match drill.outage {
                Some(outage) => {
                    let _ = writeln!(
                        out,
                        "  failover:  {} killed; {} -> {} resumed after {} (goal < {}), {} \
                         request(s) lost",
                        drill.relay,
                        drill.from,
                        drill.to,
                        seconds(outage.resumed_after),
                        seconds(FAILOVER_GOAL),
                        outage.lost
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  failover:  {} killed; traffic did not resume",
                        drill.relay
                    );
                }
            }
            match drill.all_back_after {
                Some(after) => {
                    let _ = writeln!(
                        out,
                        "  fail-back: every host back on {} {} after its restart, {} request(s) \
                         lost",
                        drill.relay,
                        seconds(after),
                        drill.lost_during_fail_back
                    );
                }
                None => {
                    let _ =
                        writeln!(out, "  fail-back: not every host came back to {}", drill.relay);
                }
            }
        }
        let _ = writeln!(out, "  result:    {}", if self.ok { "ok" } else { "FAILED" });
        if let Some(kept) = &self.kept {
            out.push_str(
                "\nThe fabric keeps running (failover monitors stopped with the demo). Try:\n",
            );
            for command in &kept.try_commands {
                let _ = writeln!(out, "  {command}");
            }
            let _ = writeln!(out, "Daemon logs: {}/HOST.log", kept.logs.display());
            let _ = writeln!(out, "Clean up:    {}", kept.clean_command);
        }
        out
    }
}
