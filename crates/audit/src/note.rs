//! What agents and rotations write in the audit log ([`crate`]), in one place: each
//! thing they do becomes a [`Note`], and a note becomes an [`Entry`] once the caller adds
//! the time and the actor.
//!
//! | event | action | target | before / after |
//! |---|---|---|---|
//! | agent applied a revision | `config.applied` | host | — |
//! | agent added / removed a peer | `peer.added` / `peer.removed` | host | the peer's key |
//! | rotation: new key made | `key.generated` | rotating host | new key |
//! | rotation: successor staged on a peer | `peer.added` | peer | new key |
//! | rotation: switched, verified | `config.applied` | rotating host | old key / new key |
//! | rotation: retired | `peer.removed` per peer, then `key.rotated` | peer / rotating host | old key / new key |
//! | rotation: new preshared key | `psk.rotated` | `HOST+PEER` | — |
//! | rotation: rolled back | `peer.removed` per staged peer, `config.applied` | peer / rotating host | new key / old key |
//!
//! Every rotation note's detail starts with `rotation ID PHASE:`, so
//! `wgfabric audit show` filtered on the rotation's id lists its whole story.

use wgfabric_proto::keys::PublicKey;

use crate::{Action, Entry, Fingerprint, Timestamp};

/// One thing to record, without its time and actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What was done.
    pub action: Action,
    /// To what, usually a host.
    pub target: String,
    /// The key before, if any.
    pub before: Option<PublicKey>,
    /// The key after, if any.
    pub after: Option<PublicKey>,
    /// What happened, in words.
    pub detail: String,
}

impl Note {
    /// A note without keys.
    pub fn new(action: Action, target: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { action, target: target.into(), before: None, after: None, detail: detail.into() }
    }

    /// With the key before.
    #[must_use]
    pub fn before(mut self, key: PublicKey) -> Self {
        self.before = Some(key);
        self
    }

    /// With the key after.
    #[must_use]
    pub fn after(mut self, key: PublicKey) -> Self {
        self.after = Some(key);
        self
    }

    /// The audit entry, at `time`, by `actor`.
    pub fn entry(&self, time: Timestamp, actor: &str) -> Entry {
        let mut entry =
            Entry::new(time, actor, self.action, self.target.clone()).detail(self.detail.clone());
        entry.before = self.before.as_ref().map(Fingerprint::of_public_key);
        entry.after = self.after.as_ref().map(Fingerprint::of_public_key);
        entry
    }
}
