//! `get=1`: the device's configuration and counters, as a server prints them and a client
//! reads them back.

use std::net::SocketAddr;
use std::time::Duration;

use super::{
    format_status, parse_allowed_ip, parse_decimal, parse_endpoint, split_line, status_result,
    write_line, Shown, UapiError, EPROTO,
};
use crate::cidr::Cidr;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};

/// A device as `get=1` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// The private key, if one is set.
    pub private_key: Option<PrivateKey>,
    /// The UDP port actually bound; 0 (not printed) when the device has no socket.
    pub listen_port: u16,
    /// The `SO_MARK` of outgoing packets; 0 (not printed) when unset.
    pub fwmark: u32,
    /// The peers, in the order the server lists them.
    pub peers: Vec<PeerSnapshot>,
}

/// One peer as `get=1` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The peer's identity.
    pub public_key: PublicKey,
    /// The preshared key, if one is set (printed as all-zero hex when not).
    pub preshared_key: Option<PresharedKey>,
    /// Where packets to the peer go, if known.
    pub endpoint: Option<SocketAddr>,
    /// Time of the last completed handshake since the Unix epoch; `None` (printed as 0 and 0)
    /// before the first.
    pub last_handshake_time: Option<Duration>,
    /// Bytes received from the peer, on the wire.
    pub rx_bytes: u64,
    /// Bytes sent to the peer, on the wire.
    pub tx_bytes: u64,
    /// Persistent keepalive interval in seconds; 0 is off.
    pub persistent_keepalive_interval: u16,
    /// The prefixes routed to the peer.
    pub allowed_ips: Vec<Cidr>,
    /// The protocol version; 1 is the only one.
    pub protocol_version: u32,
    /// The peer whose allowed IPs this one takes over at its first handshake (a wgfabricd
    /// extension, see [`super::PeerUpdate::successor_of`]; `wg` skips the line).
    pub successor_of: Option<PublicKey>,
    /// Sources the peer may also send from, without routing (a wgfabricd extension, see
    /// [`super::PeerUpdate::accept_ips`]; `wg` skips the lines).
    pub accept_ips: Vec<Cidr>,
}

impl PeerSnapshot {
    /// A peer with nothing but its key: no endpoint, no handshake, zero counters, version 1.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: None,
            endpoint: None,
            last_handshake_time: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive_interval: 0,
            allowed_ips: Vec::new(),
            protocol_version: 1,
            successor_of: None,
            accept_ips: Vec::new(),
        }
    }
}

/// Writes the complete answer to `get=1`, ending with `errno=0` and the blank line.
///
/// Keys and their order are those of wireguard-go, so the output can be compared with it.
/// A server that answers page by page writes the same text with [`write_get_device`], then
/// [`write_get_peer`] for each peer, then `errno=0` and the blank line.
pub fn format_get(device: &DeviceSnapshot) -> String {
    let mut out = String::new();
    write_get_device(&mut out, device);
    for peer in &device.peers {
        write_get_peer(&mut out, peer);
    }
    out.push_str(&format_status(None));
    out
}

/// Appends the device's own lines of a `get=1` answer to `out` (`device.peers` is ignored).
pub fn write_get_device(out: &mut String, device: &DeviceSnapshot) {
    if let Some(key) = &device.private_key {
        write_line(out, "private_key", key.to_hex_secret());
    }
    if device.listen_port != 0 {
        write_line(out, "listen_port", device.listen_port);
    }
    if device.fwmark != 0 {
        write_line(out, "fwmark", device.fwmark);
    }
}

