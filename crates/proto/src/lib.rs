//! The WireGuard protocol as a deterministic state machine.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keys;
pub mod uapi;
