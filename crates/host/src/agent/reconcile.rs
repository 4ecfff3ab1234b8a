//! What the live interface should look like, and the fewest userspace API changes that get
//! it there. Pure: the agent reads the device and the clock, this decides.
//!
//! ```text
//!  DesiredState + Keys + active relay ──► target() ──► Target ──► changes(target, live) ──► SetRequest
//!                 live DeviceSnapshot ──────┘ (rotations)                                  + Vec<Change>
//! ```
//!
//! Like `wg syncconf`, only what differs is sent: a peer whose key, endpoint, keepalive,
//! preshared key and allowed IPs already match is not mentioned, so its sessions and
//! handshake times are untouched. Allowed IPs moving to another peer are only added there
//! (adding a prefix to one peer takes it from any other, in the same step); a peer is told to
//! replace its whole list only when it must lose a prefix that no other peer takes.
//!
//! During a rotation of a peer, both of its keys are on the interface. The new key is a
//! *successor*: it holds no allowed IP until its first handshake, then holds them all and the
//! old key none. With wgfabricd the daemon moves them at the handshake (`successor_of`);
//! with a stock daemon this plan moves them as soon as the agent sees the handshake.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};
use wgfabric_proto::uapi::{
    AllowedIpChange, DeviceSnapshot, PeerSnapshot, PeerUpdate, PrivateKeyUpdate, SetRequest,
};

use super::secrets::Keys;
use crate::paths::DirectTarget;
use wgfabric_model::cidr::Cidr;
use wgfabric_model::config::{HostConfig, PeerConfig};
use wgfabric_model::names::Name;
use wgfabric_model::paths::DirectPeer;
use wgfabric_model::render::join_cidrs;
use wgfabric_store::state::{DesiredState, Phase, Role, RotationReport, Takeover};

/// The keepalive a staged key gets for `verify` when its peer is configured without one,
/// until it has taken over: turning it on starts the handshake.
const VERIFY_KEEPALIVE: u16 = 25;

/// Where to send to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetEndpoint {
    /// The configured endpoint: set whenever the device has another.
    Fixed(SocketAddr),
    /// Where the old key of a rotating peer is reached: given to the new key when it is
    /// added, then left to roam.
    Seed(SocketAddr),
    /// Whatever the peer roams to.
    Roaming,
}

/// One peer as the interface should have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetPeer {
    pub(crate) name: Name,
    pub(crate) public_key: PublicKey,
    pub(crate) endpoint: TargetEndpoint,
    pub(crate) keepalive: u16,
    pub(crate) allowed_ips: BTreeSet<Cidr>,
    pub(crate) preshared_key: Option<PresharedKey>,
    pub(crate) successor_of: Option<PublicKey>,
    /// Sources accepted from the peer without being routed to it (`accept_ip`).
    pub(crate) accept_ips: BTreeSet<Cidr>,
}

/// The interface as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) private_key: PrivateKey,
    pub(crate) listen_port: Option<u16>,
    pub(crate) peers: Vec<TargetPeer>,
}

/// One change made to the interface, for logs and the audit log (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    PrivateKey { public_key: PublicKey },
    ListenPort { port: u16 },
    PeerAdded { name: Name, public_key: PublicKey },
    PeerRemoved { name: Option<Name>, public_key: PublicKey },
    PeerChanged { name: Name, public_key: PublicKey, what: Vec<String> },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PrivateKey { public_key } => {
                write!(f, "private key set (public key {public_key})")
            }
            Self::ListenPort { port } => write!(f, "listen port {port}"),
            Self::PeerAdded { name, public_key } => write!(f, "peer {name} ({public_key}) added"),
            Self::PeerRemoved { name: Some(name), public_key } => {
                write!(f, "peer {name} ({public_key}) removed")
            }
            Self::PeerRemoved { name: None, public_key } => write!(f, "peer {public_key} removed"),
            Self::PeerChanged { name, public_key, what } => {
                write!(f, "peer {name} ({public_key}): {}", what.join(", "))
            }
        }
    }
}