/// Appends one peer's lines of a `get=1` answer to `out`.
pub fn write_get_peer(out: &mut String, peer: &PeerSnapshot) {
    write_line(out, "public_key", peer.public_key.to_hex());
    let psk = peer.preshared_key.clone().unwrap_or_else(PresharedKey::zero);
    write_line(out, "preshared_key", psk.to_hex_secret());
    write_line(out, "protocol_version", peer.protocol_version);
    if let Some(endpoint) = peer.endpoint {
        write_line(out, "endpoint", endpoint);
    }
    let handshake = peer.last_handshake_time.unwrap_or_default();
    write_line(out, "last_handshake_time_sec", handshake.as_secs());
    write_line(out, "last_handshake_time_nsec", handshake.subsec_nanos());
    write_line(out, "tx_bytes", peer.tx_bytes);
    write_line(out, "rx_bytes", peer.rx_bytes);
    write_line(out, "persistent_keepalive_interval", peer.persistent_keepalive_interval);
    for ip in &peer.allowed_ips {
        write_line(out, "allowed_ip", ip);
    }
    if let Some(predecessor) = &peer.successor_of {
        write_line(out, "successor_of", predecessor.to_hex());
    }
    for ip in &peer.accept_ips {
        write_line(out, "accept_ip", ip);
    }
}

/// Reads an answer to `get=1` from any implementation (wireguard-go, boringtun, the kernel's
/// userspace shims, `wgfabricd`), up to and including its `errno` line.
///
/// Keys this module does not know are skipped, as `wg(8)` skips them, so extensions of other
/// implementations do not break the reader. A key known here with a malformed value is an error.
///
/// # Errors
/// The server's errno when it answered with one, or [`EPROTO`] when the text is malformed, a
/// key is out of place, or the `errno` line is missing.
pub fn parse_get(text: &str) -> Result<DeviceSnapshot, UapiError> {
    let mut device = DeviceSnapshot::default();
    for (index, line) in text.split_terminator('\n').enumerate() {
        let line_no = index + 1;
        let (key, value) = split_line(line_no, line)?;
        let bad = || UapiError::at(line_no, EPROTO, format!("{key}: malformed value"));
        if key == "errno" {
            status_result(value, line_no)?;
            return Ok(device);
        }
        if key == "public_key" {
            let key = PublicKey::from_hex(value).map_err(|_| bad())?;
            device.peers.push(PeerSnapshot::new(key));
            continue;
        }
        let Some(peer) = device.peers.last_mut() else {
            match key {
                "private_key" => {
                    device.private_key = Some(PrivateKey::from_hex(value).map_err(|_| bad())?);
                }
                "listen_port" => device.listen_port = parse_decimal(value).ok_or_else(bad)?,
                "fwmark" => device.fwmark = parse_decimal(value).ok_or_else(bad)?,
                _ => {}
            }
            continue;
        };
        match key {
            "preshared_key" => {
                let psk = PresharedKey::from_hex(value).map_err(|_| bad())?;
                peer.preshared_key = (!psk.is_zero()).then_some(psk);
            }
            "protocol_version" => peer.protocol_version = parse_decimal(value).ok_or_else(bad)?,
            "endpoint" => peer.endpoint = Some(parse_endpoint(value, &|_| None).ok_or_else(bad)?),
            // The two halves may come in either order.
            "last_handshake_time_sec" => {
                let nsec = peer.last_handshake_time.map_or(0, |t| t.subsec_nanos());
                let sec = parse_decimal(value).ok_or_else(bad)?;
                peer.last_handshake_time = nonzero(Duration::new(sec, nsec));
            }
            "last_handshake_time_nsec" => {
                let sec = peer.last_handshake_time.map_or(0, |t| t.as_secs());
                let nsec = parse_decimal(value).filter(|n| *n < 1_000_000_000).ok_or_else(bad)?;
                peer.last_handshake_time = nonzero(Duration::new(sec, nsec));
            }
            "successor_of" => {
                peer.successor_of = Some(PublicKey::from_hex(value).map_err(|_| bad())?);
            }
            "tx_bytes" => peer.tx_bytes = parse_decimal(value).ok_or_else(bad)?,
            "rx_bytes" => peer.rx_bytes = parse_decimal(value).ok_or_else(bad)?,
            "persistent_keepalive_interval" => {
                peer.persistent_keepalive_interval = parse_decimal(value).ok_or_else(bad)?;
            }
            "allowed_ip" => peer.allowed_ips.push(parse_allowed_ip(value).ok_or_else(bad)?),
            "accept_ip" => peer.accept_ips.push(parse_allowed_ip(value).ok_or_else(bad)?),
            "private_key" | "listen_port" | "fwmark" => {
                return Err(UapiError::at(
                    line_no,
                    EPROTO,
                    format!("device key {} after the first peer", Shown(key)),
                ))
            }
            _ => {}
        }
    }
    Err(UapiError::new(EPROTO, "the answer ended without an errno line"))
}

