//! `uapi`: the userspace API's text format. The input is read as a `set=1` body, as a `get=1`
//! answer and as a status line.
//!
//! Checked: a request that parses is written back by `format_set` and reads the same; applied
//! to a device (which has a key and a peer), the device's `get=1` answer reads back as its
//! snapshot; an answer that parses is written back by `format_get` and reads the same.

use std::time::{Duration, Instant};

use wgfabric_proto::keys::PrivateKey;
use wgfabric_proto::uapi::{
    format_get, format_set, parse_get, parse_set_resolving_scopes, parse_status, EINVAL, EPROTO,
    SET_REQUEST,
};
use wgfabric_proto::Device;

/// More peers than this in one request are parsed but not applied (each costs a
/// Diffie-Hellman when the device has a key).
const MAX_APPLIED_PEERS: usize = 32;

fn scope_index(name: &str) -> Option<u32> {
    (name == "eth0").then_some(2)
}

fn device(now: Instant) -> Device {
    let mut device = Device::new([4; 32], now, Duration::from_secs(1_700_000_000));
    device.set_private_key(Some(PrivateKey::from_bytes([0x11; 32])));
    let peer = device
        .add_peer(PrivateKey::from_bytes([0x22; 32]).public_key())
        .expect("another key than the device's");
    device.add_allowed_ip(peer, "10.0.0.0/24".parse().expect("a prefix"));
    device
}

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);

    match parse_set_resolving_scopes(&text, &scope_index) {
        Ok(request) => {
            let written = format_set(&request);
            let body = written.strip_prefix(SET_REQUEST).expect("format_set starts with set=1");
            let again = parse_set_resolving_scopes(body, &scope_index);
            assert_eq!(again.as_ref(), Ok(&request), "format_set wrote {written:?}");
            if request.peers.len() <= MAX_APPLIED_PEERS {
                let now = crate::datagram::base();
                let mut device = device(now);
                device.apply(now, &request);
                let snapshot = device.snapshot();
                let answer = format_get(&snapshot);
                assert_eq!(parse_get(&answer).as_ref(), Ok(&snapshot), "get answered {answer:?}");
            }
        }
        Err(error) => {
            assert!(error.errno() == EINVAL || error.errno() == EPROTO, "{error}");
            let _ = error.to_string();
        }
    }

    if let Ok(snapshot) = parse_get(&text) {
        let answer = format_get(&snapshot);
        assert_eq!(parse_get(&answer).as_ref(), Ok(&snapshot), "format_get wrote {answer:?}");
    }
    let _ = parse_status(&text);
}
