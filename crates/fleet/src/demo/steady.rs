//! A steady ping between two hosts, timestamped as each reply arrives, to measure how long
//! traffic stops when a relay dies and how many packets a move between relays costs.
//!
//! `ping -i 0.1` runs in the source's namespace; a reader thread stamps each reply line with
//! the monotonic clock. An outage is a gap in the replies, in sequence numbers (requests lost
//! for good) or in time (requests held until a handshake completed).

use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lab::LabHost;
use super::{now, Error};
use crate::netns::describe;

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
    child: Child,
    reader: Option<JoinHandle<()>>,
    incoming: Receiver<Reply>,
    replies: Vec<Reply>,
}

impl SteadyPing {
    /// Starts pinging `addr` from `host` every 100 ms.
    ///
    /// # Errors
    /// [`Error::Setup`] when `ping` cannot start.
    pub fn start(host: &LabHost, addr: IpAddr) -> Result<Self, Error> {
        let mut command = host.command("ping");
        command
            .args(["-n", "-i", &format!("{:.1}", INTERVAL.as_secs_f64()), &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let line = describe(&command);
        let mut child =
            command.spawn().map_err(|e| Error::Setup(format!("starting `{line}`: {e}")))?;
        let stdout =
            child.stdout.take().ok_or_else(|| Error::Setup("ping has no output".into()))?;
        let (sender, incoming) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(seq) = reply_seq(&line) {
                    if sender.send(Reply { seq, at: now() }).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self { child, reader: Some(reader), incoming, replies: Vec::new() })
    }

    /// Every reply so far, in arrival order.
    pub fn replies(&mut self) -> &[Reply] {
        self.replies.extend(self.incoming.try_iter());
        &self.replies
    }
}

impl Drop for SteadyPing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The `icmp_seq` of an iputils reply line (`64 bytes from 10.0.0.1: icmp_seq=7 ttl=64 ...`).
fn reply_seq(line: &str) -> Option<u32> {
    if !line.contains(" bytes from ") {
        return None;
    }
    let rest = &line[line.find("icmp_seq=")? + "icmp_seq=".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
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

    #[test]
    fn reply_lines_give_their_sequence_number() {
        assert_eq!(reply_seq("64 bytes from 10.20.0.2: icmp_seq=12 ttl=62 time=0.9 ms"), Some(12));
        assert_eq!(reply_seq("PING 10.20.0.2 (10.20.0.2) 56(84) bytes of data."), None);
        assert_eq!(reply_seq("From 10.77.0.1 icmp_seq=3 Destination Host Unreachable"), None);
    }

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
