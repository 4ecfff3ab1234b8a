//! The Noise_IKpsk2 handshake (whitepaper §5.4.2–§5.4.5) as pure functions.
//!
//! Each message is built or consumed by one function that takes the keys and state it needs and
//! returns the next state; the device decides which peer and which index. MACs are not handled
//! here (see `cookie`): these functions see the message bytes before `mac1`.

use core::fmt;
use std::sync::OnceLock;

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, hash, kdf1, kdf2, kdf3, Secret};
use crate::keys::{PresharedKey, PrivateKey, PublicKey, SharedSecret, X25519Key};
use crate::tai64n::Tai64n;
use crate::wire::{self, Initiation, Response, INITIATION_LEN, RESPONSE_LEN};

/// C₀ = HASH(CONSTRUCTION): the initial chaining key.
pub(crate) const INITIAL_CHAINING_KEY: [u8; 32] = [
    0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0, 0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25, 0xd2, 0xd0,
    0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5, 0x2d, 0x38, 0xd1, 0x98, 0x8b, 0x78, 0xcd, 0x36,
];
/// H₀ = HASH(C₀ ‖ IDENTIFIER): the initial hash.
pub(crate) const INITIAL_HASH: [u8; 32] = [
    0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66, 0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a, 0xd5, 0x32,
    0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7, 0x0e, 0xe1, 0x9c, 0x65, 0xba, 0x07, 0x9e, 0xf3,
];

/// The device's own static key and the values derived from it.
pub(crate) struct Identity {
    pub(crate) private: PrivateKey,
    /// `private`, loaded once for the Diffie-Hellman operations of every handshake.
    agreement: X25519Key,
    pub(crate) public: PublicKey,
    /// H₀ mixed with our public key: the responder's starting hash.
    pub(crate) initial_hash: [u8; 32],
}

impl Identity {
    pub(crate) fn new(private: PrivateKey) -> Self {
        let agreement = X25519Key::new(&private);
        let public = agreement.public_key();
        let initial_hash = hash(&[&INITIAL_HASH, public.as_bytes()]);
        Self { private, agreement, public, initial_hash }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

/// What the handshake needs to know about one peer.
pub(crate) struct PeerKeys {
    pub(crate) remote: PublicKey,
    pub(crate) preshared: PresharedKey,
    /// DH(our static, their static), computed by the first handshake that needs it and kept
    /// until our private key changes: `None` inside when theirs is a low-order point. Computing
    /// it when a peer is configured made loading a million peers cost a million
    /// Diffie-Hellman operations, most of them for peers that never connect.
    static_static: OnceLock<Option<SharedSecret>>,
}

impl PeerKeys {
    pub(crate) fn new(remote: PublicKey) -> Self {
        Self { remote, preshared: PresharedKey::zero(), static_static: OnceLock::new() }
    }

    /// Forgets the static-static secret after our private key changed.
    pub(crate) fn identity_changed(&mut self) {
        self.static_static = OnceLock::new();
    }

    /// DH(our static, their static) under `identity`, computed once.
    fn static_static(&self, identity: &Identity) -> Result<&SharedSecret, HandshakeError> {
        let secret =
            self.static_static.get_or_init(|| identity.agreement.diffie_hellman(&self.remote));
        secret.as_ref().ok_or(HandshakeError::LowOrderKey)
    }
}

impl fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerKeys").field("remote", &self.remote).finish_non_exhaustive()
    }
}

/// The initiator's state between sending an initiation and receiving the response.
pub(crate) struct InitiationState {
    pub(crate) local_index: u32,
    ephemeral: X25519Key,
    hash: [u8; 32],
    chaining_key: Secret,
}

impl fmt::Debug for InitiationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiationState").field("local_index", &self.local_index).finish()
    }
}

impl Drop for InitiationState {
    fn drop(&mut self) {
        self.hash.zeroize();
    }
}

/// An initiation that decrypted and authenticated; the responder's next step is a response.
pub(crate) struct ConsumedInitiation {
    pub(crate) remote_index: u32,
    pub(crate) timestamp: Tai64n,
    remote_ephemeral: PublicKey,
    hash: [u8; 32],
    chaining_key: Secret,
}

