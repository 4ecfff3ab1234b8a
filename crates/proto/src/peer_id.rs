//! The handle by which the device, its peers and their sessions name a peer: a leaf module,
//! so that a session can name its peer without depending on the peer's state.

/// A handle to a peer of a [`Device`](crate::Device). Handles of removed peers never match a
/// later peer, even one that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl PeerId {
    #[cfg(test)]
    pub(crate) fn for_tests(slot: u32) -> Self {
        Self { slot, generation: 0 }
    }
}
