//! Coalescing (userspace GRO): merging consecutive packets of one TCP or UDP flow into a
//! superframe before it is written to the TUN, so the kernel's stack handles one large packet
//! instead of dozens.
//!
//! The rules follow what the kernel's own GRO accepts: a TCP segment joins its flow's frame
//! only if everything but the sequence number, the PSH flag and the lengths is unchanged, its
//! sequence number continues the frame, and it is no larger than the first segment; a shorter
//! segment, or one with PSH, closes the frame. A packet that cannot join starts a new frame
//! for its flow, so packets of one flow are never reordered. Packets arrive authenticated, so
//! their checksums are trusted, as the kernel's WireGuard trusts them: single packets are
//! marked `DATA_VALID`, merged frames carry the pseudo-header sum with `NEEDS_CSUM`.

use super::packet::{tcp_flags, Headers, IpVersion, Transport};
use super::vnet::{GsoType, VirtioNetHdr, VNET_HDR_LEN};

/// The most datagrams in one UDP superframe (older kernels' `UDP_MAX_SEGMENTS`).
const MAX_UDP_SEGMENTS: usize = 64;

/// The largest IP packet a superframe may become.
const MAX_FRAME_LEN: usize = 65535;

/// Reusable state for coalescing batches of packets; allocates only while its tables grow to
/// the largest batch seen.
#[derive(Debug)]
pub struct Coalescer {
    udp: bool,
    flows: Vec<Flow>,
    frames: Vec<usize>,
}

/// A frame being built in the buffer of its first packet.
#[derive(Debug)]
struct Flow {
    head: usize,
    headers: Headers,
    /// Current length of the head's IP packet.
    len: usize,
    /// Payload length of the first segment; later ones may not exceed it.
    gso_size: usize,
    segments: usize,
    next_seq: u32,
    push: bool,
    open: bool,
}

impl Coalescer {
    /// A coalescer for TCP, and for UDP too if `udp` (only when the TUN accepted USO).
    pub fn new(udp: bool) -> Self {
        Self { udp, flows: Vec::new(), frames: Vec::new() }
    }

    /// Coalesces a batch of IP packets in place and returns the indices of the frames to write.
    ///
    /// Packet `i` is `bufs[i][headroom..headroom + lens[i]]`. Packets are appended to the
    /// buffer of the first packet of their flow (which therefore should have room for
    /// 64 KiB after `headroom`; a full buffer simply ends the frame). Afterwards each returned
    /// index `i` names a frame ready for [`TunQueue::write`](crate::TunQueue::write) at
    /// `bufs[i][headroom - VNET_HDR_LEN..headroom + lens[i]]`, virtio-net header included, in
    /// the order to write them; packets merged into another frame are not listed.
    ///
    /// # Panics
    ///
    /// If `headroom < VNET_HDR_LEN`, if `lens` is shorter than `bufs`, or if a packet's range
    /// lies outside its buffer.
    pub fn coalesce<B: AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        lens: &mut [usize],
        headroom: usize,
    ) -> &[usize] {
        assert!(headroom >= VNET_HDR_LEN, "headroom must hold a virtio-net header");
        self.flows.clear();
        self.frames.clear();
        for i in 0..bufs.len() {
            let (earlier, rest) = bufs.split_at_mut(i);
            let packet = &rest[0].as_mut()[headroom..headroom + lens[i]];
            let Some(headers) =
                Headers::parse_exact(packet).filter(|h| self.udp || h.transport == Transport::Tcp)
            else {
                write_vnet_hdr(rest[0].as_mut(), headroom, &VirtioNetHdr::VALID);
                self.frames.push(i);
                continue;
            };
            let same_flow = self.flows.iter_mut().find(|flow| {
                let head = &earlier[flow.head].as_mut()[headroom..];
                flow.headers.version == headers.version
                    && flow.headers.transport == headers.transport
                    && flow.headers.addresses(head) == headers.addresses(packet)
                    && flow.headers.ports(head) == headers.ports(packet)
            });
            let new_flow = Flow::start(i, headers, packet);
            match same_flow {
                Some(flow) => {
                    let head = earlier[flow.head].as_mut();
                    if flow.open && flow.try_append(head, headroom, packet, &headers) {
                        continue;
                    }
                    flow.finish(head, &mut lens[flow.head], headroom);
                    *flow = new_flow;
                }
                None => self.flows.push(new_flow),
            }
            self.frames.push(i);
        }
        for flow in &self.flows {
            flow.finish(bufs[flow.head].as_mut(), &mut lens[flow.head], headroom);
        }
        &self.frames
    }
}