impl Drop for ConsumedInitiation {
    fn drop(&mut self) {
        self.hash.zeroize();
    }
}

/// Transport keys derived at the end of a handshake.
pub(crate) struct SessionKeys {
    pub(crate) send: Secret,
    pub(crate) receive: Secret,
}

/// Why a handshake message was refused. Each is a reason to drop the packet quietly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The device has no private key.
    NoIdentity,
    /// The message did not decrypt or authenticate.
    Decrypt,
    /// The initiator's static key is not a configured peer.
    UnknownPeer,
    /// A Diffie-Hellman result was all zeros (a low-order public key).
    LowOrderKey,
}

fn dh(private: &X25519Key, public: &PublicKey) -> Result<SharedSecret, HandshakeError> {
    private.diffie_hellman(public).ok_or(HandshakeError::LowOrderKey)
}

/// Builds an initiation (without MACs) and the state to keep until the response arrives.
pub(crate) fn create_initiation<R: RngCore + CryptoRng>(
    identity: &Identity,
    peer: &PeerKeys,
    local_index: u32,
    timestamp: Tai64n,
    rng: &mut R,
) -> Result<([u8; INITIATION_LEN], InitiationState), HandshakeError> {
    let static_static = peer.static_static(identity)?;
    let ephemeral = X25519Key::generate(rng);
    let ephemeral_public = ephemeral.public_key();

    // H₀ mixed with their public key: the initiator's starting hash. Computed here rather than
    // stored, since it is needed once per initiation and every peer would carry it.
    let initial_hash = hash(&[&INITIAL_HASH, peer.remote.as_bytes()]);
    let mut h = hash(&[&initial_hash, ephemeral_public.as_bytes()]);
    let ck = kdf1(&INITIAL_CHAINING_KEY, ephemeral_public.as_bytes());
    let (ck, key) = kdf2(&ck, dh(&ephemeral, &peer.remote)?.as_bytes());
    let encrypted_static: [u8; 48] = crypto::seal(&key, 0, identity.public.as_bytes(), &h);
    h = hash(&[&h, &encrypted_static]);
    let (ck, key) = kdf2(&ck, static_static.as_bytes());
    let encrypted_timestamp: [u8; 28] = crypto::seal(&key, 0, &timestamp.0, &h);
    h = hash(&[&h, &encrypted_timestamp]);

    let message = wire::emit_initiation(
        local_index,
        ephemeral_public.as_bytes(),
        &encrypted_static,
        &encrypted_timestamp,
    );
    Ok((message, InitiationState { local_index, ephemeral, hash: h, chaining_key: ck }))
}

/// Decrypts an initiation. `find_peer` maps the initiator's static key to its precomputed keys;
/// the timestamp and flood checks are the caller's, since they need the peer's history.
pub(crate) fn consume_initiation<'p>(
    identity: &Identity,
    message: &Initiation<'_>,
    find_peer: impl FnOnce(&PublicKey) -> Option<&'p PeerKeys>,
) -> Result<(&'p PeerKeys, ConsumedInitiation), HandshakeError> {
    let remote_ephemeral = PublicKey::from_bytes(*message.ephemeral);
    let mut h = hash(&[&identity.initial_hash, message.ephemeral]);
    let ck = kdf1(&INITIAL_CHAINING_KEY, message.ephemeral);
    let (ck, key) = kdf2(&ck, dh(&identity.agreement, &remote_ephemeral)?.as_bytes());
    let remote_static: Zeroizing<[u8; 32]> =
        crypto::open(&key, 0, message.encrypted_static, &h).ok_or(HandshakeError::Decrypt)?;
    h = hash(&[&h, message.encrypted_static]);

    let peer =
        find_peer(&PublicKey::from_bytes(*remote_static)).ok_or(HandshakeError::UnknownPeer)?;
    let static_static = peer.static_static(identity)?;
    let (ck, key) = kdf2(&ck, static_static.as_bytes());
    let timestamp: Zeroizing<[u8; 12]> =
        crypto::open(&key, 0, message.encrypted_timestamp, &h).ok_or(HandshakeError::Decrypt)?;
    h = hash(&[&h, message.encrypted_timestamp]);

    Ok((
        peer,
        ConsumedInitiation {
            remote_index: message.sender,
            timestamp: Tai64n(*timestamp),
            remote_ephemeral,
            hash: h,
            chaining_key: ck,
        },
    ))
}