/// What the interface should be for `doc`, given the device as it is now.
///
/// `endpoints` holds the resolved configured endpoints by peer name; `successors` says
/// whether the daemon takes `successor_of`; `active_relay` is where the failover monitor put
/// the failover routes, if it moved them.
pub(crate) fn target(
    doc: &DesiredState,
    keys: &Keys,
    live: &DeviceSnapshot,
    endpoints: &BTreeMap<Name, SocketAddr>,
    successors: bool,
    active_relay: Option<&Name>,
) -> Target {
    let config = active_relay
        .and_then(|relay| doc.config.with_active_relay(relay.as_str()))
        .unwrap_or_else(|| doc.config.clone());
    let own = doc.rotations.iter().find(|order| order.host == config.host);
    let switched = own.filter(|order| matches!(order.phase, Phase::Switch | Phase::Verify));
    let private_key = match (switched, &keys.next) {
        (Some(_), Some(next)) => next.clone(),
        _ => keys.current.clone(),
    };
    let mut peers = Vec::with_capacity(config.peers.len());
    for peer in &config.peers {
        let rotated_psk = switched
            .and_then(|order| keys.rotated_preshared.get(&(order.id.clone(), peer.name.clone())));
        let preshared = rotated_psk.or_else(|| keys.preshared.get(&peer.name)).cloned();
        let mut current = configured_peer(peer, endpoints, preshared);
        let staging =
            doc.rotations.iter().find(|order| order.host == peer.name && is_staged(order.phase));
        let Some((order, new_key)) = staging.and_then(|o| Some((o, o.new_key?))) else {
            peers.push(current);
            continue;
        };
        let taken_over = live_peer(live, &new_key).is_some_and(has_taken_over);
        let endpoint = match current.endpoint {
            TargetEndpoint::Roaming => live_peer(live, &peer.public_key)
                .and_then(|old| old.endpoint)
                .map_or(TargetEndpoint::Roaming, TargetEndpoint::Seed),
            fixed => fixed,
        };
        let rotated_psk = keys.rotated_preshared.get(&(order.id.clone(), config.host.clone()));
        // No keepalive before `verify`: a staged key that initiated before the switch could
        // not complete, and could not initiate again for 5 s (REKEY_TIMEOUT) after it. Turning
        // it on sends a keepalive at once, which starts the verifying handshake.
        let keepalive = match (taken_over, order.phase) {
            (true, _) => current.keepalive,
            (false, Phase::Verify) if current.keepalive == 0 => VERIFY_KEEPALIVE,
            (false, Phase::Verify) => current.keepalive,
            (false, _) => 0,
        };
        let mut successor = TargetPeer {
            public_key: new_key,
            endpoint,
            keepalive,
            allowed_ips: BTreeSet::new(),
            preshared_key: rotated_psk.cloned().or_else(|| current.preshared_key.clone()),
            successor_of: (successors && !taken_over).then_some(peer.public_key),
            ..current.clone()
        };
        if taken_over {
            core::mem::swap(&mut successor.allowed_ips, &mut current.allowed_ips);
        }
        peers.push(current);
        peers.push(successor);
    }
    Target { private_key, listen_port: config.listen_port, peers }
}

/// Adds the direct peers of the spokes this host has a direct path with (or tries one):
/// each with its candidate endpoint (or the one it roamed to, once it answered), a
/// keepalive, and the spoke's overlay addresses once both ends switched to it.
pub(crate) fn add_direct(target: &mut Target, direct: &[(&DirectPeer, DirectTarget)]) {
    for (peer, wanted) in direct {
        target.peers.push(TargetPeer {
            name: peer.name.clone(),
            public_key: peer.public_key,
            endpoint: wanted.endpoint.map_or(TargetEndpoint::Roaming, TargetEndpoint::Fixed),
            keepalive: wanted.keepalive,
            allowed_ips: if wanted.carries {
                peer.addresses.iter().copied().collect()
            } else {
                BTreeSet::new()
            },
            preshared_key: None,
            successor_of: None,
            accept_ips: BTreeSet::new(),
        });
    }
}

