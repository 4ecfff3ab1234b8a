//! Handshake admission on the lanes, the handshake queues, and the handshake thread.
//!
//! Handshake messages cost Diffie-Hellman operations, so they are taken off the receive lanes.
//! A lane first runs each one through the shared [`Admission`] gate: a wrong `mac1` is
//! dropped, a source over its budget (or any sender without a cookie while the device is under
//! load) gets a cookie reply from the lane itself, and only the rest is copied into a queue, so
//! a flood cannot fill the queue ahead of a legitimate peer. There are two bounded queues of
//! fixed-size slots: messages whose sender proved its address with a cookie go to their own
//! and are taken first. Nothing a message leaves behind outlives it, apart from a rate-limit
//! bucket in a bounded table.
//!
//! The normal queue's length is the load signal, as in the kernel module: once it is an eighth
//! full, the device is under load for the next second, and every sender without a cookie is
//! asked for one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wgfabric_proto::admission::{Admission, Admit, Priority};
use wgfabric_proto::wire::INITIATION_LEN;
use wgfabric_proto::{DropReason, Endpoint, Stats};
use wgfabric_sys::{LocalAddr, SendBatch};

use super::send::flush;
use super::Shared;

/// Slots in each queue. At about 25,000 Diffie-Hellman operations a second per core, a full
/// queue is tens of milliseconds of work.
pub(super) const CAPACITY: usize = 1024;
const UNDER_LOAD_AT: usize = CAPACITY / 8;
const UNDER_LOAD_FOR: Duration = Duration::from_secs(1);

/// A copy of an admitted handshake message, in a slot that fits the longest one.
struct Queued {
    from: Endpoint,
    len: usize,
    bytes: [u8; INITIATION_LEN],
}

struct Queues {
    proven: VecDeque<Queued>,
    normal: VecDeque<Queued>,
    closed: bool,
}

impl Queues {
    fn len(&self) -> usize {
        self.proven.len() + self.normal.len()
    }
}

/// The admission gate the lanes share, with the counts of what it turned away (added to the
/// device's counters when they are read).
pub(super) struct Gate {
    pub(super) admission: Admission,
    pub(super) stats: Stats,
}

/// Handshake messages waiting for the handshake thread.
pub(super) struct HandshakeQueue {
    queues: Mutex<Queues>,
    ready: Condvar,
    /// Messages dropped because their queue was full.
    overflowed: AtomicU64,
    /// The longest the queues have been together.
    peak: AtomicUsize,
    /// Load is signalled until this many nanoseconds after `epoch`.
    under_load_until: AtomicU64,
    epoch: Instant,
}