/// Builds the response to a consumed initiation (without MACs) and derives the session keys.
pub(crate) fn create_response<R: RngCore + CryptoRng>(
    peer: &PeerKeys,
    initiation: &ConsumedInitiation,
    local_index: u32,
    rng: &mut R,
) -> Result<([u8; RESPONSE_LEN], SessionKeys), HandshakeError> {
    let ephemeral = X25519Key::generate(rng);
    let ephemeral_public = ephemeral.public_key();

    let mut h = hash(&[&initiation.hash, ephemeral_public.as_bytes()]);
    let ck = kdf1(&initiation.chaining_key, ephemeral_public.as_bytes());
    let ck = kdf1(&ck, dh(&ephemeral, &initiation.remote_ephemeral)?.as_bytes());
    let ck = kdf1(&ck, dh(&ephemeral, &peer.remote)?.as_bytes());
    let (ck, tau, key) = kdf3(&ck, peer.preshared.as_bytes_secret());
    h = hash(&[&h, &*tau]);
    let encrypted_nothing: [u8; 16] = crypto::seal(&key, 0, &[], &h);
    h.zeroize();

    let message = wire::emit_response(
        local_index,
        initiation.remote_index,
        ephemeral_public.as_bytes(),
        &encrypted_nothing,
    );
    let (receive, send) = kdf2(&ck, &[]);
    Ok((message, SessionKeys { send, receive }))
}

