//! Tests of desired-state documents: revisions, round trips, refusals of corrupted or
//! impossible documents, and rotation orders.

use std::path::Path;

use wgfabric_proto::keys::PublicKey;

use super::*;
use wgfabric_model::inventory::Inventory;
use wgfabric_model::lock::Lock;

const EXAMPLE: &str = wgfabric_model::example::INVENTORY;

fn example(text: &str) -> Fabric {
    let inventory = Inventory::parse(Path::new("fabric.toml"), text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    Fabric::new(inventory, lock).unwrap()
}

fn doc(host: &str) -> DesiredState {
    let (_, docs) = desired_states(&example(EXAMPLE), &KeyMaterial::default(), None);
    docs[host].clone()
}

fn order(host: &str, old_key: PublicKey, phase: Phase) -> RotationOrder {
    RotationOrder {
        id: "r1".into(),
        host: host.parse().unwrap(),
        phase,
        old_key,
        new_key: Some(PublicKey::from_bytes([7; 32])),
        sealed_new_key: None,
        preshared_keys: BTreeMap::new(),
    }
}

#[test]
fn the_revision_follows_what_agents_apply() {
    let material = KeyMaterial::default();
    let (first, docs) = desired_states(&example(EXAMPLE), &material, Some("abc"));
    let (again, _) = desired_states(&example(EXAMPLE), &material, Some("def"));
    assert_eq!(first, again, "the commit is not part of the revision");
    assert_eq!(first.as_str().len(), 16);
    assert!(docs.values().all(|doc| doc.revision == first));
    let changed = EXAMPLE.replace("routes = [\"10.244.1.0/24\"]", "routes = [\"10.244.2.0/24\"]");
    let (second, _) = desired_states(&example(&changed), &material, None);
    assert_ne!(first, second);
}

#[test]
fn documents_round_trip_and_name_their_host() {
    let doc = doc("laptop-ana");
    let json = doc.to_json();
    assert_eq!(DesiredState::from_json(&json, "laptop-ana").unwrap(), doc);
    let error = DesiredState::from_json(&json, "relay-fra").unwrap_err();
    assert_eq!(error.revision.as_ref(), Some(&doc.revision));
    assert!(matches!(error.reason, InvalidReason::OtherHost { .. }), "{}", error.reason);
    assert!(error.reason.to_string().contains("not of `relay-fra`"), "{}", error.reason);
}

#[test]
fn corrupted_documents_are_refused_with_what_can_be_read() {
    let json = String::from_utf8(doc("laptop-ana").to_json()).unwrap();
    let truncated = &json[..json.len() / 2];
    let error = DesiredState::from_json(truncated.as_bytes(), "laptop-ana").unwrap_err();
    assert!(error.reason.to_string().starts_with("not a desired state"), "{}", error.reason);
    assert_eq!(error.revision, None);

    let bad_key = json.replacen("\"public_key\": \"", "\"public_key\": \"x", 1);
    let error = DesiredState::from_json(bad_key.as_bytes(), "laptop-ana").unwrap_err();
    assert!(error.revision.is_some(), "the revision is still readable");
}

#[test]
fn validation_catches_what_wireguard_cannot_hold() {
    let mut doc = doc("relay-fra");
    let first = doc.config.peers[0].allowed_ips[0];
    doc.config.peers[1].allowed_ips.push(first);
    assert!(doc
        .validate("relay-fra")
        .unwrap_err()
        .to_string()
        .contains("can belong to one peer only"));

    let mut doc = self::doc("relay-fra");
    doc.config.peers[1].public_key = doc.config.peers[0].public_key;
    assert!(doc.validate("relay-fra").unwrap_err().to_string().contains("appears twice"));

    let mut doc = self::doc("relay-fra");
    doc.config.mtu = 1000;
    assert!(doc.validate("relay-fra").unwrap_err().to_string().contains("MTU 1000"));

    let mut doc = self::doc("relay-fra");
    doc.format = 2;
    assert!(doc.validate("relay-fra").unwrap_err().to_string().contains("format 2"));
}

#[test]
fn rotation_orders_must_fit_the_configuration() {
    let mut doc = doc("laptop-ana");
    let relay_key = doc.config.peer("relay-fra").unwrap().public_key;
    doc.rotations.push(order("relay-fra", relay_key, Phase::Stage));
    doc.validate("laptop-ana").unwrap();

    doc.rotations[0].old_key = PublicKey::from_bytes([9; 32]);
    assert!(doc
        .validate("laptop-ana")
        .unwrap_err()
        .to_string()
        .contains("not the key of `relay-fra`"));

    doc.rotations[0] = order("laptop-ben", relay_key, Phase::Stage);
    assert!(doc.validate("laptop-ana").unwrap_err().to_string().contains("neither this host"));

    let own = doc.config.public_key;
    doc.rotations[0] = order("laptop-ana", own, Phase::Switch);
    doc.validate("laptop-ana").unwrap();
    doc.rotations[0].new_key = None;
    assert!(doc.validate("laptop-ana").unwrap_err().to_string().contains("without the new key"));
    doc.rotations[0].phase = Phase::Prepare;
    doc.validate("laptop-ana").unwrap();
    doc.rotations.push(doc.rotations[0].clone());
    assert!(doc.validate("laptop-ana").unwrap_err().to_string().contains("ordered twice"));
}

#[test]
fn a_hostile_store_cannot_inject_through_a_desired_state() {
    let json = String::from_utf8(doc("laptop-ana").to_json()).unwrap();
    let reason = |json: &str| {
        DesiredState::from_json(json.as_bytes(), "laptop-ana").unwrap_err().reason.to_string()
    };
    let injected = [
        json.replace("file:/etc/wgfabric/private.key", "file:/etc/k\\n[Peer]"),
        json.replace("file:/etc/wgfabric/private.key", "file:/k;reboot"),
        json.replace("\"file:/etc/wgfabric/private.key\"", "[\"exec:sh\", \"-c\", \"a\\nb\"]"),
        json.replacen("\"interface\": \"wg0\"", "\"interface\": \"../../etc/x\"", 1),
        json.replacen("\"interface\": \"wg0\"", "\"interface\": \"wg0\\nPostUp\"", 1),
        json.replacen("relay-fra.example.net:51820", "0.0.0.0:51820", 1),
    ];
    for (case, json) in injected.iter().enumerate() {
        assert_ne!(*json, String::from_utf8(doc("laptop-ana").to_json()).unwrap(), "case {case}");
        let reason = reason(json);
        assert!(!reason.contains('\n'), "case {case}: {reason}");
    }
    // Documents written before key sources name a plain key file, and still load.
    let old = json.replace("\"key_source\": \"file:", "\"private_key_file\": \"");
    let read = DesiredState::from_json(old.as_bytes(), "laptop-ana").unwrap();
    assert_eq!(read.config.key_source.to_string(), "file:/etc/wgfabric/private.key");
}

#[test]
fn direct_path_peers_must_fit_the_interface() {
    let doc = doc("laptop-ana");
    assert!(doc.validate("laptop-ana").is_ok());
    let paths = |doc: &mut DesiredState| doc.config.paths.as_mut().unwrap().peers.remove(0);

    let mut bad = doc.clone();
    let mut peer = paths(&mut bad);
    peer.public_key = bad.config.peers[0].public_key;
    bad.config.paths.as_mut().unwrap().peers.push(peer);
    assert!(bad.validate("laptop-ana").unwrap_err().to_string().contains("appears twice"));

    let mut bad = doc.clone();
    let mut peer = paths(&mut bad);
    peer.addresses.push("10.77.0.0/16".parse().unwrap());
    bad.config.paths.as_mut().unwrap().peers.push(peer);
    let error = bad.validate("laptop-ana").unwrap_err().to_string();
    assert!(error.contains("not a host's /32 or /128"), "{error}");

    let mut bad = doc;
    let mut peer = paths(&mut bad);
    peer.addresses =
        bad.config.peers[0].allowed_ips.iter().copied().filter(Cidr::is_host).collect();
    bad.config.paths.as_mut().unwrap().peers.push(peer);
    let error = bad.validate("laptop-ana").unwrap_err().to_string();
    assert!(error.contains("can belong to one peer only"), "{error}");
}
