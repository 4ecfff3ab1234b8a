//! Validated views of the IP and transport headers that segmentation and coalescing rewrite.
//!
//! Every field offset lives here. A [`Headers`] is only built after the packet was checked to
//! hold all of its headers, so the accessors below index without further checks.

use super::checksum::{pseudo_header, Checksum};
use super::OffloadError;

/// IP protocol numbers.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

mod field {
    pub(super) const IPV4_MIN_LEN: usize = 20;
    pub(super) const IPV4_TOTAL_LEN: usize = 2;
    pub(super) const IPV4_ID: usize = 4;
    pub(super) const IPV4_FRAG: usize = 6;
    pub(super) const IPV4_PROTOCOL: usize = 9;
    pub(super) const IPV4_CHECKSUM: usize = 10;
    pub(super) const IPV4_ADDRS: usize = 12;

    pub(super) const IPV6_LEN: usize = 40;
    pub(super) const IPV6_PAYLOAD_LEN: usize = 4;
    pub(super) const IPV6_NEXT_HEADER: usize = 6;
    pub(super) const IPV6_ADDRS: usize = 8;

    pub(super) const TCP_MIN_LEN: usize = 20;
    pub(super) const TCP_SEQ: usize = 4;
    pub(super) const TCP_DATA_OFFSET: usize = 12;
    pub(super) const TCP_FLAGS: usize = 13;
    pub(super) const TCP_CHECKSUM: usize = 16;

    pub(super) const UDP_LEN: usize = 8;
    pub(super) const UDP_LENGTH: usize = 4;
    pub(super) const UDP_CHECKSUM: usize = 6;
}

/// TCP flag bits that segmentation and coalescing care about.
pub(crate) mod tcp_flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const ACK: u8 = 0x10;
    pub(crate) const CWR: u8 = 0x80;
}

/// The IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpVersion {
    V4,
    V6,
}

/// The transport protocol of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

/// A superframe's header sums without the fields each segment rewrites; see
/// [`Headers::shared_sums`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedSums {
    /// The IPv4 header (zero for IPv6, which has no header checksum).
    ip: Checksum,
    /// The pseudo-header and the transport header.
    l4: Checksum,
}

/// The fields that differ between the segments of one superframe, besides the lengths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentFields {
    /// Ignored for IPv6.
    pub(crate) ipv4_id: u16,
    /// Ignored for UDP.
    pub(crate) tcp_seq: u32,
    /// Ignored for UDP.
    pub(crate) tcp_flags: u8,
}

