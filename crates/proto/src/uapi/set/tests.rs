//! Tests of `set=1`: parsing each key as wireguard-go does, the errors and their line
//! numbers, secrets kept out of messages, and printing and parsing round trips.

use super::super::EINVAL;
use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddrV6};

const PEER_HEX: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";
const PRIVATE_HEX: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
const PSK_HEX: &str = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52";

fn peer_key() -> PublicKey {
    PublicKey::from_hex(PEER_HEX).unwrap()
}

fn body(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn error_of(lines: &[&str]) -> UapiError {
    parse_set(&body(lines)).unwrap_err()
}

#[test]
fn every_device_key() {
    let request = parse_set(&body(&[
        &format!("private_key={PRIVATE_HEX}"),
        "listen_port=51820",
        "fwmark=4294967295",
        "replace_peers=true",
    ]))
    .unwrap();
    assert_eq!(
        request.private_key,
        Some(PrivateKeyUpdate::Set(PrivateKey::from_hex(PRIVATE_HEX).unwrap()))
    );
    assert_eq!(request.listen_port, Some(51820));
    assert_eq!(request.fwmark, Some(u32::MAX));
    assert!(request.replace_peers);
    assert!(request.peers.is_empty());
}

#[test]
fn zero_private_key_means_remove_and_zero_values_are_kept() {
    let zeros = format!("private_key={}", "0".repeat(64));
    let request = parse_set(&body(&[&zeros, "listen_port=0", "fwmark=0"])).unwrap();
    assert_eq!(request.private_key, Some(PrivateKeyUpdate::Remove));
    assert_eq!(request.listen_port, Some(0));
    assert_eq!(request.fwmark, Some(0));
    assert_eq!(error_of(&[&format!("private_key={}", "0".repeat(63))]).errno(), EINVAL);
}

#[test]
fn every_peer_key() {
    let request = parse_set(&body(&[
        &format!("public_key={PEER_HEX}"),
        "update_only=true",
        &format!("preshared_key={PSK_HEX}"),
        "endpoint=[2001:db8::1]:51820",
        "persistent_keepalive_interval=25",
        "protocol_version=1",
        "allowed_ip=10.0.0.1/32",
        "replace_allowed_ips=true",
        "allowed_ip=10.0.0.0/24",
        "allowed_ip=-fd00::/64",
        "accept_ip=10.9.0.0/16",
        "replace_accept_ips=true",
        "accept_ip=10.0.0.7/32",
        &format!("public_key={PEER_HEX}"),
        "remove=true",
    ]))
    .unwrap();
    assert_eq!(request.peers.len(), 2);
    let first = &request.peers[0];
    assert_eq!(first.public_key, peer_key());
    assert!(first.update_only && !first.remove);
    assert_eq!(first.preshared_key, Some(PresharedKey::from_hex(PSK_HEX).unwrap()));
    assert_eq!(first.endpoint, Some("[2001:db8::1]:51820".parse().unwrap()));
    assert_eq!(first.persistent_keepalive_interval, Some(25));
    assert!(first.replace_allowed_ips);
    // The /32 added before replace_allowed_ips is dropped with the rest.
    assert_eq!(
        first.allowed_ips,
        [
            AllowedIpChange::Add("10.0.0.0/24".parse().unwrap()),
            AllowedIpChange::Remove("fd00::/64".parse().unwrap()),
        ]
    );
    // So is the prefix accepted before replace_accept_ips.
    assert!(first.replace_accept_ips);
    assert_eq!(first.accept_ips, ["10.0.0.7/32".parse().unwrap()]);
    let second = &request.peers[1];
    assert!(second.remove);
    assert_eq!(second, &PeerUpdate { remove: true, ..PeerUpdate::new(peer_key()) });
}

#[test]
fn endpoints_v4_and_scoped_v6() {
    let endpoint = |value: &str| {
        let request = parse_set(&body(&[&format!("public_key={PEER_HEX}"), value])).unwrap();
        request.peers[0].endpoint.unwrap()
    };
    assert_eq!(endpoint("endpoint=192.0.2.7:1"), "192.0.2.7:1".parse().unwrap());
    assert_eq!(
        endpoint("endpoint=[fe80::1%3]:51820"),
        SocketAddrV6::new("fe80::1".parse().unwrap(), 51820, 0, 3).into()
    );
    let named = body(&[&format!("public_key={PEER_HEX}"), "endpoint=[fe80::1%wg0]:1"]);
    assert_eq!(parse_set(&named).unwrap_err().errno(), EINVAL);
    let resolved = parse_set_resolving_scopes(&named, &|name| (name == "wg0").then_some(9));
    let endpoint = resolved.unwrap().peers[0].endpoint.unwrap();
    assert_eq!(endpoint, SocketAddrV6::new("fe80::1".parse().unwrap(), 1, 0, 9).into());
}

#[test]
fn empty_body_and_terminating_blank_line() {
    assert_eq!(parse_set("").unwrap(), SetRequest::default());
    assert_eq!(parse_set("\n").unwrap(), SetRequest::default());
    assert_eq!(parse_set("listen_port=1\n\n").unwrap().listen_port, Some(1));
    assert_eq!(parse_set("listen_port=1").unwrap().listen_port, Some(1));
    let trailing = parse_set("listen_port=1\n\nfwmark=1\n").unwrap_err();
    assert_eq!((trailing.errno(), trailing.line()), (EPROTO, Some(3)));
}

#[test]
fn a_line_without_equals_is_a_protocol_error() {
    let error = error_of(&["listen_port=1", "bogus"]);
    assert_eq!((error.errno(), error.line()), (EPROTO, Some(2)));
    assert!(error.message().contains("key=value"), "{error}");
}

#[test]
fn bad_values_are_invalid_with_their_line() {
    let public = format!("public_key={PEER_HEX}");
    let cases: &[(&[&str], usize)] = &[
        (&["listen_port=65536"], 1),
        (&["listen_port=-1"], 1),
        (&["listen_port="], 1),
        (&["fwmark=4294967296"], 1),
        (&["fwmark=0x10"], 1),
        (&["replace_peers=false"], 1),
        (&["replace_peers=TRUE"], 1),
        (&["private_key=zz"], 1),
        (&["public_key=abc"], 1),
        (&[&public, "remove=1"], 2),
        (&[&public, "update_only=yes"], 2),
        (&[&public, "preshared_key=123"], 2),
        (&[&public, "endpoint=host:1"], 2),
        (&[&public, "endpoint=192.0.2.1"], 2),
        (&[&public, "persistent_keepalive_interval=65536"], 2),
        (&[&public, "replace_allowed_ips=false"], 2),
        (&[&public, "allowed_ip=10.0.0.0/33"], 2),
        (&[&public, "allowed_ip=--10.0.0.0/8"], 2),
        (&[&public, "allowed_ip=10.0.0.0"], 2),
        (&[&public, "protocol_version=2"], 2),
        (&[&public, "listen_port=1", "endpoint=192.0.2.1:1"], 2),
    ];
    for (lines, line) in cases {
        let error = error_of(lines);
        assert_eq!((error.errno(), error.line()), (EINVAL, Some(*line)), "{lines:?}: {error}");
    }
}

#[test]
fn unknown_and_misplaced_keys_are_invalid_as_in_wireguard_go() {
    let public = format!("public_key={PEER_HEX}");
    for (lines, hint) in [
        (vec!["foo=bar"], "unknown device key"),
        (vec!["endpoint=192.0.2.1:1"], "must follow a public_key"),
        (vec!["protocol_version=1"], "must follow a public_key"),
        (vec![public.as_str(), "fwmark=1"], "before the first public_key"),
        (vec![public.as_str(), "jc=4"], "unknown peer key"),
    ] {
        let error = error_of(&lines);
        assert_eq!(error.errno(), EINVAL, "{lines:?}");
        assert!(error.message().contains(hint), "{error}");
    }
}

#[test]
fn errors_never_echo_secrets() {
    // One digit short of a valid key: the message must not repeat the digits.
    let short = &PRIVATE_HEX[1..];
    let public = format!("public_key={PEER_HEX}");
    for lines in [
        vec![format!("private_key={short}")],
        vec![public.clone(), format!("preshared_key={short}")],
        vec![format!("public_key={short}")],
    ] {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let shown = error_of(&lines).to_string();
        assert!(!shown.contains(&short[..16]), "{shown}");
    }
}

#[test]
fn debug_redacts_keys() {
    let request = parse_set(&body(&[
        &format!("private_key={PRIVATE_HEX}"),
        &format!("public_key={PEER_HEX}"),
        &format!("preshared_key={PSK_HEX}"),
    ]))
    .unwrap();
    let shown = format!("{request:?}");
    assert!(!shown.contains(&PRIVATE_HEX[..16]) && !shown.contains(&PSK_HEX[..16]));
    assert!(shown.contains("redacted"));
}

#[test]
fn format_matches_what_wg_sends() {
    let mut peer = PeerUpdate::new(peer_key());
    peer.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    peer.persistent_keepalive_interval = Some(25);
    peer.replace_allowed_ips = true;
    peer.allowed_ips.push(AllowedIpChange::Add("10.0.0.2/32".parse().unwrap()));
    peer.allowed_ips.push(AllowedIpChange::Remove("10.9.0.0/16".parse().unwrap()));
    let request = SetRequest {
        private_key: Some(PrivateKeyUpdate::Set(PrivateKey::from_hex(PRIVATE_HEX).unwrap())),
        listen_port: Some(51820),
        fwmark: None,
        replace_peers: true,
        peers: vec![peer],
    };
    let expected = format!(
        "set=1\nprivate_key={PRIVATE_HEX}\nlisten_port=51820\nreplace_peers=true\n\
         public_key={PEER_HEX}\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\n\
         replace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=-10.9.0.0/16\n\n"
    );
    assert_eq!(format_set(&request), expected);
}

fn arb_allowed_ip() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(IpAddr::from(a), p).unwrap()),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, p)| Cidr::new(IpAddr::from(a), p).unwrap()),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>()).prop_map(|(a, p, s)| SocketAddrV6::new(
            a.into(),
            p,
            0,
            s
        )
        .into()),
    ]
}

