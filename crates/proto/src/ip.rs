//! Just enough of the inner IPv4/IPv6 headers to route a packet: version, addresses, length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The destination address of an IPv4 or IPv6 packet, for routing it to a peer.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let bytes: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(Ipv4Addr::from(bytes).into())
        }
        6 => {
            let bytes: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(Ipv6Addr::from(bytes).into())
        }
        _ => None,
    }
}

/// The source address and true length (without WireGuard's padding) of a decrypted packet;
/// `None` unless it is a plausible IPv4 or IPv6 packet that fits in `packet`.
pub(crate) fn source_and_len(packet: &[u8]) -> Option<(IpAddr, usize)> {
    match packet.first()? >> 4 {
        4 => {
            let header_len = usize::from(packet.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
            if header_len < 20 || total < header_len || total > packet.len() {
                return None;
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), total))
        }
        6 => {
            let payload = usize::from(u16::from_be_bytes(packet.get(4..6)?.try_into().ok()?));
            let total = 40 + payload;
            if total > packet.len() {
                return None;
            }
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), total))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use wgfabric_testkit::packet::{ipv4, ipv6};

    use super::*;

    #[test]
    fn parses_both_families() {
        let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 5);
        assert_eq!(destination(&p), Some("10.0.0.2".parse().unwrap()));
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 7]);
        assert_eq!(source_and_len(&padded), Some(("10.0.0.1".parse().unwrap(), 25)));

        let p = ipv6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 3);
        assert_eq!(destination(&p), Some("fd00::2".parse().unwrap()));
        assert_eq!(source_and_len(&p), Some(("fd00::1".parse().unwrap(), 43)));
    }

    #[test]
    fn rejects_truncated_and_odd_packets() {
        let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 5);
        assert_eq!(source_and_len(&p[..24]), None);
        assert_eq!(destination(&p[..19]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        let mut short_header = p;
        short_header[0] = 0x44;
        assert_eq!(source_and_len(&short_header), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = destination(&bytes);
            if let Some((_, len)) = source_and_len(&bytes) {
                proptest::prop_assert!(len <= bytes.len());
            }
        }
    }
}
