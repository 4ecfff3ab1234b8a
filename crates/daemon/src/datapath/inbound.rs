//! UDP → TUN: what a lane does with a batch received from its UDP sockets.
//!
//! A receive returns a batch of messages, each possibly a GRO run of datagrams from one
//! sender. Transport data is decrypted in place: one lock acquisition looks up the sessions of
//! the whole batch, decryption runs without the lock, and a second acquisition judges the
//! results (replay is already checked by the session; here the inner source address, roaming
//! and timers). Delivered packets are coalesced into TCP/UDP superframes before the TUN write.
//! Handshake messages go through the admission gate here, before anything is queued: a flood
//! of them costs this thread a MAC each (and a cookie reply for those over budget), never a
//! Diffie-Hellman.

use std::sync::Arc;
use std::time::Instant;

use wgfabric_proto::wire::{DataHeader, MessageType, DATA_HEADER_LEN};
use wgfabric_proto::{DropReason, Endpoint, Session, SourceAddr, Verdict};
use wgfabric_sys::offload::{Coalescer, VNET_HDR_LEN};
use wgfabric_sys::{Error, RecvBatch, RecvMeta, SendBatch, TunQueue, UdpSocket};

use super::handshakes::{self, Arrival};
use super::send::flush;
use super::{interface_gone, Shared};

/// Messages per receive call; each holds up to 64 KiB of GRO-coalesced datagrams.
const MESSAGES: usize = 16;
/// Packets coalesced per TUN write batch.
const COALESCE: usize = 64;
/// Datagrams per `sendmmsg` for what a received batch makes us send: keepalives, queued
/// packets after a handshake, and under a handshake flood, a cookie reply per message.
const REPLIES: usize = 64;
const GRO_BUF: usize = 65535;

/// One transport datagram of the batch.
#[derive(Debug, Clone, Copy)]
struct Job {
    msg: usize,
    offset: usize,
    len: usize,
    from: Endpoint,
    /// Index into the batch's sessions, once looked up.
    session: Option<usize>,
    /// Plaintext length after opening.
    opened: Option<usize>,
    /// Why it did not open.
    failed: Option<DropReason>,
    /// Length of the packet to deliver, once judged.
    deliver: Option<usize>,
}

/// A lane's inbound buffers.
pub(super) struct Inbound {
    lane: usize,
    recv: RecvBatch,
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    jobs: Vec<Job>,
    arrivals: Vec<Arrival>,
    sessions: Vec<Arc<Session>>,
    malformed: u64,
    out: Vec<Vec<u8>>,
    out_lens: Vec<usize>,
    coalescer: Coalescer,
    send: SendBatch,
}

impl Inbound {
    pub(super) fn new(lane: usize, vnet: bool, uso: bool) -> Self {
        Self {
            lane,
            recv: RecvBatch::new(MESSAGES),
            bufs: vec![vec![0; GRO_BUF]; MESSAGES],
            metas: vec![RecvMeta::default(); MESSAGES],
            jobs: Vec::new(),
            arrivals: Vec::new(),
            sessions: Vec::new(),
            malformed: 0,
            out: if vnet { vec![vec![0; VNET_HDR_LEN + GRO_BUF]; COALESCE] } else { Vec::new() },
            out_lens: vec![0; COALESCE],
            coalescer: Coalescer::new(uso),
            send: SendBatch::new(REPLIES),
        }
    }

    /// Receives what is queued on `socket` without waiting and delivers it to `tun`.
    pub(super) fn poll(
        &mut self,
        shared: &Shared,
        socket: &UdpSocket,
        tun: &TunQueue,
    ) -> Result<Received, Error> {
        let count = socket.try_recv(&mut self.recv, &mut self.bufs, &mut self.metas)?;
        if count > 0 {
            decrypt(shared, self, count);
            deliver(shared, tun, self);
        }
        Ok(Received { any: count > 0, drained: count < MESSAGES })
    }
}

/// What one receive found on a socket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Received {
    /// Whether there was anything.
    pub(super) any: bool,
    /// Whether the socket's queue was empty by the end: the batch was not full.
    pub(super) drained: bool,
}

