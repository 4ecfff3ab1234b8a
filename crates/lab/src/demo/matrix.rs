//! The connectivity matrix: every host pings every other host's overlay addresses and every
//! routed subnet's stand-in host, each answer is traced to the path it took, and each pair is
//! held to what the access policy says of it (`wgfabric explain`): allowed pairs must answer,
//! denied ones must not.
//!
//! The path is read from the WireGuard counters, not assumed from the configuration: pings
//! run one pair at a time with a 1000-byte payload, and the peer counters of the source and
//! of every relay is taken before and after. The request's first hop is the source's peer
//! whose sent bytes grew by at least a probe; the reply's last hop is the peer whose received
//! bytes did. A relay hop is confirmed only if the relay's counters show the probe coming in
//! from the source and going out to the destination. Keepalives (32 bytes) and handshakes
//! (148 bytes) are too small to be mistaken for a probe.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use wgfabric_proto::keys::PublicKey;

use super::lab::{Lab, LabHost};
use super::Error;
use wgfabric_host::failover::LivePeer;
use wgfabric_model::explain::explain;
use wgfabric_model::inventory::Role;
use wgfabric_model::names::Name;
use wgfabric_model::policy::{PortSpec, Protocol, Verdict};

/// Payload bytes of each probe.
const PROBE_SIZE: u16 = 1000;
/// Attempts per address: the first packet of a pair may wait for a handshake.
const ATTEMPTS: usize = 3;

/// How a packet left the source (or reached it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "relay")]
pub enum Via {
    /// Straight to the destination host's peer.
    Direct,
    /// Through this relay's peer.
    Relay(Name),
    /// Not through the tunnel at all (a subnet router reaching its own subnet).
    Local,
    /// No peer's counters moved by a probe's worth (the pair did not answer).
    Unknown,
}

impl Via {
    fn label(&self) -> &str {
        match self {
            Self::Direct => "direct",
            Self::Relay(relay) => relay.as_str(),
            Self::Local => "local",
            Self::Unknown => "?",
        }
    }
}

/// One pair of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// The host that pinged.
    pub from: Name,
    /// The host or subnet pinged.
    pub to: Name,
    /// The addresses pinged (a host's overlay addresses, or the subnet host's).
    pub addresses: Vec<IpAddr>,
    /// Whether every address answered.
    pub answered: bool,
    /// Whether the access policy lets the pings through.
    pub allowed: bool,
    /// How the requests left the source.
    pub via: Via,
    /// How the replies came back.
    pub reply_via: Via,
    /// The hops the counters confirm, from source to destination; `?` marks a relay hop the
    /// relay's counters did not confirm.
    pub hops: Vec<String>,
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Sources, in name order.
    pub rows: Vec<Name>,
    /// Destinations: the hosts, then the subnets.
    pub columns: Vec<Name>,
    /// Every pair but a host with itself.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// The cell of a pair.
    pub fn cell(&self, from: &str, to: &str) -> Option<&Cell> {
        self.cells.iter().find(|cell| cell.from.as_str() == from && cell.to.as_str() == to)
    }

    /// Whether every pair did what the policy says: allowed pairs answered, denied ones not.
    pub fn as_the_policy_says(&self) -> bool {
        self.cells.iter().all(|cell| cell.answered == cell.allowed)
    }

    /// A pair the policy denies, if any.
    pub fn denied(&self) -> Option<&Cell> {
        self.cells.iter().find(|cell| !cell.allowed)
    }

    /// The matrix as a table: the path label of each pair, `FAIL` where it did not answer.
    pub fn text(&self) -> String {
        let label = |from: &Name, to: &Name| match self.cell(from.as_str(), to.as_str()) {
            None => "·".to_owned(),
            Some(cell) if !cell.allowed && !cell.answered => "denied".to_owned(),
            Some(cell) if !cell.allowed => "LEAK".to_owned(),
            Some(cell) if !cell.answered => "FAIL".to_owned(),
            Some(cell) if cell.reply_via != cell.via && cell.reply_via != Via::Unknown => {
                format!("{}/{}", cell.via.label(), cell.reply_via.label())
            }
            Some(cell) => cell.via.label().to_owned(),
        };
        let first = self.rows.iter().map(|r| r.as_str().len()).max().unwrap_or(0).max(9);
        let widths: Vec<usize> = self
            .columns
            .iter()
            .map(|to| {
                let cells = self.rows.iter().map(|from| label(from, to).chars().count());
                cells.chain([to.as_str().len()]).max().unwrap_or(0)
            })
            .collect();
        let mut out = format!("{:first$}", "from \\ to");
        for (to, width) in self.columns.iter().zip(&widths) {
            let _ = write!(out, "  {:width$}", to.as_str());
        }
        out.push('\n');
        for from in &self.rows {
            let _ = write!(out, "{:first$}", from.as_str());
            for (to, width) in self.columns.iter().zip(&widths) {
                let _ = write!(out, "  {:width$}", label(from, to));
            }
            out.push('\n');
        }
        let answered = self.cells.iter().filter(|cell| cell.answered).count();
        let denied = self.cells.iter().filter(|cell| !cell.allowed).count();
        let _ = writeln!(
            out,
            "{answered}/{} pairs answered, {denied} denied by the access policy. A relay name \
             means the counters show the pair going through that relay (request/reply when \
             they differ); FAIL is an allowed pair that did not answer, LEAK a denied one that \
             did.",
            self.cells.len()
        );
        out
    }
}

