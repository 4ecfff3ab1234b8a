//! Configuration: the private key, peers and their allowed IPs, and read-back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Device, Event, Slot};
use crate::cidr::Cidr;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::noise::{Identity, PeerKeys};
use crate::peer::{Endpoint, Peer, PeerId, PeerStats};

/// A peer's configuration and state, as `wg show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// The preshared key (all zeros when none).
    pub preshared_key: PresharedKey,
    /// Where the peer is reached, if known.
    pub endpoint: Option<Endpoint>,
    /// Persistent keepalive interval in seconds; 0 is off.
    pub persistent_keepalive: u16,
    /// Wall-clock time of the latest handshake, since the Unix epoch.
    pub last_handshake: Option<Duration>,
    /// Allowed IPs in canonical order.
    pub allowed_ips: Vec<Cidr>,
    /// The peer this one will take over from at its first handshake, if it is a staged
    /// successor key.
    pub successor_of: Option<PublicKey>,
    /// Sources accepted from the peer beyond its allowed IPs, in the order they were added.
    pub accept_ips: Vec<Cidr>,
    /// Counters.
    pub stats: PeerStats,
}

impl Device {
    /// The private key, if set.
    pub fn private_key(&self) -> Option<&PrivateKey> {
        self.identity.as_ref().map(|id| &id.private)
    }

