//! `mac1`, `mac2` and cookie replies: WireGuard's defence against handshake floods (§5.4.4,
//! §5.4.7).
//!
//! Every handshake message carries `mac1`, keyed by the receiver's public key, so a host that
//! does not know that key cannot make it spend a Diffie-Hellman. When a responder is under load
//! it also demands `mac2`, keyed by a cookie bound to the sender's IP address and port: without
//! one it answers with a cookie reply instead of doing any asymmetric work, so a spoofed source
//! learns nothing and a real one proves it can receive at its address.
//!
//! [`CookieChecker`] is the responder's side (one per device), [`CookieJar`] the initiator's
//! (one per peer).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::constants::{COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE, LABEL_COOKIE, LABEL_MAC1};
use crate::crypto::{hash, mac, xopen, xseal};
use crate::keys::PublicKey;
use crate::wire::{self, COOKIE_REPLY_LEN};

/// Where `mac1` starts in a handshake message; everything before it is covered by `mac1`.
fn mac1_offset(message: &[u8]) -> Option<usize> {
    match message.len() {
        wire::INITIATION_LEN => Some(wire::INITIATION_MAC1),
        wire::RESPONSE_LEN => Some(wire::RESPONSE_MAC1),
        _ => None,
    }
}

/// The bytes of a source address that a cookie is bound to.
fn address_bytes(source: SocketAddr) -> ([u8; 18], usize) {
    let mut out = [0u8; 18];
    let len = match source.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            out[4..6].copy_from_slice(&source.port().to_be_bytes());
            6
        }
        IpAddr::V6(ip) => {
            out[..16].copy_from_slice(&ip.octets());
            out[16..18].copy_from_slice(&source.port().to_be_bytes());
            18
        }
    };
    (out, len)
}

/// The responder's side: validates MACs and issues cookies.
pub(crate) struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
    secret_born: Option<Instant>,
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker").finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// A checker for messages addressed to `our_public`.
    pub(crate) fn new(our_public: &PublicKey) -> Self {
        Self {
            mac1_key: hash(&[LABEL_MAC1, our_public.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, our_public.as_bytes()]),
            secret: Zeroizing::new([0; 32]),
            secret_born: None,
        }
    }

    /// Whether `message` (an initiation or a response) carries the right `mac1`: its sender
    /// knows our public key.
    pub(crate) fn mac1_valid(&self, message: &[u8]) -> bool {
        let Some(at) = mac1_offset(message) else { return false };
        let (covered, macs) = message.split_at(at);
        bool::from(mac(&self.mac1_key, covered).ct_eq(&macs[..16]))
    }

    /// Whether `message` carries a `mac2` made with the cookie of `source`: its sender proved
    /// it receives at that address and port. An all-zero `mac2` (no cookie) is refused
    /// without hashing.
    pub(crate) fn mac2_valid<R: RngCore + CryptoRng>(
        &mut self,
        message: &[u8],
        source: SocketAddr,
        now: Instant,
        rng: &mut R,
    ) -> bool {
        let Some(at) = mac1_offset(message) else { return false };
        let (covered, mac2) = message.split_at(at + 16);
        if mac2.iter().all(|&b| b == 0) {
            return false;
        }
        let cookie = self.cookie_for(source, now, rng);
        bool::from(mac(&*cookie, covered).ct_eq(mac2))
    }

    /// The cookie for `source`: MAC(secret, address ‖ port), with the secret rotated every two
    /// minutes.
    fn cookie_for<R: RngCore + CryptoRng>(
        &mut self,
        source: SocketAddr,
        now: Instant,
        rng: &mut R,
    ) -> Zeroizing<[u8; 16]> {
        let fresh = self
            .secret_born
            .is_some_and(|born| now.saturating_duration_since(born) < COOKIE_SECRET_MAX_AGE);
        if !fresh {
            rng.fill_bytes(&mut *self.secret);
            self.secret_born = Some(now);
        }
        let (bytes, len) = address_bytes(source);
        Zeroizing::new(mac(&*self.secret, &bytes[..len]))
    }

    /// A cookie reply to `message` (whose sender index is `receiver`), encrypted so that only
    /// the holder of the `mac1` it answers can read it.
    pub(crate) fn reply<R: RngCore + CryptoRng>(
        &mut self,
        message: &[u8],
        receiver: u32,
        source: SocketAddr,
        now: Instant,
        rng: &mut R,
    ) -> Option<[u8; COOKIE_REPLY_LEN]> {
        let at = mac1_offset(message)?;
        let mac1 = message.get(at..at + 16)?;
        let cookie = self.cookie_for(source, now, rng);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = xseal(&self.cookie_key, &nonce, &cookie, mac1);
        Some(wire::emit_cookie_reply(receiver, &nonce, &sealed))
    }
}

