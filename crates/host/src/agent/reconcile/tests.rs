//! Tests of the agent's plans: minimal changes, allowed IPs moved by addition, and every
//! rotation phase with wgfabricd and with a stock daemon.

use std::path::Path;
use std::time::Duration;

use wgfabric_proto::uapi::PeerSnapshot;

use super::*;
use wgfabric_store::state::{desired_states, KeyMaterial, RotationOrder};

fn docs() -> BTreeMap<Name, DesiredState> {
    let text = wgfabric_model::example::INVENTORY;
    let inventory = wgfabric_model::Inventory::parse(Path::new("fabric.toml"), text).unwrap();
    let lock = wgfabric_model::Lock::default().update(&inventory).unwrap();
    let fabric = wgfabric_model::Fabric::new(inventory, lock).unwrap();
    desired_states(&fabric, &KeyMaterial::default(), None).1
}

fn name(text: &str) -> Name {
    text.parse().unwrap()
}

fn keys(seed: u8) -> Keys {
    Keys {
        current: PrivateKey::from_bytes([seed; 32]),
        next: None,
        preshared: BTreeMap::new(),
        rotated_preshared: BTreeMap::new(),
        fetched_from: None,
    }
}

/// The device after applying `target` exactly, with a handshake on every peer.
fn device_of(target: &Target) -> DeviceSnapshot {
    DeviceSnapshot {
        private_key: Some(target.private_key.clone()),
        listen_port: target.listen_port.unwrap_or(40000),
        fwmark: 0,
        peers: target
            .peers
            .iter()
            .map(|peer| {
                let mut live = PeerSnapshot::new(peer.public_key);
                live.endpoint = match peer.endpoint {
                    TargetEndpoint::Fixed(addr) | TargetEndpoint::Seed(addr) => Some(addr),
                    TargetEndpoint::Roaming => None,
                };
                live.persistent_keepalive_interval = peer.keepalive;
                live.preshared_key = peer.preshared_key.clone();
                live.allowed_ips = peer.allowed_ips.iter().map(|&cidr| cidr.into()).collect();
                live.last_handshake_time = Some(Duration::from_secs(1_000));
                live.successor_of = peer.successor_of;
                live.accept_ips = peer.accept_ips.iter().map(|&cidr| cidr.into()).collect();
                live
            })
            .collect(),
    }
}

fn peer_mut<'a>(device: &'a mut DeviceSnapshot, key: &PublicKey) -> &'a mut PeerSnapshot {
    device.peers.iter_mut().find(|peer| peer.public_key == *key).unwrap()
}

fn no_endpoints() -> BTreeMap<Name, SocketAddr> {
    BTreeMap::new()
}

