//! The Linux edge of the wgfabricd data plane: the TUN device, the UDP sockets, and the packet
//! offloads between them. It holds the data plane's `unsafe` code; the only other `unsafe` is
//! the daemon's `daemonize` module (fork, setsid, dup2).
//!
//! ```text
//!  TUN ──read──► superframe ──offload::segment──► MTU-sized packets ──► [seal elsewhere]
//!   (TunQueue)   (vnet header + up to 64 KiB)     (caller's buffers)            │
//!                                                                               ▼
//!  UDP ◄──────────────── UdpSocket::send: equal-sized datagrams as one GSO message
//!
//!  UDP ──UdpSocket::recv──► GRO batch ──► [open elsewhere] ──► plaintext packets
//!                          (datagrams of one                       │
//!                           sender, back to back)                  ▼
//!  TUN ◄──TunQueue::write── superframes ◄──offload::Coalescer── (caller's buffers)
//! ```
//!
//! The design aims at the throughput of the kernel's own WireGuard from userspace: the kernel
//! and the NIC do the per-packet work wherever they can (TSO/USO superframes from the TUN,
//! GSO and GRO on the UDP sockets), what remains is done here without allocating or copying
//! more than once per packet, and every API takes batches of caller-owned buffers so several
//! worker threads can each run the whole path.
//!
//! Blocking calls wait in `poll` on their descriptor and on a [`Shutdown`] signal, so a
//! daemon can stop its threads at any time. A deleted TUN interface surfaces as
//! [`Error::LinkDeleted`]; a vanished source address on send as [`Error::SourceUnavailable`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod doorbell;
mod errno;
mod error;
mod heap;
pub mod offload;
mod sched;
mod shutdown;
mod sockopt;
pub mod tun;
pub mod udp;

pub use doorbell::Doorbell;
pub use error::Error;
pub use heap::trim_heap;
pub use sched::{
    idle_policy_is_reversible, nice_is_allowed, pin_current_thread, set_idle_policy, set_nice,
    set_precise_timers, Cpus, RunDelay,
};
pub use shutdown::{wait_readable, Ready, Shutdown};
pub use tun::{Offloads, Tun, TunConfig, TunQueue};
pub use udp::{LocalAddr, RecvBatch, RecvMeta, SendBatch, SendError, UdpSocket, UdpSockets};
