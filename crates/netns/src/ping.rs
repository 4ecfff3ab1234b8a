//! Waiting for a condition with a deadline, and ping (iputils) from inside a namespace with
//! its loss counted: tests never sleep and hope.

use std::time::{Duration, Instant};

use crate::Netns;

/// Polls `condition` every 20 ms until it holds (`true`) or `timeout` passes (`false`).
#[expect(clippy::disallowed_methods, reason = "tests wait in real time")]
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one `ping` run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
}

impl PingStats {
    /// Parses iputils' summary line (`N packets transmitted, M received, ...`).
    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().find(|line| line.contains("packets transmitted"))?;
        let mut numbers = line.split(',').map(|part| part.split_whitespace().next()?.parse().ok());
        Some(Self { transmitted: numbers.next()??, received: numbers.next()?? })
    }

    /// Whether every request was answered.
    pub fn all_answered(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

impl Netns {
    /// Sends `count` echo requests to `destination` (IPv4 or IPv6), 0.2 s apart, waiting 1 s
    /// for each reply.
    ///
    /// # Panics
    /// When ping cannot run or prints no summary.
    pub fn ping(&self, destination: &str, count: u32) -> PingStats {
        let output = self
            .command("ping")
            .args(["-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "1", destination])
            .output()
            .unwrap_or_else(|e| panic!("running ping in {}: {e}", self.name()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        PingStats::parse(&stdout).unwrap_or_else(|| {
            panic!(
                "ping {destination} printed no summary: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// Pings `destination` once a time until a reply comes or `timeout` passes. A ping that
    /// cannot even send (no route yet, while an interface comes back) counts as unanswered.
    pub fn ping_until_reply(&self, destination: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.command("ping")
                .args(["-n", "-q", "-c", "1", "-W", "1", destination])
                .output()
                .is_ok_and(|out| out.status.success())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summaries() {
        let ok = "--- 10.0.0.2 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 803ms\n";
        assert_eq!(PingStats::parse(ok), Some(PingStats { transmitted: 5, received: 5 }));
        assert!(PingStats::parse(ok).unwrap().all_answered());
        let lost = "3 packets transmitted, 0 received, 100% packet loss, time 2040ms\n";
        assert!(!PingStats::parse(lost).unwrap().all_answered());
        let errors = "4 packets transmitted, 1 received, +3 errors, 75% packet loss, time 3003ms\n";
        assert_eq!(PingStats::parse(errors), Some(PingStats { transmitted: 4, received: 1 }));
        assert_eq!(PingStats::parse("connect: Network is unreachable\n"), None);
    }

    #[test]
    fn wait_until_reports_timeouts() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert!(!wait_until(Duration::from_millis(30), || false));
    }
}
