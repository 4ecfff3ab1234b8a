//! What the agent reports and records about its interface: the peers of its status, when a
//! status says something new, and the audit notes of an applied change.

use wgfabric_proto::uapi::DeviceSnapshot;

use super::reconcile::Change;
use wgfabric_audit::note::Note;
use wgfabric_audit::Action;
use wgfabric_model::cidr::Cidr;
use wgfabric_model::names::Name;
use wgfabric_store::state::{DesiredState, PeerStatus, Revision, Status};

/// Whether two statuses say the same, apart from time, counters, handshake ages and
/// round-trip times.
pub(super) fn same_state(a: &Status, b: &Status) -> bool {
    let shape = |status: &Status| -> Vec<_> {
        status
            .peers
            .iter()
            .map(|peer| {
                (peer.public_key, peer.allowed_ips.clone(), peer.latest_handshake.is_some())
            })
            .collect()
    };
    let paths = |status: &Status| -> Vec<_> {
        status
            .paths
            .iter()
            .map(|path| (path.peer.clone(), path.mode, path.reason, path.since, path.endpoint))
            .collect()
    };
    (&a.applied, &a.refused, &a.error, &a.policy_error, &a.corrected, &a.rotations, &a.agent)
        == (&b.applied, &b.refused, &b.error, &b.policy_error, &b.corrected, &b.rotations, &b.agent)
        && shape(a) == shape(b)
        && paths(a) == paths(b)
}

/// The live peers, named after the desired state (a rotating peer's new key by its host).
pub(super) fn peer_statuses(
    doc: Option<&DesiredState>,
    live: &DeviceSnapshot,
    now: u64,
) -> Vec<PeerStatus> {
    let name_of = |key| {
        let doc = doc?;
        let config = doc
            .config
            .peers
            .iter()
            .find(|peer| peer.public_key == key)
            .map(|peer| peer.name.clone());
        config.or_else(|| {
            doc.rotations
                .iter()
                .find(|order| order.new_key == Some(key))
                .map(|order| order.host.clone())
        })
    };
    live.peers
        .iter()
        .map(|peer| {
            let latest = peer.last_handshake_time.map(|time| time.as_secs());
            PeerStatus {
                name: name_of(peer.public_key),
                public_key: peer.public_key,
                endpoint: peer.endpoint.map(|endpoint| endpoint.to_string()),
                handshake_age: latest.map(|latest| now.saturating_sub(latest)),
                latest_handshake: latest,
                rx_bytes: peer.rx_bytes,
                tx_bytes: peer.tx_bytes,
                allowed_ips: peer.allowed_ips.iter().copied().map(Cidr::from).collect(),
            }
        })
        .collect()
}

/// The audit notes of one application of the desired state.
pub(super) fn applied_notes(host: &Name, revision: &Revision, changes: &[Change]) -> Vec<Note> {
    let mut notes: Vec<Note> = changes
        .iter()
        .filter_map(|change| match change {
            Change::PeerAdded { name, public_key } => Some(
                Note::new(
                    Action::PeerAdded,
                    host.as_str(),
                    format!("peer {name} added (revision {revision})"),
                )
                .after(*public_key),
            ),
            Change::PeerRemoved { public_key, .. } => Some(
                Note::new(
                    Action::PeerRemoved,
                    host.as_str(),
                    format!("peer removed (revision {revision})"),
                )
                .before(*public_key),
            ),
            _ => None,
        })
        .collect();
    let summary: Vec<String> = changes.iter().map(ToString::to_string).collect();
    notes.push(Note::new(
        Action::ConfigApplied,
        host.as_str(),
        format!("revision {revision}: {}", summary.join("; ")),
    ));
    notes
}
