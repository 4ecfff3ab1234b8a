//! Admission of handshake messages: who may make us spend a Diffie-Hellman, decided before any
//! is spent.
//!
//! Anyone who knows a device's public key can send initiations with a valid `mac1`, and each
//! costs the responder Diffie-Hellman work. [`Admission::admit`] is the cheap gate in front of
//! that work, meant to run where datagrams are received (on every receive thread, before
//! anything is queued), so that a flood is sorted out before it can fill a queue:
//!
//! ```text
//!  message ─► mac1 wrong? ──────────────────────────────► drop (BadMac)
//!          ─► mac2 valid? (sender proved its address) ──► proven budget ─► Queue(Proven)
//!          ─► not under load and the source's budget ───────────────────► Queue(Normal)
//!          ─► otherwise ────────────────────────────────► cookie reply, no Diffie-Hellman
//! ```
//!
//! Budgets are token buckets per source ([`HANDSHAKES_PER_SECOND_UNDER_LOAD`] a second, bursts
//! of [`HANDSHAKE_BURST_UNDER_LOAD`]; per IPv4 address or IPv6 /64), in bounded tables. A
//! source over its budget is treated as if the whole device were under load: it gets a cookie
//! reply. So a flood from one address costs no Diffie-Hellman beyond its budget and delays
//! nobody else, and a flood that spoofs a legitimate peer's own address (or /64) only delays
//! that peer by one cookie round trip: its retry carries a `mac2`, which spoofed packets cannot,
//! and is judged against the separate budget of proven senders. Cookie replies are not rate
//! limited: they are smaller than what they answer, cost no asymmetric cryptography, and the
//! one a legitimate peer needs must not be lost among a flood's.
//!
//! The admitted message is handed, unchanged, to [`Device::handle_admitted`]
//! (crate::Device::handle_admitted). [`Device::handle_handshake`](crate::Device::handle_handshake)
//! runs both steps for callers without a separate receive path.

use std::net::SocketAddr;
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::cookie::CookieChecker;
use crate::device::DropReason;
use crate::keys::PublicKey;
use crate::ratelimit::RateLimiter;
use crate::wire::{MessageType, COOKIE_REPLY_LEN};

#[cfg(doc)]
use crate::constants::{HANDSHAKES_PER_SECOND_UNDER_LOAD, HANDSHAKE_BURST_UNDER_LOAD};

/// Sources tracked at once for messages without a cookie: about 2.5 MB at most. When the table
/// is full, new sources get cookie replies until idle ones are evicted.
const UNPROVEN_SOURCES: usize = 1 << 15;
/// Sources tracked at once for messages with a valid cookie (each had to receive one).
const PROVEN_SOURCES: usize = 1 << 12;

/// Which handshake queue an admitted message belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Its sender proved its address with a cookie: process before any [`Priority::Normal`].
    Proven,
    /// Within its source's budget, without a cookie.
    Normal,
}

/// What to do with a handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Admit {
    /// Hand it to [`Device::handle_admitted`](crate::Device::handle_admitted), in this order of
    /// priority.
    Queue(Priority),
    /// Send this cookie reply to the sender instead; the message itself is done with (count it
    /// as [`DropReason::CookieRequired`]).
    CookieReply([u8; COOKIE_REPLY_LEN]),
    /// Drop it, for this reason (the caller counts it).
    Drop(DropReason),
}

/// The gate in front of handshake processing: `mac1`, `mac2`, cookies and per-source budgets.
///
/// One per device, shared by every receive path; it must be told when the device's public key
/// changes ([`Admission::set_public_key`]).
pub struct Admission {
    checker: Option<CookieChecker>,
    public_key: Option<PublicKey>,
    unproven: RateLimiter,
    proven: RateLimiter,
    rng: ChaCha20Rng,
}

