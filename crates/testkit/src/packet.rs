//! Minimal inner IP packets for tests and fuzz targets: a header with the addresses and
//! lengths set (UDP, TTL 64, no checksum) and a zeroed payload.

use std::net::Ipv6Addr;

/// An IPv4 packet from `src` to `dst` carrying `payload` zero bytes.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// An IPv6 packet from `src` to `dst` carrying `payload` zero bytes.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}
