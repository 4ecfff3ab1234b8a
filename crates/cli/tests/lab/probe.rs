//! A prober across the fabric: `ping -i 0.01` with a timestamp on every reply, read while it
//! runs, and summed up as the packets lost and the longest time without a reply.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use wgfabric_testkit::Netns;

/// The prober's interval between echo requests.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// A running `ping -i 0.01`; killed on drop.
pub struct Prober {
    child: Child,
    reader: Option<JoinHandle<String>>,
}

/// What a prober saw.
#[derive(Debug, Clone, Copy)]
pub struct Probed {
    /// Echo requests sent, up to the last one answered.
    pub sent: u32,
    /// Of those, the ones never answered.
    pub lost: u32,
    /// The longest time between two replies: how long the path was out.
    pub outage: Duration,
}

impl Prober {
    /// Starts pinging `to` from `ns` every 10 ms.
    pub fn start(ns: &Netns, to: &str) -> Self {
        let mut child = ns
            .command("ping")
            .args(["-n", "-D", "-W", "1", "-i", "0.01", to])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ping");
        let stdout = child.stdout.take().expect("ping's stdout is piped");
        // Read as it comes: a full pipe would stall ping itself.
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Self { child, reader: Some(reader) }
    }

    /// Stops ping and sums up what it saw.
    pub fn finish(mut self) -> Probed {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
        let text = self.reader.take().and_then(|reader| reader.join().ok()).unwrap_or_default();
        summarize(&text)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums up ping's reply lines (`[1700000000.123456] 64 bytes from A: icmp_seq=N ...`).
pub fn summarize(text: &str) -> Probed {
    let mut replies: Vec<(u32, f64)> = text.lines().filter_map(reply).collect();
    replies.sort_by(|a, b| a.1.total_cmp(&b.1));
    let outage = replies.windows(2).map(|pair| pair[1].1 - pair[0].1).fold(0.0, f64::max);
    let mut answered: Vec<u32> = replies.iter().map(|(seq, _)| *seq).collect();
    answered.sort_unstable();
    answered.dedup();
    let sent = answered.last().copied().unwrap_or(0);
    Probed {
        sent,
        lost: sent - u32::try_from(answered.len()).unwrap_or(u32::MAX).min(sent),
        outage: Duration::from_secs_f64(outage),
    }
}

fn reply(line: &str) -> Option<(u32, f64)> {
    let time = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
    let seq = line.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((seq, time))
}
