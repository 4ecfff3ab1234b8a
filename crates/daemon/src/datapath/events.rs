//! Lifecycle events of the protocol core, turned into structured log lines.
//!
//! Peers are named by their public key (public, so safe to log); nothing secret is ever part
//! of an event: a key change is logged with the new public key, a preshared key change with
//! whether one is set now.

use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::{Device, Event};

/// An event with the peer's public key resolved while the device was at hand.
pub(super) struct Logged {
    event: Event,
    peer: Option<PublicKey>,
}

impl Logged {
    pub(super) fn new(device: &Device, event: Event) -> Self {
        let id = match event {
            Event::HandshakeInitiated { peer, .. }
            | Event::HandshakeCompleted { peer, .. }
            | Event::HandshakeTimedOut { peer }
            | Event::EndpointChanged { peer, .. }
            | Event::KeysZeroed { peer }
            | Event::HandshakeRejected { peer }
            | Event::PresharedKeyChanged { peer, .. }
            | Event::SuccessorActivated { peer, .. } => Some(peer),
            _ => None,
        };
        let peer = match event {
            Event::PeerAdded { public_key } | Event::PeerRemoved { public_key } => Some(public_key),
            _ => id.and_then(|id| device.peer_info(id)).map(|info| info.public_key),
        };
        Self { event, peer }
    }

    /// Writes the log line.
    pub(super) fn emit(&self) {
        let peer = self.peer.as_ref().map(PublicKey::to_base64).unwrap_or_default();
        match self.event {
            Event::HandshakeInitiated { retry, .. } => {
                tracing::debug!(peer, retry, "sending handshake initiation");
            }
            Event::HandshakeCompleted { initiator, .. } => {
                tracing::info!(peer, initiator, "handshake completed");
            }
            Event::HandshakeTimedOut { .. } => {
                tracing::warn!(
                    peer,
                    "handshake failed: no response for 90 seconds; queued packets dropped"
                );
            }
            Event::EndpointChanged { endpoint, .. } => {
                tracing::info!(peer, endpoint = %endpoint.addr, "endpoint changed");
            }
            Event::KeysZeroed { .. } => {
                tracing::debug!(peer, "session keys erased after 9 minutes without a new session");
            }
            Event::HandshakeRejected { .. } => {
                tracing::warn!(
                    peer,
                    "handshake failed: the response did not authenticate (different preshared keys?)"
                );
            }
            Event::PrivateKeyChanged { public_key: Some(public_key) } => {
                tracing::info!(public_key = %public_key, "private key changed");
            }
            Event::PrivateKeyChanged { public_key: None } => tracing::info!("private key removed"),
            Event::PeerAdded { .. } => tracing::info!(peer, "peer added"),
            Event::PeerRemoved { .. } => tracing::info!(peer, "peer removed"),
            Event::PresharedKeyChanged { set: true, .. } => {
                tracing::info!(peer, "preshared key changed");
            }
            Event::PresharedKeyChanged { set: false, .. } => {
                tracing::info!(peer, "preshared key removed");
            }
            Event::SuccessorActivated { predecessor, .. } => {
                tracing::info!(
                    peer,
                    ?predecessor,
                    "new key took over the allowed IPs of its predecessor"
                );
            }
            _ => tracing::debug!(?self.event, "protocol event"),
        }
    }
}
