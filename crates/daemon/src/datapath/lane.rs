//! A lane: one thread that serves one TUN queue and its own UDP sockets.
//!
//! A lane runs every packet to completion: a datagram it decrypts and writes to the TUN often
//! causes an immediate answer from the local stack (an ICMP echo reply, a TCP ACK), which the
//! same lane reads back at once instead of waking another thread. Every thread wake-up costs
//! tens of microseconds on a virtual machine, so this is where the tunnel's latency is won.
//! After traffic stops, a lane keeps polling for a while (`--busy-poll`) before it sleeps, so
//! the next packet of a conversation finds it awake: see [`Waiter`].
//!
//! Lanes scale across cores without reordering: each lane has its own UDP sockets in an
//! `SO_REUSEPORT` group, where the kernel sends all of a peer's datagrams to one socket, and
//! the TUN device steers each flow's packets to the queue that last wrote that flow, so the
//! reply to a packet a lane delivered comes back to the same lane.

use std::os::fd::{AsFd as _, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgfabric_sys::{set_idle_policy, wait_readable, Error, Shutdown, UdpSocket};

use super::inbound::Inbound;
use super::outbound::{transmit, Buffers};
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

pub(super) fn run(shared: &Shared, queue: usize, busy_poll: Duration) {
    let Some(tun) = shared.tun.queues().get(queue) else { return };
    let vnet = tun.has_vnet_hdr();
    let mut outbound = Buffers::new(queue);
    let mut inbound = Inbound::new(queue, vnet, shared.tun.offloads().uso);
    let mut sockets = shared.sockets();
    let mut waiter = Waiter::new(busy_poll);
    loop {
        let mut worked = false;
        let mtu = shared.mtu();
        for _ in 0..FRAMES_PER_TURN {
            match tun.try_read(&mut outbound.frame) {
                Ok(Some(n)) => {
                    outbound.add_frame(n, vnet, mtu);
                    worked = true;
                    if outbound.is_full() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => match stop(shared, e) {
                    Some(Stop::InterfaceGone) => return interface_gone(shared),
                    Some(Stop::Shutdown) => return,
                    None => break,
                },
            }
        }
        if worked {
            transmit(shared, &mut outbound);
        }
        let mut retired = false;
        for socket in udp(&sockets, queue) {
            match inbound.poll(shared, socket, tun) {
                Ok(got) => worked |= got,
                Err(Error::Shutdown) if shared.io_shutdown.is_triggered() => return,
                Err(Error::Shutdown) => retired = true,
                Err(e) => tracing::warn!(error = %e, "receiving from the UDP socket failed"),
            }
        }
        if retired {
            // The listen port changed: switch to the new sockets.
            sockets = shared.sockets();
        }
        if worked {
            waiter.worked();
            continue;
        }
        let mut fds = [tun.as_fd(); 3];
        let mut watched = 1;
        for socket in udp(&sockets, queue) {
            fds[watched] = socket.as_fd();
            watched += 1;
        }
        match waiter.wait(&fds[..watched], &[&shared.io_shutdown, &sockets.retire]) {
            Ok(()) => {}
            Err(Error::Shutdown) if shared.io_shutdown.is_triggered() => return,
            Err(Error::Shutdown) => sockets = shared.sockets(),
            Err(e) => tracing::warn!(error = %e, "waiting for packets failed"),
        }
    }
}

/// A gap this long between two polls means other threads are keeping this lane off its CPU
/// (polling lanes sharing a CPU take turns of a few microseconds; a busy thread beside an
/// idle-priority one lets it run about every 200 µs).
const CONTENDED: Duration = Duration::from_micros(500);

/// How an idle lane waits for its next packet.
///
/// Waking a sleeping thread takes an interrupt to its CPU, and on a virtual machine whose CPU
/// has halted, a trip through the hypervisor: tens of microseconds, which would be most of
/// the tunnel's round trip. So for `busy_poll` after its last work a lane keeps looking for
/// packets instead, under `SCHED_IDLE`: it runs only when its CPU has nothing else to do, so
/// the polling takes no time from any other thread (they preempt it at once), and the lane
/// returns to the normal policy before it touches a packet, so it never holds a lock at idle
/// priority. After that it sleeps until a descriptor is readable.
///
/// A lane polling on a CPU that other work wants gets a turn only now and then, and a packet
/// for it would wait for that turn; a sleeping lane is instead woken wherever the scheduler
/// finds room. So a lane that notices it was kept off its CPU ([`CONTENDED`]) stops polling
/// and sleeps, and polls again after its next packet, wherever it was woken.
struct Waiter {
    busy_poll: Duration,
    last_work: Instant,
}

impl Waiter {
    fn new(busy_poll: Duration) -> Self {
        Self { busy_poll, last_work: Instant::now() }
    }

    /// Notes that the lane just did work.
    fn worked(&mut self) {
        self.last_work = Instant::now();
    }

    /// Returns when one of `fds` is readable (or one of `signals` triggers).
    fn wait(&mut self, fds: &[BorrowedFd<'_>], signals: &[&Shutdown]) -> Result<(), Error> {
        if self.poll_idle(fds, signals)? {
            return Ok(());
        }
        wait_readable(fds, signals, None).map(drop)
    }

    /// Polls at idle priority until something is readable (true), or until `busy_poll` has
    /// passed since the last work or the lane was kept off its CPU (false).
    fn poll_idle(&mut self, fds: &[BorrowedFd<'_>], signals: &[&Shutdown]) -> Result<bool, Error> {
        let until = self.last_work + self.busy_poll;
        if Instant::now() >= until {
            return Ok(false);
        }
        if let Err(e) = set_idle_policy(true) {
            tracing::debug!(error = %e, "busy polling turned off: cannot use SCHED_IDLE");
            self.busy_poll = Duration::ZERO;
            return Ok(false);
        }
        let mut turn = Instant::now();
        let polled = loop {
            match wait_readable(fds, signals, Some(Duration::ZERO)) {
                Ok(false) => {
                    let now = Instant::now();
                    if now >= until || now.duration_since(turn) > CONTENDED {
                        break Ok(false);
                    }
                    turn = now;
                    std::thread::yield_now();
                }
                result => break result,
            }
        };
        if let Err(e) = set_idle_policy(false) {
            // Checked at start-up (`idle_policy_is_reversible`), so only a changed limit gets
            // here; staying at idle priority would starve the lane under load.
            tracing::error!(error = %e, "a lane cannot leave SCHED_IDLE; it stays slow under load");
            self.busy_poll = Duration::ZERO;
        }
        polled
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
