//! Protocol constants.
//!
//! The first group is fixed by the WireGuard whitepaper (section numbers refer to it) and must
//! never change: peers would stop interoperating. The second group is this implementation's
//! choice, matching the Linux kernel module's values.

use core::time::Duration;

/// The Noise construction name hashed into the initial chaining key (§5.4).
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// The protocol identifier mixed into the initial hash (§5.4).
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label for the key of `mac1` (§5.4.4).
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label for the key that encrypts cookies (§5.4.7).
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Initiate a new handshake after this many messages on one session (§6.1).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never use a session for more messages than this (§6.1): 2^64 − 2^13 − 1.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator starts a new handshake when its session is this old (§6.1).
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No session is used for sending or receiving once it is this old (§6.1).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long (§6.4).
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retransmit an unanswered handshake initiation after this long, plus jitter (§6.4).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Send a keepalive when data was received but nothing sent for this long (§6.5).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A responder's cookie secret changes this often (§5.4.7).
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// An initiator stops using a cookie this long before the responder would rotate it away.
pub const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);

/// Upper bound of the random jitter added to every handshake retransmission.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
/// Handshake initiations accepted from one peer per second (flood limit).
pub const INITIATIONS_PER_SECOND: u32 = 50;
/// Retransmissions before a handshake attempt is abandoned: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
pub const MAX_TIMER_HANDSHAKES: u32 =
    (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// Packets held per peer while a handshake is pending; the oldest is dropped beyond this.
pub const MAX_STAGED_PACKETS: usize = 128;
/// Handshake packets per second accepted from one source address while under load.
pub const HANDSHAKES_PER_SECOND_UNDER_LOAD: u32 = 20;
/// Burst of handshake packets accepted from one source address while under load.
pub const HANDSHAKE_BURST_UNDER_LOAD: u32 = 5;
/// The userspace API's only protocol version.
pub const PROTOCOL_VERSION: u32 = 1;
