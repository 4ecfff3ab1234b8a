//! The documents the controller and the agents exchange through a source of truth
//! ([`crate::store`]): one *desired state* per host, written by `wgfabric apply` and
//! `wgfabric rotate`, and one *status* per host, written by the host's agent.
//!
//! ```text
//!  Fabric + KeyMaterial ──► desired_states() ──► DesiredState (per host) ──► store: desired/HOST
//!        (inventory, lock,        │ + RotationOrder while a rotation runs          │
//!         sealed keys, PSKs)      ▼                                                ▼
//!                            Revision (content hash)                    agent: validate, sync
//!                                                                                  │
//!  apply / rotate ◄──────────── Status (applied revision, refusal, peers,  ◄── store: status/HOST
//!                               handshake ages, RotationReport)
//! ```
//!
//! Both are JSON. A desired state holds no secret in clear: private keys stay on the host
//! (its agent reads its key file) or travel sealed with age for the fabric's recipients
//! ([`Sealed`], central mode), and so do preshared keys.

mod desired;
mod material;
mod paths;
mod rotation;
mod status;

use core::fmt;

use serde::{Deserialize, Serialize};

pub use desired::{desired_states, DesiredState, Invalid, InvalidReason, RotationProblem};
pub use material::{psk_file_name, KeyMaterial, PSK_DIR};
pub use paths::{
    Candidates, Observed, ObservedPeer, PairSignal, PathDocError, PathMode, PathReason, PathStatus,
    Stage, TTL,
};
pub use rotation::{Phase, Role, RotationOrder, RotationReport, Takeover};
pub use status::{
    reported_paths, AgentInfo, Correction, PeerStatus, Refusal, Status, StatusError, StatusMark,
};

/// The version of both document formats; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// Which inventory a desired state was rendered from: the first 16 hex digits of the SHA-256
/// of every host's desired configuration and key material, so the same inventory always
/// gives the same revision and any change to what an agent applies gives a new one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    /// A revision from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A secret sealed with age for the inventory's `[keys] recipients`: ASCII-armored
/// ciphertext, safe to publish; only a holder of a matching identity opens it
/// ([`wgfabric_model::sealed_keys::Identities::open`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// Wraps armored age text.
    pub fn new(armored: impl Into<String>) -> Self {
        Self(armored.into())
    }

    /// The armored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}
