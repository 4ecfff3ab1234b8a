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
//!
//! Frames are built either in place, in the buffer of each frame's first packet, or by
//! gathering read-only packets into separate frame buffers; both share one flow table.

use std::iter::Peekable;

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
    /// Index of the buffer the frame is built in.
    frame: usize,
    headers: Headers,
    /// Current length of the frame's IP packet.
    len: usize,
    /// Payload length of the first segment; later ones may not exceed it.
    gso_size: usize,
    segments: usize,
    next_seq: u32,
    push: bool,
    open: bool,
}

/// A packet that joins no frame: it starts one, and may start a flow.
struct NewFrame {
    /// The packet's headers, if it may start a flow.
    headers: Option<Headers>,
    /// The flow of the same addresses and ports whose frame it could not join.
    replaces: Option<usize>,
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
        self.begin(headroom);
        for i in 0..bufs.len() {
            let (earlier, rest) = bufs.split_at_mut(i);
            let buf = rest[0].as_mut();
            let packet = &buf[headroom..headroom + lens[i]];
            if let Some(new) = self.try_join(packet, earlier, headroom) {
                self.start(new, packet, i, earlier, lens, headroom);
                write_vnet_hdr(buf, headroom, &VirtioNetHdr::VALID);
            }
        }
        self.finish(bufs, lens, headroom)
    }

    /// Coalesces packets taken from `packets` into the buffers `out`, copying each byte once,
    /// and returns the indices of the frames to write, which are `0..n` for some `n`.
    ///
    /// This suits packets that live in buffers of their own layout, such as datagrams
    /// decrypted in place in a GRO buffer. Frame `i` is built at
    /// `out[i][headroom - VNET_HDR_LEN..headroom + lens[i]]`, virtio-net header included;
    /// `out` buffers should have room for 64 KiB after `headroom`. Stops when a packet needs a
    /// frame and `out` has none left, leaving that packet in `packets` for the next call.
    ///
    /// # Panics
    ///
    /// If `headroom < VNET_HDR_LEN`, if `lens` is shorter than `out`, or if an `out` buffer
    /// cannot hold the packet that starts its frame.
    pub fn coalesce_from<'p, B: AsMut<[u8]>, I: Iterator<Item = &'p [u8]>>(
        &mut self,
        packets: &mut Peekable<I>,
        out: &mut [B],
        lens: &mut [usize],
        headroom: usize,
    ) -> &[usize] {
        self.begin(headroom);
        while let Some(&packet) = packets.peek() {
            let frame = self.frames.len();
            if let Some(new) = self.try_join(packet, &mut out[..frame], headroom) {
                let Some(buf) = out.get_mut(frame) else { break };
                let buf = buf.as_mut();
                buf[headroom..headroom + packet.len()].copy_from_slice(packet);
                write_vnet_hdr(buf, headroom, &VirtioNetHdr::VALID);
                lens[frame] = packet.len();
                self.start(new, packet, frame, &mut out[..frame], lens, headroom);
            }
            packets.next();
        }
        let frames = self.frames.len();
        self.finish(&mut out[..frames], lens, headroom)
    }

    fn begin(&mut self, headroom: usize) {
        assert!(headroom >= VNET_HDR_LEN, "headroom must hold a virtio-net header");
        self.flows.clear();
        self.frames.clear();
    }

    /// Appends `packet` to the frame of its flow in `frames` if it may join it; otherwise
    /// says how it starts a frame of its own.
    fn try_join<B: AsMut<[u8]>>(
        &mut self,
        packet: &[u8],
        frames: &mut [B],
        headroom: usize,
    ) -> Option<NewFrame> {
        let Some(headers) =
            Headers::parse_exact(packet).filter(|h| self.udp || h.transport == Transport::Tcp)
        else {
            return Some(NewFrame { headers: None, replaces: None });
        };
        let replaces = self.flows.iter().position(|flow| {
            let head = &frames[flow.frame].as_mut()[headroom..];
            flow.headers.version == headers.version
                && flow.headers.transport == headers.transport
                && flow.headers.addresses(head) == headers.addresses(packet)
                && flow.headers.ports(head) == headers.ports(packet)
        });
        if let Some(flow) = replaces.map(|i| &mut self.flows[i]) {
            let head = frames[flow.frame].as_mut();
            if flow.open && flow.try_append(head, headroom, packet, &headers) {
                return None;
            }
        }
        Some(NewFrame { headers: Some(headers), replaces })
    }

    /// Records that `packet`, now in place as frame `frame`, starts a frame; a flow it
    /// replaces is finished, since nothing may join that frame any more.
    fn start<B: AsMut<[u8]>>(
        &mut self,
        new: NewFrame,
        packet: &[u8],
        frame: usize,
        frames: &mut [B],
        lens: &mut [usize],
        headroom: usize,
    ) {
        self.frames.push(frame);
        let Some(headers) = new.headers else { return };
        let flow = Flow::start(frame, headers, packet);
        match new.replaces {
            Some(i) => {
                let old = std::mem::replace(&mut self.flows[i], flow);
                old.finish(frames[old.frame].as_mut(), &mut lens[old.frame], headroom);
            }
            None => self.flows.push(flow),
        }
    }

    /// Finishes the frames still open and returns the frames to write.
    fn finish<B: AsMut<[u8]>>(
        &mut self,
        frames: &mut [B],
        lens: &mut [usize],
        headroom: usize,
    ) -> &[usize] {
        for flow in &self.flows {
            flow.finish(frames[flow.frame].as_mut(), &mut lens[flow.frame], headroom);
        }
        &self.frames
    }
}

impl Flow {
    fn start(frame: usize, headers: Headers, packet: &[u8]) -> Self {
        let gso_size = packet.len() - headers.len;
        let (open, next_seq) = match headers.transport {
            Transport::Tcp => {
                let seq = headers.tcp_seq(packet).wrapping_add(gso_size as u32);
                (headers.tcp_flags(packet) == tcp_flags::ACK, seq)
            }
            Transport::Udp => (true, 0),
        };
        Self {
            frame,
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

    /// Writes the final headers and the virtio-net header of a frame of several segments
    /// (a lone packet keeps its own, and the `DATA_VALID` header written when it was placed),
    /// and the frame's length to `len`.
    fn finish(&self, frame_buf: &mut [u8], len: &mut usize, headroom: usize) {
        *len = self.len;
        if self.segments == 1 {
            return;
        }
        let frame = &mut frame_buf[headroom..headroom + self.len];
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
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            gso_type,
            // The casts cannot truncate: all are bounded by MAX_FRAME_LEN.
            hdr_len: self.headers.len as u16,
            gso_size: self.gso_size as u16,
            csum_start: self.headers.l4_offset as u16,
            csum_offset: self.headers.checksum_offset() as u16,
        };
        write_vnet_hdr(frame_buf, headroom, &hdr);
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
