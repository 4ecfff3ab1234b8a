//! What an agent reports about its host: the revision it applied, what it refused and why,
//! its peers with their handshake ages, its capabilities, and its part in rotations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use super::{PathStatus, Revision, RotationReport, FORMAT};
use wgfabric_model::cidr::Cidr;
use wgfabric_model::names::Name;

/// One host's status, as its agent last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`FORMAT`].
    pub format: u32,
    /// The host.
    pub host: Name,
    /// When it was written, in seconds since the Unix epoch.
    pub time: u64,
    /// How many statuses the agent process (`agent.boot`) wrote before this one: with the
    /// boot, it tells a status written since some moment from an older one, whatever the
    /// clocks say.
    #[serde(default)]
    pub seq: u64,
    /// The agent and what the daemon under it can do.
    pub agent: AgentInfo,
    /// The revision the interface runs, once one was applied.
    pub applied: Option<Revision>,
    /// The last desired state refused, if it is still the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Why the last attempt to sync the interface failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the host's firewall could not be loaded, while that lasts; the table loaded
    /// before stays in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_error: Option<String>,
    /// The last drift the agent found on the live interface and corrected, with its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Correction>,
    /// The interface's peers.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// The rotations this host takes part in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<RotationReport>,
    /// A spoke's paths to the other spokes: direct or relayed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathStatus>,
}

/// What the agent found drifted on the live interface, and corrected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// What was found and done.
    pub what: String,
}

/// Which status a status is: the agent process that wrote it and how many it wrote before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMark {
    /// [`AgentInfo::boot`].
    pub boot: String,
    /// [`Status::seq`].
    pub seq: u64,
}

/// Bytes that are not a status document this version reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Not JSON of a status's shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A format this version does not read.
    #[error("status format {0} (this wgfabric reads {FORMAT})")]
    Format(u32),
}

impl Status {
    /// Where this status stands among its agent's writes.
    pub fn mark(&self) -> StatusMark {
        StatusMark { boot: self.agent.boot.clone(), seq: self.seq }
    }

    /// Whether it was written after the status `before` marks: by another agent process, or
    /// later by the same one.
    pub fn is_newer_than(&self, before: &StatusMark) -> bool {
        self.agent.boot != before.boot || self.seq > before.seq
    }
}

/// Who reports, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// `wgfabric` version of the agent.
    pub version: String,
    /// The agent process: its pid and start time, different for every start.
    #[serde(default)]
    pub boot: String,
    /// The interface it manages.
    pub interface: String,
    /// Whether the daemon takes `successor_of` (wgfabricd) for loss-free rotations; `None`
    /// until the agent has asked it.
    pub successor: Option<bool>,
}

/// A desired state the agent would not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Its revision, when the document was readable enough to have one.
    pub revision: Option<Revision>,
    /// Why it was refused.
    pub reason: String,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
}

/// One peer of the live interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's host, when the desired state names it.
    pub name: Option<Name>,
    /// Its public key.
    #[serde(with = "wgfabric_model::serde_keys")]
    pub public_key: PublicKey,
    /// Where it is reached, as the daemon knows it.
    pub endpoint: Option<String>,
    /// Seconds since its latest handshake, if it had one.
    pub handshake_age: Option<u64>,
    /// Time of the latest handshake in seconds since the Unix epoch, if any.
    pub latest_handshake: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Its allowed IPs.
    pub allowed_ips: Vec<Cidr>,
}

impl Status {
    /// Reads a status document.
    ///
    /// # Errors
    /// [`StatusError`] when it is not a status of this format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatusError> {
        let status: Self = serde_json::from_slice(bytes)?;
        if status.format != FORMAT {
            return Err(StatusError::Format(status.format));
        }
        Ok(status)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Names, numbers, strings and keys in base64 always serialize.
        serde_json::to_vec_pretty(self).expect("a status serializes")
    }

    /// This host's report on rotation `id`, if it has one.
    pub fn rotation(&self, id: &str) -> Option<&RotationReport> {
        self.rotations.iter().find(|report| report.id == id)
    }

    /// The live peer with `key`.
    pub fn peer(&self, key: &PublicKey) -> Option<&PeerStatus> {
        self.peers.iter().find(|peer| peer.public_key == *key)
    }
}

/// Every pair's path as its reporting end says, keyed by (reporting host, other spoke), from
/// the status documents by host (as the store lists them). The hosts whose status does not
/// read come apart, for the caller to say so.
pub fn reported_paths(
    statuses: &BTreeMap<Name, Vec<u8>>,
) -> (BTreeMap<(Name, Name), PathStatus>, Vec<Name>) {
    let mut paths = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (host, bytes) in statuses {
        let Ok(status) = Status::from_json(bytes) else {
            unreadable.push(host.clone());
            continue;
        };
        for path in status.paths {
            paths.insert((status.host.clone(), path.peer.clone()), path);
        }
    }
    (paths, unreadable)
}
