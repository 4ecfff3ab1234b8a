//! The desired state of one host: what `wgfabric apply` publishes and what the host's agent
//! validates before touching its interface.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod reason;

pub use reason::{InvalidReason, RotationProblem};

use super::{KeyMaterial, Phase, Revision, RotationOrder, Sealed, FORMAT};
use wgfabric_model::cidr::Cidr;
use wgfabric_model::config::HostConfig;
use wgfabric_model::fabric::Fabric;
use wgfabric_model::fingerprint::Fingerprint;
use wgfabric_model::inventory::is_interface_name;
use wgfabric_model::names::Name;

/// Smallest interface MTU for IPv4 (RFC 791) and for IPv6 (RFC 8200).
const MIN_MTU_V4: u16 = 576;
const MIN_MTU_V6: u16 = 1280;

/// Everything one host's agent needs to configure its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// [`FORMAT`].
    pub format: u32,
    /// The inventory revision this was rendered from.
    pub revision: Revision,
    /// The inventory's Git commit, when it was known (`-dirty` when the working tree
    /// differed); for people, agents compare revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The interface configuration.
    pub config: HostConfig,
    /// Central mode: the host's private key, sealed. Absent when the key lives on the host
    /// in `config.private_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_private_key: Option<Sealed>,
    /// Sealed preshared keys by peer name; peers without one use none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub preshared_keys: BTreeMap<Name, Sealed>,
    /// Rotations this host takes part in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<RotationOrder>,
}

/// A desired state an agent refuses: why, and its revision when it could be read.
#[derive(Debug)]
pub struct Invalid {
    /// The document's revision, if readable.
    pub revision: Option<Revision>,
    /// What is wrong.
    pub reason: InvalidReason,
}

/// The desired state of every host of `fabric`, without rotation orders, and the revision
/// they share.
pub fn desired_states(
    fabric: &Fabric,
    material: &KeyMaterial,
    commit: Option<&str>,
) -> (Revision, BTreeMap<Name, DesiredState>) {
    let mut docs: BTreeMap<Name, DesiredState> = fabric
        .host_configs()
        .map(|config| {
            let preshared_keys = config
                .peers
                .iter()
                .filter_map(|peer| {
                    let sealed = material.preshared_key(&config.host, &peer.name)?;
                    Some((peer.name.clone(), sealed.clone()))
                })
                .collect();
            let doc = DesiredState {
                format: FORMAT,
                revision: Revision::new(""),
                commit: commit.map(str::to_owned),
                sealed_private_key: material.private_keys.get(&config.host).cloned(),
                preshared_keys,
                rotations: Vec::new(),
                config,
            };
            (doc.config.host.clone(), doc)
        })
        .collect();
    let mut applied = Vec::new();
    for doc in docs.values() {
        // What an agent applies; the revision, commit and orders are not part of it.
        let parts = (&doc.config, &doc.sealed_private_key, &doc.preshared_keys);
        serde_json::to_writer(&mut applied, &parts).expect("a configuration serializes");
        applied.push(b'\n');
    }
    let revision = Revision::new(Fingerprint::of_contents(&applied).into_string());
    for doc in docs.values_mut() {
        doc.revision = revision.clone();
    }
    (revision, docs)
}

impl DesiredState {
    /// Reads and validates the desired state of `host`.
    ///
    /// # Errors
    /// [`Invalid`] when the bytes are not a desired state of this format, or it fails
    /// [`DesiredState::validate`].
    pub fn from_json(bytes: &[u8], host: &str) -> Result<Self, Invalid> {
        let doc: Self = serde_json::from_slice(bytes)
            .map_err(|e| Invalid { revision: loose_revision(bytes), reason: e.into() })?;
        doc.validate(host)
            .map_err(|reason| Invalid { revision: Some(doc.revision.clone()), reason })?;
        Ok(doc)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Configurations, names, keys in base64 and ciphertext always serialize.
        serde_json::to_vec_pretty(self).expect("a desired state serializes")
    }