fn nonzero(time: Duration) -> Option<Duration> {
    (!time.is_zero()).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::super::{EINVAL, EIO};
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddrV6};

    const PEER_HEX: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";
    const PRIVATE_HEX: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
    const PSK_HEX: &str = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52";

    fn sample() -> DeviceSnapshot {
        let mut peer = PeerSnapshot::new(PublicKey::from_hex(PEER_HEX).unwrap());
        peer.preshared_key = Some(PresharedKey::from_hex(PSK_HEX).unwrap());
        peer.endpoint = Some("[2001:db8::2]:51820".parse().unwrap());
        peer.last_handshake_time = Some(Duration::new(1_700_000_000, 42));
        peer.rx_bytes = 1184;
        peer.tx_bytes = 2144;
        peer.persistent_keepalive_interval = 25;
        peer.allowed_ips = vec!["10.0.0.2/32".parse().unwrap(), "fd00::2/128".parse().unwrap()];
        DeviceSnapshot {
            private_key: Some(PrivateKey::from_hex(PRIVATE_HEX).unwrap()),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![peer],
        }
    }

    #[test]
    fn format_is_byte_for_byte_wireguard_go() {
        let expected = format!(
            "private_key={PRIVATE_HEX}\nlisten_port=51820\npublic_key={PEER_HEX}\n\
             preshared_key={PSK_HEX}\nprotocol_version=1\nendpoint=[2001:db8::2]:51820\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=42\ntx_bytes=2144\n\
             rx_bytes=1184\npersistent_keepalive_interval=25\nallowed_ip=10.0.0.2/32\n\
             allowed_ip=fd00::2/128\nerrno=0\n\n"
        );
        assert_eq!(format_get(&sample()), expected);
    }

    #[test]
    fn empty_device_is_just_the_status() {
        assert_eq!(format_get(&DeviceSnapshot::default()), "errno=0\n\n");
        assert_eq!(parse_get("errno=0\n\n").unwrap(), DeviceSnapshot::default());
    }

    #[test]
    fn fresh_peer_prints_zero_psk_and_handshake() {
        let mut device = DeviceSnapshot { fwmark: 7, ..DeviceSnapshot::default() };
        device.peers.push(PeerSnapshot::new(PublicKey::from_hex(PEER_HEX).unwrap()));
        let text = format_get(&device);
        assert!(text.starts_with("fwmark=7\n"), "{text}");
        assert!(text.contains(&format!("preshared_key={}\n", "0".repeat(64))), "{text}");
        assert!(text.contains("last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"));
        assert!(!text.contains("endpoint="));
        assert_eq!(parse_get(&text).unwrap(), device);
    }

    #[test]
    fn reads_boringtun_style_answers_and_skips_unknown_keys() {
        // No preshared_key line, keys in another order, an extension key, a positive errno
        // after success lines.
        let text = format!(
            "listen_port=40000\njc=4\npublic_key={PEER_HEX}\nendpoint=192.0.2.1:5\n\
             rx_bytes=9\ntx_bytes=8\nlast_handshake_time_nsec=5\nlast_handshake_time_sec=3\n\
             allowed_ip=0.0.0.0/0\nh1=77\nerrno=0\n"
        );
        let device = parse_get(&text).unwrap();
        assert_eq!(device.listen_port, 40000);
        let peer = &device.peers[0];
        assert_eq!(peer.preshared_key, None);
        assert_eq!(peer.endpoint, Some("192.0.2.1:5".parse().unwrap()));
        assert_eq!((peer.rx_bytes, peer.tx_bytes), (9, 8));
        assert_eq!(peer.last_handshake_time, Some(Duration::new(3, 5)));
        assert_eq!(peer.allowed_ips, ["0.0.0.0/0".parse().unwrap()]);
    }

    #[test]
    fn server_errors_come_back_as_errors() {
        assert_eq!(parse_get("errno=-5\n\n").unwrap_err().errno(), EIO);
        assert_eq!(parse_get("listen_port=1\nerrno=22\n\n").unwrap_err().errno(), EINVAL);
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        let peer = format!("public_key={PEER_HEX}\n");
        for text in [
            String::new(),
            "listen_port=1\n".to_owned(),
            "listen_port=x\nerrno=0\n".to_owned(),
            "garbage\nerrno=0\n".to_owned(),
            "private_key=00\nerrno=0\n".to_owned(),
            format!("{peer}last_handshake_time_nsec=1000000000\nerrno=0\n"),
            format!("{peer}endpoint=[fe80::1%eth0]:1\nerrno=0\n"),
            format!("{peer}allowed_ip=10.0.0.0/40\nerrno=0\n"),
            format!("{peer}listen_port=1\nerrno=0\n"),
            "errno=abc\n".to_owned(),
        ] {
            let error = parse_get(&text).unwrap_err();
            assert_eq!(error.errno(), EPROTO, "{text:?}: {error}");
        }
    }

    #[test]
    fn debug_redacts_keys() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains(&PRIVATE_HEX[..16]) && !shown.contains(&PSK_HEX[..16]));
    }

    fn arb_peer() -> impl Strategy<Value = PeerSnapshot> {
        let endpoint = prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
            (any::<[u8; 16]>(), any::<u16>(), any::<u32>())
                .prop_map(|(a, p, s)| SocketAddrV6::new(a.into(), p, 0, s).into()),
        ];
        let allowed_ip = prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(a.into(), p).unwrap()),
            (any::<[u8; 16]>(), 0u8..=128)
                .prop_map(|(a, p)| Cidr::new(IpAddr::from(a), p).unwrap()),
        ];
        (
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>().prop_filter("non-zero", |k| k != &[0; 32])),
            proptest::option::of(endpoint),
            proptest::option::of((any::<u64>(), 0u32..1_000_000_000)),
            any::<(u64, u64, u16, u32)>(),
            proptest::collection::vec(allowed_ip.clone(), 0..4),
            (proptest::option::of(any::<[u8; 32]>()), proptest::collection::vec(allowed_ip, 0..2)),
        )
            .prop_map(
                |(key, psk, endpoint, handshake, (rx, tx, keepalive, version), ips, extensions)| {
                    let (successor, accepted) = extensions;
                    PeerSnapshot {
                        public_key: PublicKey::from_bytes(key),
                        preshared_key: psk.map(PresharedKey::from_bytes),
                        endpoint,
                        last_handshake_time: handshake
                            .map(|(s, n)| Duration::new(s, n))
                            .filter(|d| !d.is_zero()),
                        rx_bytes: rx,
                        tx_bytes: tx,
                        persistent_keepalive_interval: keepalive,
                        allowed_ips: ips,
                        protocol_version: version,
                        successor_of: successor.map(PublicKey::from_bytes),
                        accept_ips: accepted,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(
            key in proptest::option::of(any::<[u8; 32]>()),
            listen_port in any::<u16>(),
            fwmark in any::<u32>(),
            peers in proptest::collection::vec(arb_peer(), 0..4),
        ) {
            let device = DeviceSnapshot {
                private_key: key.map(PrivateKey::from_bytes),
                listen_port,
                fwmark,
                peers,
            };
            prop_assert_eq!(parse_get(&format_get(&device)).unwrap(), device);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*(\n\\PC*){0,8}") {
            let _ = parse_get(&text);
        }

        #[test]
        fn corrupted_answers_never_panic(cut in 0usize..600, byte in any::<u8>()) {
            let mut text = format_get(&sample()).into_bytes();
            let at = cut % text.len();
            text[at] = byte;
            let _ = parse_get(&String::from_utf8_lossy(&text));
        }
    }
}