/// Decrypts and judges the transport data of the `count` messages just received.
fn decrypt(shared: &Shared, st: &mut Inbound, count: usize) {
    st.jobs.clear();
    st.arrivals.clear();
    st.sessions.clear();
    for (msg, meta) in st.metas[..count].iter().enumerate() {
        let from = Endpoint {
            addr: meta.src,
            src: meta.dst.map(|local| SourceAddr { ip: local.ip, ifindex: local.ifindex }),
        };
        let mut offset = 0;
        for datagram in meta.datagrams(&st.bufs[msg]) {
            match MessageType::of(datagram) {
                Some(MessageType::Data) => st.jobs.push(Job {
                    msg,
                    offset,
                    len: datagram.len(),
                    from,
                    session: None,
                    opened: None,
                    failed: None,
                    deliver: None,
                }),
                Some(_) => st.arrivals.push(Arrival::new(from, (msg, offset, datagram.len()))),
                None => st.malformed += 1,
            }
            offset += datagram.len();
        }
    }
    if !st.arrivals.is_empty() {
        handshakes::admit(shared, st.lane, &mut st.send, &mut st.arrivals, &st.bufs);
    }
    if st.jobs.is_empty() {
        return;
    }

    let now = Instant::now();
    let Inbound { bufs, jobs, sessions, .. } = st;
    let ((), outbox) = shared.with_device(|device| {
        for job in jobs.iter_mut() {
            let datagram = &bufs[job.msg][job.offset..job.offset + job.len];
            let Some(index) = DataHeader::parse(datagram).map(|h| h.receiver) else { continue };
            job.session = match sessions.iter().position(|s| s.local_index() == index) {
                Some(known) => Some(known),
                None => device.session(now, index).map(|s| {
                    sessions.push(s);
                    sessions.len() - 1
                }),
            };
            if job.session.is_none() {
                device.stats_mut().record_drop(DropReason::UnknownSession, 1);
            }
        }
    });
    flush(shared, st.lane, &mut st.send, outbox);

    for job in st.jobs.iter_mut() {
        let Some(session) = job.session.map(|i| &st.sessions[i]) else { continue };
        let datagram = &mut st.bufs[job.msg][job.offset..job.offset + job.len];
        match session.open(datagram) {
            Ok(opened) => job.opened = Some(opened.len),
            Err(e) => job.failed = Some(DropReason::from(e)),
        }
    }

    let malformed = std::mem::take(&mut st.malformed);
    let Inbound { bufs, jobs, sessions, .. } = st;
    let ((), outbox) = shared.with_device(|device| {
        device.stats_mut().record_drop(DropReason::Malformed, malformed);
        for job in jobs.iter_mut() {
            if let Some(reason) = job.failed {
                device.stats_mut().record_drop(reason, 1);
            }
            let (Some(session), Some(len)) = (job.session, job.opened) else { continue };
            let start = job.offset + DATA_HEADER_LEN;
            let plaintext = &bufs[job.msg][start..start + len];
            if let Verdict::Deliver { len } =
                device.receive_data(now, &sessions[session], job.from, plaintext, job.len)
            {
                job.deliver = Some(len);
            }
        }
    });
    flush(shared, st.lane, &mut st.send, outbox);
}

/// Writes the delivered packets to the TUN device, coalesced when it takes superframes: each
/// packet is copied once, from where it was decrypted into the frame it joins.
fn deliver(shared: &Shared, tun: &TunQueue, st: &mut Inbound) {
    let Inbound { jobs, bufs, out, out_lens, coalescer, .. } = st;
    let mut delivered = jobs
        .iter()
        .filter_map(|j| {
            let start = j.offset + DATA_HEADER_LEN;
            j.deliver.map(|len| &bufs[j.msg][start..start + len])
        })
        .peekable();
    if !tun.has_vnet_hdr() {
        for packet in delivered {
            write(shared, tun, packet);
        }
        return;
    }
    while delivered.peek().is_some() {
        for &i in coalescer.coalesce_from(&mut delivered, out, out_lens, VNET_HDR_LEN) {
            write(shared, tun, &out[i][..VNET_HDR_LEN + out_lens[i]]);
        }
    }
}

/// Writes one frame to the TUN queue; a deleted interface stops the daemon.
fn write(shared: &Shared, tun: &TunQueue, frame: &[u8]) {
    match tun.write(frame) {
        Ok(()) | Err(Error::Shutdown) => {}
        Err(Error::LinkDeleted) => interface_gone(shared),
        Err(e) => tracing::debug!(error = %e, "writing to the TUN device failed"),
    }
}
