//! Ancillary data (control messages) for `sendmmsg`/`recvmmsg`: the local address as
//! `IP_PKTINFO`/`IPV6_PKTINFO`, the GSO segment size as `UDP_SEGMENT`, and the GRO segment
//! size as `UDP_GRO`.
//!
//! Buffers are parsed with explicit bounds checks rather than the `CMSG_*` macros, so a
//! malformed `msg_controllen` cannot lead outside the buffer.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;

use super::LocalAddr;

/// Room for the control messages of one datagram: a pktinfo plus a segment size.
pub(crate) const CMSG_BUF_LEN: usize = 64;

/// One datagram's control buffer, aligned for `cmsghdr`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; CMSG_BUF_LEN]);

impl Default for CmsgBuf {
    fn default() -> Self {
        Self([0; CMSG_BUF_LEN])
    }
}

const HDR_LEN: usize = size_of::<libc::cmsghdr>();

/// `CMSG_ALIGN`: control messages are padded to the size of `size_t`.
const fn align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

const _: () = assert!(
    align(HDR_LEN + size_of::<libc::in6_pktinfo>()) + align(HDR_LEN + size_of::<u16>())
        <= CMSG_BUF_LEN,
    "a pktinfo and a segment size fit in one buffer"
);
const _: () = assert!(HDR_LEN == align(HDR_LEN));

/// Appends control messages to a [`CmsgBuf`].
pub(crate) struct Encoder<'a> {
    buf: &'a mut CmsgBuf,
    len: usize,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(buf: &'a mut CmsgBuf) -> Self {
        Self { buf, len: 0 }
    }

    /// The number of bytes written, for `msg_controllen`.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets the source address (and outgoing interface) of the datagram.
    pub(crate) fn source(&mut self, src: &LocalAddr) {
        match src.ip {
            IpAddr::V4(ip) => {
                // SAFETY: in_pktinfo is plain integers, for which all-zero bytes are valid.
                let mut info: libc::in_pktinfo = unsafe { zeroed() };
                info.ipi_ifindex = src.ifindex as libc::c_int;
                info.ipi_spec_dst.s_addr = u32::from_ne_bytes(ip.octets());
                self.push(libc::IPPROTO_IP, libc::IP_PKTINFO, info);
            }
            IpAddr::V6(ip) => {
                // SAFETY: in6_pktinfo is plain integers, for which all-zero bytes are valid.
                let mut info: libc::in6_pktinfo = unsafe { zeroed() };
                info.ipi6_ifindex = src.ifindex;
                info.ipi6_addr.s6_addr = ip.octets();
                self.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
            }
        }
    }

    /// Asks the kernel to cut the datagram into segments of `size` bytes (UDP GSO).
    pub(crate) fn segment_size(&mut self, size: u16) {
        self.push(libc::SOL_UDP, libc::UDP_SEGMENT, size);
    }

    fn push<T: Copy>(&mut self, level: libc::c_int, kind: libc::c_int, value: T) {
        let end = self.len + align(HDR_LEN + size_of::<T>());
        assert!(end <= CMSG_BUF_LEN, "control messages exceed CMSG_BUF_LEN");
        // SAFETY: cmsghdr is plain integers (plus padding on some libcs), for which all-zero
        // bytes are valid.
        let mut hdr: libc::cmsghdr = unsafe { zeroed() };
        hdr.cmsg_len = (HDR_LEN + size_of::<T>()) as _;
        hdr.cmsg_level = level;
        hdr.cmsg_type = kind;
        let at = self.buf.0[self.len..].as_mut_ptr();
        // SAFETY: the assertion above keeps both writes inside the buffer; unaligned writes
        // need no alignment.
        unsafe {
            ptr::write_unaligned(at.cast::<libc::cmsghdr>(), hdr);
            ptr::write_unaligned(at.add(HDR_LEN).cast::<T>(), value);
        }
        self.len = end;
    }
}

/// What the kernel reported about a received datagram.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) local: Option<LocalAddr>,
    pub(crate) gro_size: Option<usize>,
}

/// Reads the control messages in the first `len` bytes of `buf`.
pub(crate) fn decode(buf: &CmsgBuf, len: usize) -> Received {
    let buf = &buf.0[..len.min(CMSG_BUF_LEN)];
    let mut received = Received::default();
    let mut at = 0;
    while at + HDR_LEN <= buf.len() {
        // SAFETY: the loop condition keeps the header inside the buffer; the read is unaligned.
        let hdr = unsafe { ptr::read_unaligned(buf[at..].as_ptr().cast::<libc::cmsghdr>()) };
        let cmsg_len = hdr.cmsg_len as usize;
        let Some(data) = buf.get(at + HDR_LEN..at + cmsg_len.max(HDR_LEN)) else { break };
        match (hdr.cmsg_level, hdr.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                if let Some(info) = read::<libc::in_pktinfo>(data) {
                    let ip = Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes());
                    let ifindex = info.ipi_ifindex as u32;
                    received.local = Some(LocalAddr { ip: ip.into(), ifindex });
                }
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                if let Some(info) = read::<libc::in6_pktinfo>(data) {
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    received.local = Some(LocalAddr { ip: ip.into(), ifindex: info.ipi6_ifindex });
                }
            }
            (libc::SOL_UDP, libc::UDP_GRO) => {
                received.gro_size = read::<libc::c_int>(data).and_then(|s| usize::try_from(s).ok());
            }
            _ => {}
        }
        if cmsg_len < HDR_LEN {
            break;
        }
        at += align(cmsg_len);
    }
    received
}

/// Reads a `T` from the start of `data`, if it is long enough.
fn read<T: Copy>(data: &[u8]) -> Option<T> {
    // SAFETY: the length check keeps the read inside `data`; it is unaligned. Only plain
    // integer structs, valid for any bytes, are read.
    (data.len() >= size_of::<T>())
        .then(|| unsafe { ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_source_and_ignores_segment_size() {
        let mut buf = CmsgBuf::default();
        let src = LocalAddr { ip: "fd00::7".parse().unwrap(), ifindex: 3 };
        let mut enc = Encoder::new(&mut buf);
        enc.segment_size(1200);
        enc.source(&src);
        let len = enc.len();
        assert_eq!(decode(&buf, len), Received { local: Some(src), gro_size: None });
    }

    #[test]
    fn survives_garbage() {
        let mut buf = CmsgBuf([0xff; CMSG_BUF_LEN]);
        assert_eq!(decode(&buf, CMSG_BUF_LEN), Received::default());
        buf.0[..8].copy_from_slice(&4usize.to_ne_bytes()); // shorter than a header
        assert_eq!(decode(&buf, CMSG_BUF_LEN), Received::default());
        assert_eq!(decode(&buf, 1000), Received::default());
    }
}
