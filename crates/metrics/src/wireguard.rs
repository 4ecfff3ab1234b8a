//! The metric families of WireGuard interfaces, computed from what the userspace API reports
//! (`get=1`) plus the counters only wgfabricd keeps. The daemon's `--metrics` and the
//! `wgfabric exporter` both render through [`families`], so names, labels and help texts
//! cannot drift apart.
//!
//! The first three families keep the names and labels of prometheus_wireguard_exporter, so
//! existing dashboards work unchanged; the `wgfabric_` families add what it lacks. Peer
//! families of our own carry `interface`, `public_key` and `friendly_name` but not
//! `allowed_ips`, so a routing change does not start new series; join on
//! `interface, public_key` to combine them with the standard ones.

use std::collections::BTreeMap;
use std::time::Duration;

use wgfabric_proto::constants::REJECT_AFTER_TIME;
use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::uapi::{DeviceSnapshot, PeerSnapshot};
use wgfabric_proto::{Device, DropReason, PeerStats, Stats};

use crate::exposition::{Family, Kind};

/// A peer counts as connected while its latest handshake is younger than this: a session
/// cannot be used after REJECT_AFTER_TIME (180 s), and a live tunnel re-handshakes about
/// every 2 minutes, so the signal does not flap at the rekey.
pub const CONNECTED_WITHIN: Duration = REJECT_AFTER_TIME;

/// One interface at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Interface<'a> {
    /// Its name (for sockets: the file name without `.sock`).
    pub name: &'a str,
    /// Its answer to `get=1`; `None` when the socket did not answer.
    pub snapshot: Option<&'a DeviceSnapshot>,
    /// The counters only wgfabricd keeps; `None` for other implementations.
    pub counters: Option<&'a Counters>,
}

/// The counters the userspace API does not carry, which wgfabricd adds to its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Device-wide counters: drops by reason, cookie replies.
    pub device: Stats,
    /// Handshake counters of each peer.
    pub peers: BTreeMap<PublicKey, PeerStats>,
    /// The daemon's queues of handshake messages waiting for Diffie-Hellman work.
    pub handshake_queue: Option<QueueDepth>,
}

/// How full a bounded queue is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages in it now.
    pub length: usize,
    /// The most it has held since the daemon started.
    pub peak: usize,
    /// The most it can hold; beyond that, messages are dropped.
    pub capacity: usize,
}

impl Counters {
    /// Reads the counters of a protocol core.
    pub fn of(device: &Device) -> Self {
        let peers = device
            .peer_ids()
            .filter_map(|id| device.peer_info(id))
            .map(|info| (info.public_key, info.stats))
            .collect();
        Self { device: device.stats().clone(), peers, handshake_queue: None }
    }
}

/// Names for peers, by public key (the host names of the inventory), exported as the
/// `friendly_name` label.
pub type FriendlyNames = BTreeMap<PublicKey, String>;