    /// The public key, if a private key is set.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.identity.as_ref().map(|id| id.public)
    }

    /// Sets or clears the private key.
    ///
    /// Setting the key the device already has changes nothing (so re-applying a configuration
    /// keeps sessions). Otherwise, as in the kernel module: a peer whose public key equals our
    /// new one is removed, and every session stops sending (it still receives what is in
    /// flight), so the next packet triggers a handshake under the new identity.
    pub fn set_private_key(&mut self, key: Option<PrivateKey>) {
        if self.private_key() == key.as_ref() {
            return;
        }
        let identity = key.map(Identity::new);
        if let Some(own) = identity.as_ref().and_then(|id| self.by_key.get(&id.public).copied()) {
            self.remove_peer(own);
        }
        self.admission.set_public_key(identity.as_ref().map(|id| id.public));
        self.events.push_back(Event::PrivateKeyChanged {
            public_key: identity.as_ref().map(|id| id.public),
        });
        self.identity = identity;
        let ids: Vec<PeerId> = self.by_key.values().copied().collect();
        for id in ids {
            let Some(peer) = self.slots[id.slot as usize].peer.as_mut() else { continue };
            peer.keys.identity_changed();
            // An initiation under the old key says nothing about the new one: the next
            // packet may start a handshake at once rather than REKEY_TIMEOUT later.
            peer.last_initiation_sent = None;
            let stale = peer.handshake.take();
            for session in [&peer.sessions.current, &peer.sessions.next].into_iter().flatten() {
                session.expire_sending();
            }
            if let Some(state) = stale {
                self.indices.remove(&state.local_index);
            }
        }
    }

    /// The peer with `public_key`, if configured.
    pub fn peer_by_key(&self, public_key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(public_key).copied()
    }

    /// Every peer, in no particular order.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.by_key.values().copied()
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.by_key.len()
    }

    /// Adds a peer, or returns the existing one with that key. `None` if the key is our own
    /// (a device cannot be its own peer; the kernel and wireguard-go ignore it too).
    pub fn add_peer(&mut self, public_key: PublicKey) -> Option<PeerId> {
        if let Some(&id) = self.by_key.get(&public_key) {
            return Some(id);
        }
        if self.public_key() == Some(public_key) {
            return None;
        }
        let peer = Peer::new(PeerKeys::new(public_key));
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            (self.slots.len() - 1) as u32
        });
        let entry = &mut self.slots[slot as usize];
        entry.peer = Some(Box::new(peer));
        let id = PeerId { slot, generation: entry.generation };
        self.by_key.insert(public_key, id);
        self.events.push_back(Event::PeerAdded { public_key });
        Some(id)
    }

    /// Removes a peer with its sessions and allowed IPs. Unknown ids are ignored.
    pub fn remove_peer(&mut self, id: PeerId) {
        if self.peer(id).is_none() {
            return;
        }
        let slot = &mut self.slots[id.slot as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let Some(mut peer) = slot.peer.take() else { return };
        self.free_slots.push(id.slot);
        self.by_key.remove(&peer.keys.remote);
        self.allowed_ips.remove_value(id);
        if let Some(state) = peer.handshake.take() {
            self.indices.remove(&state.local_index);
        }
        self.release_sessions(peer.sessions.take_all());
        self.events.push_back(Event::PeerRemoved { public_key: peer.keys.remote });
    }

    /// Removes every peer.
    pub fn remove_all_peers(&mut self) {
        let ids: Vec<PeerId> = self.by_key.values().copied().collect();
        for id in ids {
            self.remove_peer(id);
        }
    }

    /// Sets a peer's preshared key (all zeros for none). Takes effect at the next handshake.
    pub fn set_preshared_key(&mut self, id: PeerId, key: PresharedKey) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.keys.preshared != key {
            let set = !key.is_zero();
            peer.keys.preshared = key;
            self.events.push_back(Event::PresharedKeyChanged { peer: id, set });
        }
    }

    /// Sets where a peer is reached (roaming may change it later).
    pub fn set_endpoint(&mut self, id: PeerId, addr: SocketAddr) {
        if let Some(peer) = self.peer_mut(id) {
            if peer.endpoint.map(|e| e.addr) != Some(addr) {
                peer.endpoint = Some(Endpoint::new(addr));
            }
        }
    }

    /// Forgets the preferred source address towards a peer (e.g. when sending from it failed
    /// because the address is gone), so the next packet goes out from whatever the routing
    /// table picks.
    pub fn clear_endpoint_source(&mut self, id: PeerId) {
        if let Some(endpoint) = self.peer_mut(id).and_then(|p| p.endpoint.as_mut()) {
            endpoint.src = None;
        }
    }

    /// Sets the persistent keepalive interval in seconds (0 turns it off). Turning it on sends
    /// a keepalive at once, so a peer behind NAT becomes reachable without waiting.
    pub fn set_persistent_keepalive(&mut self, now: Instant, id: PeerId, interval: u16) {
        let Some(peer) = self.peer_mut(id) else { return };
        let was_off = peer.persistent_keepalive == 0;
        peer.persistent_keepalive = interval;
        if interval != 0 && was_off {
            self.send_keepalive(now, id);
        }
        self.arm_persistent_keepalive(now, id);
    }

    /// Makes the peer the successor of the peer with key `predecessor` (or clears that).
    ///
    /// This is how a key rotation loses no packet: the new key is added as a peer with no
    /// allowed IPs of its own, and when its first handshake completes (which proves the remote
    /// host has switched to it) it takes over every allowed IP of the old key in the same step,
    /// before the packet that completed the handshake is checked against them. The old peer
    /// stays, without allowed IPs, so packets still in flight on its sessions are received,
    /// until it is removed.
    pub fn set_successor_of(&mut self, id: PeerId, predecessor: Option<PublicKey>) {
        if let Some(peer) = self.peer_mut(id) {
            peer.successor_of = predecessor;
        }
    }

    /// Gives `cidr` to the peer (taking it from any other peer that had it).
    pub fn add_allowed_ip(&mut self, id: PeerId, cidr: Cidr) {
        if self.peer(id).is_some() {
            self.allowed_ips.insert(cidr, id);
        }
    }

    /// Takes `cidr` from the peer, if the peer has it.
    pub fn remove_allowed_ip(&mut self, id: PeerId, cidr: Cidr) {
        self.allowed_ips.remove(cidr, id);
    }

    /// Accepts packets from the peer whose source is in `cidr`, without routing `cidr` to it.
    ///
    /// The source check of WireGuard accepts a packet only from the peer that the source
    /// address routes to. When a spoke's traffic moves from a relay to a direct peer, the two
    /// ends cannot switch at the same instant, and packets that the other end still sends the
    /// old way would fail the check. Accepting the moving prefixes on both peers for the time
    /// of the switch loses none, and widens nothing: each peer is accepted only for prefixes
    /// its own configuration names.
    pub fn add_accept_ip(&mut self, id: PeerId, cidr: Cidr) {
        if let Some(peer) = self.peer_mut(id) {
            if !peer.accept_ips.contains(&cidr) {
                peer.accept_ips.push(cidr);
            }
        }
    }

    /// Forgets every source accepted from the peer beyond its allowed IPs.
    pub fn clear_accept_ips(&mut self, id: PeerId) {
        if let Some(peer) = self.peer_mut(id) {
            peer.accept_ips.clear();
        }
    }

    /// Removes all of a peer's allowed IPs.
    pub fn clear_allowed_ips(&mut self, id: PeerId) {
        self.allowed_ips.remove_value(id);
    }

    /// A peer's configuration and state.
    pub fn peer_info(&self, id: PeerId) -> Option<PeerInfo> {
        let peer = self.peer(id)?;
        Some(PeerInfo {
            public_key: peer.keys.remote,
            preshared_key: peer.keys.preshared.clone(),
            endpoint: peer.endpoint,
            persistent_keepalive: peer.persistent_keepalive,
            last_handshake: peer.last_handshake,
            allowed_ips: self.allowed_ips.prefixes_of(id),
            successor_of: peer.successor_of,
            accept_ips: peer.accept_ips.clone(),
            stats: peer.stats,
        })
    }
}