/// Consumes the response to our initiation and derives the session keys.
pub(crate) fn consume_response(
    identity: &Identity,
    peer: &PeerKeys,
    state: &InitiationState,
    message: &Response<'_>,
) -> Result<SessionKeys, HandshakeError> {
    let remote_ephemeral = PublicKey::from_bytes(*message.ephemeral);
    let mut h = hash(&[&state.hash, message.ephemeral]);
    let ck = kdf1(&state.chaining_key, message.ephemeral);
    let ck = kdf1(&ck, dh(&state.ephemeral, &remote_ephemeral)?.as_bytes());
    let ck = kdf1(&ck, dh(&identity.agreement, &remote_ephemeral)?.as_bytes());
    let (ck, tau, key) = kdf3(&ck, peer.preshared.as_bytes_secret());
    h = hash(&[&h, &*tau]);
    let _: Zeroizing<[u8; 0]> =
        crypto::open(&key, 0, message.encrypted_nothing, &h).ok_or(HandshakeError::Decrypt)?;
    h.zeroize();

    let (send, receive) = kdf2(&ck, &[]);
    Ok(SessionKeys { send, receive })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{CONSTRUCTION, IDENTIFIER};
    use rand_core::SeedableRng;

    #[test]
    fn initial_values_follow_from_the_construction() {
        assert_eq!(INITIAL_CHAINING_KEY, hash(&[CONSTRUCTION]));
        assert_eq!(INITIAL_HASH, hash(&[&INITIAL_CHAINING_KEY, IDENTIFIER]));
    }

    fn setup(psk: [u8; 32]) -> (Identity, Identity, PeerKeys, PeerKeys, rand_chacha::ChaCha20Rng) {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let a = Identity::new(PrivateKey::generate(&mut rng));
        let b = Identity::new(PrivateKey::generate(&mut rng));
        let mut a_sees_b = PeerKeys::new(b.public);
        let mut b_sees_a = PeerKeys::new(a.public);
        a_sees_b.preshared = PresharedKey::from_bytes(psk);
        b_sees_a.preshared = PresharedKey::from_bytes(psk);
        (a, b, a_sees_b, b_sees_a, rng)
    }

    #[test]
    fn the_static_secret_is_computed_at_the_first_handshake_and_forgotten_with_our_key() {
        let (a, b, mut a_sees_b, _, mut rng) = setup([0; 32]);
        assert!(a_sees_b.static_static.get().is_none(), "nothing computed when configured");
        let ts = Tai64n::from_unix(core::time::Duration::from_secs(1_000));
        create_initiation(&a, &a_sees_b, 1, ts, &mut rng).unwrap();
        assert!(a_sees_b.static_static.get().is_some());
        // Our key changes: the secret cached under the old one must not be used.
        let a2 = Identity::new(PrivateKey::generate(&mut rng));
        a_sees_b.identity_changed();
        assert!(a_sees_b.static_static.get().is_none());
        let b_sees_a2 = PeerKeys::new(a2.public);
        let (init, _) = create_initiation(&a2, &a_sees_b, 2, ts, &mut rng).unwrap();
        let parsed = Initiation::parse(&init).unwrap();
        let consumed = consume_initiation(&b, &parsed, |k| (*k == a2.public).then_some(&b_sees_a2));
        assert!(consumed.is_ok(), "the initiation under the new key decrypts");
    }

    #[test]
    fn full_handshake_agrees_on_keys() {
        let (a, b, a_sees_b, b_sees_a, mut rng) = setup([0; 32]);
        let ts = Tai64n::from_unix(core::time::Duration::from_secs(1_000));
        let (init, state) = create_initiation(&a, &a_sees_b, 11, ts, &mut rng).unwrap();
        let parsed = Initiation::parse(&init).unwrap();
        let (peer, consumed) =
            consume_initiation(&b, &parsed, |k| (*k == a.public).then_some(&b_sees_a)).unwrap();
        assert_eq!(peer.remote, a.public);
        assert_eq!(consumed.remote_index, 11);
        assert_eq!(consumed.timestamp, ts);
        let (resp, b_keys) = create_response(peer, &consumed, 22, &mut rng).unwrap();
        let parsed = Response::parse(&resp).unwrap();
        assert_eq!((parsed.sender, parsed.receiver), (22, 11));
        let a_keys = consume_response(&a, &a_sees_b, &state, &parsed).unwrap();
        assert_eq!(*a_keys.send, *b_keys.receive);
        assert_eq!(*a_keys.receive, *b_keys.send);
        assert_ne!(*a_keys.send, *a_keys.receive);
    }

    #[test]
    fn mismatched_preshared_keys_fail_the_response() {
        let (a, b, a_sees_b, mut b_sees_a, mut rng) = setup([1; 32]);
        b_sees_a.preshared = PresharedKey::from_bytes([2; 32]);
        let ts = Tai64n::from_unix(core::time::Duration::from_secs(1));
        let (init, state) = create_initiation(&a, &a_sees_b, 1, ts, &mut rng).unwrap();
        let (peer, consumed) =
            consume_initiation(&b, &Initiation::parse(&init).unwrap(), |_| Some(&b_sees_a))
                .unwrap();
        let (resp, _) = create_response(peer, &consumed, 2, &mut rng).unwrap();
        let result = consume_response(&a, &a_sees_b, &state, &Response::parse(&resp).unwrap());
        assert_eq!(result.err(), Some(HandshakeError::Decrypt));
    }

    #[test]
    fn unknown_or_tampered_initiations_are_refused() {
        let (a, b, a_sees_b, b_sees_a, mut rng) = setup([0; 32]);
        let ts = Tai64n::from_unix(core::time::Duration::from_secs(1));
        let (init, _) = create_initiation(&a, &a_sees_b, 1, ts, &mut rng).unwrap();
        let parsed = Initiation::parse(&init).unwrap();
        assert_eq!(
            consume_initiation(&b, &parsed, |_| None).err(),
            Some(HandshakeError::UnknownPeer)
        );
        for i in [8, 40, 100] {
            let mut bad = init;
            bad[i] ^= 0x40;
            let parsed = Initiation::parse(&bad).unwrap();
            assert!(consume_initiation(&b, &parsed, |_| Some(&b_sees_a)).is_err(), "byte {i}");
        }
    }
}