/// With a daemon that takes `accept_ip`, makes a switch between the relayed and the direct
/// path lossless whichever end moves first: every relay peer accepts the direct peers'
/// addresses as sources (traffic the other end still sends through a relay), and each direct
/// peer its own (traffic the other end already sends direct). Nothing is routed by it.
pub(crate) fn accept_moving_sources(
    target: &mut Target,
    direct: &[(&DirectPeer, DirectTarget)],
    relays: &BTreeSet<Name>,
) {
    let moving: BTreeSet<Cidr> =
        direct.iter().flat_map(|(peer, _)| peer.addresses.iter().copied()).collect();
    for peer in &mut target.peers {
        if let Some((own, _)) = direct.iter().find(|(own, _)| own.public_key == peer.public_key) {
            peer.accept_ips = own.addresses.iter().copied().collect();
        } else if relays.contains(&peer.name) {
            peer.accept_ips.clone_from(&moving);
        }
    }
}

/// Whether `changes` touch only peers with one of `keys`: direct peers, whose changes leave
/// the relays' allowed IPs (the failover monitor's) alone.
pub(crate) fn only_peers(changes: &[Change], keys: &BTreeSet<PublicKey>) -> bool {
    changes.iter().all(|change| match change {
        Change::PeerAdded { public_key, .. }
        | Change::PeerRemoved { public_key, .. }
        | Change::PeerChanged { public_key, .. } => keys.contains(public_key),
        Change::PrivateKey { .. } | Change::ListenPort { .. } => false,
    })
}

/// `peer` as its configuration has it, with no rotation in flight.
fn configured_peer(
    peer: &PeerConfig,
    endpoints: &BTreeMap<Name, SocketAddr>,
    preshared_key: Option<PresharedKey>,
) -> TargetPeer {
    TargetPeer {
        name: peer.name.clone(),
        public_key: peer.public_key,
        endpoint: endpoints
            .get(&peer.name)
            .map_or(TargetEndpoint::Roaming, |addr| TargetEndpoint::Fixed(*addr)),
        keepalive: peer.persistent_keepalive.unwrap_or(0),
        allowed_ips: peer.allowed_ips.iter().copied().collect(),
        preshared_key,
        successor_of: None,
        accept_ips: BTreeSet::new(),
    }
}

/// The request that gives a fresh device everything `config` describes, with `private_key`
/// and no preshared keys: a host brought up from its rendered configuration.
pub fn initial_request(config: &HostConfig, private_key: &PrivateKey) -> SetRequest {
    let endpoints = super::resolve_endpoints(config);
    let peers = config.peers.iter().map(|peer| configured_peer(peer, &endpoints, None)).collect();
    let target =
        Target { private_key: private_key.clone(), listen_port: config.listen_port, peers };
    changes(&target, &DeviceSnapshot::default()).map(|(request, _)| request).unwrap_or_default()
}

/// The request that brings the device from `live` to `doc` with `keys`, its peers' endpoints
/// resolved now: what `wgfabric up` sends (no failover, no successor keys).
pub(crate) fn request_for(doc: &DesiredState, keys: &Keys, live: &DeviceSnapshot) -> SetRequest {
    let endpoints = super::resolve_endpoints(&doc.config);
    let target = target(doc, keys, live, &endpoints, false, None);
    changes(&target, live).map(|(request, _)| request).unwrap_or_default()
}

/// Whether a rotation in `phase` has the rotating peer's new key staged on its peers.
fn is_staged(phase: Phase) -> bool {
    matches!(phase, Phase::Stage | Phase::Switch | Phase::Verify)
}

/// Whether a staged new key has completed its first handshake (and so should hold the
/// allowed IPs), or already holds them.
fn has_taken_over(peer: &PeerSnapshot) -> bool {
    peer.last_handshake_time.is_some() || !peer.allowed_ips.is_empty()
}

fn live_peer<'a>(live: &'a DeviceSnapshot, key: &PublicKey) -> Option<&'a PeerSnapshot> {
    live.peers.iter().find(|peer| peer.public_key == *key)
}

/// The `allowed_ip` line that adds `cidr`.
fn add_allowed_ip(cidr: &Cidr) -> AllowedIpChange {
    AllowedIpChange::Add((*cidr).into())
}

