//! The whitepaper's primitives (§5.4): HASH, MAC, HMAC, KDFn, AEAD and XAEAD.
//!
//! Thin wrappers over well-kept crates: BLAKE2s from `blake2`, HMAC from `hmac`,
//! ChaCha20-Poly1305 from `ring` (fast, used on the data path too), and XChaCha20-Poly1305 from
//! `chacha20poly1305` (only for the rare cookie reply). Intermediate secrets are zeroized.

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XChaCha20Poly1305;
use hmac::SimpleHmac;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

pub(crate) use crate::wire::TAG_LEN;

/// A 32-byte value that must be wiped when dropped (chaining keys, derived keys).
pub(crate) type Secret = Zeroizing<[u8; 32]>;

/// HASH(input...): BLAKE2s-256 over the concatenation of `parts`.
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Blake2s256::new();
    for part in parts {
        Digest::update(&mut hasher, part);
    }
    hasher.finalize().into()
}

/// MAC(key, input): keyed BLAKE2s with a 16-byte output.
pub(crate) fn mac(key: &[u8], input: &[u8]) -> [u8; 16] {
    // A BLAKE2s key is at most 32 bytes; every caller passes 16 or 32.
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(key)
        .expect("BLAKE2s keys of 16 or 32 bytes are valid");
    Mac::update(&mut mac, input);
    mac.finalize_fixed().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Secret {
    let mut mac = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    for part in parts {
        Mac::update(&mut mac, part);
    }
    Zeroizing::new(mac.finalize_fixed().into())
}

/// KDF1: one 32-byte output keyed by `key` over `input`.
pub(crate) fn kdf1(key: &[u8; 32], input: &[u8]) -> Secret {
    let prk = hmac(key, &[input]);
    hmac(&*prk, &[&[1]])
}

/// KDF2: two outputs.
pub(crate) fn kdf2(key: &[u8; 32], input: &[u8]) -> (Secret, Secret) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&*prk, &[&[1]]);
    let t2 = hmac(&*prk, &[&*t1, &[2]]);
    (t1, t2)
}

/// KDF3: three outputs.
pub(crate) fn kdf3(key: &[u8; 32], input: &[u8]) -> (Secret, Secret, Secret) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&*prk, &[&[1]]);
    let t2 = hmac(&*prk, &[&*t1, &[2]]);
    let t3 = hmac(&*prk, &[&*t2, &[3]]);
    (t1, t2, t3)
}

/// The AEAD nonce for `counter`: 32 zero bits then the 64-bit little-endian counter.
pub(crate) fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// A ChaCha20-Poly1305 key ready for use. ChaCha20 has no key schedule, so building one per
/// call costs a 32-byte copy; the long-lived copy stays in zeroizing storage.
pub(crate) fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20-Poly1305 keys are 32 bytes"),
    )
}

/// AEAD(key, counter, plain, aad) for a fixed-size message: `N` plaintext bytes in, `M = N + 16`
/// bytes out.
pub(crate) fn seal<const N: usize, const M: usize>(
    key: &[u8; 32],
    counter: u64,
    plain: &[u8; N],
    aad: &[u8],
) -> [u8; M] {
    debug_assert_eq!(M, N + TAG_LEN);
    let mut out = [0u8; M];
    out[..N].copy_from_slice(plain);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), &mut out[..N])
        .expect("sealing a handshake field cannot exceed the AEAD's limits");
    out[N..].copy_from_slice(tag.as_ref());
    out
}

/// The inverse of [`seal`]; `None` when authentication fails.
pub(crate) fn open<const M: usize, const N: usize>(
    key: &[u8; 32],
    counter: u64,
    sealed: &[u8; M],
    aad: &[u8],
) -> Option<Zeroizing<[u8; N]>> {
    debug_assert_eq!(M, N + TAG_LEN);
    let mut buf = Zeroizing::new(*sealed);
    let plain = aead_key(key).open_in_place(nonce(counter), Aad::from(aad), &mut buf[..]).ok()?;
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(plain);
    Some(out)
}

/// XAEAD(key, nonce, cookie, aad): seals a 16-byte cookie with XChaCha20-Poly1305.
pub(crate) fn xseal(key: &[u8; 32], nonce: &[u8; 24], cookie: &[u8; 16], aad: &[u8]) -> [u8; 32] {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(cookie);
    let tag = cipher
        .encrypt_in_place_detached(nonce.into(), aad, &mut out[..16])
        .expect("a 16-byte cookie is within XChaCha20-Poly1305's limits");
    out[16..].copy_from_slice(&tag);
    out
}

/// The inverse of [`xseal`]; `None` when authentication fails.
pub(crate) fn xopen(
    key: &[u8; 32],
    nonce: &[u8; 24],
    sealed: &[u8; 32],
    aad: &[u8],
) -> Option<[u8; 16]> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&sealed[..16]);
    cipher.decrypt_in_place_detached(nonce.into(), aad, &mut cookie, sealed[16..].into()).ok()?;
    Some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = [9u8; 32];
        let sealed: [u8; 48] = seal(&key, 0, &[1u8; 32], b"aad");
        let opened: Zeroizing<[u8; 32]> = open(&key, 0, &sealed, b"aad").unwrap();
        assert_eq!(*opened, [1u8; 32]);
        assert!(open::<48, 32>(&key, 1, &sealed, b"aad").is_none());
        assert!(open::<48, 32>(&key, 0, &sealed, b"aaD").is_none());
        let mut bad = sealed;
        bad[0] ^= 1;
        assert!(open::<48, 32>(&key, 0, &bad, b"aad").is_none());
    }

    #[test]
    fn xaead_round_trip_and_tamper() {
        let sealed = xseal(&[3; 32], &[4; 24], &[5; 16], b"mac1");
        assert_eq!(xopen(&[3; 32], &[4; 24], &sealed, b"mac1"), Some([5; 16]));
        assert_eq!(xopen(&[3; 32], &[4; 24], &sealed, b"mac2"), None);
        assert_eq!(xopen(&[3; 32], &[5; 24], &sealed, b"mac1"), None);
    }

    #[test]
    fn kdf_outputs_chain() {
        // KDF2's first output equals KDF1's; KDF3 extends KDF2.
        let (a, b) = kdf2(&[1; 32], b"input");
        let (c, d, e) = kdf3(&[1; 32], b"input");
        assert_eq!(*kdf1(&[1; 32], b"input"), *a);
        assert_eq!((*a, *b), (*c, *d));
        assert_ne!(*d, *e);
    }
}