impl core::fmt::Debug for Admission {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Admission").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

impl Admission {
    /// A gate for a device without a key yet, which drops every handshake message. `seed`
    /// seeds the cookie secrets and reply nonces: 32 bytes from the operating system's CSPRNG.
    pub fn new(seed: [u8; 32]) -> Self {
        Self {
            checker: None,
            public_key: None,
            unproven: RateLimiter::new(UNPROVEN_SOURCES),
            proven: RateLimiter::new(PROVEN_SOURCES),
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// Follows the device's public key (`mac1` and cookies are keyed by it); a key it already
    /// has keeps the cookie secret.
    pub fn set_public_key(&mut self, public_key: Option<PublicKey>) {
        if self.public_key != public_key {
            self.checker = public_key.as_ref().map(CookieChecker::new);
            self.public_key = public_key;
        }
    }

    /// Decides what to do with a handshake message (an initiation, a response or a cookie
    /// reply) that arrived from `from` at `now`. `under_load` is the caller's signal that
    /// handshake work is piling up (its queue is filling): every sender without a cookie then
    /// gets a cookie reply.
    pub fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        under_load: bool,
    ) -> Admit {
        match MessageType::of(datagram) {
            Some(MessageType::Initiation | MessageType::Response) => {}
            // Cookie replies cost a lookup and one decryption: a budget is enough.
            Some(MessageType::CookieReply) => {
                return if self.unproven.allow(from.ip(), now) {
                    Admit::Queue(Priority::Normal)
                } else {
                    Admit::Drop(DropReason::RateLimited)
                };
            }
            Some(MessageType::Data) | None => return Admit::Drop(DropReason::Malformed),
        }
        let Some(checker) = self.checker.as_mut() else {
            return Admit::Drop(DropReason::NoIdentity);
        };
        if !checker.mac1_valid(datagram) {
            return Admit::Drop(DropReason::BadMac);
        }
        if checker.mac2_valid(datagram, from, now, &mut self.rng) {
            return if self.proven.allow(from.ip(), now) {
                Admit::Queue(Priority::Proven)
            } else {
                Admit::Drop(DropReason::RateLimited)
            };
        }
        if !under_load && self.unproven.allow(from.ip(), now) {
            return Admit::Queue(Priority::Normal);
        }
        // Both handshake messages carry their sender index at bytes 4..8.
        let sender = datagram.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let reply = sender.and_then(|s| checker.reply(datagram, s, from, now, &mut self.rng));
        match reply {
            Some(reply) => Admit::CookieReply(reply),
            None => Admit::Drop(DropReason::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::constants::{HANDSHAKES_PER_SECOND_UNDER_LOAD, HANDSHAKE_BURST_UNDER_LOAD};
    use crate::cookie::CookieJar;
    use crate::keys::PrivateKey;
    use crate::wire::{self, CookieReply, INITIATION_LEN};

    struct Setup {
        admission: Admission,
        key: PublicKey,
        now: Instant,
    }

    fn setup() -> Setup {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let key = PrivateKey::generate(&mut rng).public_key();
        let mut admission = Admission::new([1; 32]);
        admission.set_public_key(Some(key));
        Setup { admission, key, now: Instant::now() }
    }

    /// An initiation to `key`, stamped by `jar` (with a `mac2` when the jar holds a cookie).
    fn initiation(jar: &mut CookieJar, key: &PublicKey, now: Instant) -> [u8; INITIATION_LEN] {
        let mut message = wire::emit_initiation(7, &[1; 32], &[2; 48], &[3; 28]);
        jar.stamp(key, &mut message, now);
        message
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_key_or_with_a_wrong_mac1_nothing_is_admitted() {
        let Setup { mut admission, key, now } = setup();
        let message = initiation(&mut CookieJar::default(), &key, now);
        let from = addr("192.0.2.1:1");
        admission.set_public_key(None);
        assert_eq!(
            admission.admit(now, from, &message, false),
            Admit::Drop(DropReason::NoIdentity)
        );
        admission.set_public_key(Some(key));
        let mut tampered = message;
        tampered[10] ^= 1;
        assert_eq!(admission.admit(now, from, &tampered, false), Admit::Drop(DropReason::BadMac));
        assert_eq!(
            admission.admit(now, from, &message[..90], false),
            Admit::Drop(DropReason::Malformed)
        );
        assert_eq!(admission.admit(now, from, &message, false), Admit::Queue(Priority::Normal));
    }

    #[test]
    fn a_flooding_source_gets_cookies_beyond_its_budget_and_others_are_untouched() {
        let Setup { mut admission, key, now } = setup();
        let message = initiation(&mut CookieJar::default(), &key, now);
        let flooder = addr("192.0.2.1:1000");
        let verdicts: Vec<_> =
            (0..1000).map(|_| admission.admit(now, flooder, &message, false)).collect();
        let queued = verdicts.iter().filter(|v| matches!(v, Admit::Queue(_))).count();
        assert_eq!(queued, HANDSHAKE_BURST_UNDER_LOAD as usize);
        assert!(verdicts[HANDSHAKE_BURST_UNDER_LOAD as usize..]
            .iter()
            .all(|v| matches!(v, Admit::CookieReply(_))));
        // Over a second, the budget refills at its rate.
        let later = (1..=100)
            .map(|ms| now + Duration::from_millis(10 * ms))
            .filter(|&t| {
                admission.admit(t, flooder, &message, false) == Admit::Queue(Priority::Normal)
            })
            .count();
        assert_eq!(later, HANDSHAKES_PER_SECOND_UNDER_LOAD as usize);
        assert_eq!(
            admission.admit(now, addr("192.0.2.2:1000"), &message, false),
            Admit::Queue(Priority::Normal)
        );
    }

    #[test]
    fn a_spoofed_peer_gets_through_with_its_cookie() {
        let Setup { mut admission, key, now } = setup();
        // A flood spoofs the peer's own /64 and drains its budget.
        let peer = addr("[2001:db8::1]:51820");
        let spoofed = initiation(&mut CookieJar::default(), &key, now);
        for i in 0..100u16 {
            let from = SocketAddr::new(format!("2001:db8::{:x}", i + 2).parse().unwrap(), i);
            let _ = admission.admit(now, from, &spoofed, false);
        }
        let mut jar = CookieJar::default();
        let first = initiation(&mut jar, &key, now);
        let Admit::CookieReply(reply) = admission.admit(now, peer, &first, false) else {
            panic!("a drained budget should answer with a cookie");
        };
        let reply = CookieReply::parse(&reply).unwrap();
        jar.consume_reply(&key, reply.nonce, reply.encrypted_cookie, now).unwrap();
        let retry = initiation(&mut jar, &key, now + Duration::from_secs(5));
        let later = now + Duration::from_secs(5);
        assert_eq!(admission.admit(later, peer, &retry, true), Admit::Queue(Priority::Proven));
        // The cookie is bound to the address and port it was sent to.
        let elsewhere = addr("[2001:db8::1]:51821");
        assert!(matches!(admission.admit(later, elsewhere, &retry, true), Admit::CookieReply(_)));
    }

    #[test]
    fn under_load_every_sender_without_a_cookie_gets_one() {
        let Setup { mut admission, key, now } = setup();
        let message = initiation(&mut CookieJar::default(), &key, now);
        assert!(matches!(
            admission.admit(now, addr("192.0.2.9:9"), &message, true),
            Admit::CookieReply(_)
        ));
    }

    #[test]
    fn proven_senders_have_a_budget_too() {
        let Setup { mut admission, key, now } = setup();
        let from = addr("192.0.2.1:1");
        let mut jar = CookieJar::default();
        let first = initiation(&mut jar, &key, now);
        let Admit::CookieReply(reply) = admission.admit(now, from, &first, true) else { panic!() };
        let reply = CookieReply::parse(&reply).unwrap();
        jar.consume_reply(&key, reply.nonce, reply.encrypted_cookie, now).unwrap();
        let retry = initiation(&mut jar, &key, now);
        let proven = (0..100)
            .filter(|_| admission.admit(now, from, &retry, true) == Admit::Queue(Priority::Proven))
            .count();
        assert_eq!(proven, HANDSHAKE_BURST_UNDER_LOAD as usize);
        assert_eq!(admission.admit(now, from, &retry, true), Admit::Drop(DropReason::RateLimited));
    }

    #[test]
    fn cookie_replies_are_budgeted_and_data_is_not_a_handshake() {
        let Setup { mut admission, now, .. } = setup();
        let from = addr("192.0.2.1:1");
        let reply = wire::emit_cookie_reply(1, &[0; 24], &[0; 32]);
        let queued = (0..100)
            .filter(|_| admission.admit(now, from, &reply, false) == Admit::Queue(Priority::Normal))
            .count();
        assert_eq!(queued, HANDSHAKE_BURST_UNDER_LOAD as usize);
        let data = [
            4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ];
        assert_eq!(admission.admit(now, from, &data, false), Admit::Drop(DropReason::Malformed));
    }
}