fn arb_peer() -> impl Strategy<Value = PeerUpdate> {
    (
        any::<[u8; 32]>(),
        any::<(bool, bool, bool)>(),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of(arb_endpoint()),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec((any::<bool>(), arb_allowed_ip()), 0..4),
        (
            proptest::option::of(any::<[u8; 32]>()),
            any::<bool>(),
            proptest::collection::vec(arb_allowed_ip(), 0..3),
        ),
    )
        .prop_map(
            |(key, (remove, update_only, replace), psk, endpoint, keepalive, ips, extensions)| {
                let (successor, replace_accept_ips, accept_ips) = extensions;
                PeerUpdate {
                    public_key: PublicKey::from_bytes(key),
                    remove,
                    update_only,
                    preshared_key: psk.map(PresharedKey::from_bytes),
                    endpoint,
                    persistent_keepalive_interval: keepalive,
                    replace_allowed_ips: replace,
                    allowed_ips: ips
                        .into_iter()
                        .map(|(add, ip)| {
                            if add {
                                AllowedIpChange::Add(ip)
                            } else {
                                AllowedIpChange::Remove(ip)
                            }
                        })
                        .collect(),
                    successor_of: successor.map(PublicKey::from_bytes),
                    replace_accept_ips,
                    accept_ips,
                }
            },
        )
}

