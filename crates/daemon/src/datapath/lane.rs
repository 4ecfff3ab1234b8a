//! A lane: one thread that serves one TUN queue and its own UDP sockets.
//!
//! A lane runs every packet to completion: a datagram it decrypts and writes to the TUN often
//! causes an immediate answer from the local stack (an ICMP echo reply, a TCP ACK), which the
//! same lane reads back at once instead of waking another thread. Every thread wake-up costs
//! tens of microseconds on a virtual machine, so this is where the tunnel's latency is won.
//! When the traffic says the next packet is about to arrive (packets that keep a steady
//! period), an idle lane polls briefly instead of sleeping, so that packet finds it awake:
//! see [`super::poll`]. A lane whose traffic is light gathers on one home CPU with the other
//! lanes and the applications it serves, where no wake-up has to rouse a halted CPU: see
//! [`super::gather`].
//!
//! Lanes scale across cores without reordering: each lane has its own UDP sockets in an
//! `SO_REUSEPORT` group, where the kernel sends all of a peer's datagrams to one socket, and
//! the TUN device steers each flow's packets to the queue that last wrote that flow, so the
//! reply to a packet a lane delivered comes back to the same lane.

use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgfabric_sys::{set_precise_timers, Error, UdpSocket};

use super::gather::{Gathering, Home};
use super::inbound::Inbound;
use super::outbound::{transmit, Buffers};
use super::poll::{Ending, Waiter};
use super::{interface_gone, Shared, Sockets};

/// Frames read from the TUN queue (and sent as one batch) before the sockets get a turn.
const FRAMES_PER_TURN: usize = 32;

/// Why a lane stops.
enum Stop {
    /// The daemon is stopping.
    Shutdown,
    /// The interface was deleted.
    InterfaceGone,
}

pub(super) fn run(shared: &Shared, queue: usize, busy_poll: Duration, home: Option<Home>) {
    let Some(tun) = shared.tun.queues().get(queue) else { return };
    let mut gathering = home.and_then(|home| Gathering::start(queue, home));
    let vnet = tun.has_vnet_hdr();
    let mut outbound = Buffers::new(queue);
    let mut inbound = Inbound::new(queue, vnet, shared.tun.offloads().uso);
    let mut sockets = shared.sockets();
    let mut waiter = Waiter::new(busy_poll, Instant::now());
    if !busy_poll.is_zero() {
        // The waiter's timed sleeps end just before an expected packet.
        if let Err(e) = set_precise_timers() {
            tracing::debug!(error = %e, "lane timers keep the default slack");
        }
    }
    // Which descriptors may have packets waiting. A descriptor is read again only when poll
    // says it is ready, when its last read filled a batch, or (the TUN) after a delivery,
    // whose answer the local stack may have queued already: a lane about to sleep makes no
    // reads that can only fail.
    let mut tun_ready = true;
    let mut udp_ready = [true; 2];
    loop {
        let mut sent = false;
        let mtu = shared.mtu();
        if std::mem::take(&mut tun_ready) {
            let mut frames = 0;
            while frames < FRAMES_PER_TURN && !outbound.is_full() {
                match tun.try_read(&mut outbound.frame) {
                    Ok(Some(n)) => {
                        outbound.add_frame(n, vnet, mtu);
                        sent = true;
                        frames += 1;
                    }
                    Ok(None) => break,
                    Err(e) => match stop(shared, e) {
                        Some(Stop::InterfaceGone) => return interface_gone(shared),
                        Some(Stop::Shutdown) => return,
                        None => break,
                    },
                }
            }
            // Stopped for a turn, not because the queue ran dry.
            tun_ready = frames == FRAMES_PER_TURN || outbound.is_full();
        }
        if sent {
            transmit(shared, &mut outbound);
        }
        let mut received = false;
        let mut retired = false;
        for (ready, socket) in udp_ready.iter_mut().zip(udp(&sockets, queue)) {
            if !std::mem::take(ready) {
                continue;
            }
            match inbound.poll(shared, socket, tun) {
                Ok(batch) => {
                    received |= batch.any;
                    *ready = !batch.drained;
                }
                Err(Error::Shutdown) if shared.io_shutdown.is_triggered() => return,
                Err(Error::Shutdown) => retired = true,
                Err(e) => tracing::warn!(error = %e, "receiving from the UDP socket failed"),
            }
        }
        if retired {
            // The listen port changed: switch to the new sockets.
            sockets = shared.sockets();
            udp_ready = [true; 2];
        }
        tun_ready |= received;
        if sent || received {
            waiter.worked(if received { Ending::Received } else { Ending::Sent });
        }
        if tun_ready || udp_ready.contains(&true) {
            continue;
        }
        let mut fds = [tun.as_fd(); 3];
        let mut watched = 1;
        for socket in udp(&sockets, queue) {
            fds[watched] = socket.as_fd();
            watched += 1;
        }
        let may_poll = gathering.as_ref().is_none_or(Gathering::may_poll);
        let signals = [&shared.io_shutdown, &sockets.retire];
        match waiter.wait(&fds[..watched], &signals, may_poll) {
            Ok(ready) => {
                tun_ready = ready.contains(0);
                for (index, flag) in udp_ready.iter_mut().enumerate() {
                    *flag = ready.contains(index + 1);
                }
                if let Some(gathering) = &mut gathering {
                    gathering.woke(waiter.loaded(), waiter.idle_since());
                }
            }
            Err(Error::Shutdown) if shared.io_shutdown.is_triggered() => return,
            Err(Error::Shutdown) => {
                sockets = shared.sockets();
                (tun_ready, udp_ready) = (true, [true; 2]);
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for packets failed");
                (tun_ready, udp_ready) = (true, [true; 2]);
            }
        }
    }
}

/// The sockets lane `lane` reads.
fn udp(sockets: &Arc<Sockets>, lane: usize) -> impl Iterator<Item = &UdpSocket> {
    sockets.udp.lane(lane).into_iter().flat_map(|(v4, v6)| std::iter::once(v4).chain(v6))
}

/// Whether a TUN read error ends the lane.
fn stop(shared: &Shared, error: Error) -> Option<Stop> {
    match error {
        Error::Shutdown => Some(Stop::Shutdown),
        Error::LinkDeleted => Some(Stop::InterfaceGone),
        e => {
            if !shared.io_shutdown.is_triggered() {
                tracing::warn!(error = %e, "reading from the TUN device failed");
            }
            None
        }
    }
}