/// Where the headers of a checked packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    pub(crate) version: IpVersion,
    pub(crate) transport: Transport,
    /// Length of the IP header, i.e. offset of the transport header.
    pub(crate) l4_offset: usize,
    /// Length of the IP and transport headers, i.e. offset of the payload.
    pub(crate) len: usize,
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn put16(p: &mut [u8], at: usize, value: u16) {
    p[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

impl Headers {
    /// Checks a standalone IPv4/IPv6 TCP or UDP packet whose length fields agree with
    /// `packet.len()`; `None` for anything else (fragments, extension headers, other protocols).
    pub(crate) fn parse_exact(packet: &[u8]) -> Option<Self> {
        let (version, protocol, l4_offset) = ip_header(packet).ok()?;
        let ip_len = match version {
            IpVersion::V4 => usize::from(be16(packet, field::IPV4_TOTAL_LEN)),
            IpVersion::V6 => field::IPV6_LEN + usize::from(be16(packet, field::IPV6_PAYLOAD_LEN)),
        };
        let fragmented = version == IpVersion::V4 && be16(packet, field::IPV4_FRAG) & 0x3fff != 0;
        if ip_len != packet.len() || fragmented {
            return None;
        }
        let transport = match protocol {
            PROTO_TCP => Transport::Tcp,
            PROTO_UDP => Transport::Udp,
            _ => return None,
        };
        let headers = Self::with_transport(packet, version, transport, l4_offset).ok()?;
        let udp_len_ok = transport == Transport::Tcp
            || usize::from(be16(packet, l4_offset + field::UDP_LENGTH)) == packet.len() - l4_offset;
        udp_len_ok.then_some(headers)
    }

    /// Checks the headers of a superframe whose transport header starts at `l4_offset`.
    ///
    /// Length fields are not checked: the kernel fills them loosely in superframes, and
    /// segmentation rewrites them anyway.
    pub(crate) fn parse_gso(
        packet: &[u8],
        transport: Transport,
        l4_offset: usize,
    ) -> Result<Self, OffloadError> {
        let (version, protocol, ip_len) = ip_header(packet)?;
        let expected = match transport {
            Transport::Tcp => PROTO_TCP,
            Transport::Udp => PROTO_UDP,
        };
        if protocol != expected {
            return Err(OffloadError::Malformed("GSO type disagrees with the IP protocol"));
        }
        if ip_len != l4_offset {
            return Err(OffloadError::Malformed("csum_start is not the transport header"));
        }
        Self::with_transport(packet, version, transport, l4_offset)
    }

    fn with_transport(
        packet: &[u8],
        version: IpVersion,
        transport: Transport,
        l4_offset: usize,
    ) -> Result<Self, OffloadError> {
        let l4_len = match transport {
            Transport::Udp => field::UDP_LEN,
            Transport::Tcp => {
                let offset_byte = packet
                    .get(l4_offset + field::TCP_DATA_OFFSET)
                    .ok_or(OffloadError::Truncated)?;
                let len = usize::from(offset_byte >> 4) * 4;
                if len < field::TCP_MIN_LEN {
                    return Err(OffloadError::Malformed("TCP data offset below 5"));
                }
                len
            }
        };
        let len = l4_offset + l4_len;
        if len > packet.len() {
            return Err(OffloadError::Truncated);
        }
        Ok(Self { version, transport, l4_offset, len })
    }

    /// The IP header, for comparing packets of one flow.
    pub(crate) fn ip_header<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        &packet[..self.l4_offset]
    }

    /// The transport header.
    pub(crate) fn l4_header<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        &packet[self.l4_offset..self.len]
    }

    /// The source and destination addresses, back to back.
    pub(crate) fn addresses<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        match self.version {
            IpVersion::V4 => &packet[field::IPV4_ADDRS..field::IPV4_ADDRS + 8],
            IpVersion::V6 => &packet[field::IPV6_ADDRS..field::IPV6_ADDRS + 32],
        }
    }

    /// The source and destination ports, back to back.
    pub(crate) fn ports<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        &packet[self.l4_offset..self.l4_offset + 4]
    }

    /// Offset of the transport checksum within the transport header.
    pub(crate) fn checksum_offset(&self) -> usize {
        match self.transport {
            Transport::Tcp => field::TCP_CHECKSUM,
            Transport::Udp => field::UDP_CHECKSUM,
        }
    }

    /// Rewrites the IP (and UDP) length fields for a packet of `packet.len()` bytes, and the
    /// IPv4 header checksum.
    pub(crate) fn set_lengths(&self, packet: &mut [u8]) -> Result<(), OffloadError> {
        let too_long = OffloadError::Malformed("packet longer than 65535 bytes");
        match self.version {
            IpVersion::V4 => {
                let total = u16::try_from(packet.len()).map_err(|_| too_long)?;
                put16(packet, field::IPV4_TOTAL_LEN, total);
                put16(packet, field::IPV4_CHECKSUM, 0);
                let mut sum = Checksum::default();
                sum.add(&packet[..self.l4_offset]);
                put16(packet, field::IPV4_CHECKSUM, !sum.fold());
            }
            IpVersion::V6 => {
                let payload =
                    u16::try_from(packet.len() - field::IPV6_LEN).map_err(|_| too_long)?;
                put16(packet, field::IPV6_PAYLOAD_LEN, payload);
            }
        }
        if self.transport == Transport::Udp {
            let udp_len = u16::try_from(packet.len() - self.l4_offset).map_err(|_| too_long)?;
            put16(packet, self.l4_offset + field::UDP_LENGTH, udp_len);
        }
        Ok(())
    }

    /// The IPv4 identification field (IPv6 has none: 0).
    pub(crate) fn ipv4_id(&self, packet: &[u8]) -> u16 {
        match self.version {
            IpVersion::V4 => be16(packet, field::IPV4_ID),
            IpVersion::V6 => 0,
        }
    }

    /// Sets the IPv4 identification field; a no-op for IPv6.
    pub(crate) fn set_ipv4_id(&self, packet: &mut [u8], id: u16) {
        if self.version == IpVersion::V4 {
            put16(packet, field::IPV4_ID, id);
        }
    }

    /// Whether the IPv4 "don't fragment" bit is set (always true for IPv6).
    pub(crate) fn dont_fragment(&self, packet: &[u8]) -> bool {
        self.version == IpVersion::V6 || packet[field::IPV4_FRAG] & 0x40 != 0
    }

    /// The sum of the pseudo-header for this packet's addresses and transport length.
    fn pseudo_header(&self, packet: &[u8]) -> Checksum {
        let (src, dst) = self.addresses(packet).split_at(self.addresses(packet).len() / 2);
        let protocol = match self.transport {
            Transport::Tcp => PROTO_TCP,
            Transport::Udp => PROTO_UDP,
        };
        pseudo_header(src, dst, protocol, packet.len() - self.l4_offset)
    }

    /// The sums of a superframe's headers that all its segments share: every field a
    /// segment rewrites (lengths, identification, sequence number, flags, checksums) is taken
    /// out, so each segment adds its own values as numbers and never reads back a header it
    /// just wrote.
    pub(crate) fn shared_sums(&self, packet: &[u8]) -> SharedSums {
        let mut ip = Checksum::default();
        if self.version == IpVersion::V4 {
            ip.add(self.ip_header(packet));
            for at in [field::IPV4_TOTAL_LEN, field::IPV4_ID, field::IPV4_CHECKSUM] {
                ip.sub_u16(be16(packet, at));
            }
        }
        let mut l4 = self.pseudo_header(packet);
        l4.sub_u16((self.l4_len(packet) >> 16) as u16);
        l4.sub_u16(self.l4_len(packet) as u16);
        l4.add(self.l4_header(packet));
        let at = self.l4_offset;
        l4.sub_u16(be16(packet, at + self.checksum_offset()));
        match self.transport {
            Transport::Tcp => {
                l4.sub_u16(be16(packet, at + field::TCP_SEQ));
                l4.sub_u16(be16(packet, at + field::TCP_SEQ + 2));
                l4.sub_u16(u16::from(packet[at + field::TCP_FLAGS]));
            }
            Transport::Udp => l4.sub_u16(be16(packet, at + field::UDP_LENGTH)),
        }
        SharedSums { ip, l4 }
    }

    /// Completes a segment whose headers were copied from its superframe and whose payload
    /// sums to `payload`: writes its lengths and `fields`, and both checksums.
    pub(crate) fn finish_segment(
        &self,
        segment: &mut [u8],
        shared: &SharedSums,
        fields: SegmentFields,
        payload: Checksum,
    ) -> Result<(), OffloadError> {
        let too_long = OffloadError::Malformed("packet longer than 65535 bytes");
        let l4_len = u16::try_from(self.l4_len(segment)).map_err(|_| too_long)?;
        match self.version {
            IpVersion::V4 => {
                let total = u16::try_from(segment.len()).map_err(|_| too_long)?;
                let mut ip = shared.ip;
                ip.add_u16(total);
                ip.add_u16(fields.ipv4_id);
                put16(segment, field::IPV4_TOTAL_LEN, total);
                self.set_ipv4_id(segment, fields.ipv4_id);
                put16(segment, field::IPV4_CHECKSUM, !ip.fold());
            }
            IpVersion::V6 => {
                let len = u16::try_from(segment.len() - field::IPV6_LEN).map_err(|_| too_long)?;
                put16(segment, field::IPV6_PAYLOAD_LEN, len);
            }
        }
        let mut l4 = shared.l4;
        l4.add_u16(l4_len);
        l4.add_sum(payload);
        let at = self.l4_offset;
        match self.transport {
            Transport::Tcp => {
                let seq = fields.tcp_seq;
                l4.add_u16((seq >> 16) as u16);
                l4.add_u16(seq as u16);
                l4.add_u16(u16::from(fields.tcp_flags));
                self.set_tcp_seq(segment, seq);
                self.set_tcp_flags(segment, fields.tcp_flags);
            }
            Transport::Udp => {
                l4.add_u16(l4_len);
                put16(segment, at + field::UDP_LENGTH, l4_len);
            }
        }
        put16(segment, at + self.checksum_offset(), l4.finish());
        Ok(())
    }

    /// The transport header and payload's length.
    fn l4_len(&self, packet: &[u8]) -> usize {
        packet.len() - self.l4_offset
    }

    /// Stores the pseudo-header sum in the transport checksum field, leaving the rest for
    /// whoever completes a `NEEDS_CSUM` checksum.
    pub(crate) fn fill_l4_pseudo_checksum(&self, packet: &mut [u8]) {
        let sum = self.pseudo_header(packet).fold();
        put16(packet, self.l4_offset + self.checksum_offset(), sum);
    }

    /// The TCP sequence number.
    pub(crate) fn tcp_seq(&self, packet: &[u8]) -> u32 {
        let at = self.l4_offset + field::TCP_SEQ;
        u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
    }

    /// Sets the TCP sequence number.
    pub(crate) fn set_tcp_seq(&self, packet: &mut [u8], seq: u32) {
        let at = self.l4_offset + field::TCP_SEQ;
        packet[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    }

    /// The TCP flags byte (FIN through CWR).
    pub(crate) fn tcp_flags(&self, packet: &[u8]) -> u8 {
        packet[self.l4_offset + field::TCP_FLAGS]
    }

    /// Sets the TCP flags byte.
    pub(crate) fn set_tcp_flags(&self, packet: &mut [u8], flags: u8) {
        packet[self.l4_offset + field::TCP_FLAGS] = flags;
    }
}

/// Checks the fixed IP header: returns the version, the protocol (next header) and the IP
/// header length. IPv6 extension headers are not supported.
fn ip_header(packet: &[u8]) -> Result<(IpVersion, u8, usize), OffloadError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < field::IPV4_MIN_LEN {
                return Err(OffloadError::Malformed("IPv4 header length below 5"));
            }
            if packet.len() < ihl {
                return Err(OffloadError::Truncated);
            }
            Ok((IpVersion::V4, packet[field::IPV4_PROTOCOL], ihl))
        }
        Some(6) => {
            if packet.len() < field::IPV6_LEN {
                return Err(OffloadError::Truncated);
            }
            Ok((IpVersion::V6, packet[field::IPV6_NEXT_HEADER], field::IPV6_LEN))
        }
        Some(_) => Err(OffloadError::Malformed("IP version is neither 4 nor 6")),
        None => Err(OffloadError::Truncated),
    }
}
