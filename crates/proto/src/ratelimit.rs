//! Per-source rate limit for handshake messages.
//!
//! A token bucket per source (an IPv4 address, or an IPv6 /64, since one host usually owns a
//! whole /64) admits [`HANDSHAKES_PER_SECOND_UNDER_LOAD`] messages per second with a burst of
//! [`HANDSHAKE_BURST_UNDER_LOAD`], as the kernel module's ratelimiter does. The table is
//! bounded: when it is full, new sources are refused until entries idle for a second (whose
//! buckets would be full again anyway) are evicted, so a flood of spoofed sources cannot grow
//! memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::constants::{HANDSHAKES_PER_SECOND_UNDER_LOAD, HANDSHAKE_BURST_UNDER_LOAD};

const COST: Duration =
    Duration::from_nanos(1_000_000_000 / HANDSHAKES_PER_SECOND_UNDER_LOAD as u64);
const MAX_TOKENS: Duration =
    Duration::from_nanos(COST.as_nanos() as u64 * HANDSHAKE_BURST_UNDER_LOAD as u64);
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: Duration,
    last: Instant,
}

/// The handshake rate limiter.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    buckets: HashMap<Source, Bucket>,
    capacity: usize,
    last_collection: Option<Instant>,
}

impl RateLimiter {
    /// A limiter that tracks at most `capacity` sources at once.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { buckets: HashMap::new(), capacity, last_collection: None }
    }

    /// Whether a handshake message from `ip` may be processed now.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.last_collection.is_none_or(|t| now.saturating_duration_since(t) >= IDLE) {
            self.collect_idle(now);
            self.last_collection = Some(now);
        }
        let source = Source::from(ip);
        if let Some(bucket) = self.buckets.get_mut(&source) {
            let refill = now.saturating_duration_since(bucket.last);
            bucket.tokens = (bucket.tokens + refill).min(MAX_TOKENS);
            bucket.last = now;
            return match bucket.tokens.checked_sub(COST) {
                Some(left) => {
                    bucket.tokens = left;
                    true
                }
                None => false,
            };
        }
        if self.buckets.len() >= self.capacity {
            return false;
        }
        self.buckets.insert(source, Bucket { tokens: MAX_TOKENS - COST, last: now });
        true
    }

    /// Forgets sources idle for a second (they would be back at a full bucket anyway).
    fn collect_idle(&mut self, now: Instant) {
        self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut limiter = RateLimiter::new(16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let burst = (0..10).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(burst, HANDSHAKE_BURST_UNDER_LOAD as usize);
        // Over one further second, about the per-second rate gets through.
        let passed =
            (1..=1000).filter(|ms| limiter.allow(ip, t0 + Duration::from_millis(*ms))).count();
        assert_eq!(passed, HANDSHAKES_PER_SECOND_UNDER_LOAD as usize);
        // Another source is independent.
        assert!(limiter.allow("192.0.2.2".parse().unwrap(), t0));
    }

    #[test]
    fn ipv6_sources_share_their_slash_64() {
        let mut limiter = RateLimiter::new(16);
        let t0 = Instant::now();
        let allowed = (0..10u16)
            .filter(|i| limiter.allow(format!("2001:db8::{i:x}").parse().unwrap(), t0))
            .count();
        assert_eq!(allowed, HANDSHAKE_BURST_UNDER_LOAD as usize);
        assert!(limiter.allow("2001:db8:0:1::1".parse().unwrap(), t0));
    }

    #[test]
    fn idle_entries_are_collected() {
        let mut limiter = RateLimiter::new(16);
        let t0 = Instant::now();
        assert!(limiter.allow("192.0.2.1".parse().unwrap(), t0));
        limiter.collect_idle(t0 + Duration::from_secs(2));
        assert!(limiter.buckets.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_sources_until_idle_ones_go() {
        let mut limiter = RateLimiter::new(4);
        let t0 = Instant::now();
        let source = |i: u8| IpAddr::from([192, 0, 2, i]);
        assert!((0..4).all(|i| limiter.allow(source(i), t0)));
        assert!(!limiter.allow(source(4), t0));
        // Known sources keep their buckets meanwhile.
        assert!(limiter.allow(source(0), t0));
        assert!(limiter.allow(source(4), t0 + IDLE));
        assert_eq!(limiter.buckets.len(), 1);
    }
}