fn arb_request() -> impl Strategy<Value = SetRequest> {
    (
        proptest::option::of(proptest::option::of(any::<[u8; 32]>())),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::collection::vec(arb_peer(), 0..4),
    )
        .prop_map(|(key, listen_port, fwmark, replace_peers, peers)| SetRequest {
            private_key: key.map(|key| match key {
                Some(bytes) => PrivateKeyUpdate::Set(PrivateKey::from_bytes(bytes)),
                None => PrivateKeyUpdate::Remove,
            }),
            listen_port,
            fwmark,
            replace_peers,
            peers,
        })
}

/// Every key a set request may hold, and `errno`, which it may not.
fn keys() -> Vec<&'static str> {
    ["private_key", "listen_port", "fwmark", "replace_peers", "public_key", "errno"]
        .into_iter()
        .chain(PEER_KEYS)
        .collect()
}

proptest! {
    #[test]
    fn format_then_parse_is_identity(request in arb_request()) {
        let text = format_set(&request);
        let body = text.strip_prefix(SET_REQUEST).unwrap();
        prop_assert_eq!(parse_set(body).unwrap(), request);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*(\n\\PC*){0,8}") {
        let _ = parse_set(&text);
    }

    #[test]
    fn plausible_lines_never_panic(
        lines in proptest::collection::vec(
            (proptest::sample::select(keys()), "[-0-9a-f.:/\\[\\]%=]{0,70}"),
            0..12,
        )
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        if let Err(error) = parse_set(&text) {
            prop_assert!(error.errno() == EINVAL || error.errno() == EPROTO);
            prop_assert!(error.line().is_some());
        }
    }
}
