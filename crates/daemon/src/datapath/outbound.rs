//! TUN → UDP: what a lane does with a frame read from its TUN queue.
//!
//! Each read returns a packet or a TCP/UDP superframe of up to 64 KiB. The superframe is cut
//! into MTU-sized packets straight into send buffers that leave room for the WireGuard header
//! in front and the padding and tag behind; all of them go to the same peer, so one lock
//! acquisition claims the session for the whole frame, sealing runs without the lock, and the
//! sealed datagrams leave in one GSO send.

use std::time::Instant;

use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::{DATA_HEADER_LEN, TAG_LEN};
use wgfabric_proto::{NotReady, Outbound};
use wgfabric_sys::offload::{segment, VirtioNetHdr, VNET_HDR_LEN};
use wgfabric_sys::tun::MAX_FRAME_LEN;
use wgfabric_sys::SendBatch;

use super::send::{flush, send};
use super::Shared;

/// A lane's outbound buffers.
pub(super) struct Buffers {
    lane: usize,
    /// Where the lane reads TUN frames into.
    pub(super) frame: Vec<u8>,
    /// One buffer per segment: header room, packet, padding and tag room.
    segments: Vec<Vec<u8>>,
    lens: Vec<usize>,
    /// Datagram lengths after sealing.
    sealed: Vec<usize>,
    batch: SendBatch,
}

impl Buffers {
    pub(super) fn new(lane: usize) -> Self {
        Self {
            lane,
            frame: vec![0; MAX_FRAME_LEN],
            segments: Vec::new(),
            lens: Vec::new(),
            sealed: Vec::new(),
            batch: SendBatch::new(64),
        }
    }

    /// Makes room for `count` segments of up to `packet_len` bytes each.
    fn reserve(&mut self, count: usize, packet_len: usize) {
        reserve(&mut self.segments, count, packet_len);
        self.lens.resize(self.segments.len(), 0);
        self.sealed.resize(self.segments.len(), 0);
    }
}

fn reserve(segments: &mut Vec<Vec<u8>>, count: usize, packet_len: usize) {
    let size = DATA_HEADER_LEN + packet_len.next_multiple_of(16) + TAG_LEN;
    if segments.first().is_some_and(|b| b.len() < size) {
        segments.clear();
    }
    while segments.len() < count {
        segments.push(vec![0; size]);
    }
}

/// Sends the `n`-byte frame in `bufs.frame` to its peer.
pub(super) fn handle_frame(shared: &Shared, bufs: &mut Buffers, n: usize, vnet: bool) {
    match split(bufs, n, vnet, shared.mtu()) {
        Ok(count) => transmit(shared, bufs, count),
        Err(reason) => tracing::trace!(reason, "dropping an unusable frame from the TUN device"),
    }
}

/// Puts the frame's packets into the segment buffers; returns how many.
fn split(bufs: &mut Buffers, n: usize, vnet: bool, mtu: usize) -> Result<usize, &'static str> {
    if !vnet {
        bufs.reserve(1, n.max(mtu));
        bufs.segments[0][DATA_HEADER_LEN..DATA_HEADER_LEN + n].copy_from_slice(&bufs.frame[..n]);
        bufs.lens[0] = n;
        return Ok(1);
    }
    let Buffers { frame, segments, lens, sealed, .. } = bufs;
    let frame = &frame[..n];
    let hdr = VirtioNetHdr::parse(frame).map_err(|_| "bad virtio-net header")?;
    let packet = &frame[VNET_HDR_LEN..];
    let gso = usize::from(hdr.gso_size);
    let (count, largest) = if gso == 0 || hdr.gso_type == wgfabric_sys::offload::GsoType::None {
        (1, packet.len())
    } else {
        // Each segment is the headers (IP, extension headers, TCP with options) plus `gso`
        // payload bytes; 256 bytes covers any header chain the kernel builds.
        (packet.len().div_ceil(gso).max(1), (gso + 256).min(packet.len()))
    };
    reserve(segments, count, largest.max(mtu));
    lens.resize(segments.len(), 0);
    sealed.resize(segments.len(), 0);
    segment(packet, &hdr, &mut segments[..count], &mut lens[..count], DATA_HEADER_LEN)
        .map_err(|_| "frame cannot be segmented")
}

/// Routes, seals and sends `count` packets that share a destination.
fn transmit(shared: &Shared, bufs: &mut Buffers, count: usize) {
    let mtu = shared.mtu();
    let now = Instant::now();
    let first = &bufs.segments[0][DATA_HEADER_LEN..DATA_HEADER_LEN + bufs.lens[0]];
    let wire_bytes: usize = bufs.lens[..count].iter().map(|&len| sealed_len(len, mtu)).sum();
    let (claim, outbox) = shared.with_device(|device| {
        let peer = device.route_packet(first).ok()?;
        match device.prepare_send(now, peer, wire_bytes as u64) {
            Ok(outbound) => Some((peer, outbound)),
            Err(NotReady::NoSession) => {
                for (buf, &len) in bufs.segments[..count].iter().zip(&bufs.lens) {
                    device.stage_packet(now, peer, &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]);
                }
                None
            }
            Err(NotReady::NoEndpoint) => None,
        }
    });
    flush(shared, bufs.lane, &mut bufs.batch, outbox);
    let Some((peer, Outbound { session, endpoint })) = claim else { return };

    let mut sealed = 0;
    for i in 0..count {
        match session.seal(&mut bufs.segments[i], bufs.lens[i], mtu) {
            Ok(n) => bufs.sealed[i] = n,
            Err(e) => {
                // Only a session that ran out of counters refuses; the next frame rekeys.
                tracing::debug!(error = ?e, "sealing failed; dropping the rest of the frame");
                break;
            }
        }
        sealed += 1;
    }
    let datagrams = bufs.segments[..sealed].iter().zip(&bufs.sealed).map(|(b, &n)| &b[..n]);
    let sockets = shared.sockets();
    send(shared, &sockets, bufs.lane, &mut bufs.batch, Some(peer), endpoint, datagrams);
}