/// The set request that turns `live` into `target`, and what it changes; `None` when they
/// already match.
pub(crate) fn changes(target: &Target, live: &DeviceSnapshot) -> Option<(SetRequest, Vec<Change>)> {
    let mut request = SetRequest::default();
    let mut changes = Vec::new();
    if live.private_key.as_ref() != Some(&target.private_key) {
        request.private_key = Some(PrivateKeyUpdate::Set(target.private_key.clone()));
        changes.push(Change::PrivateKey { public_key: target.private_key.public_key() });
    }
    if let Some(port) = target.listen_port.filter(|port| *port != live.listen_port) {
        request.listen_port = Some(port);
        changes.push(Change::ListenPort { port });
    }
    let claimed: BTreeSet<Cidr> =
        target.peers.iter().flat_map(|peer| peer.allowed_ips.iter().copied()).collect();
    for peer in &target.peers {
        match live_peer(live, &peer.public_key) {
            None => {
                request.peers.push(new_peer(peer));
                changes.push(Change::PeerAdded {
                    name: peer.name.clone(),
                    public_key: peer.public_key,
                });
            }
            Some(now) => {
                if let Some((update, what)) = peer_changes(peer, now, &claimed) {
                    request.peers.push(update);
                    changes.push(Change::PeerChanged {
                        name: peer.name.clone(),
                        public_key: peer.public_key,
                        what,
                    });
                }
            }
        }
    }
    for gone in
        live.peers.iter().filter(|p| !target.peers.iter().any(|t| t.public_key == p.public_key))
    {
        let mut update = PeerUpdate::new(gone.public_key);
        update.remove = true;
        request.peers.push(update);
        changes.push(Change::PeerRemoved { name: None, public_key: gone.public_key });
    }
    (!changes.is_empty()).then_some((request, changes))
}

fn new_peer(peer: &TargetPeer) -> PeerUpdate {
    let mut update = PeerUpdate::new(peer.public_key);
    update.endpoint = match peer.endpoint {
        TargetEndpoint::Fixed(addr) | TargetEndpoint::Seed(addr) => Some(addr),
        TargetEndpoint::Roaming => None,
    };
    update.persistent_keepalive_interval = (peer.keepalive != 0).then_some(peer.keepalive);
    update.preshared_key = peer.preshared_key.clone();
    update.allowed_ips = peer.allowed_ips.iter().map(add_allowed_ip).collect();
    update.successor_of = peer.successor_of;
    update.accept_ips = peer.accept_ips.iter().map(|cidr| (*cidr).into()).collect();
    update
}

fn peer_changes(
    peer: &TargetPeer,
    now: &PeerSnapshot,
    claimed: &BTreeSet<Cidr>,
) -> Option<(PeerUpdate, Vec<String>)> {
    let mut update = PeerUpdate::new(peer.public_key);
    let mut what = Vec::new();
    if let TargetEndpoint::Fixed(addr) = peer.endpoint {
        if now.endpoint != Some(addr) {
            update.endpoint = Some(addr);
            what.push(format!("endpoint {addr}"));
        }
    }
    if now.persistent_keepalive_interval != peer.keepalive {
        update.persistent_keepalive_interval = Some(peer.keepalive);
        what.push(format!("keepalive {}", peer.keepalive));
    }
    if now.preshared_key != peer.preshared_key {
        update.preshared_key = Some(peer.preshared_key.clone().unwrap_or_else(PresharedKey::zero));
        what.push(
            if peer.preshared_key.is_some() {
                "preshared key set"
            } else {
                "preshared key removed"
            }
            .into(),
        );
    }
    let live_ips: BTreeSet<Cidr> = now.allowed_ips.iter().copied().map(Cidr::from).collect();
    let added: Vec<Cidr> = peer.allowed_ips.difference(&live_ips).copied().collect();
    // Prefixes another peer takes leave this one by themselves.
    let dropped: Vec<Cidr> = live_ips
        .difference(&peer.allowed_ips)
        .filter(|cidr| !claimed.contains(cidr))
        .copied()
        .collect();
    let listed = if dropped.is_empty() {
        added.iter().collect::<Vec<_>>()
    } else {
        update.replace_allowed_ips = true;
        peer.allowed_ips.iter().collect()
    };
    update.allowed_ips = listed.into_iter().map(add_allowed_ip).collect();
    if !added.is_empty() {
        what.push(format!("allowed IPs +{}", join_cidrs(&added, ",")));
    }
    if !dropped.is_empty() {
        what.push(format!("allowed IPs -{}", join_cidrs(&dropped, ",")));
    }
    let live_accepted: BTreeSet<Cidr> = now.accept_ips.iter().copied().map(Cidr::from).collect();
    if live_accepted != peer.accept_ips {
        update.replace_accept_ips = true;
        update.accept_ips = peer.accept_ips.iter().map(|cidr| (*cidr).into()).collect();
        let listed: Vec<Cidr> = peer.accept_ips.iter().copied().collect();
        what.push(if listed.is_empty() {
            "accepted sources cleared".into()
        } else {
            format!("accepts sources {}", join_cidrs(&listed, ","))
        });
    }
    if peer.successor_of.is_some() && now.successor_of != peer.successor_of {
        update.successor_of = peer.successor_of;
        what.push("successor staged".into());
    }
    (!what.is_empty()).then_some((update, what))
}

