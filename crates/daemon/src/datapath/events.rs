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

    /// Writes the log line; a peer added or removed as one of many goes to debug level (see
    /// [`emit_all`]).
    fn emit(&self, one_of_many: bool) {
        // Evaluated only by the lines the log level lets through.
        let peer = || self.peer.as_ref().map(PublicKey::to_base64).unwrap_or_default();
        match self.event {
            Event::HandshakeInitiated { retry, .. } => {
                tracing::debug!(peer = peer(), retry, "sending handshake initiation");
            }
            Event::HandshakeCompleted { initiator, .. } => {
                tracing::info!(peer = peer(), initiator, "handshake completed");
            }
            Event::HandshakeTimedOut { .. } => {
                tracing::warn!(
                    peer = peer(),
                    "handshake failed: no response for 90 seconds; queued packets dropped"
                );
            }
            Event::EndpointChanged { endpoint, .. } => {
                tracing::info!(peer = peer(), endpoint = %endpoint.addr, "endpoint changed");
            }
            Event::KeysZeroed { .. } => {
                tracing::debug!(
                    peer = peer(),
                    "session keys erased after 9 minutes without a new session"
                );
            }
            Event::HandshakeRejected { .. } => {
                tracing::warn!(peer = peer(),
                    "handshake failed: the response did not authenticate (different preshared keys?)"
                );
            }
            Event::PrivateKeyChanged { public_key: Some(public_key) } => {
                tracing::info!(public_key = %public_key, "private key changed");
            }
            Event::PrivateKeyChanged { public_key: None } => tracing::info!("private key removed"),
            Event::PeerAdded { .. } if one_of_many => tracing::debug!(peer = peer(), "peer added"),
            Event::PeerRemoved { .. } if one_of_many => {
                tracing::debug!(peer = peer(), "peer removed");
            }
            Event::PeerAdded { .. } => tracing::info!(peer = peer(), "peer added"),
            Event::PeerRemoved { .. } => tracing::info!(peer = peer(), "peer removed"),
            Event::PresharedKeyChanged { set: true, .. } => {
                tracing::info!(peer = peer(), "preshared key changed");
            }
            Event::PresharedKeyChanged { set: false, .. } => {
                tracing::info!(peer = peer(), "preshared key removed");
            }
            Event::SuccessorActivated { predecessor, .. } => {
                tracing::info!(
                    peer = peer(),
                    ?predecessor,
                    "new key took over the allowed IPs of its predecessor"
                );
            }
            _ => tracing::debug!(?self.event, "protocol event"),
        }
    }
}

/// Peers added or removed by one change up to which each gets its own line at info level.
/// Beyond it (a `wg setconf` of a relay's thousands of peers) the change is one line with the
/// counts, and the peers are logged at debug level: a million lines would cost more than the
/// change itself, and the journal's rate limit would drop most of them anyway.
const PEERS_LOGGED_ONE_BY_ONE: usize = 100;

/// Writes the log lines of `events`, produced by one change.
pub(super) fn emit_all(events: &[Logged]) {
    let count = |wanted: fn(&Event) -> bool| events.iter().filter(|e| wanted(&e.event)).count();
    let added = count(|e| matches!(e, Event::PeerAdded { .. }));
    let removed = count(|e| matches!(e, Event::PeerRemoved { .. }));
    let one_of_many = added + removed > PEERS_LOGGED_ONE_BY_ONE;
    for event in events {
        event.emit(one_of_many);
    }
    if one_of_many {
        tracing::info!(added, removed, "peers changed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use wgfabric_proto::keys::PrivateKey;

    use super::*;

    /// The info-level lines that `count` peers added in one change produce.
    fn info_lines_for_added(count: u8) -> String {
        let device = Device::new([0; 32], Instant::now(), Duration::ZERO);
        let events: Vec<Logged> = (0..count)
            .map(|i| {
                let public_key = PrivateKey::from_bytes([i; 32]).public_key();
                Logged::new(&device, Event::PeerAdded { public_key })
            })
            .collect();
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || emit_all(&events));
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_few_peers_are_logged_one_by_one() {
        let log = info_lines_for_added(3);
        assert_eq!(log.matches("peer added").count(), 3, "{log}");
        assert!(!log.contains("peers changed"), "{log}");
    }

    #[test]
    fn many_peers_are_counted_in_one_line() {
        let log = info_lines_for_added(101);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("peers changed added=101 removed=0"), "{log}");
    }
}
