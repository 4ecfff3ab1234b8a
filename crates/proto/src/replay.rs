//! The receive-side replay window (whitepaper §5.4.6, RFC 6479 style).
//!
//! A ring of 128 64-bit words remembers which of the latest 8192 counters arrived. Moving the
//! window forward clears whole words instead of shifting bits, so every check is O(1). One word
//! is always being recycled, hence the usable window of 8192 − 64 = 8128 counters: a counter is
//! accepted if it was never seen and is no more than 8128 below the highest one accepted.

use crate::constants::REJECT_AFTER_MESSAGES;

const WORDS: usize = 128;
const BITS_TOTAL: u64 = WORDS as u64 * 64;
/// How far behind the highest accepted counter a late packet may arrive.
pub(crate) const WINDOW_SIZE: u64 = BITS_TOTAL - 64;

/// Which counters of one session have been received.
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    /// One more than the highest counter accepted so far (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow").field("next", &self.next).finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self { next: 0, bits: [0; WORDS] }
    }
}

impl ReplayWindow {
    /// Accepts `counter` if it is new and inside the window, recording it; call only after the
    /// packet authenticated, or forged counters could move the window.
    pub(crate) fn accept(&mut self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter.saturating_add(WINDOW_SIZE) < self.next.saturating_sub(1) {
            return false;
        }
        let word = counter / 64;
        if counter >= self.next {
            // Recycle the words between the old highest and the new one. A fresh window is
            // all zeros already.
            if let Some(highest) = self.highest() {
                let current = highest / 64;
                for i in 1..=(word - current).min(WORDS as u64) {
                    self.bits[((current + i) % WORDS as u64) as usize] = 0;
                }
            }
            self.next = counter + 1;
        }
        let slot = &mut self.bits[(word % WORDS as u64) as usize];
        let bit = 1u64 << (counter % 64);
        let fresh = *slot & bit == 0;
        *slot |= bit;
        fresh
    }

    /// The highest counter accepted so far.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The rule the window implements, written the obvious way.
    struct Model {
        seen: BTreeSet<u64>,
        highest: Option<u64>,
    }

    impl Model {
        fn accept(&mut self, c: u64) -> bool {
            if c >= REJECT_AFTER_MESSAGES || self.seen.contains(&c) {
                return false;
            }
            if self.highest.is_some_and(|h| c + WINDOW_SIZE < h) {
                return false;
            }
            self.seen.insert(c);
            self.highest = Some(self.highest.map_or(c, |h| h.max(c)));
            true
        }
    }

    #[test]
    fn basic_rules() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(2));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(10_000));
        assert!(!w.accept(10_000 - WINDOW_SIZE - 1));
        assert!(w.accept(10_000 - WINDOW_SIZE));
        assert!(w.accept(10_000 - 1));
        assert_eq!(w.highest(), Some(10_000));
        assert!(!w.accept(REJECT_AFTER_MESSAGES));
        assert!(w.accept(REJECT_AFTER_MESSAGES - 1));
        assert!(!w.accept(REJECT_AFTER_MESSAGES - 1));
    }

    #[test]
    fn a_huge_jump_clears_everything() {
        let mut w = ReplayWindow::default();
        for c in 0..100 {
            assert!(w.accept(c));
        }
        assert!(w.accept(1_000_000));
        assert!(w.accept(1_000_000 - 5));
        assert!(!w.accept(99));
    }

    fn counters() -> impl Strategy<Value = Vec<u64>> {
        // Mostly nearby counters with occasional jumps, duplicates and stragglers.
        prop::collection::vec(
            prop_oneof![
                6 => 0u64..20_000,
                1 => 0u64..200,
                1 => (1u64 << 40)..(1u64 << 40) + 20_000,
                1 => REJECT_AFTER_MESSAGES - 10..REJECT_AFTER_MESSAGES + 10,
            ],
            1..600,
        )
    }

    proptest! {
        #[test]
        fn matches_the_model(counters in counters()) {
            let mut window = ReplayWindow::default();
            let mut model = Model { seen: BTreeSet::new(), highest: None };
            for c in counters {
                prop_assert_eq!(window.accept(c), model.accept(c), "counter {}", c);
            }
        }

        #[test]
        fn sequential_with_reordering_accepts_each_once(seed in 0u64..1000) {
            let mut window = ReplayWindow::default();
            let mut order: Vec<u64> = (0..5_000).collect();
            // Swap neighbours within a small distance, as parallel encryption does.
            for i in (0..order.len() - 8).step_by(3) {
                order.swap(i, i + (seed as usize + i) % 8);
            }
            for &c in &order {
                prop_assert!(window.accept(c));
            }
            for &c in order.iter().rev().take(100) {
                prop_assert!(!window.accept(c));
            }
        }
    }
}