/// What a pair's destination is.
enum Destination<'a> {
    Host(&'a LabHost),
    Subnet { name: &'a Name, router: &'a LabHost, target: IpAddr },
}

impl Destination<'_> {
    fn name(&self) -> &Name {
        match self {
            Self::Host(host) => host.name(),
            Self::Subnet { name, .. } => name,
        }
    }

    /// The host whose tunnel peer the packets are delivered to.
    fn tunnel_end(&self) -> &LabHost {
        match self {
            Self::Host(host) | Self::Subnet { router: host, .. } => host,
        }
    }

    fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Self::Host(host) => host.config().addresses.iter().map(|a| a.addr).collect(),
            Self::Subnet { target, .. } => vec![*target],
        }
    }
}

/// Counters of the source and of every relay at one moment.
struct Snapshot(Vec<(PublicKey, Vec<LivePeer>)>);

impl Snapshot {
    fn take(lab: &Lab, from: &LabHost) -> Result<Self, Error> {
        let watched =
            lab.hosts().iter().filter(|h| h.role() == Role::Relay || h.name() == from.name());
        let taken = watched.map(|host| Ok((host.public_key(), host.peers()?)));
        Ok(Self(taken.collect::<Result<_, Error>>()?))
    }

    /// (tx, rx) bytes `host` has exchanged with `peer`.
    fn counters(&self, host: &PublicKey, peer: &PublicKey) -> (u64, u64) {
        self.0
            .iter()
            .find(|(key, _)| key == host)
            .and_then(|(_, peers)| peers.iter().find(|p| p.public_key == *peer))
            .map_or((0, 0), |p| (p.tx_bytes, p.rx_bytes))
    }
}

/// Counter growth of `host` toward `peer` between two snapshots: (sent, received).
fn growth(before: &Snapshot, after: &Snapshot, host: &PublicKey, peer: &PublicKey) -> (u64, u64) {
    let (tx0, rx0) = before.counters(host, peer);
    let (tx1, rx1) = after.counters(host, peer);
    (tx1.saturating_sub(tx0), rx1.saturating_sub(rx0))
}

