//! `wgfabric explain SRC DST [PROTO/PORT]`: what the policy does with a packet, which rule
//! decides, and the way the packet takes.

use std::net::IpAddr;

use serde::Serialize;

use crate::error::Error;
use crate::fabric::firewall::prefixes;
use crate::fabric::Fabric;
use crate::inventory::Role;
use crate::names::Name;
use crate::policy::{PortSpec, Protocol, Verdict, PROBES};

/// The answer to "may SRC reach DST?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The source address the packet carries.
    pub from: IpAddr,
    /// The destination address.
    pub to: IpAddr,
    /// The traffic asked about (`any` when not given).
    pub traffic: String,
    /// What happens to it.
    pub verdict: Verdict,
    /// The rule that decides (`None`: no rule matches, or there is no policy).
    pub rule: Option<Name>,
    /// Line of that rule in the inventory.
    pub line: Option<usize>,
    /// Why, in words.
    pub reason: String,
    /// The hosts the packet crosses, from the source's host to the last hop in the fabric.
    pub path: Vec<Name>,
}

impl Explanation {
    /// The explanation for people; `inventory` names the file the rule's line is in.
    pub fn text(&self, inventory: &str) -> String {
        let verdict = match self.verdict {
            Verdict::Allow => "ALLOWED",
            Verdict::Deny => "DENIED",
        };
        let rule = match (&self.rule, self.line) {
            (Some(rule), Some(line)) => format!("rule `{rule}` ({inventory} line {line})"),
            _ => "no rule".to_owned(),
        };
        let path = if self.path.is_empty() {
            "(the source is not a host of the fabric)".to_owned()
        } else {
            self.path.iter().map(Name::as_str).collect::<Vec<_>>().join(" -> ")
        };
        format!(
            "{verdict}: {} -> {} ({})\n  decided by: {rule}\n  because:    {}\n  path:       {path}\n",
            self.from, self.to, self.traffic, self.reason
        )
    }
}

/// The host a name stands for, or the owner of an address, and the address to use.
fn endpoint(
    fabric: &Fabric,
    text: &str,
    v4: Option<bool>,
) -> Result<(Option<Name>, IpAddr), Error> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        let owner = fabric
            .lock()
            .hosts
            .iter()
            .find(|(_, a)| a.addresses().any(|own| own == addr))
            .map(|(name, _)| name.clone());
        return Ok((owner, addr));
    }
    let assignment = fabric.addresses(text).ok_or_else(|| {
        Error::NotFound(format!("`{text}` is neither a host of the inventory nor an IP address"))
    })?;
    let addr = match v4 {
        Some(true) => assignment.ipv4.or(assignment.ipv6),
        Some(false) => assignment.ipv6.or(assignment.ipv4),
        None => assignment.ipv4.or(assignment.ipv6),
    }
    .ok_or_else(|| Error::NotFound(format!("host `{text}` has no address")))?;
    let name: Name = text.parse().map_err(|e| Error::NotFound(format!("{e}")))?;
    Ok((Some(name), addr))
}

/// Explains what the policy of `fabric` does with a packet from `source` to `destination`
/// (host names or IP addresses), of `traffic` if given.
///
/// # Errors
/// [`Error::NotFound`] for a name that is neither a host nor an address.
pub fn explain(
    fabric: &Fabric,
    source: &str,
    destination: &str,
    traffic: Option<PortSpec>,
) -> Result<Explanation, Error> {
    let (to_host, to) = endpoint(fabric, destination, None)?;
    let (from_host, from) = endpoint(fabric, source, Some(to.is_ipv4()))?;
    let (protocol, port) =
        traffic.map_or((None, None), |t| (Some(t.protocol), t.ports.map(|p| p.0)));
    let inventory = fabric.inventory();
    let lock = fabric.lock();
    let shown = traffic.map_or_else(|| "any".to_owned(), |t| t.to_string());
    let decided = inventory.policy.iter().find(|rule| {
        let contains = |selectors: &[crate::policy::Selector], addr: IpAddr| {
            selectors.iter().any(|s| prefixes(inventory, lock, s).iter().any(|c| c.contains(addr)))
        };
        contains(&rule.from, from)
            && contains(&rule.to, to)
            && match protocol {
                Some(protocol) => rule.matches_traffic(protocol, port),
                // Any traffic: a rule decides for all of it only if it names no ports.
                None => rule.ports.is_empty(),
            }
    });
    let local = from_host.as_ref().and_then(|name| inventory.hosts.get(name)).is_some_and(|host| {
        to_host.as_ref() == Some(&host.name) || host.routes.iter().any(|route| route.contains(to))
    });
    let probe = protocol == Some(Protocol::Icmp)
        && to_host.as_ref().and_then(|name| inventory.hosts.get(name)).is_some_and(|host| {
            host.role == Role::Relay
                && inventory.networks[&host.network]
                    .overlays()
                    .any(|overlay| overlay.contains(from))
        });
    let (verdict, rule, line, reason) = match decided {
        _ if local => (
            Verdict::Allow,
            None,
            None,
            "the destination is the source host or a subnet behind it: nothing crosses the \
             fabric"
                .into(),
        ),
        _ if probe && !inventory.policy.is_empty() => (
            Verdict::Allow,
            Some(PROBES.parse().expect("a valid name")),
            None,
            "relays always accept ICMP from the overlay: the failover monitors' probes".into(),
        ),
        Some(rule) => (
            rule.verdict,
            Some(rule.name.clone()),
            Some(rule.line),
            format!("rule `{}` ({}) matches first", rule.name, rule.verdict.as_str()),
        ),
        None if inventory.policy.is_empty() => {
            (Verdict::Allow, None, None, "the inventory has no policy: everything passes".into())
        }
        None => (
            Verdict::Deny,
            None,
            None,
            "no rule matches; with a policy, what no rule allows is dropped".into(),
        ),
    };
    let path = path(fabric, from_host.as_ref(), to);
    Ok(Explanation { from, to, traffic: shown, verdict, rule, line, reason, path })
}

/// The hosts a packet from `from` to `to` crosses: the source, the peer whose allowed IPs
/// hold the destination (a relay or the destination itself), and the host owning or routing
/// the destination when that is another one.
fn path(fabric: &Fabric, from: Option<&Name>, to: IpAddr) -> Vec<Name> {
    let Some(from) = from else { return Vec::new() };
    let mut path = vec![from.clone()];
    let Ok(config) = fabric.host_config(from.as_str()) else { return path };
    let next = config
        .peers
        .iter()
        .filter(|peer| peer.allowed_ips.iter().any(|c| c.contains(to)))
        .max_by_key(|peer| {
            peer.allowed_ips.iter().filter(|c| c.contains(to)).map(|c| c.prefix_len()).max()
        });
    let Some(next) = next else { return path };
    path.push(next.name.clone());
    let owner = fabric.inventory().hosts.values().find(|host| {
        fabric.addresses(host.name.as_str()).is_some_and(|a| a.addresses().any(|own| own == to))
            || host.routes.iter().any(|route| route.contains(to))
    });
    if let Some(owner) = owner.filter(|owner| owner.name != next.name) {
        path.push(owner.name.clone());
    }
    path
}
