//! The wgfabric controller: one Git-versioned inventory in, every host's WireGuard
//! configuration out.
//!
//! ```text
//!  fabric.toml ──► Inventory ──┬──► lint::check ──► Vec<Finding>
//!  (inventory)    (validated)  │
//!                              ▼
//!  fabric.lock ──► Lock::update ──► Fabric ──► host_config(HOST) ──► HostConfig
//!  (addresses)    (sticky IPAM)    (inv+lock)                          │
//!                                                 ┌────────────────────┼──────────────────┐
//!                                                 ▼                    ▼                  ▼
//!                                         render::* (wg-quick,   plan::plan vs     diff::diff_device vs
//!                                         networkd, setconf,     state.json        wgconf::parse(live)
//!                                         JSON, Terraform,
//!                                         Ansible, graph)
//! ```
//!
//! Everything between the files is pure: no clock, no randomness, no I/O. Files are read by
//! the `load` functions and written by [`files`] (all or nothing, secrets 0600, unchanged
//! files left alone), which [`render::render_into`] uses to write a render host by host. Keys are
//! generated on hosts ([`keys`]) or kept encrypted in the repository ([`keystore`]); the
//! caller supplies the random generator. Nothing in this crate parses command lines.
//!
//! An agent applying the desired state on a host uses [`Fabric::load`],
//! [`Fabric::host_config`], [`wgconf::parse`] on `wg showconf` output and
//! [`diff::diff_device`]; for relay failover it runs [`failover::watch`], which applies
//! [`HostConfig::with_active_relay`] when the active relay stops answering.
//!
//! The I/O edges talk to the kernel and the daemon directly: [`netlink`] (addresses, routes,
//! rules, link state), [`sysctl`] (`/proc/sys`), [`probe`] (ICMP echo) and the userspace API
//! client ([`agent::Device`]). [`failover`]'s watch loop runs on them; [`netns`] (network
//! namespaces, created with `ip netns`) and [`demo`] (the example fabric running on one
//! machine, which `wgfabric demo` and the system tests drive) still run a few stock tools.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod apply;
pub mod audit;
pub mod cidr;
pub mod config;
pub mod demo;
pub mod diff;
pub mod durations;
pub mod endpoint;
pub mod error;
pub mod etcd;
pub mod fabric;
pub mod failover;
pub mod files;
pub mod host_path;
pub mod hostup;
pub mod inventory;
pub mod journal;
pub mod key_source;
pub mod keys;
pub mod keystore;
pub mod lint;
pub mod lock;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod render;
pub mod rotate;
mod serde_keys;
mod serde_stream;
mod serde_text;
mod source;
pub mod state;
pub mod store;
pub mod sysctl;
mod wallclock;
pub mod wgconf;

pub use config::{Failover, HostConfig, PeerConfig};
pub use error::{Error, SourceError};
pub use fabric::Fabric;
pub use inventory::Inventory;
pub use lock::Lock;