impl Lab {
    /// Runs the whole matrix, one pair at a time; `on_cell` sees each result as it comes.
    ///
    /// # Errors
    /// When a device cannot be read (a daemon is down).
    pub fn matrix(&self, mut on_cell: impl FnMut(&Cell)) -> Result<Matrix, Error> {
        let mut destinations: Vec<Destination<'_>> =
            self.hosts().iter().map(Destination::Host).collect();
        for subnet in self.subnets() {
            let router = self.host(subnet.router().as_str())?;
            destinations.push(Destination::Subnet {
                name: subnet.name(),
                router,
                target: subnet.target(),
            });
        }
        let mut cells = Vec::new();
        let mut denied = Vec::new();
        for from in self.hosts() {
            for to in destinations.iter().filter(|to| to.name() != from.name()) {
                if self.allowed(from, to) {
                    let cell = self.trace(from, to)?;
                    on_cell(&cell);
                    cells.push(cell);
                } else {
                    denied.push((from, to));
                }
            }
        }
        // A denied pair has no path to trace: probe them all at once, once per address.
        let probed: Vec<Cell> = std::thread::scope(|scope| {
            let probes: Vec<_> = denied
                .iter()
                .map(|(from, to)| scope.spawn(move || Self::probe_denied(from, to)))
                .collect();
            probes.into_iter().filter_map(|probe| probe.join().ok()).collect()
        });
        for cell in probed {
            on_cell(&cell);
            cells.push(cell);
        }
        let order = |name: &Name| destinations.iter().position(|d| d.name() == name);
        let rows = |name: &Name| self.hosts().iter().position(|h| h.name() == name);
        cells.sort_by_key(|cell| (rows(&cell.from), order(&cell.to)));
        Ok(Matrix {
            rows: self.hosts().iter().map(|host| host.name().clone()).collect(),
            columns: destinations.iter().map(|to| to.name().clone()).collect(),
            cells,
        })
    }

    /// Whether the access policy lets `from` ping every address of `to`.
    fn allowed(&self, from: &LabHost, to: &Destination<'_>) -> bool {
        let icmp = Some(PortSpec { protocol: Protocol::Icmp, ports: None });
        to.addresses().iter().all(|addr| {
            explain(self.fabric(), from.name().as_str(), &addr.to_string(), icmp)
                .is_ok_and(|e| e.verdict == Verdict::Allow)
        })
    }

    /// One echo request to each address of a denied pair.
    fn probe_denied(from: &LabHost, to: &Destination<'_>) -> Cell {
        let addresses = to.addresses();
        let answered = addresses.iter().any(|addr| from.ping(*addr, PROBE_SIZE.into()));
        Cell {
            from: from.name().clone(),
            to: to.name().clone(),
            addresses,
            answered,
            allowed: false,
            via: Via::Unknown,
            reply_via: Via::Unknown,
            hops: vec![from.name().to_string()],
        }
    }

