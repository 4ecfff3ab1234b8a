//! `promtool check metrics` (Prometheus's own linter) accepts what wgfabricd and the
//! exporter print: every family of ours, with awkward label values, an interface whose
//! socket is silent, and both with and without the daemon's counters.

use std::time::Duration;

use wgfabric_metrics::{families, render, Counters, FriendlyNames, Interface};
use wgfabric_proto::keys::{PresharedKey, PrivateKey};
use wgfabric_proto::uapi::{DeviceSnapshot, PeerSnapshot};
use wgfabric_proto::{DropReason, PeerStats};

fn sample() -> String {
    let now = Duration::from_secs(1_700_000_000);
    let peer_keys: Vec<_> =
        (2..6).map(|seed| PrivateKey::from_bytes([seed; 32]).public_key()).collect();
    let peers = peer_keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let mut peer = PeerSnapshot::new(*key);
            peer.preshared_key = Some(PresharedKey::from_bytes([7; 32]));
            peer.endpoint = Some(format!("[2001:db8::{index}]:51820").parse().unwrap());
            peer.last_handshake_time = Some(now - Duration::from_secs(60 * index as u64));
            peer.tx_bytes = 1 << (10 * index);
            peer.rx_bytes = u64::MAX - index as u64;
            peer.allowed_ips = vec![format!("10.0.{index}.0/24").parse().unwrap()];
            peer
        })
        .collect();
    let snapshot = DeviceSnapshot {
        private_key: Some(PrivateKey::from_bytes([1; 32])),
        listen_port: 51820,
        fwmark: 0,
        peers,
    };
    let mut counters = Counters::default();
    for (index, reason) in DropReason::ALL.into_iter().enumerate() {
        counters.device.record_drop(reason, index as u64);
    }
    counters.device.cookie_replies_sent = 12;
    for key in &peer_keys {
        counters.peers.insert(
            *key,
            PeerStats {
                handshakes_initiated: 3,
                handshakes_completed: 2,
                handshakes_timed_out: 1,
                ..PeerStats::default()
            },
        );
    }
    let names = FriendlyNames::from([
        (peer_keys[0], "laptop \"ana\"".to_owned()),
        (peer_keys[1], "back\\slash\nnewline".to_owned()),
    ]);
    let interfaces = [
        Interface { name: "wg0", snapshot: Some(&snapshot), counters: Some(&counters) },
        Interface { name: "wg1", snapshot: Some(&snapshot), counters: None },
        Interface { name: "wg2", snapshot: None, counters: None },
    ];
    render(&families(&interfaces, &names, now))
}

#[test]
fn promtool_accepts_every_family() {
    wgfabric_testkit::assert_promtool_accepts(&sample());
}
