//! Segmentation: what a NIC does with a TSO/USO superframe, done in software so each segment
//! can be sealed into its own WireGuard packet.

use super::checksum::Checksum;
use super::packet::{tcp_flags, Headers, IpVersion, SegmentFields, Transport};
use super::vnet::{GsoType, VirtioNetHdr};
use super::OffloadError;

/// Splits the packet of a TUN frame into IP packets of at most `hdr.gso_size` payload bytes.
///
/// `packet` is the frame without its virtio-net header, which is given parsed as `hdr`.
/// Segment `i` is written to `out[i][headroom..headroom + lens[i]]`, leaving `headroom` bytes in
/// front for the caller's own header. Each segment gets its own IPv4 total length,
/// identification and header checksum (or IPv6 payload length), TCP sequence number and flags
/// (FIN and PSH only on the last segment, CWR only on the first) or UDP length, and a complete
/// transport checksum. A frame without GSO is copied as is, its checksum completed if
/// `NEEDS_CSUM` is set; [`complete_checksum`] does that in place instead.
///
/// Returns the number of segments written.
///
/// # Errors
///
/// [`OffloadError::Truncated`], [`OffloadError::Malformed`] when the headers do not describe a
/// packet this function can cut, and [`OffloadError::OutputTooSmall`] when `out` or `lens` has
/// too few entries or a buffer cannot hold its segment. The contents of `out` are then
/// unspecified.
pub fn segment<B: AsMut<[u8]>>(
    packet: &[u8],
    hdr: &VirtioNetHdr,
    out: &mut [B],
    lens: &mut [usize],
    headroom: usize,
) -> Result<usize, OffloadError> {
    let transport = match hdr.gso_type {
        GsoType::None => {
            let (buf, len) =
                out.first_mut().zip(lens.first_mut()).ok_or(OffloadError::OutputTooSmall)?;
            let dst = buf
                .as_mut()
                .get_mut(headroom..headroom + packet.len())
                .ok_or(OffloadError::OutputTooSmall)?;
            dst.copy_from_slice(packet);
            complete_checksum(dst, hdr)?;
            *len = packet.len();
            return Ok(1);
        }
        GsoType::TcpV4 | GsoType::TcpV6 => Transport::Tcp,
        GsoType::UdpL4 => Transport::Udp,
    };
    let headers = Headers::parse_gso(packet, transport, usize::from(hdr.csum_start))?;
    let version_ok = match hdr.gso_type {
        GsoType::TcpV4 => headers.version == IpVersion::V4,
        GsoType::TcpV6 => headers.version == IpVersion::V6,
        _ => true,
    };
    if !version_ok {
        return Err(OffloadError::Malformed("GSO type disagrees with the IP version"));
    }
    let gso_size = usize::from(hdr.gso_size);
    if gso_size == 0 {
        return Err(OffloadError::Malformed("GSO frame with gso_size 0"));
    }
    let (header_bytes, payload) = packet.split_at(headers.len);
    let count = payload.len().div_ceil(gso_size).max(1);
    if count > out.len() || count > lens.len() {
        return Err(OffloadError::OutputTooSmall);
    }

    let shared = headers.shared_sums(packet);
    let first_id = headers.ipv4_id(packet);
    let (first_seq, flags) = match transport {
        Transport::Tcp => (headers.tcp_seq(packet), headers.tcp_flags(packet)),
        Transport::Udp => (0, 0),
    };
    let chunks = payload.chunks(gso_size).chain(payload.is_empty().then_some(&[][..]));
    for (i, ((chunk, buf), len)) in chunks.zip(out.iter_mut()).zip(lens.iter_mut()).enumerate() {
        let seg_len = headers.len + chunk.len();
        let seg = buf
            .as_mut()
            .get_mut(headroom..headroom + seg_len)
            .ok_or(OffloadError::OutputTooSmall)?;
        let (seg_headers, seg_payload) = seg.split_at_mut(headers.len);
        seg_headers.copy_from_slice(header_bytes);
        let mut payload_sum = Checksum::default();
        payload_sum.add_copy(seg_payload, chunk);

        let mut seg_flags = flags;
        if i + 1 < count {
            seg_flags &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i > 0 {
            seg_flags &= !tcp_flags::CWR;
        }
        let fields = SegmentFields {
            ipv4_id: first_id.wrapping_add(i as u16),
            tcp_seq: first_seq.wrapping_add((i * gso_size) as u32),
            tcp_flags: seg_flags,
        };
        headers.finish_segment(seg, &shared, fields, payload_sum)?;
        *len = seg_len;
    }
    Ok(count)
}

/// Completes the checksum of a packet whose header says `NEEDS_CSUM`: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum, and the sum of everything from
/// `csum_start` on is stored there. Does nothing without `NEEDS_CSUM`.
///
/// # Errors
///
/// [`OffloadError::Malformed`] if the checksum field lies outside `packet`.
pub fn complete_checksum(packet: &mut [u8], hdr: &VirtioNetHdr) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > packet.len() {
        return Err(OffloadError::Malformed("checksum field beyond the packet"));
    }
    let mut sum = Checksum::default();
    sum.add(&packet[start..]);
    packet[field..field + 2].copy_from_slice(&sum.finish().to_be_bytes());
    Ok(())
}