/// The initiator's side for one peer: stamps MACs on outgoing handshake messages and keeps the
/// latest cookie that peer gave us. Its keys are derived from the peer's public key when used
/// (a hash per handshake message) rather than stored, to keep every peer small.
#[derive(Default)]
pub(crate) struct CookieJar {
    /// The `mac1` of our latest handshake message, while a cookie reply to it may come.
    last_mac1: Option<[u8; 16]>,
    /// The latest cookie and when it came (boxed: most peers never get one).
    cookie: Option<Box<(Zeroizing<[u8; 16]>, Instant)>>,
}

impl core::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieJar").field("has_cookie", &self.cookie.is_some()).finish()
    }
}

/// Why a cookie reply was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieError {
    /// We sent nothing a cookie could answer (or already took a cookie for it).
    Unexpected,
    /// It did not decrypt with the `mac1` we sent.
    Decrypt,
}

impl CookieJar {
    /// Fills in `mac1` and, while our cookie is fresh, `mac2`, of a handshake message to
    /// `their_public`.
    pub(crate) fn stamp(&mut self, their_public: &PublicKey, message: &mut [u8], now: Instant) {
        let Some(at) = mac1_offset(message) else { return };
        let mac1_key = hash(&[LABEL_MAC1, their_public.as_bytes()]);
        let mac1 = mac(&mac1_key, &message[..at]);
        message[at..at + 16].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        let usable = COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY;
        let mac2 = match self.cookie.as_deref() {
            Some((cookie, born)) if now.saturating_duration_since(*born) < usable => {
                mac(&**cookie, &message[..at + 16])
            }
            _ => [0; 16],
        };
        message[at + 16..at + 32].copy_from_slice(&mac2);
    }

    /// Takes the cookie from a reply from `their_public` to our latest message.
    pub(crate) fn consume_reply(
        &mut self,
        their_public: &PublicKey,
        nonce: &[u8; 24],
        encrypted_cookie: &[u8; 32],
        now: Instant,
    ) -> Result<(), CookieError> {
        let mac1 = self.last_mac1.ok_or(CookieError::Unexpected)?;
        let cookie_key = hash(&[LABEL_COOKIE, their_public.as_bytes()]);
        let cookie =
            xopen(&cookie_key, nonce, encrypted_cookie, &mac1).ok_or(CookieError::Decrypt)?;
        self.cookie = Some(Box::new((Zeroizing::new(cookie), now)));
        self.last_mac1 = None;
        Ok(())
    }

    /// How old our cookie is, if we hold one (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn cookie_age(&self, now: Instant) -> Option<core::time::Duration> {
        self.cookie.as_deref().map(|(_, born)| now.saturating_duration_since(*born))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use core::time::Duration;
    use rand_core::SeedableRng;

    /// A responder's checker, an initiator's jar for it, and the responder's key.
    fn setup() -> (CookieChecker, Jar, rand_chacha::ChaCha20Rng, Instant) {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let responder = PrivateKey::generate(&mut rng).public_key();
        let jar = Jar { jar: CookieJar::default(), to: responder };
        (CookieChecker::new(&responder), jar, rng, Instant::now())
    }

    /// A jar bound to the key it stamps for.
    struct Jar {
        jar: CookieJar,
        to: PublicKey,
    }

    impl Jar {
        fn stamp(&mut self, message: &mut [u8], now: Instant) {
            self.jar.stamp(&self.to, message, now);
        }

