//! The handshake queue and its thread.
//!
//! Handshake messages cost Diffie-Hellman operations, so they are taken off the receive
//! threads: those copy them here and move on. The queue is bounded (a flood beyond it is
//! dropped) and its length is the load signal: once it is an eighth full, the device is told
//! it is under load for the next second, and answers handshakes with cookie replies and rate
//! limits per source, as wireguard-go does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wgfabric_proto::{DropReason, Endpoint};
use wgfabric_sys::SendBatch;

use super::send::flush;
use super::Shared;

const CAPACITY: usize = 1024;
const UNDER_LOAD_AT: usize = CAPACITY / 8;
const UNDER_LOAD_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    items: VecDeque<(Endpoint, Vec<u8>)>,
    closed: bool,
    under_load_until: Option<Instant>,
}

/// Handshake messages waiting for the handshake thread.
#[derive(Default)]
pub(super) struct HandshakeQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Messages dropped because the queue was full.
    overflowed: AtomicU64,
}

impl HandshakeQueue {
    /// Queues a copy of a handshake message, or drops it when the queue is full.
    pub(super) fn push(&self, from: Endpoint, datagram: &[u8]) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.closed {
            return;
        }
        if queue.items.len() >= CAPACITY {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.items.push_back((from, datagram.to_vec()));
        self.ready.notify_one();
    }

    /// The next message and whether the device is under load; `None` once closed.
    fn pop(&self) -> Option<(Endpoint, Vec<u8>, bool)> {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut queue = self
            .ready
            .wait_while(queue, |q| q.items.is_empty() && !q.closed)
            .unwrap_or_else(PoisonError::into_inner);
        if queue.closed {
            return None;
        }
        let now = Instant::now();
        if queue.items.len() >= UNDER_LOAD_AT {
            queue.under_load_until = Some(now + UNDER_LOAD_FOR);
        }
        let under_load = queue.under_load_until.is_some_and(|until| now < until);
        let (from, datagram) = queue.items.pop_front()?;
        Some((from, datagram, under_load))
    }

    /// Wakes the handshake thread for good.
    pub(super) fn close(&self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.ready.notify_all();
    }

    /// Takes the count of messages dropped because the queue was full.
    fn take_overflowed(&self) -> u64 {
        self.overflowed.swap(0, Ordering::Relaxed)
    }
}

pub(super) fn run(shared: &Shared) {
    let mut batch = SendBatch::new(4);
    while let Some((from, datagram, under_load)) = shared.handshakes.pop() {
        let now = Instant::now();
        let overflowed = shared.handshakes.take_overflowed();
        let (_, outbox) = shared.with_device(|device| {
            device.stats_mut().record_drop(DropReason::RateLimited, overflowed);
            device.handle_handshake(now, from, &datagram, under_load)
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
        for _ in 0..CAPACITY + 10 {
            queue.push(endpoint(), &[1, 0, 0, 0]);
        }
        assert_eq!(queue.take_overflowed(), 10);
        let (_, _, under_load) = queue.pop().unwrap();
        assert!(under_load);
        queue.close();
        assert!(queue.pop().is_none());
    }

    #[test]
    fn a_quiet_queue_is_not_under_load() {
        let queue = HandshakeQueue::default();
        queue.push(endpoint(), &[1, 0, 0, 0]);
        assert!(!queue.pop().unwrap().2);
    }
}