/// Every family, for `interfaces` as they are at `now` (wall-clock time since the Unix
/// epoch, which decides `wgfabric_peer_connected`). Families without samples are left out
/// when rendered.
pub fn families(interfaces: &[Interface<'_>], names: &FriendlyNames, now: Duration) -> Vec<Family> {
    let mut all = Families::default();
    for interface in interfaces {
        all.interface(interface, names, now);
    }
    all.into_vec()
}

/// The families in the order they are printed.
struct Families {
    sent: Family,
    received: Family,
    latest_handshake: Family,
    up: Family,
    info: Family,
    peers: Family,
    connected: Family,
    endpoint: Family,
    attempts: Family,
    completed: Family,
    failures: Family,
    dropped: Family,
    cookie_replies: Family,
    queue_length: Family,
    queue_peak: Family,
    queue_capacity: Family,
}

impl Default for Families {
    fn default() -> Self {
        use Kind::{Counter, Gauge};
        Self {
            sent: Family::new("wireguard_sent_bytes_total", Counter, "Bytes sent to the peer."),
            received: Family::new(
                "wireguard_received_bytes_total",
                Counter,
                "Bytes received from the peer.",
            ),
            latest_handshake: Family::new(
                "wireguard_latest_handshake_seconds",
                Gauge,
                "Unix time of the latest completed handshake with the peer; 0 before the first.",
            ),
            up: Family::new(
                "wgfabric_uapi_up",
                Gauge,
                "Whether the interface's userspace API answered this scrape (1) or not (0).",
            ),
            info: Family::new(
                "wgfabric_interface_info",
                Gauge,
                "Always 1; labels give the interface's public key and listen port.",
            ),
            peers: Family::new(
                "wgfabric_interface_peers",
                Gauge,
                "Number of peers configured on the interface.",
            ),
            connected: Family::new(
                "wgfabric_peer_connected",
                Gauge,
                "1 when the latest handshake with the peer is less than 180 seconds old \
                 (a session is usable), else 0.",
            ),
            endpoint: Family::new(
                "wgfabric_peer_endpoint_info",
                Gauge,
                "Always 1; the endpoint label is the peer's current address (wgfabricd and \
                 wireguard-go follow it as the peer roams).",
            ),
            attempts: Family::new(
                "wgfabric_peer_handshake_attempts_total",
                Counter,
                "Handshake initiations sent to the peer, retransmissions included (wgfabricd).",
            ),
            completed: Family::new(
                "wgfabric_peer_handshakes_completed_total",
                Counter,
                "Handshakes completed with the peer, either side initiating (wgfabricd).",
            ),
            failures: Family::new(
                "wgfabric_peer_handshake_failures_total",
                Counter,
                "Failed handshakes with the peer by reason: timeout (no answer for 90 s), \
                 rejected (a response did not authenticate, e.g. different preshared keys), \
                 replayed (an initiation replayed or too frequent) (wgfabricd).",
            ),
            dropped: Family::new(
                "wgfabric_packets_dropped_total",
                Counter,
                "Packets dropped by the interface, by reason (wgfabricd).",
            ),
            cookie_replies: Family::new(
                "wgfabric_cookie_replies_sent_total",
                Counter,
                "Cookie replies sent instead of handshake work: the sender's address (or IPv6 /64) \
                 was over its budget of handshakes, or the interface was under load (wgfabricd).",
            ),
            queue_length: Family::new(
                "wgfabric_handshake_queue_length",
                Gauge,
                "Handshake messages admitted and waiting for Diffie-Hellman work (wgfabricd).",
            ),
            queue_peak: Family::new(
                "wgfabric_handshake_queue_peak",
                Gauge,
                "The most handshake messages that have waited at once since the daemon started \
                 (wgfabricd).",
            ),
            queue_capacity: Family::new(
                "wgfabric_handshake_queue_capacity",
                Gauge,
                "How many handshake messages can wait; more are dropped as queue_overflow \
                 (wgfabricd).",
            ),
        }
    }
}

impl Families {
    fn into_vec(self) -> Vec<Family> {
        vec![
            self.sent,
            self.received,
            self.latest_handshake,
            self.up,
            self.info,
            self.peers,
            self.connected,
            self.endpoint,
            self.attempts,
            self.completed,
            self.failures,
            self.dropped,
            self.cookie_replies,
            self.queue_length,
            self.queue_peak,
            self.queue_capacity,
        ]
    }

    fn interface(&mut self, interface: &Interface<'_>, names: &FriendlyNames, now: Duration) {
        let name = interface.name;
        let Some(snapshot) = interface.snapshot else {
            self.up.push(&[("interface", name)], 0);
            return;
        };
        self.up.push(&[("interface", name)], 1);
        let public_key = snapshot
            .private_key
            .as_ref()
            .map(|key| key.public_key().to_base64())
            .unwrap_or_default();
        let port = if snapshot.listen_port == 0 {
            String::new()
        } else {
            snapshot.listen_port.to_string()
        };
        self.info
            .push(&[("interface", name), ("public_key", &public_key), ("listen_port", &port)], 1);
        self.peers.push(&[("interface", name)], snapshot.peers.len() as u64);
        for peer in &snapshot.peers {
            let stats = interface.counters.and_then(|c| c.peers.get(&peer.public_key));
            self.peer(
                name,
                peer,
                stats,
                names.get(&peer.public_key).map_or("", String::as_str),
                now,
            );
        }
        if let Some(counters) = interface.counters {
            for reason in DropReason::ALL {
                self.dropped.push(
                    &[("interface", name), ("reason", reason.as_str())],
                    counters.device.dropped(reason),
                );
            }
            self.cookie_replies.push(&[("interface", name)], counters.device.cookie_replies_sent);
            if let Some(queue) = counters.handshake_queue {
                let label = [("interface", name)];
                self.queue_length.push(&label, queue.length as u64);
                self.queue_peak.push(&label, queue.peak as u64);
                self.queue_capacity.push(&label, queue.capacity as u64);
            }
        }
    }

    fn peer(
        &mut self,
        interface: &str,
        peer: &PeerSnapshot,
        stats: Option<&PeerStats>,
        friendly_name: &str,
        now: Duration,
    ) {
        let key = peer.public_key.to_base64();
        let allowed_ips: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
        let allowed_ips = allowed_ips.join(",");
        let standard = [
            ("interface", interface),
            ("public_key", key.as_str()),
            ("allowed_ips", allowed_ips.as_str()),
            ("friendly_name", friendly_name),
        ];
        self.sent.push(&standard, peer.tx_bytes);
        self.received.push(&standard, peer.rx_bytes);
        let handshake = peer.last_handshake_time;
        self.latest_handshake.push(&standard, handshake.map_or(0, |t| t.as_secs()));

        let ours = [
            ("interface", interface),
            ("public_key", key.as_str()),
            ("friendly_name", friendly_name),
        ];
        let connected = handshake.is_some_and(|t| now.saturating_sub(t) < CONNECTED_WITHIN);
        self.connected.push(&ours, u64::from(connected));
        if let Some(endpoint) = peer.endpoint {
            let endpoint = endpoint.to_string();
            let [interface, public_key, friendly_name] = ours;
            self.endpoint.push(&[interface, public_key, ("endpoint", &endpoint), friendly_name], 1);
        }
        let Some(stats) = stats else { return };
        self.attempts.push(&ours, stats.handshakes_initiated);
        self.completed.push(&ours, stats.handshakes_completed);
        for (reason, count) in [
            ("timeout", stats.handshakes_timed_out),
            ("rejected", stats.handshakes_rejected),
            ("replayed", stats.handshakes_replayed),
        ] {
            let [interface, public_key, friendly_name] = ours;
            self.failures.push(&[interface, public_key, ("reason", reason), friendly_name], count);
        }
    }
}

#[cfg(test)]
mod tests {
    use wgfabric_proto::keys::{PresharedKey, PrivateKey};

    use super::*;
    use crate::exposition::render;

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from_bytes([seed; 32])
    }

    /// wg0 with a connected, named peer (b) and a silent one (c).
    fn fixture() -> (DeviceSnapshot, Counters, FriendlyNames) {
        let (b, c) = (key(2).public_key(), key(3).public_key());
        let mut connected = PeerSnapshot::new(b);
        connected.preshared_key = Some(PresharedKey::from_bytes([9; 32]));
        connected.endpoint = Some("192.0.2.7:51820".parse().unwrap());
        connected.last_handshake_time = Some(NOW - Duration::from_secs(100));
        connected.tx_bytes = 1000;
        connected.rx_bytes = 2000;
        connected.allowed_ips =
            vec!["10.0.0.2/32".parse().unwrap(), "fd00::2/128".parse().unwrap()];
        let snapshot = DeviceSnapshot {
            private_key: Some(key(1)),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerSnapshot::new(c), connected],
        };
        let mut counters = Counters::default();
        counters.device.record_drop(DropReason::Replay, 3);
        counters.device.cookie_replies_sent = 4;
        counters.peers.insert(
            b,
            PeerStats {
                handshakes_initiated: 5,
                handshakes_completed: 2,
                handshakes_rejected: 1,
                ..PeerStats::default()
            },
        );
        (snapshot, counters, FriendlyNames::from([(b, "relay \"fra\"".to_owned())]))
    }

    /// The fixture's metrics, as the exporter (`daemon` false) or wgfabricd would print them.
    fn text(daemon: bool, now: Duration) -> String {
        let (snapshot, counters, names) = fixture();
        let counters = daemon.then_some(&counters);
        let interfaces = [Interface { name: "wg0", snapshot: Some(&snapshot), counters }];
        render(&families(&interfaces, &names, now))
    }

    #[test]
    fn the_standard_families_keep_prometheus_wireguard_exporter_names() {
        let text = text(false, NOW);
        let (b, c) = (key(2).public_key(), key(3).public_key());
        for line in [
            "# TYPE wireguard_sent_bytes_total counter".to_owned(),
            format!("wireguard_sent_bytes_total{{interface=\"wg0\",public_key=\"{b}\",allowed_ips=\"10.0.0.2/32,fd00::2/128\",friendly_name=\"relay \\\"fra\\\"\"}} 1000"),
            format!("wireguard_received_bytes_total{{interface=\"wg0\",public_key=\"{b}\",allowed_ips=\"10.0.0.2/32,fd00::2/128\",friendly_name=\"relay \\\"fra\\\"\"}} 2000"),
            format!("wireguard_latest_handshake_seconds{{interface=\"wg0\",public_key=\"{b}\",allowed_ips=\"10.0.0.2/32,fd00::2/128\",friendly_name=\"relay \\\"fra\\\"\"}} 1699999900"),
            format!("wireguard_latest_handshake_seconds{{interface=\"wg0\",public_key=\"{c}\"}} 0"),
            "wgfabric_uapi_up{interface=\"wg0\"} 1".to_owned(),
            format!("wgfabric_interface_info{{interface=\"wg0\",public_key=\"{}\",listen_port=\"51820\"}} 1", key(1).public_key()),
            "wgfabric_interface_peers{interface=\"wg0\"} 2".to_owned(),
            format!("wgfabric_peer_connected{{interface=\"wg0\",public_key=\"{b}\",friendly_name=\"relay \\\"fra\\\"\"}} 1"),
            format!("wgfabric_peer_connected{{interface=\"wg0\",public_key=\"{c}\"}} 0"),
            format!("wgfabric_peer_endpoint_info{{interface=\"wg0\",public_key=\"{b}\",endpoint=\"192.0.2.7:51820\",friendly_name=\"relay \\\"fra\\\"\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(
            !text.contains("wgfabric_packets_dropped_total"),
            "daemon-only families need counters"
        );
        assert!(!text.contains("handshake_attempts"), "daemon-only families need counters");
    }

    #[test]
    fn wgfabricd_adds_drops_cookies_and_handshake_outcomes() {
        let text = text(true, NOW);
        let b = key(2).public_key();
        for line in [
            "wgfabric_packets_dropped_total{interface=\"wg0\",reason=\"replay\"} 3".to_owned(),
            "wgfabric_packets_dropped_total{interface=\"wg0\",reason=\"bad_mac\"} 0".to_owned(),
            "wgfabric_cookie_replies_sent_total{interface=\"wg0\"} 4".to_owned(),
            format!("wgfabric_peer_handshake_attempts_total{{interface=\"wg0\",public_key=\"{b}\",friendly_name=\"relay \\\"fra\\\"\"}} 5"),
            format!("wgfabric_peer_handshakes_completed_total{{interface=\"wg0\",public_key=\"{b}\",friendly_name=\"relay \\\"fra\\\"\"}} 2"),
            format!("wgfabric_peer_handshake_failures_total{{interface=\"wg0\",public_key=\"{b}\",reason=\"rejected\",friendly_name=\"relay \\\"fra\\\"\"}} 1"),
            format!("wgfabric_peer_handshake_failures_total{{interface=\"wg0\",public_key=\"{b}\",reason=\"timeout\",friendly_name=\"relay \\\"fra\\\"\"}} 0"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let drops =
            text.lines().filter(|l| l.starts_with("wgfabric_packets_dropped_total{")).count();
        assert_eq!(drops, DropReason::ALL.len(), "every reason, zero or not");
    }

    #[test]
    fn connected_holds_until_sessions_expire_not_at_the_rekey() {
        let b = key(2).public_key();
        let line = |value: u8| {
            format!("wgfabric_peer_connected{{interface=\"wg0\",public_key=\"{b}\",friendly_name=\"relay \\\"fra\\\"\"}} {value}")
        };
        // The handshake was 100 s before NOW.
        for (offset, value) in [(0, 1), (20, 1), (79, 1), (80, 0), (900, 0)] {
            let text = text(false, NOW + Duration::from_secs(offset));
            assert!(text.lines().any(|l| l == line(value)), "{offset}: {text}");
        }
    }

    #[test]
    fn no_secret_and_a_stable_output() {
        let text = text(true, NOW);
        let psk = PresharedKey::from_bytes([9; 32]);
        for secret in [
            key(1).to_hex_secret(),
            key(1).to_base64_secret(),
            psk.to_hex_secret(),
            psk.to_base64_secret(),
        ] {
            assert!(!text.contains(&secret));
        }
        assert_eq!(text, self::text(true, NOW));
    }

    #[test]
    fn a_silent_socket_is_only_down() {
        let interfaces = [Interface { name: "wg9", snapshot: None, counters: None }];
        assert_eq!(
            render(&families(&interfaces, &FriendlyNames::new(), NOW)),
            "# HELP wgfabric_uapi_up Whether the interface's userspace API answered this scrape (1) or not (0).\n\
             # TYPE wgfabric_uapi_up gauge\n\
             wgfabric_uapi_up{interface=\"wg9\"} 0\n"
        );
    }
}