        fn consume_reply(
            &mut self,
            nonce: &[u8; 24],
            sealed: &[u8; 32],
            now: Instant,
        ) -> Result<(), CookieError> {
            self.jar.consume_reply(&self.to, nonce, sealed, now)
        }

        fn cookie_age(&self, now: Instant) -> Option<Duration> {
            self.jar.cookie_age(now)
        }
    }

    fn initiation() -> [u8; wire::INITIATION_LEN] {
        wire::emit_initiation(5, &[1; 32], &[2; 48], &[3; 28])
    }

    #[test]
    fn mac1_is_always_checked() {
        let (checker, mut jar, mut rng, now) = setup();
        let mut msg = initiation();
        jar.stamp(&mut msg, now);
        assert!(checker.mac1_valid(&msg));
        msg[20] ^= 1;
        assert!(!checker.mac1_valid(&msg));
        // A jar for another key produces a mac1 this checker refuses.
        let other = PrivateKey::generate(&mut rng).public_key();
        let mut msg = initiation();
        CookieJar::default().stamp(&other, &mut msg, now);
        assert!(!checker.mac1_valid(&msg));
        // Neither length of handshake message is anything else.
        assert!(!checker.mac1_valid(&msg[..100]));
    }

    #[test]
    fn cookie_exchange_under_load() {
        let (mut checker, mut jar, mut rng, now) = setup();
        let src: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        let mut msg = initiation();
        jar.stamp(&mut msg, now);
        assert!(!checker.mac2_valid(&msg, src, now, &mut rng));

        let reply = checker.reply(&msg, 5, src, now, &mut rng).unwrap();
        let parsed = wire::CookieReply::parse(&reply).unwrap();
        assert_eq!(parsed.receiver, 5);
        jar.consume_reply(parsed.nonce, parsed.encrypted_cookie, now).unwrap();
        // One cookie per message we sent.
        assert_eq!(
            jar.consume_reply(parsed.nonce, parsed.encrypted_cookie, now),
            Err(CookieError::Unexpected)
        );

        let mut retry = initiation();
        jar.stamp(&mut retry, now);
        assert!(checker.mac1_valid(&retry));
        assert!(checker.mac2_valid(&retry, src, now, &mut rng));
        // The cookie is bound to the source address and port.
        let elsewhere: SocketAddr = "[2001:db8::1]:4001".parse().unwrap();
        assert!(!checker.mac2_valid(&retry, elsewhere, now, &mut rng));
    }

    #[test]
    fn cookies_expire_on_both_sides() {
        let (mut checker, mut jar, mut rng, now) = setup();
        let src: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let mut msg = initiation();
        jar.stamp(&mut msg, now);
        let reply = checker.reply(&msg, 5, src, now, &mut rng).unwrap();
        let parsed = wire::CookieReply::parse(&reply).unwrap();
        jar.consume_reply(parsed.nonce, parsed.encrypted_cookie, now).unwrap();
        assert_eq!(jar.cookie_age(now), Some(Duration::ZERO));

        // The initiator stops using it before the responder's secret rotates...
        let later = now + COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY;
        let mut msg = initiation();
        jar.stamp(&mut msg, later);
        assert_eq!(&msg[wire::INITIATION_MAC1 + 16..], &[0; 16]);
        // ...and after the rotation an old cookie is worthless.
        let mut msg = initiation();
        jar.stamp(&mut msg, now + Duration::from_secs(1));
        let rotated = now + COOKIE_SECRET_MAX_AGE + Duration::from_secs(1);
        assert!(!checker.mac2_valid(&msg, src, rotated, &mut rng));
    }

    #[test]
    fn forged_cookie_replies_are_refused() {
        let (mut checker, mut jar, mut rng, now) = setup();
        let src: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let mut msg = initiation();
        jar.stamp(&mut msg, now);
        let reply = checker.reply(&msg, 5, src, now, &mut rng).unwrap();
        let mut forged = reply;
        forged[40] ^= 1;
        let parsed = wire::CookieReply::parse(&forged).unwrap();
        assert_eq!(
            jar.consume_reply(parsed.nonce, parsed.encrypted_cookie, now),
            Err(CookieError::Decrypt)
        );
    }
}
