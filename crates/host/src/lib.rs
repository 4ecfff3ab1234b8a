//! What runs on a host of the fabric: the agent that keeps a WireGuard interface equal to its
//! desired state, relay failover, and the kernel interfaces they use.
//!
//! ```text
//!  store (wgfabric-store) ──► agent ──► daemon (userspace API: agent::device)
//!                               │ ├───► netlink (addresses, routes, link state)
//!                               │ ├───► sysctl (/proc/sys) and nftables (the policy's table)
//!                               │ └───► audit log (wgfabric-audit)
//!                               └─ failover: probe (ICMP echo) each relay, move routes
//! ```
//!
//! [`hostup`] is `wgfabric up` and `down`: the same pieces, once, with a record of every change
//! so that it can be undone ([`daemon_binary`] finds the daemon it starts).
//!
//! Every module here talks to the operating system; the decisions they carry out are made in
//! `wgfabric-model`. [`namespace`] (`wgfabric-netns`) runs a socket or a command inside a
//! network namespace.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod daemon_binary;
pub mod failover;
pub mod hostup;
pub mod netlink;
pub mod nftables;
pub mod paths;
pub mod probe;
pub mod sysctl;

/// Running code or a command inside a network namespace.
pub use wgfabric_netns as namespace;