#[test]
fn a_fresh_device_gets_everything_and_a_synced_one_nothing() {
    let doc = &docs()["relay-fra"];
    let target = target(doc, &keys(1), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let (request, summary) = changes(&target, &DeviceSnapshot::default()).unwrap();
    assert!(matches!(request.private_key, Some(PrivateKeyUpdate::Set(_))));
    assert_eq!(request.listen_port, Some(51820));
    assert_eq!(request.peers.len(), doc.config.peers.len());
    assert!(request.peers.iter().all(|p| !p.allowed_ips.is_empty() && !p.remove));
    assert_eq!(summary.iter().filter(|c| matches!(c, Change::PeerAdded { .. })).count(), 6);
    assert_eq!(changes(&target, &device_of(&target)), None);
}

#[test]
fn one_peers_allowed_ips_change_only_that_peer() {
    let doc = &docs()["relay-fra"];
    let before = target(doc, &keys(1), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let live = device_of(&before);
    let mut changed = doc.clone();
    let route: Cidr = "10.244.9.0/24".parse().unwrap();
    let peer = changed.config.peers.iter_mut().find(|p| p.name.as_str() == "k8s-node-1").unwrap();
    let old_route = peer.allowed_ips.iter().position(|c| c.prefix_len() == 24).unwrap();
    peer.allowed_ips[old_route] = route;
    let peer_key = peer.public_key;
    let after = target(&changed, &keys(1), &live, &no_endpoints(), true, None);
    let (request, summary) = changes(&after, &live).unwrap();
    assert_eq!(request.peers.len(), 1, "{summary:?}");
    let update = &request.peers[0];
    assert_eq!(update.public_key, peer_key);
    assert!(
        update.replace_allowed_ips,
        "10.244.1.0/24 goes to no other peer: the list is replaced"
    );
    assert_eq!(update.allowed_ips.len(), 3);
    assert!(
        (update.endpoint, update.preshared_key.clone(), update.persistent_keepalive_interval)
            == (None, None, None)
    );
    let [Change::PeerChanged { what, .. }] = summary.as_slice() else { panic!("{summary:?}") };
    assert_eq!(what, &["allowed IPs +10.244.9.0/24", "allowed IPs -10.244.1.0/24"]);
}

#[test]
fn failover_routes_move_by_addition_only() {
    let doc = &docs()["laptop-ana"];
    let before = target(doc, &keys(2), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let live = device_of(&before);
    let iad = name("relay-iad");
    let after = target(doc, &keys(2), &live, &no_endpoints(), true, Some(&iad));
    let (request, _) = changes(&after, &live).unwrap();
    assert_eq!(
        request.peers.len(),
        1,
        "only relay-iad is told: adding takes the routes from relay-fra"
    );
    assert!(!request.peers[0].replace_allowed_ips);
    assert_eq!(request.peers[0].public_key, doc.config.peer("relay-iad").unwrap().public_key);
}

fn staged(doc: &DesiredState, host: &str, phase: Phase) -> (DesiredState, PublicKey, PublicKey) {
    let old = doc.config.peer(host).unwrap().public_key;
    let new = PrivateKey::from_bytes([0x42; 32]).public_key();
    let mut doc = doc.clone();
    doc.rotations.push(RotationOrder {
        id: "r1".into(),
        host: name(host),
        phase,
        old_key: old,
        new_key: Some(new),
        sealed_new_key: None,
        preshared_keys: BTreeMap::new(),
    });
    (doc, old, new)
}

#[test]
fn a_successor_is_staged_then_taken_over_by_wgfabricd() {
    let base = &docs()["laptop-ana"];
    let endpoint: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let endpoints = BTreeMap::from([(name("relay-fra"), endpoint)]);
    let synced =
        device_of(&target(base, &keys(3), &DeviceSnapshot::default(), &endpoints, true, None));
    let (doc, old, new) = staged(base, "relay-fra", Phase::Stage);
    let (request, summary) =
        changes(&target(&doc, &keys(3), &synced, &endpoints, true, None), &synced).unwrap();
    assert_eq!(summary.len(), 1, "{summary:?}");
    let update = &request.peers[0];
    assert_eq!((update.public_key, update.successor_of), (new, Some(old)));
    assert!(update.allowed_ips.is_empty());
    assert_eq!(
        (update.endpoint, update.persistent_keepalive_interval),
        (Some(endpoint), None),
        "no keepalive yet: it would start handshakes that cannot complete before the switch"
    );

    // Verify: turning the keepalive on sends one at once, which starts the handshake.
    let mut staged_live = device_of(&target(&doc, &keys(3), &synced, &endpoints, true, None));
    peer_mut(&mut staged_live, &new).last_handshake_time = None;
    let mut verify = doc.clone();
    verify.rotations[0].phase = Phase::Verify;
    let (request, _) =
        changes(&target(&verify, &keys(3), &staged_live, &endpoints, true, None), &staged_live)
            .unwrap();
    let update = &request.peers[0];
    assert_eq!((request.peers.len(), update.public_key), (1, new));
    assert_eq!(update.persistent_keepalive_interval, Some(25));
    assert!(awaits_takeover(&doc, &synced), "the agent watches for the handover");

    // wgfabricd moved the allowed IPs at the first handshake: nothing to do, and it shows.
    let mut live = device_of(&target(&verify, &keys(3), &staged_live, &endpoints, true, None));
    let moved = core::mem::take(&mut peer_mut(&mut live, &old).allowed_ips);
    let successor = peer_mut(&mut live, &new);
    successor.allowed_ips = moved;
    successor.successor_of = None;
    assert_eq!(changes(&target(&verify, &keys(3), &live, &endpoints, true, None), &live), None);
    let report = &reports(&verify, &keys(3), &live, true)[0];
    assert_eq!(
        (report.role, report.takeover, report.taken_over),
        (Role::Peer, Some(Takeover::Daemon), true)
    );

    // Retired: the inventory has the new key; the old one goes.
    let mut retired = base.clone();
    let relay = retired.config.peers.iter_mut().find(|p| p.name.as_str() == "relay-fra").unwrap();
    relay.public_key = new;
    let (request, summary) =
        changes(&target(&retired, &keys(3), &live, &endpoints, true, None), &live).unwrap();
    assert_eq!(request.peers.len(), 1);
    assert!(request.peers[0].remove && request.peers[0].public_key == old, "{summary:?}");
}

#[test]
fn a_peer_without_keepalive_gets_one_to_verify_then_none() {
    let base = &docs()["relay-fra"];
    let synced =
        device_of(&target(base, &keys(7), &DeviceSnapshot::default(), &no_endpoints(), true, None));
    let (doc, old, new) = staged(base, "laptop-ana", Phase::Verify);
    assert_eq!(base.config.peer("laptop-ana").unwrap().persistent_keepalive, None);
    let mut live = device_of(&target(&doc, &keys(7), &synced, &no_endpoints(), true, None));
    let staged = peer_mut(&mut live, &new);
    assert_eq!(staged.persistent_keepalive_interval, VERIFY_KEEPALIVE);
    assert_eq!(
        staged.endpoint,
        synced.peers.iter().find(|p| p.public_key == old).unwrap().endpoint
    );
    // Taken over: back to the configuration's keepalive.
    let moved = core::mem::take(&mut peer_mut(&mut live, &old).allowed_ips);
    peer_mut(&mut live, &new).allowed_ips = moved;
    let (request, _) =
        changes(&target(&doc, &keys(7), &live, &no_endpoints(), true, None), &live).unwrap();
    assert_eq!(
        (request.peers[0].public_key, request.peers[0].persistent_keepalive_interval),
        (new, Some(0))
    );
}

#[test]
fn with_a_stock_daemon_the_agent_moves_the_allowed_ips_at_the_handshake() {
    let base = &docs()["laptop-ana"];
    let synced = device_of(&target(
        base,
        &keys(4),
        &DeviceSnapshot::default(),
        &no_endpoints(),
        false,
        None,
    ));
    let (doc, old, new) = staged(base, "relay-fra", Phase::Switch);
    let staged_target = target(&doc, &keys(4), &synced, &no_endpoints(), false, None);
    let (request, _) = changes(&staged_target, &synced).unwrap();
    assert_eq!((request.peers[0].public_key, request.peers[0].successor_of), (new, None));
    let mut live = device_of(&staged_target);
    peer_mut(&mut live, &new).last_handshake_time = None;
    assert!(awaits_takeover(&doc, &live));
    assert!(!reports(&doc, &keys(4), &live, false)[0].taken_over);

    // The first handshake of the new key: its peer gets every allowed IP, by addition.
    peer_mut(&mut live, &new).last_handshake_time = Some(Duration::from_secs(2_000));
    let (request, summary) =
        changes(&target(&doc, &keys(4), &live, &no_endpoints(), false, None), &live).unwrap();
    let moved = handovers(&doc, &live, &request);
    assert_eq!(moved, [(name("relay-fra"), UNIX_EPOCH + Duration::from_secs(2_000))]);
    assert_eq!(request.peers.len(), 1, "{summary:?}");
    assert_eq!(request.peers[0].public_key, new);
    assert_eq!(
        request.peers[0].allowed_ips.len(),
        doc.config.peer("relay-fra").unwrap().allowed_ips.len()
    );
    assert!(!request.peers[0].replace_allowed_ips);

    // Rolled back after the takeover: the old key takes them back and the new one goes.
    let moved = core::mem::take(&mut peer_mut(&mut live, &old).allowed_ips);
    peer_mut(&mut live, &new).allowed_ips = moved;
    let (rollback, _, _) = staged(base, "relay-fra", Phase::Rollback);
    let (request, _) =
        changes(&target(&rollback, &keys(4), &live, &no_endpoints(), false, None), &live).unwrap();
    let ids: Vec<(PublicKey, bool, usize)> =
        request.peers.iter().map(|p| (p.public_key, p.remove, p.allowed_ips.len())).collect();
    assert_eq!(ids[0].0, old);
    assert!(ids[0].2 > 0 && !ids[0].1);
    assert_eq!(ids[1], (new, true, 0), "removed last, after the old key took its prefixes back");
}

#[test]
fn the_rotating_host_switches_its_key_and_preshared_keys() {
    let base = &docs()["laptop-ana"];
    let mut keys = keys(5);
    let next = PrivateKey::from_bytes([6; 32]);
    keys.next = Some(next.clone());
    let psk = PresharedKey::from_bytes([9; 32]);
    keys.rotated_preshared.insert(("r1".into(), name("relay-iad")), psk.clone());
    let synced =
        device_of(&target(base, &keys, &DeviceSnapshot::default(), &no_endpoints(), true, None));
    let own = base.config.public_key;
    let mut doc = base.clone();
    doc.rotations.push(RotationOrder {
        id: "r1".into(),
        host: name("laptop-ana"),
        phase: Phase::Stage,
        old_key: own,
        new_key: Some(next.public_key()),
        sealed_new_key: None,
        preshared_keys: BTreeMap::new(),
    });
    assert_eq!(changes(&target(&doc, &keys, &synced, &no_endpoints(), true, None), &synced), None);
    doc.rotations[0].phase = Phase::Switch;
    let (request, summary) =
        changes(&target(&doc, &keys, &synced, &no_endpoints(), true, None), &synced).unwrap();
    assert!(matches!(&request.private_key, Some(PrivateKeyUpdate::Set(key)) if *key == next));
    assert_eq!(request.peers.len(), 1);
    assert_eq!(request.peers[0].preshared_key, Some(psk));
    assert!(summary.iter().all(|change| !change.to_string().contains(&next.to_base64_secret())));
    let report = &reports(&doc, &keys, &synced, true)[0];
    assert_eq!((report.role, report.new_key), (Role::Rotating, Some(next.public_key())));
}

#[test]
fn a_restarted_daemon_gets_the_endpoints_its_predecessor_learned() {
    let doc = &docs()["relay-fra"];
    let target = target(doc, &keys(1), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let mut before = device_of(&target);
    let roamed: SocketAddr = "198.51.100.7:40001".parse().unwrap();
    let spoke = before.peers[0].public_key;
    peer_mut(&mut before, &spoke).endpoint = Some(roamed);
    // The new daemon, configured again: no endpoint for peers that roam.
    let mut live = device_of(&target);
    for peer in &mut live.peers {
        peer.endpoint = None;
    }
    let request = roamed_endpoints(&before, &live);
    let seeded: Vec<_> = request.peers.iter().map(|p| (p.public_key, p.endpoint)).collect();
    assert!(seeded.contains(&(spoke, Some(roamed))), "{seeded:?}");
    assert!(request.peers.iter().all(|p| p.endpoint.is_some() && p.allowed_ips.is_empty()));
    // A peer that has an endpoint again keeps it.
    assert!(roamed_endpoints(&before, &before).peers.is_empty());
}

#[test]
fn a_direct_peer_gets_the_addresses_only_when_it_carries_them() {
    let docs = docs();
    let doc = &docs[&name("laptop-ana")];
    let ben = doc.config.paths.as_ref().unwrap().peer("laptop-ben").unwrap();
    let base = target(doc, &keys(1), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let synced = device_of(&base);
    let endpoint: SocketAddr = "198.51.100.2:51820".parse().unwrap();
    let trying = DirectTarget { endpoint: Some(endpoint), keepalive: 25, carries: false };

    let mut wanted = base.clone();
    add_direct(&mut wanted, &[(ben, trying)]);
    let (request, made) = changes(&wanted, &synced).unwrap();
    assert_eq!(request.peers.len(), 1, "only the direct peer: {request:?}");
    let added = &request.peers[0];
    assert_eq!((added.public_key, added.endpoint), (ben.public_key, Some(endpoint)));
    assert_eq!(added.persistent_keepalive_interval, Some(25));
    assert!(added.allowed_ips.is_empty(), "the relay keeps the addresses until the switch");
    let direct_keys = BTreeSet::from([ben.public_key]);
    assert!(only_peers(&made, &direct_keys));

    // The switch: the /32 and /128 are added to the direct peer; the relay's overlay prefix
    // stays where it is, and a roamed endpoint is left alone.
    let mut live = device_of(&wanted);
    peer_mut(&mut live, &ben.public_key).endpoint = Some("198.51.100.2:40001".parse().unwrap());
    let carrying = DirectTarget { endpoint: None, keepalive: 25, carries: true };
    let mut wanted = base.clone();
    add_direct(&mut wanted, &[(ben, carrying)]);
    let (request, made) = changes(&wanted, &live).unwrap();
    assert_eq!(request.peers.len(), 1, "{request:?}");
    assert_eq!(request.peers[0].endpoint, None, "the roamed endpoint is not overwritten");
    assert_eq!(request.peers[0].allowed_ips.len(), 2);
    assert!(!request.peers[0].replace_allowed_ips);
    assert!(only_peers(&made, &direct_keys));

    // Demoted: the direct peer goes, and the relay's prefix covers the spoke again.
    let live = device_of(&wanted);
    let (request, made) = changes(&base, &live).unwrap();
    assert!(request.peers.iter().all(|p| p.public_key == ben.public_key && p.remove));
    assert!(only_peers(&made, &direct_keys));
    assert!(!only_peers(&made, &BTreeSet::new()));
}

/// With `accept_ip`, the relays accept the direct peers' addresses and each direct peer its
/// own from the moment it is tried, so the switch needs no change to any relay peer.
#[test]
fn relays_and_direct_peers_accept_the_moving_addresses_from_the_first_try() {
    let docs = docs();
    let doc = &docs[&name("laptop-ana")];
    let ben = doc.config.paths.as_ref().unwrap().peer("laptop-ben").unwrap();
    let relays: BTreeSet<Name> = doc
        .config
        .peers
        .iter()
        .filter(|peer| peer.role == wgfabric_model::inventory::Role::Relay)
        .map(|peer| peer.name.clone())
        .collect();
    assert!(!relays.is_empty());
    let base = target(doc, &keys(1), &DeviceSnapshot::default(), &no_endpoints(), true, None);
    let synced = device_of(&base);
    let trying = DirectTarget {
        endpoint: Some("198.51.100.2:51820".parse().unwrap()),
        keepalive: 25,
        carries: false,
    };
    let plan = |direct: DirectTarget| {
        let mut wanted = base.clone();
        add_direct(&mut wanted, &[(ben, direct)]);
        accept_moving_sources(&mut wanted, &[(ben, direct)], &relays);
        wanted
    };

    let wanted = plan(trying);
    let (request, _) = changes(&wanted, &synced).unwrap();
    let addresses: Vec<_> = ben.addresses.iter().map(|&cidr| cidr.into()).collect();
    let direct = request.peers.iter().find(|p| p.public_key == ben.public_key).unwrap();
    assert_eq!(direct.accept_ips, addresses);
    assert!(direct.allowed_ips.is_empty());
    let relay_updates: Vec<_> =
        request.peers.iter().filter(|p| p.public_key != ben.public_key).collect();
    assert_eq!(relay_updates.len(), relays.len(), "{request:?}");
    for update in relay_updates {
        assert!(update.replace_accept_ips && update.accept_ips == addresses, "{update:?}");
        assert!(update.allowed_ips.is_empty(), "routing is left alone: {update:?}");
    }

    // The switch touches the direct peer only.
    let live = device_of(&wanted);
    let carrying = DirectTarget { endpoint: None, keepalive: 25, carries: true };
    let (request, _) = changes(&plan(carrying), &live).unwrap();
    assert_eq!(request.peers.len(), 1, "{request:?}");
    assert_eq!(request.peers[0].public_key, ben.public_key);

    // Without direct peers, the relays accept nothing beyond their allowed IPs again.
    let mut wanted = base.clone();
    accept_moving_sources(&mut wanted, &[], &relays);
    let (request, made) = changes(&wanted, &device_of(&plan(carrying))).unwrap();
    let cleared = request.peers.iter().filter(|p| p.replace_accept_ips);
    assert_eq!(cleared.clone().count(), relays.len());
    assert!(cleared.clone().all(|p| p.accept_ips.is_empty()));
    assert!(made.iter().any(|change| change.to_string().contains("accepted sources cleared")));
}
