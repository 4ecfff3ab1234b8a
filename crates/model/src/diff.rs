//! Desired against actual, as plain data: what an agent must change on a live device, and
//! what `plan` shows between two renders.
//!
//! Both sides are first reduced to [`PeerState`]s (what WireGuard itself knows about a
//! peer), then compared per key: the public key for a live device, the host name for a plan
//! (so that a new key shows as a change of an existing peer, not as a new one). Endpoints are
//! compared as text: a live device reports resolved addresses, so an agent resolves the
//! desired names first, or clears both sides' endpoints to ignore them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use wgfabric_proto::keys::PublicKey;

use crate::cidr::Cidr;
use crate::config::{HostConfig, PeerConfig};
use crate::inventory::Role;
use crate::wgconf::{PeerSection, WgConfig};

/// The part of a peer that WireGuard applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// Public key.
    #[serde(with = "crate::serde_keys")]
    pub public_key: PublicKey,
    /// Endpoint as text.
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: BTreeSet<Cidr>,
    /// PersistentKeepalive seconds.
    pub persistent_keepalive: Option<u16>,
}

impl From<&PeerConfig> for PeerState {
    fn from(peer: &PeerConfig) -> Self {
        Self {
            public_key: peer.public_key,
            endpoint: peer.endpoint.as_ref().map(ToString::to_string),
            allowed_ips: peer.allowed_ips.iter().copied().collect(),
            persistent_keepalive: peer.persistent_keepalive,
        }
    }
}

impl From<&PeerSection> for PeerState {
    fn from(peer: &PeerSection) -> Self {
        Self {
            public_key: peer.public_key,
            endpoint: peer.endpoint.clone(),
            allowed_ips: peer.allowed_ips.iter().copied().collect(),
            persistent_keepalive: peer.persistent_keepalive,
        }
    }
}

/// A device's peers by public key, as a desired config or a live one gives them.
pub fn peers_by_key<'a, I, P>(peers: I) -> BTreeMap<PublicKey, PeerState>
where
    I: IntoIterator<Item = &'a P>,
    P: 'a,
    PeerState: From<&'a P>,
{
    peers.into_iter().map(PeerState::from).map(|peer| (peer.public_key, peer)).collect()
}

/// One field of a peer that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum FieldChange {
    /// The peer's key changed (plans only; on a device the key is the identity).
    PublicKey {
        /// Before.
        #[serde(with = "crate::serde_keys")]
        old: PublicKey,
        /// After.
        #[serde(with = "crate::serde_keys")]
        new: PublicKey,
    },
    /// The endpoint changed.
    Endpoint {
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// Allowed IPs were added or removed.
    AllowedIps {
        /// Prefixes to add.
        added: Vec<Cidr>,
        /// Prefixes to remove.
        removed: Vec<Cidr>,
    },
    /// The keepalive interval changed.
    PersistentKeepalive {
        /// Before.
        old: Option<u16>,
        /// After.
        new: Option<u16>,
    },
    /// The peer's role changed (plans only: WireGuard does not know roles, the rendered
    /// files name them).
    Role {
        /// Before.
        old: Role,
        /// After.
        new: Role,
    },
}

/// What happens to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PeerChange<K> {
    /// A peer to add.
    Added {
        /// Its key in the comparison.
        peer: K,
        /// What to add.
        state: PeerState,
    },
    /// A peer to remove.
    Removed {
        /// Its key in the comparison.
        peer: K,
        /// What it was.
        state: PeerState,
    },
    /// A peer whose fields differ.
    Changed {
        /// Its key in the comparison.
        peer: K,
        /// The differences.
        fields: Vec<FieldChange>,
    },
}

/// The changes that turn `actual` into `desired`, in key order.
pub fn diff_peers<K: Ord + Clone>(
    desired: &BTreeMap<K, PeerState>,
    actual: &BTreeMap<K, PeerState>,
) -> Vec<PeerChange<K>> {
    let keys: BTreeSet<&K> = desired.keys().chain(actual.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (desired.get(key), actual.get(key)) {
            (Some(state), None) => {
                Some(PeerChange::Added { peer: key.clone(), state: state.clone() })
            }
            (None, Some(state)) => {
                Some(PeerChange::Removed { peer: key.clone(), state: state.clone() })
            }
            (Some(new), Some(old)) => {
                let fields = field_changes(old, new);
                (!fields.is_empty()).then(|| PeerChange::Changed { peer: key.clone(), fields })
            }
            (None, None) => None,
        })
        .collect()
}

fn field_changes(old: &PeerState, new: &PeerState) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    if old.public_key != new.public_key {
        fields.push(FieldChange::PublicKey { old: old.public_key, new: new.public_key });
    }
    if old.endpoint != new.endpoint {
        fields.push(FieldChange::Endpoint { old: old.endpoint.clone(), new: new.endpoint.clone() });
    }
    if old.allowed_ips != new.allowed_ips {
        fields.push(FieldChange::AllowedIps {
            added: new.allowed_ips.difference(&old.allowed_ips).copied().collect(),
            removed: old.allowed_ips.difference(&new.allowed_ips).copied().collect(),
        });
    }
    if old.persistent_keepalive != new.persistent_keepalive {
        fields.push(FieldChange::PersistentKeepalive {
            old: old.persistent_keepalive,
            new: new.persistent_keepalive,
        });
    }
    fields
}

/// What must change on a live device (as `wg showconf` prints it) to match `desired`: the
/// listen port, if it differs, and the peer changes by public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDiff {
    /// `(live, desired)` listen port, if they differ and a port is desired.
    pub listen_port: Option<(Option<u16>, u16)>,
    /// Peer changes.
    pub peers: Vec<PeerChange<PublicKey>>,
}

impl DeviceDiff {
    /// Whether the device already matches.
    pub fn is_empty(&self) -> bool {
        self.listen_port.is_none() && self.peers.is_empty()
    }
}

/// Compares a host's desired configuration with a live device.
pub fn diff_device(desired: &HostConfig, live: &WgConfig) -> DeviceDiff {
    let listen_port = desired
        .listen_port
        .filter(|port| live.interface.listen_port != Some(*port))
        .map(|port| (live.interface.listen_port, port));
    let peers = diff_peers(&peers_by_key(&desired.peers), &peers_by_key(&live.peers));
    DeviceDiff { listen_port, peers }
}
