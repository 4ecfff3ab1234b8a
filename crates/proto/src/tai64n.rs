//! TAI64N timestamps, the replay protection of handshake initiations (whitepaper §5.1).
//!
//! A responder accepts an initiation from a peer only if its timestamp is strictly greater than
//! the last one accepted, so a captured initiation cannot be replayed. The nanoseconds are
//! rounded down to a multiple of 2^24 (about 16.8 ms) so the timestamp does not reveal the
//! sender's clock precisely; the flood limit of 50 initiations per second keeps that coarser
//! clock strictly increasing in practice.

use core::time::Duration;

/// TAI64's label for the Unix epoch: 2^62 plus the 10 seconds TAI was ahead in 1970.
const UNIX_EPOCH_LABEL: u64 = 0x4000_0000_0000_000a;
/// The low nanosecond bits that are cleared.
const WHITENER_MASK: u32 = (1 << 24) - 1;

/// A 12-byte TAI64N label, compared as big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tai64n(pub(crate) [u8; 12]);

impl Tai64n {
    /// The label for a time given as a duration since the Unix epoch.
    pub(crate) fn from_unix(since_epoch: Duration) -> Self {
        let mut out = [0u8; 12];
        out[..8]
            .copy_from_slice(&UNIX_EPOCH_LABEL.wrapping_add(since_epoch.as_secs()).to_be_bytes());
        out[8..].copy_from_slice(&(since_epoch.subsec_nanos() & !WHITENER_MASK).to_be_bytes());
        Self(out)
    }

    /// The next label after this one: one whitened slot (2^24 ns) later.
    pub(crate) fn next(self) -> Self {
        let (seconds, nanos) = self.0.split_at(8);
        let seconds = u64::from_be_bytes(seconds.try_into().unwrap_or_default());
        let nanos = u32::from_be_bytes(nanos.try_into().unwrap_or_default()) + (WHITENER_MASK + 1);
        let (seconds, nanos) = if nanos >= 1_000_000_000 {
            (seconds.wrapping_add(1), nanos - 1_000_000_000)
        } else {
            (seconds, nanos)
        };
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&seconds.to_be_bytes());
        out[8..].copy_from_slice(&(nanos & !WHITENER_MASK).to_be_bytes());
        Self(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_and_whitens() {
        let a = Tai64n::from_unix(Duration::new(1_700_000_000, 0));
        let b = Tai64n::from_unix(Duration::new(1_700_000_000, 20_000_000));
        let c = Tai64n::from_unix(Duration::new(1_700_000_001, 0));
        assert!(a < b && b < c);
        // Within one 2^24 ns slot the label does not change.
        assert_eq!(a, Tai64n::from_unix(Duration::new(1_700_000_000, 1_000_000)));
        assert_eq!(&a.0[..8], &(0x4000_0000_0000_000a_u64 + 1_700_000_000).to_be_bytes());
    }

    #[test]
    fn the_next_label_is_one_slot_later() {
        let a = Tai64n::from_unix(Duration::new(1_700_000_000, 0));
        assert_eq!(a.next(), Tai64n::from_unix(Duration::new(1_700_000_000, 1 << 24)));
        let last = Tai64n::from_unix(Duration::new(1_700_000_000, 999_999_999));
        assert_eq!(last.next(), Tai64n::from_unix(Duration::new(1_700_000_001, 0)));
        assert!(last.next() > last);
    }
}
