//! A steady ping between two hosts, timestamped as each reply arrives, to measure how long
//! traffic stops when a relay dies and how many packets a move between relays costs.
//!
//! A thread sends one in-process echo request (see [`wgfabric_host::probe`]) from the source's
//! namespace every 100 ms and stamps each answer with the monotonic clock. A request not
//! answered within its interval counts as lost (a packet held until a handshake completed
//! arrives too late to count). An outage is a gap in the replies, in sequence numbers
//! (requests lost) or in time.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lab::LabHost;
use super::{now, Error};
use wgfabric_host::probe::Prober;

/// Time between echo requests.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);
/// Silence between two replies that counts as an outage even without lost sequence numbers.
const GAP: Duration = Duration::from_millis(500);

/// One echo reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Its `icmp_seq`.
    pub seq: u32,
    /// When it was read.
    pub at: Instant,
}

/// A stop in the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// From the moment of interest (a relay's death) to the first reply after the gap.
    #[serde(rename = "resumed_after_ms", serialize_with = "super::report::millis")]
    pub resumed_after: Duration,
    /// Requests that were never answered.
    pub lost: u32,
}

/// A running steady ping; stopped when dropped.
#[derive(Debug)]
pub struct SteadyPing {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    incoming: Receiver<Reply>,
    replies: Vec<Reply>,
}

impl SteadyPing {
    /// Starts pinging `addr` from `host` every 100 ms.
    ///
    /// # Errors
    /// [`Error::Io`] when the probe socket cannot be opened in the host's namespace.
    pub fn start(host: &LabHost, addr: IpAddr) -> Result<Self, Error> {
        let mut prober = Prober::open(Some(host.namespace()), None, &[addr])?;
        let stop = Arc::new(AtomicBool::new(false));
        let (reply, incoming) = channel();
        let stopped = Arc::clone(&stop);
        let sender = std::thread::spawn(move || {
            let mut seq = 0;
            while !stopped.load(Ordering::Relaxed) {
                seq += 1;
                let sent = now();
                // A send error (no route yet) is a lost request, like an unanswered one.
                if prober.probe(INTERVAL).is_ok_and(|answered| answered == [true])
                    && reply.send(Reply { seq, at: now() }).is_err()
                {
                    return;
                }
                std::thread::sleep(INTERVAL.saturating_sub(now().duration_since(sent)));
            }
        });
        Ok(Self { stop, sender: Some(sender), incoming, replies: Vec::new() })
    }

    /// Every reply so far, in arrival order.
    pub fn replies(&mut self) -> &[Reply] {
        self.replies.extend(self.incoming.try_iter());
        &self.replies
    }
}

impl Drop for SteadyPing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

/// The first outage in `replies` that ends after `since`, if traffic has resumed.
pub fn outage_after(replies: &[Reply], since: Instant) -> Option<Outage> {
    replies.windows(2).find_map(|pair| {
        let (before, after) = (pair[0], pair[1]);
        let lost = after.seq.saturating_sub(before.seq + 1);
        let silent = after.at.duration_since(before.at) > GAP;
        (after.at > since && (lost > 0 || silent))
            .then(|| Outage { resumed_after: after.at.duration_since(since), lost })
    })
}

/// Requests lost among the replies received between `from` and `to`.
pub fn lost_between(replies: &[Reply], from: Instant, to: Instant) -> u32 {
    replies
        .windows(2)
        .filter(|pair| pair[1].at > from && pair[1].at <= to)
        .map(|pair| pair[1].seq.saturating_sub(pair[0].seq + 1))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(start: Instant, points: &[(u32, u64)]) -> Vec<Reply> {
        points
            .iter()
            .map(|(seq, ms)| Reply { seq: *seq, at: start + Duration::from_millis(*ms) })
            .collect()
    }

    #[test]
    fn an_outage_is_measured_from_the_kill_to_the_first_reply_after_the_gap() {
        let t0 = now();
        // Killed at 250 ms; seq 3..=37 lost; traffic back at 3.8 s.
        let replies = series(t0, &[(1, 100), (2, 200), (3, 300), (38, 3800), (39, 3900)]);
        let kill = t0 + Duration::from_millis(250);
        let outage = outage_after(&replies, kill).unwrap();
        assert_eq!(outage, Outage { resumed_after: Duration::from_millis(3550), lost: 34 });
        assert_eq!(lost_between(&replies, kill, t0 + Duration::from_secs(5)), 34);
        assert_eq!(outage_after(&replies[..3], kill), None, "not resumed yet");
    }

    #[test]
    fn held_packets_count_as_an_outage_by_time() {
        let t0 = now();
        let replies = series(t0, &[(1, 100), (2, 200), (3, 1900), (4, 1901)]);
        let outage = outage_after(&replies, t0 + Duration::from_millis(150)).unwrap();
        assert_eq!((outage.resumed_after, outage.lost), (Duration::from_millis(1750), 0));
        assert_eq!(outage_after(&replies, t0 + Duration::from_secs(2)), None);
    }
}