impl Default for HandshakeQueue {
    fn default() -> Self {
        Self {
            queues: Mutex::new(Queues {
                proven: VecDeque::with_capacity(CAPACITY),
                normal: VecDeque::with_capacity(CAPACITY),
                closed: false,
            }),
            ready: Condvar::new(),
            overflowed: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            under_load_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl HandshakeQueue {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether handshake work is piling up: the normal queue was an eighth full within the
    /// last second.
    pub(super) fn under_load(&self, now: Instant) -> bool {
        self.nanos(now) < self.under_load_until.load(Ordering::Relaxed)
    }

    /// Queues a copy of an admitted handshake message, or drops it when its queue is full.
    fn push(&self, priority: Priority, from: Endpoint, datagram: &[u8], now: Instant) {
        if datagram.len() > INITIATION_LEN {
            return;
        }
        let mut queues = self.lock();
        if queues.closed {
            return;
        }
        let queue = match priority {
            Priority::Proven => &mut queues.proven,
            Priority::Normal => &mut queues.normal,
        };
        if queue.len() >= CAPACITY {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut slot = Queued { from, len: datagram.len(), bytes: [0; INITIATION_LEN] };
        slot.bytes[..datagram.len()].copy_from_slice(datagram);
        queue.push_back(slot);
        if queues.normal.len() >= UNDER_LOAD_AT {
            let until = self.nanos(now + UNDER_LOAD_FOR);
            self.under_load_until.store(until, Ordering::Relaxed);
        }
        self.peak.fetch_max(queues.len(), Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// The next message, proven senders first; `None` once closed.
    fn pop(&self) -> Option<Queued> {
        let queues = self.lock();
        let mut queues = self
            .ready
            .wait_while(queues, |q| q.len() == 0 && !q.closed)
            .unwrap_or_else(PoisonError::into_inner);
        if queues.closed {
            return None;
        }
        queues.proven.pop_front().or_else(|| queues.normal.pop_front())
    }

    /// Wakes the handshake thread for good.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The queues' length now and the longest they have been.
    pub(super) fn depth(&self) -> (usize, usize) {
        (self.lock().len(), self.peak.load(Ordering::Relaxed))
    }

    /// Takes the count of messages dropped because a queue was full.
    fn take_overflowed(&self) -> u64 {
        self.overflowed.swap(0, Ordering::Relaxed)
    }
}

/// A handshake message a lane received, waiting for the gate's verdict.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    pub(super) from: Endpoint,
    /// Where the datagram is in the lane's receive buffers: message, offset, length.
    pub(super) at: (usize, usize, usize),
    verdict: Option<Admit>,
}

impl Arrival {
    pub(super) fn new(from: Endpoint, at: (usize, usize, usize)) -> Self {
        Self { from, at, verdict: None }
    }
}

/// Runs a lane's batch of handshake messages through the gate (one lock for the batch), then
/// queues what it admitted and sends the cookie replies.
pub(super) fn admit(
    shared: &Shared,
    lane: usize,
    send_batch: &mut SendBatch,
    arrivals: &mut [Arrival],
    bufs: &[Vec<u8>],
) {
    let datagram = |a: &Arrival| {
        let (msg, offset, len) = a.at;
        bufs.get(msg).and_then(|b| b.get(offset..offset + len)).unwrap_or_default()
    };
    let now = Instant::now();
    let under_load = shared.handshakes.under_load(now);
    {
        let mut gate = shared.gate();
        let Gate { admission, stats } = &mut *gate;
        for arrival in arrivals.iter_mut() {
            let verdict = admission.admit(now, arrival.from.addr, datagram(arrival), under_load);
            match &verdict {
                Admit::Queue(_) => {}
                Admit::CookieReply(_) => {
                    stats.cookie_replies_sent += 1;
                    stats.record_drop(DropReason::CookieRequired, 1);
                }
                Admit::Drop(reason) => stats.record_drop(*reason, 1),
            }
            arrival.verdict = Some(verdict);
        }
    }
    let mut replies = false;
    for arrival in arrivals.iter() {
        match &arrival.verdict {
            Some(Admit::Queue(priority)) => {
                shared.handshakes.push(*priority, arrival.from, datagram(arrival), now);
            }
            Some(Admit::CookieReply(_)) => replies = true,
            Some(Admit::Drop(_)) | None => {}
        }
    }
    if replies {
        send_cookie_replies(shared, lane, send_batch, arrivals);
    }
}

/// Sends the batch's cookie replies, to their many senders in a few `sendmmsg` calls, each
/// from the address its message came to. A flood's replies are as many as its messages, so a
/// system call each would cost the lane more than everything else it does for them.
fn send_cookie_replies(
    shared: &Shared,
    lane: usize,
    send_batch: &mut SendBatch,
    arrivals: &[Arrival],
) {
    let sockets = shared.sockets();
    let Some((v4, v6)) = sockets.udp.lane(lane).or_else(|| sockets.udp.lane(0)) else { return };
    let replies = arrivals.iter().filter_map(|arrival| match &arrival.verdict {
        Some(Admit::CookieReply(reply)) => {
            let src = arrival.from.src.map(|s| LocalAddr { ip: s.ip, ifindex: s.ifindex });
            Some((arrival.from.addr, src, &reply[..]))
        }
        _ => None,
    });
    for socket in std::iter::once(v4).chain(v6) {
        match socket.send_each(send_batch, replies.clone()) {
            Ok(_) | Err(wgfabric_sys::Error::Shutdown) => {}
            Err(error) => tracing::debug!(%error, "sending cookie replies failed"),
        }
    }
}

/// Handshake messages turned away in a second (cookie replies, bad MACs, budgets) that make a
/// flood worth a log line.
const FLOOD_PER_SECOND: u64 = 1000;
/// While a flood lasts, the log says so again this often.
const FLOOD_REMINDER: Duration = Duration::from_secs(60);

/// A change in flood state for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FloodChange {
    /// Messages started to arrive faster than [`FLOOD_PER_SECOND`], or still do (a reminder).
    Flooding { per_second: u64, since: Duration },
    /// The flood is over.
    Over { lasted: Duration },
}

/// Follows the gate's counts once a second, so that the log says when a flood starts, once a
/// minute while it lasts, and when it ends, instead of a line per packet.
#[derive(Debug, Default)]
pub(super) struct FloodWatch {
    last_total: u64,
    last_check: Option<Instant>,
    since: Option<Instant>,
    reported: Option<Instant>,
}

impl FloodWatch {
    /// Takes the gate's count of messages turned away so far, at `now`.
    pub(super) fn check(&mut self, turned_away: u64, now: Instant) -> Option<FloodChange> {
        let delta = turned_away.saturating_sub(self.last_total);
        let elapsed = self.last_check.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_total = turned_away;
        self.last_check = Some(now);
        let per_second = match elapsed.as_millis() {
            0 => return None,
            ms => u64::try_from(u128::from(delta) * 1000 / ms).unwrap_or(u64::MAX),
        };
        match self.since {
            None if per_second >= FLOOD_PER_SECOND => {
                self.since = Some(now);
                self.reported = Some(now);
                Some(FloodChange::Flooding { per_second, since: Duration::ZERO })
            }
            Some(since) if per_second < FLOOD_PER_SECOND => {
                self.since = None;
                Some(FloodChange::Over { lasted: now.saturating_duration_since(since) })
            }
            Some(since)
                if self
                    .reported
                    .is_none_or(|r| now.saturating_duration_since(r) >= FLOOD_REMINDER) =>
            {
                self.reported = Some(now);
                Some(FloodChange::Flooding {
                    per_second,
                    since: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }
}

impl Gate {
    /// Handshake messages turned away so far: answered with cookies, with a wrong `mac1`, or
    /// over a budget.
    pub(super) fn turned_away(&self) -> u64 {
        [DropReason::CookieRequired, DropReason::BadMac, DropReason::RateLimited]
            .into_iter()
            .map(|reason| self.stats.dropped(reason))
            .sum()
    }
}

/// Logs a change in flood state.
pub(super) fn log_flood(change: FloodChange) {
    match change {
        FloodChange::Flooding { per_second, since } if since.is_zero() => tracing::warn!(
            per_second,
            "handshake flood: answering sources over their budget with cookie replies"
        ),
        FloodChange::Flooding { per_second, since } => {
            tracing::warn!(per_second, lasting_s = since.as_secs(), "handshake flood goes on")
        }
        FloodChange::Over { lasted } => {
            tracing::info!(lasted_s = lasted.as_secs(), "handshake flood over")
        }
    }
}

pub(super) fn run(shared: &Shared) {
    let mut batch = SendBatch::new(4);
    while let Some(message) = shared.handshakes.pop() {
        let now = Instant::now();
        let overflowed = shared.handshakes.take_overflowed();
        let datagram = message.bytes.get(..message.len).unwrap_or_default();
        let (_, outbox) = shared.with_device(|device| {
            device.stats_mut().record_drop(DropReason::QueueOverflow, overflowed);
            device.handle_admitted(now, message.from, datagram)
        });
        flush(shared, 0, &mut batch, outbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new("192.0.2.1:1".parse().unwrap())
    }

    #[test]
    fn bounded_and_signals_load() {
        let queue = HandshakeQueue::default();
        let now = Instant::now();
        assert!(!queue.under_load(now));
        for _ in 0..CAPACITY + 10 {
            queue.push(Priority::Normal, endpoint(), &[1, 0, 0, 0], now);
        }
        assert_eq!(queue.take_overflowed(), 10);
        assert_eq!(queue.depth(), (CAPACITY, CAPACITY));
        assert!(queue.under_load(now));
        assert!(!queue.under_load(now + UNDER_LOAD_FOR));
        queue.close();
        assert!(queue.pop().is_none());
    }

    #[test]
    fn proven_senders_go_first() {
        let queue = HandshakeQueue::default();
        let now = Instant::now();
        queue.push(Priority::Normal, endpoint(), &[1, 0, 0, 0], now);
        queue.push(Priority::Proven, endpoint(), &[2, 0, 0, 0, 9], now);
        let first = queue.pop().unwrap();
        assert_eq!(&first.bytes[..first.len], &[2, 0, 0, 0, 9]);
        assert_eq!(queue.pop().unwrap().bytes[0], 1);
        // A full normal queue leaves the proven one room.
        for _ in 0..CAPACITY + 1 {
            queue.push(Priority::Normal, endpoint(), &[1, 0, 0, 0], now);
        }
        queue.push(Priority::Proven, endpoint(), &[2, 0, 0, 0], now);
        assert_eq!(queue.pop().unwrap().bytes[0], 2);
    }

    #[test]
    fn a_flood_is_logged_when_it_starts_once_a_minute_and_when_it_ends() {
        let mut watch = FloodWatch::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(watch.check(0, at(0)), None);
        assert_eq!(watch.check(500, at(1)), None);
        assert_eq!(
            watch.check(10_500, at(2)),
            Some(FloodChange::Flooding { per_second: 10_000, since: Duration::ZERO })
        );
        let mut total = 10_500;
        let mut lines = Vec::new();
        for s in 3..=62 {
            total += 10_000;
            lines.extend(watch.check(total, at(s)));
        }
        assert_eq!(
            lines,
            [FloodChange::Flooding { per_second: 10_000, since: Duration::from_secs(60) }]
        );
        assert_eq!(
            watch.check(total + 10, at(63)),
            Some(FloodChange::Over { lasted: Duration::from_secs(61) })
        );
        assert_eq!(watch.check(total + 20, at(64)), None);
    }

    #[test]
    fn a_quiet_queue_is_not_under_load() {
        let queue = HandshakeQueue::default();
        let now = Instant::now();
        queue.push(Priority::Normal, endpoint(), &[1, 0, 0, 0], now);
        assert!(!queue.under_load(now));
    }
}
