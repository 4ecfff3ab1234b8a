//! The `virtio_net_hdr` that prefixes every frame on a TUN opened with `IFF_VNET_HDR`: it tells
//! which checksum is left to fill and how a superframe is to be cut into segments.

use super::OffloadError;

/// Length of the header this crate configures with `TUNSETVNETHDRSZ` (no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// The segmentation a frame asks for (`gso_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    /// A single packet.
    None,
    /// A TCP over IPv4 superframe.
    TcpV4,
    /// A TCP over IPv6 superframe.
    TcpV6,
    /// A UDP superframe of equal-sized datagrams (IPv4 or IPv6).
    UdpL4,
}

impl GsoType {
    fn from_wire(value: u8) -> Result<Self, OffloadError> {
        match value {
            0 => Ok(Self::None),
            1 => Ok(Self::TcpV4),
            4 => Ok(Self::TcpV6),
            5 => Ok(Self::UdpL4),
            other => Err(OffloadError::UnsupportedGso(other)),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TcpV4 => 1,
            Self::TcpV6 => 4,
            Self::UdpL4 => 5,
        }
    }
}

/// A parsed `virtio_net_hdr`, in the host's byte order as the TUN driver uses it by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// [`Self::NEEDS_CSUM`] and [`Self::DATA_VALID`] bits.
    pub flags: u8,
    /// How the frame is to be segmented.
    pub gso_type: GsoType,
    /// Length of the IP and transport headers (advisory: segmentation re-reads the headers).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Offset of the transport header, where checksumming starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The checksum field holds the pseudo-header sum; the rest is still to be summed.
    pub const NEEDS_CSUM: u8 = 1;
    /// The packet's checksums are known to be good (it was authenticated).
    pub const DATA_VALID: u8 = 2;

    /// The header of a single packet whose checksums need no further check.
    pub const VALID: Self = Self {
        flags: Self::DATA_VALID,
        gso_type: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Parses the first [`VNET_HDR_LEN`] bytes of `frame`.
    ///
    /// # Errors
    ///
    /// [`OffloadError::Truncated`] if `frame` is shorter than the header,
    /// [`OffloadError::UnsupportedGso`] for GSO types other than [`GsoType`]'s (such as UFO or
    /// the ECN bit, which this crate never enables).
    pub fn parse(frame: &[u8]) -> Result<Self, OffloadError> {
        let bytes = frame.get(..VNET_HDR_LEN).ok_or(OffloadError::Truncated)?;
        let u16_at = |at: usize| u16::from_ne_bytes([bytes[at], bytes[at + 1]]);
        Ok(Self {
            flags: bytes[0],
            gso_type: GsoType::from_wire(bytes[1])?,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header in wire form.
    pub fn emit(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type.to_wire();
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// Whether the checksum at `csum_start + csum_offset` is left to complete.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            gso_type: GsoType::TcpV6,
            hdr_len: 60,
            gso_size: 1380,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut wire = [0; VNET_HDR_LEN];
        hdr.emit(&mut wire);
        assert_eq!(wire[..2], [1, 4]);
        assert_eq!(VirtioNetHdr::parse(&wire), Ok(hdr));
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(VirtioNetHdr::parse(&[0; 9]), Err(OffloadError::Truncated));
        let mut wire = [0; VNET_HDR_LEN];
        wire[1] = 0x81; // TCPv4 with ECN: never negotiated.
        assert_eq!(VirtioNetHdr::parse(&wire), Err(OffloadError::UnsupportedGso(0x81)));
        wire[1] = 3; // UFO.
        assert_eq!(VirtioNetHdr::parse(&wire), Err(OffloadError::UnsupportedGso(3)));
    }
}
