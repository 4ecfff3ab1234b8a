//! What a rotation asks of each agent ([`RotationOrder`], in the desired state) and what each
//! agent reports back ([`RotationReport`], in its status).
//!
//! One order describes one rotation of one host's key; it appears in the desired state of
//! the rotating host and of every peer of it, with the same `id` and `phase`:
//!
//! | phase | rotating host | each peer |
//! |---|---|---|
//! | `prepare` | makes the new key (generated locally, or opened from `sealed_new_key`) and reports its public half | nothing |
//! | `stage` | as `prepare` | adds the new key as a peer without allowed IPs: a successor of the old key |
//! | `switch` | uses the new key (and the new preshared keys) | keeps the new key staged |
//! | `verify` | as `switch` | starts a handshake with the new key (a keepalive); at its completion the new key takes the allowed IPs |
//! | `rollback` | back to the old key | removes the new key, the old key keeps or gets back the allowed IPs |
//!
//! Peers start the verifying handshake, not the rotating host: a host that sent a handshake
//! initiation to a peer less than 5 s ago (REKEY_TIMEOUT) may not send another, so after a
//! switch its next initiation can wait that long, while a staged key has never initiated
//! (it has no keepalive until `verify`, precisely so that it does not try before the switch).
//!
//! Retiring the old key is not a phase: the controller writes the new key into the inventory
//! and publishes the resulting desired state without the order, which agents apply like any
//! other change (removing the old peer, committing the new key file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use super::Sealed;
use wgfabric_model::names::Name;

/// A step of a rotation, as ordered by the controller and carried out by agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The rotating host makes its new key.
    Prepare,
    /// Every peer stages the new key as a successor of the old one.
    Stage,
    /// The rotating host switches to the new key.
    Switch,
    /// Every peer starts a handshake with the new key, which then takes the allowed IPs.
    Verify,
    /// Everyone returns to the old key.
    Rollback,
}

impl Phase {
    /// The name used in documents and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prepare => "prepare",
            Self::Stage => "stage",
            Self::Switch => "switch",
            Self::Verify => "verify",
            Self::Rollback => "rollback",
        }
    }
}

/// One rotation, as the desired state of an involved host carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationOrder {
    /// Identifies the rotation in orders, reports and the audit log.
    pub id: String,
    /// The host whose key rotates.
    pub host: Name,
    /// What to do now.
    pub phase: Phase,
    /// The key being replaced.
    #[serde(with = "wgfabric_model::serde_keys")]
    pub old_key: PublicKey,
    /// The new key, once the rotating host has reported it (from `stage` on).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_key")]
    pub new_key: Option<PublicKey>,
    /// Central mode: the new private key, sealed; only in the rotating host's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_new_key: Option<Sealed>,
    /// New preshared keys, sealed, by peer name: all of them in the rotating host's order,
    /// the peer's own in a peer's order. Empty when preshared keys are not rotated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub preshared_keys: BTreeMap<Name, Sealed>,
}

/// How an agent plays its part in a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Its host's key rotates.
    Rotating,
    /// Its host peers with the rotating host.
    Peer,
}

/// Who moves the allowed IPs to the new key on a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Takeover {
    /// The daemon (wgfabricd's `successor_of`), in the same step as the first handshake:
    /// nothing is lost.
    Daemon,
    /// The agent, when it sees the first handshake (a stock daemon): packets arriving on the
    /// new key before that are dropped.
    Agent,
}

/// What an agent has done for one rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationReport {
    /// The rotation.
    pub id: String,
    /// The rotating host.
    pub host: Name,
    /// This agent's part.
    pub role: Role,
    /// The last phase it carried out.
    pub phase: Phase,
    /// The rotating host's new public key (reported by the rotating host).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_key")]
    pub new_key: Option<PublicKey>,
    /// On a peer: who moves the allowed IPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<Takeover>,
    /// On a peer: the new key has completed a handshake and holds the allowed IPs.
    #[serde(default)]
    pub taken_over: bool,
    /// Why the agent could not carry out the phase, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Serde glue for optional public keys in base64.
mod optional_key {
    use serde::{Deserialize, Deserializer, Serializer};
    use wgfabric_proto::keys::PublicKey;

    pub(super) fn serialize<S: Serializer>(
        key: &Option<PublicKey>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match key {
            Some(key) => serializer.serialize_some(&key.to_base64()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PublicKey>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| PublicKey::from_base64(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}
