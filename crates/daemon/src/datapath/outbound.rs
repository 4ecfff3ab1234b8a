//! TUN → UDP: what a lane does with the frames it reads from its TUN queue.
//!
//! Each read returns a packet or a TCP/UDP superframe of up to 64 KiB. A lane reads several
//! frames per turn and cuts them into MTU-sized packets straight into send buffers that leave
//! room for the WireGuard header in front and the padding and tag behind. One lock
//! acquisition then routes them all and claims a session for each run of packets to the same
//! peer; sealing runs without the lock, and each run leaves in one `sendmmsg`, its equal-sized
//! datagrams as GSO batches.

use std::time::Instant;

use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::{DATA_HEADER_LEN, TAG_LEN};
use wgfabric_proto::{NotReady, Outbound, PeerId};
use wgfabric_sys::offload::{segment, GsoType, VirtioNetHdr, VNET_HDR_LEN};
use wgfabric_sys::tun::MAX_FRAME_LEN;
use wgfabric_sys::SendBatch;

use super::send::{flush, send};
use super::Shared;

/// Packets gathered from the TUN before they are sent.
const BATCH: usize = 128;

/// Packets to one peer, next to each other in the batch.
struct Run {
    start: usize,
    end: usize,
    peer: PeerId,
    outbound: Outbound,
}

/// A lane's outbound buffers.
pub(super) struct Buffers {
    lane: usize,
    /// Where the lane reads TUN frames into.
    pub(super) frame: Vec<u8>,
    /// One buffer per packet: header room, packet, padding and tag room.
    segments: Vec<Vec<u8>>,
    lens: Vec<usize>,
    /// Datagram lengths after sealing.
    sealed: Vec<usize>,
    /// Packets gathered so far.
    count: usize,
    runs: Vec<Run>,
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
            count: 0,
            runs: Vec::new(),
            batch: SendBatch::new(64),
        }
    }

    /// Whether enough packets are gathered to send them before reading more.
    pub(super) fn is_full(&self) -> bool {
        self.count >= BATCH
    }

    /// Makes room for `more` packets of up to `packet_len` bytes each after those gathered.
    fn reserve(&mut self, more: usize, packet_len: usize) {
        let size = DATA_HEADER_LEN + packet_len.next_multiple_of(16) + TAG_LEN;
        if self.segments.first().is_some_and(|b| b.len() < size) {
            // The MTU grew: every buffer must hold the larger packets.
            for buf in &mut self.segments {
                buf.resize(size, 0);
            }
        }
        while self.segments.len() < self.count + more {
            self.segments.push(vec![0; size]);
        }
        self.lens.resize(self.segments.len(), 0);
        self.sealed.resize(self.segments.len(), 0);
    }

    /// Cuts the `n`-byte frame in `self.frame` into packets gathered for sending.
    pub(super) fn add_frame(&mut self, n: usize, vnet: bool, mtu: usize) {
        if let Err(reason) = self.split(n, vnet, mtu) {
            tracing::trace!(reason, "dropping an unusable frame from the TUN device");
        }
    }

    fn split(&mut self, n: usize, vnet: bool, mtu: usize) -> Result<(), &'static str> {
        let at = self.count;
        if !vnet {
            self.reserve(1, n.max(mtu));
            self.segments[at][DATA_HEADER_LEN..DATA_HEADER_LEN + n]
                .copy_from_slice(&self.frame[..n]);
            self.lens[at] = n;
            self.count += 1;
            return Ok(());
        }
        let hdr = VirtioNetHdr::parse(&self.frame[..n]).map_err(|_| "bad virtio-net header")?;
        let payload = n - VNET_HDR_LEN;
        let gso = usize::from(hdr.gso_size);
        let (count, largest) = if gso == 0 || hdr.gso_type == GsoType::None {
            (1, payload)
        } else {
            // Each segment is the headers (IP, extension headers, TCP with options) plus `gso`
            // payload bytes; 256 bytes covers any header chain the kernel builds.
            (payload.div_ceil(gso).max(1), (gso + 256).min(payload))
        };
        self.reserve(count, largest.max(mtu));
        let Self { frame, segments, lens, .. } = self;
        let packet = &frame[VNET_HDR_LEN..n];
        let written = segment(
            packet,
            &hdr,
            &mut segments[at..at + count],
            &mut lens[at..at + count],
            DATA_HEADER_LEN,
        )
        .map_err(|_| "frame cannot be segmented")?;
        self.count += written;
        Ok(())
    }

    fn packet(&self, i: usize) -> &[u8] {
        &self.segments[i][DATA_HEADER_LEN..DATA_HEADER_LEN + self.lens[i]]
    }
}

/// Routes, seals and sends every gathered packet, then starts a new batch.
pub(super) fn transmit(shared: &Shared, bufs: &mut Buffers) {
    let (count, mtu, now) = (bufs.count, shared.mtu(), Instant::now());
    bufs.count = 0;
    bufs.runs.clear();
    let ((), outbox) = shared.with_device(|device| {
        // Each packet is routed once (unroutable ones are counted as dropped); runs of
        // packets to one peer share a claim.
        let mut start = 0;
        let mut current = None;
        for k in 0..=count {
            let route = (k < count).then(|| device.route_packet(bufs.packet(k)).ok());
            if k < count && route == current {
                continue;
            }
            if let Some(Some(peer)) = current {
                let wire_bytes: usize =
                    bufs.lens[start..k].iter().map(|&len| sealed_len(len, mtu)).sum();
                match device.prepare_send(now, peer, wire_bytes as u64) {
                    Ok(outbound) => bufs.runs.push(Run { start, end: k, peer, outbound }),
                    Err(NotReady::NoSession) => {
                        for i in start..k {
                            device.stage_packet(now, peer, bufs.packet(i));
                        }
                    }
                    Err(NotReady::NoEndpoint) => {}
                }
            }
            (start, current) = (k, route);
        }
    });
    flush(shared, bufs.lane, &mut bufs.batch, outbox);
    if bufs.runs.is_empty() {
        return;
    }
    let sockets = shared.sockets();
    let Buffers { segments, lens, sealed, runs, batch, lane, .. } = bufs;
    for run in runs.iter() {
        let mut end = run.start;
        for i in run.start..run.end {
            match run.outbound.session.seal(&mut segments[i], lens[i], mtu) {
                Ok(n) => sealed[i] = n,
                Err(e) => {
                    // Only a session that ran out of counters refuses; the next packet rekeys.
                    tracing::debug!(error = ?e, "sealing failed; dropping the rest of the run");
                    break;
                }
            }
            end += 1;
        }
        let datagrams =
            segments[run.start..end].iter().zip(&sealed[run.start..end]).map(|(b, &n)| &b[..n]);
        send(shared, &sockets, *lane, batch, Some(run.peer), run.outbound.endpoint, datagrams);
    }
}