/// What this host has done for each rotation in `doc`, read from the live device.
pub(crate) fn reports(
    doc: &DesiredState,
    keys: &Keys,
    live: &DeviceSnapshot,
    successors: bool,
) -> Vec<RotationReport> {
    doc.rotations
        .iter()
        .map(|order| {
            let rotating = order.host == doc.config.host;
            let taken_over = !rotating
                && order.phase != Phase::Rollback
                && order.new_key.is_some_and(|key| {
                    live_peer(live, &key).is_some_and(|peer| {
                        peer.last_handshake_time.is_some() && !peer.allowed_ips.is_empty()
                    })
                });
            RotationReport {
                id: order.id.clone(),
                host: order.host.clone(),
                role: if rotating { Role::Rotating } else { Role::Peer },
                phase: order.phase,
                new_key: rotating.then(|| keys.next.as_ref().map(PrivateKey::public_key)).flatten(),
                takeover: (!rotating).then_some(if successors {
                    Takeover::Daemon
                } else {
                    Takeover::Agent
                }),
                taken_over,
                error: None,
            }
        })
        .collect()
}

/// The rotating peers whose new key `request` gives the allowed IPs (a handover by the
/// agent), with the time of that key's first handshake, to tell how long it took.
pub(crate) fn handovers(
    doc: &DesiredState,
    live: &DeviceSnapshot,
    request: &SetRequest,
) -> Vec<(Name, SystemTime)> {
    doc.rotations
        .iter()
        .filter(|order| order.host != doc.config.host)
        .filter_map(|order| {
            let key = order.new_key?;
            let before = live_peer(live, &key)?;
            let gains = request.peers.iter().any(|update| {
                update.public_key == key && !update.remove && !update.allowed_ips.is_empty()
            });
            let handshake = before.last_handshake_time?;
            (gains && before.allowed_ips.is_empty())
                .then(|| (order.host.clone(), UNIX_EPOCH + handshake))
        })
        .collect()
}

/// Whether a rotating peer's staged key has not taken over yet on this host: the agent then
/// looks often, to move the allowed IPs itself (stock daemon) or to report the handover as
/// soon as the daemon made it.
pub(crate) fn awaits_takeover(doc: &DesiredState, live: &DeviceSnapshot) -> bool {
    doc.rotations.iter().any(|order| {
        order.host != doc.config.host
            && is_staged(order.phase)
            && order.new_key.is_some_and(|key| !live_peer(live, &key).is_some_and(has_taken_over))
    })
}

/// The endpoints `before` (the device a restarted daemon replaced) had learned for peers
/// that `live` has without one: a relay knows its spokes only by where they last wrote from,
/// and without these it would wait for each to start a handshake again by itself.
pub(crate) fn roamed_endpoints(before: &DeviceSnapshot, live: &DeviceSnapshot) -> SetRequest {
    let mut request = SetRequest::default();
    for peer in live.peers.iter().filter(|peer| peer.endpoint.is_none()) {
        if let Some(endpoint) = live_peer(before, &peer.public_key).and_then(|old| old.endpoint) {
            let mut update = PeerUpdate::new(peer.public_key);
            update.endpoint = Some(endpoint);
            request.peers.push(update);
        }
    }
    request
}

#[cfg(test)]
mod tests;