impl Flow {
    fn start(head: usize, headers: Headers, packet: &[u8]) -> Self {
        let gso_size = packet.len() - headers.len;
        let (open, next_seq) = match headers.transport {
            Transport::Tcp => {
                let seq = headers.tcp_seq(packet).wrapping_add(gso_size as u32);
                (headers.tcp_flags(packet) == tcp_flags::ACK, seq)
            }
            Transport::Udp => (true, 0),
        };
        Self {
            head,
            headers,
            len: packet.len(),
            gso_size,
            segments: 1,
            next_seq,
            push: false,
            open: open && gso_size > 0,
        }
    }

    /// Appends `packet`'s payload to the frame in `head_buf` if the kernel would have merged it.
    fn try_append(
        &mut self,
        head_buf: &mut [u8],
        headroom: usize,
        packet: &[u8],
        headers: &Headers,
    ) -> bool {
        let payload = &packet[headers.len..];
        let end = headroom + self.len;
        let max_segments = match headers.transport {
            Transport::Tcp => usize::MAX,
            Transport::Udp => MAX_UDP_SEGMENTS,
        };
        if *headers != self.headers
            || payload.len() > self.gso_size
            || self.segments >= max_segments
            || self.len + payload.len() > MAX_FRAME_LEN
            || end + payload.len() > head_buf.len()
        {
            return false;
        }
        let head = &head_buf[headroom..end];
        if !self.same_ip_fields(head, packet) {
            return false;
        }
        let mut push = false;
        if headers.transport == Transport::Tcp {
            let flags = headers.tcp_flags(packet);
            push = flags & tcp_flags::PSH != 0;
            if flags & !tcp_flags::PSH != tcp_flags::ACK
                || headers.tcp_seq(packet) != self.next_seq
                || !same_tcp_fields(self.headers.l4_header(head), headers.l4_header(packet))
            {
                return false;
            }
        }
        head_buf[end..end + payload.len()].copy_from_slice(payload);
        self.len += payload.len();
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
        self.push |= push;
        self.open = !push && payload.len() == self.gso_size;
        true
    }

    /// Whether the IP headers agree in everything but lengths, checksum and (for IPv4 with
    /// the DF bit) the identification, which must otherwise count up by one per segment.
    fn same_ip_fields(&self, head: &[u8], packet: &[u8]) -> bool {
        let (a, b) = (self.headers.ip_header(head), self.headers.ip_header(packet));
        match self.headers.version {
            IpVersion::V4 => {
                let id_ok = self.headers.dont_fragment(head)
                    || self.headers.ipv4_id(packet)
                        == self.headers.ipv4_id(head).wrapping_add(self.segments as u16);
                id_ok && a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..] == b[12..]
            }
            IpVersion::V6 => a[..4] == b[..4] && a[6..] == b[6..],
        }
    }

    /// Writes the frame's final headers and its virtio-net header, and its length to `len`.
    fn finish(&self, head_buf: &mut [u8], len: &mut usize, headroom: usize) {
        *len = self.len;
        let hdr = if self.segments == 1 {
            VirtioNetHdr::VALID
        } else {
            let frame = &mut head_buf[headroom..headroom + self.len];
            self.headers.set_lengths(frame).expect("try_append keeps frames within MAX_FRAME_LEN");
            let gso_type = match (self.headers.transport, self.headers.version) {
                (Transport::Tcp, IpVersion::V4) => GsoType::TcpV4,
                (Transport::Tcp, IpVersion::V6) => GsoType::TcpV6,
                (Transport::Udp, _) => GsoType::UdpL4,
            };
            if self.push {
                let flags = self.headers.tcp_flags(frame) | tcp_flags::PSH;
                self.headers.set_tcp_flags(frame, flags);
            }
            self.headers.fill_l4_pseudo_checksum(frame);
            VirtioNetHdr {
                flags: VirtioNetHdr::NEEDS_CSUM,
                gso_type,
                // The casts cannot truncate: all are bounded by MAX_FRAME_LEN.
                hdr_len: self.headers.len as u16,
                gso_size: self.gso_size as u16,
                csum_start: self.headers.l4_offset as u16,
                csum_offset: self.headers.checksum_offset() as u16,
            }
        };
        write_vnet_hdr(head_buf, headroom, &hdr);
    }
}

/// Whether two TCP headers agree in everything but ports (already equal), sequence number,
/// the PSH flag (checked by the caller) and checksum: acknowledgment, data offset, window,
/// urgent pointer and options.
fn same_tcp_fields(a: &[u8], b: &[u8]) -> bool {
    a[8..13] == b[8..13] && a[14..16] == b[14..16] && a[18..] == b[18..]
}

fn write_vnet_hdr(buf: &mut [u8], headroom: usize, hdr: &VirtioNetHdr) {
    let slot = &mut buf[headroom - VNET_HDR_LEN..headroom];
    hdr.emit(slot.try_into().expect("the slot is VNET_HDR_LEN bytes long"));
}
