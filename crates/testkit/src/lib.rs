//! Test-only helpers for system tests that need root and network namespaces.
//!
//! ```text
//! Netns::new("wgf")  ──veth()──  Netns::new("wgf")      namespaces, deleted on drop
//!     │                              │
//! Daemon::start(ns, Impl::…, "wg…")  Daemon::start(…)   killed (TERM, then KILL) on drop
//!     │ .setconf(&WgConfig) .dump()  │                   through the stock `wg` tool
//!     └──── ping / transfer() (netprobe, hash-checked) ──┘
//! ```
//!
//! Every guard cleans up in `Drop`, so a panicking test leaves no namespace, daemon, socket
//! or secret file behind. Helpers panic with the full command, status and output when
//! something fails, which is what a failing test should print. Tests that use this crate
//! need root: mark them `#[ignore = "needs root and network namespaces"]`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test tooling runs in real time, with real keys"
)]

mod daemon;
mod etcd;
mod flood;
mod garbage;
pub mod packet;
mod password_store;
mod pki;
pub mod scenarios;
mod scrape;
mod tools;
mod transfer;
mod wg;

pub use daemon::{unique_interface_name, Daemon, Impl, SOCKET_DIR};
pub use etcd::{Etcd, EtcdTls};
pub use flood::flood_handshakes;
pub use garbage::{garbage_relay, nonsense, spray_garbage, GARBAGE_PER_SECOND, MESSAGE_SHAPES};
pub use password_store::PasswordStore;
pub use pki::{CertFiles, TestCa};
pub use scrape::{metric_value, scrape, WithFlags};
pub use tools::{assert_promtool_accepts, on_path, require, require_tool, Skip};
pub use transfer::{netprobe_path, transfer};
pub use wg::{keypair, preshared_key, DumpPeer, TempFile, WgConfig, WgDump, WgPeer};
pub use wgfabric_netns::{
    run, run_command, veth, wait_until, Background, CommandError, Netns, PingStats,
};