    /// Checks what an agent relies on before applying: the format, that it is `host`'s, an
    /// address and a usable MTU, peers that WireGuard can hold at once (distinct keys, none
    /// equal to the host's own, no allowed IP on two peers), preshared keys for known peers,
    /// and rotation orders that fit the configuration.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self, host: &str) -> Result<(), InvalidReason> {
        let config = &self.config;
        if self.format != FORMAT {
            return Err(InvalidReason::Format(self.format));
        }
        if config.host.as_str() != host {
            return Err(InvalidReason::OtherHost {
                owner: config.host.clone(),
                host: host.to_owned(),
            });
        }
        let firewall_interface = config.firewall.as_ref().map(|f| f.interface.as_str());
        if let Some(bad) = firewall_interface.filter(|name| !is_interface_name(name)) {
            return Err(InvalidReason::FirewallInterface(bad.to_owned()));
        }
        if !is_interface_name(&config.interface) {
            return Err(InvalidReason::InterfaceName(config.interface.clone()));
        }
        if config.addresses.is_empty() {
            return Err(InvalidReason::NoAddress);
        }
        for address in &config.addresses {
            if let Some(why) = Cidr::host(address.addr).special_use() {
                return Err(InvalidReason::SpecialAddress { address: *address, why });
            }
        }
        let min =
            if config.addresses.iter().any(|a| a.addr.is_ipv6()) { MIN_MTU_V6 } else { MIN_MTU_V4 };
        if config.mtu < min {
            return Err(InvalidReason::Mtu { mtu: config.mtu, min });
        }
        check_peers(config)?;
        if let Some(name) =
            self.preshared_keys.keys().find(|name| config.peer(name.as_str()).is_none())
        {
            return Err(InvalidReason::PresharedKeyForStranger(name.clone()));
        }
        let mut ids = BTreeSet::new();
        for order in &self.rotations {
            if !ids.insert(&order.id) {
                return Err(InvalidReason::RotationTwice(order.id.clone()));
            }
            check_order(config, order)
                .map_err(|problem| InvalidReason::Rotation { id: order.id.clone(), problem })?;
        }
        Ok(())
    }
}

fn check_peers(config: &HostConfig) -> Result<(), InvalidReason> {
    let mut keys = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut owners: BTreeMap<Cidr, &Name> = BTreeMap::new();
    for peer in &config.peers {
        if peer.public_key == config.public_key {
            return Err(InvalidReason::OwnKey(peer.name.clone()));
        }
        if !keys.insert(peer.public_key) || !names.insert(&peer.name) {
            return Err(InvalidReason::PeerTwice { name: peer.name.clone(), key: peer.public_key });
        }
        for cidr in &peer.allowed_ips {
            if let Some(first) = owners.insert(*cidr, &peer.name) {
                return Err(InvalidReason::SharedAllowedIp {
                    cidr: *cidr,
                    first: first.clone(),
                    second: peer.name.clone(),
                });
            }
        }
    }
    for peer in config.paths.iter().flat_map(|paths| &paths.peers) {
        if peer.public_key == config.public_key {
            return Err(InvalidReason::OwnKey(peer.name.clone()));
        }
        if !keys.insert(peer.public_key) || !names.insert(&peer.name) {
            return Err(InvalidReason::PeerTwice { name: peer.name.clone(), key: peer.public_key });
        }
        for cidr in &peer.addresses {
            if !cidr.is_host() {
                return Err(InvalidReason::DirectPrefix { peer: peer.name.clone(), cidr: *cidr });
            }
            if let Some(first) = owners.insert(*cidr, &peer.name) {
                return Err(InvalidReason::SharedAllowedIp {
                    cidr: *cidr,
                    first: first.clone(),
                    second: peer.name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_order(config: &HostConfig, order: &RotationOrder) -> Result<(), RotationProblem> {
    let needs_new_key = matches!(order.phase, Phase::Stage | Phase::Switch | Phase::Verify);
    if needs_new_key && order.new_key.is_none() {
        return Err(RotationProblem::NoNewKey(order.phase.as_str()));
    }
    if order.new_key == Some(order.old_key) {
        return Err(RotationProblem::SameKey);
    }
    if order.host == config.host {
        if order.old_key != config.public_key {
            return Err(RotationProblem::NotOurOldKey);
        }
        if let Some(name) =
            order.preshared_keys.keys().find(|name| config.peer(name.as_str()).is_none())
        {
            return Err(RotationProblem::PresharedKeyForStranger(name.clone()));
        }
        return Ok(());
    }
    let Some(peer) = config.peer(order.host.as_str()) else {
        return Err(RotationProblem::Stranger(order.host.clone()));
    };
    if peer.public_key != order.old_key {
        return Err(RotationProblem::NotPeersOldKey(order.host.clone()));
    }
    if let Some(new_key) = order.new_key {
        if new_key == config.public_key || config.peers.iter().any(|p| p.public_key == new_key) {
            return Err(RotationProblem::NewKeyInUse);
        }
    }
    if order.preshared_keys.keys().any(|name| *name != config.host) {
        return Err(RotationProblem::ForeignPresharedKey);
    }
    Ok(())
}

/// The `revision` field of a document that does not parse as a whole, for the refusal.
fn loose_revision(bytes: &[u8]) -> Option<Revision> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(Revision::new(value.get("revision")?.as_str()?))
}

#[cfg(test)]
mod tests;
