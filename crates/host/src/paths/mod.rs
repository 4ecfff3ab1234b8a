//! Direct paths between spokes: two spokes that can reach each other through their NATs
//! talk over a WireGuard peer of their own instead of through a relay, and say why when
//! they cannot.
//!
//! ```text
//!  store: observed/RELAY ─┐
//!         candidates/PEER ┼─► candidates::candidates ─► CandidateList ─┐
//!  desired state (paths) ─┘                                            ▼
//!  device: direct peer's handshake ──────────────────────────► Pair::handle_round ─► Pair::target
//!  probe over the tunnel ────────────────────────────────────► Pair::handle_probe     (the agent's
//!                                                                    │                 reconcile)
//!                                                                    ▼
//!                                               Pair::signal ─► store: candidates/HOST
//! ```
//!
//! Plain WireGuard on the wire: the direct peer is one more peer, with a candidate endpoint
//! and a keepalive, holding no allowed IP until both ends have completed a handshake over it
//! and agreed on the instant to move the pair's overlay addresses to it. Those are /32 and
//! /128 prefixes, longer than the relay's overlay prefix, so relay failover leaves them be.
//!
//! Everything here is pure; the agent (`agent::paths`) reads the store, the device and the
//! probes, and applies what [`Pair::target`] says through its reconcile.

pub mod candidates;
mod pair;

pub use candidates::{candidates, CandidateList, Sources};
pub use pair::{
    Action, DirectTarget, Pair, Round, CANDIDATE_WINDOW, DEMOTE_AFTER_FAILED_PROBES,
    DIRECT_KEEPALIVE, FIRST_BACKOFF, GOOD_ROUNDS, MAX_BACKOFF, READY_WAIT, STALE_HANDSHAKE,
    SWITCH_MARGIN,
};

#[cfg(test)]
mod tests;
