//! The WireGuard protocol as a deterministic state machine.
//!
//! This crate is WireGuard without any I/O: no sockets, no threads, no clock and no global
//! randomness. The caller passes bytes, the current time and a random seed in, and takes bytes
//! to send, packets to deliver, lifecycle events and the next timer deadline out. That keeps the
//! protocol deterministic and testable, and lets the daemon run the cryptography on every core.
//!
//! ```text
//!             TUN packet                                   UDP datagram
//!                 │                                              │
//!        Device::route ─► Device::prepare_send          Device::session(index)
//!                 │        (or stage_packet)                     │
//!          Session::seal   ◄── any thread, no lock ──►   Session::open
//!                 │                                              │
//!            UDP datagram                             Device::receive_data ─► TUN packet
//!
//!   handshakes, cookies: Admission::admit ─► Device::handle_admitted ─► Device::poll_transmit
//!                        (or both at once: Device::handle_handshake)
//!   timers:              Device::poll_timeout ─► Device::handle_timeout
//!   lifecycle:           Device::poll_event
//! ```
//!
//! Module map: `wire` (message layouts), `crypto` (the whitepaper's primitives), `noise`
//! (handshake messages), `cookie` (mac1/mac2 and cookie replies), `admission` and `ratelimit`
//! (who may cost us a Diffie-Hellman), `session` (transport keys), `replay` (the replay
//! window), `timers` and `peer` (per-peer state), `device` (the state machine), `allowed_ips`
//! (cryptokey routing), `uapi` (the userspace API text format).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    test,
    allow(clippy::disallowed_methods, reason = "tests start their virtual clocks at the real now")
)]

pub mod admission;
pub mod allowed_ips;
pub mod cidr;
pub mod constants;
mod cookie;
mod crypto;
mod device;
pub mod ip;
pub mod keys;
mod noise;
mod peer;
mod peer_id;
mod ratelimit;
mod replay;
pub mod session;
mod tai64n;
mod timers;
pub mod uapi;
pub mod wire;

pub use cidr::Cidr;
pub use device::{
    Decapsulated, Device, DropReason, Encapsulated, Event, NotReady, Outbound, PeerCursor,
    PeerInfo, Stats, Transmit, Verdict, DEFAULT_MTU,
};
pub use noise::HandshakeError;
pub use peer::{Endpoint, PeerId, PeerStats, SourceAddr};
pub use session::{OpenError, Opened, SealError, Session};