    fn trace(&self, from: &LabHost, to: &Destination<'_>) -> Result<Cell, Error> {
        let addresses = to.addresses();
        let before = Snapshot::take(self, from)?;
        let answered =
            addresses.iter().all(|addr| (0..ATTEMPTS).any(|_| from.ping(*addr, PROBE_SIZE.into())));
        let after = Snapshot::take(self, from)?;

        let source = from.public_key();
        // The peers a packet may leave through: the configured ones, and the direct peers
        // the source's agent may have added for other spokes.
        let config = from.config();
        let configured = config.peers.iter().map(|p| (&p.name, p.public_key, p.role));
        let direct = config.paths.iter().flat_map(|paths| &paths.peers);
        let peers: Vec<(&Name, PublicKey, Role)> =
            configured.chain(direct.map(|p| (&p.name, p.public_key, Role::Spoke))).collect();
        let busiest = |pick: fn((u64, u64)) -> u64| {
            peers
                .iter()
                .map(|peer| (peer, pick(growth(&before, &after, &source, &peer.1))))
                .filter(|(_, bytes)| *bytes >= u64::from(PROBE_SIZE))
                .max_by_key(|(_, bytes)| *bytes)
                .map(|(peer, _)| peer)
        };
        let end = to.tunnel_end();
        let classify = |peer: Option<&(&Name, PublicKey, Role)>| match peer {
            Some((name, _, _)) if *name == end.name() => Via::Direct,
            Some((name, _, Role::Relay)) => Via::Relay((*name).clone()),
            Some(_) | None if end.name() == from.name() && answered => Via::Local,
            Some(_) | None => Via::Unknown,
        };
        let via = classify(busiest(|(tx, _)| tx));
        let reply_via = classify(busiest(|(_, rx)| rx));

        let mut hops = vec![from.name().to_string()];
        match &via {
            Via::Relay(relay) => {
                let relay_key = self.host(relay.as_str())?.public_key();
                let probe = u64::from(PROBE_SIZE);
                let (_, came_in) = growth(&before, &after, &relay_key, &source);
                let (went_out, _) = growth(&before, &after, &relay_key, &end.public_key());
                hops.push(relay.to_string());
                hops.push(if came_in >= probe && went_out >= probe {
                    end.name().to_string()
                } else {
                    "?".to_owned()
                });
            }
            Via::Direct => hops.push(end.name().to_string()),
            Via::Local | Via::Unknown => {}
        }
        if matches!(to, Destination::Subnet { .. })
            && hops.last().map(String::as_str) == Some(end.name().as_str())
        {
            hops.push(to.name().to_string());
        }
        Ok(Cell {
            from: from.name().clone(),
            to: to.name().clone(),
            addresses,
            answered,
            allowed: true,
            via,
            reply_via,
            hops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        text.parse().unwrap()
    }

    fn cell(from: &str, to: &str, answered: bool, via: Via, reply_via: Via) -> Cell {
        Cell {
            from: name(from),
            to: name(to),
            addresses: Vec::new(),
            answered,
            allowed: true,
            via,
            reply_via,
            hops: Vec::new(),
        }
    }

    #[test]
    fn the_table_labels_each_pair_by_the_relay_it_went_through() {
        let fra = Via::Relay(name("relay-fra"));
        let iad = Via::Relay(name("relay-iad"));
        let denied =
            Cell { allowed: false, ..cell("bob", "vpc", false, Via::Unknown, Via::Unknown) };
        let mut matrix = Matrix {
            rows: vec![name("ana"), name("bob"), name("relay-fra")],
            columns: vec![name("ana"), name("relay-fra"), name("vpc")],
            cells: vec![
                cell("ana", "relay-fra", true, Via::Direct, Via::Direct),
                cell("ana", "vpc", true, fra.clone(), iad),
                denied.clone(),
                cell("relay-fra", "ana", true, Via::Direct, Via::Direct),
                cell("relay-fra", "vpc", false, Via::Unknown, Via::Unknown),
            ],
        };
        assert!(!matrix.as_the_policy_says(), "an allowed pair failed");
        assert_eq!(matrix.denied(), Some(&denied));
        assert_eq!(
            matrix.text(),
            "from \\ to  ana     relay-fra  vpc                \n\
             ana        ·       direct     relay-fra/relay-iad\n\
             bob        ·       ·          denied             \n\
             relay-fra  direct  ·          FAIL               \n\
             3/5 pairs answered, 1 denied by the access policy. A relay name means the counters \
             show the pair going through that relay (request/reply when they differ); FAIL is an \
             allowed pair that did not answer, LEAK a denied one that did.\n"
        );
        matrix.cells.retain(|cell| cell.answered || !cell.allowed);
        assert!(matrix.as_the_policy_says());
    }

    #[test]
    fn paths_serialize_with_their_relay() {
        let json = serde_json::to_string(&Via::Relay(name("relay-fra"))).unwrap();
        assert_eq!(json, r#"{"kind":"relay","relay":"relay-fra"}"#);
        assert_eq!(serde_json::to_string(&Via::Direct).unwrap(), r#"{"kind":"direct"}"#);
    }
}
