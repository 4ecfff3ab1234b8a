//! The fabric as data: one Git-versioned inventory in, every host's WireGuard configuration
//! out.
//!
//! ```text
//!  fabric.toml ──► Inventory ──┬──► lint::check ──► Vec<Finding>
//!  (inventory)    (validated)  │
//!                              ▼
//!  fabric.lock ──► Lock::update ──► Fabric ──► host_config(HOST) ──► HostConfig
//!  (addresses)    (sticky IPAM)    (inv+lock)                          │
//!                                                 ┌────────────────────┼──────────────────┐
//!                                                 ▼                    ▼                  ▼
//!                                         render::* (wg-quick,   render::plan vs   diff::diff_device vs
//!                                         networkd, setconf,     state.json        wgconf::parse(live)
//!                                         JSON, Terraform,
//!                                         Ansible, graph)
//! ```
//!
//! Everything between the files is pure: no clock, no randomness, no network. Files are read
//! by the `load` functions and written by [`files`] (all or nothing, secrets 0600, unchanged
//! files left alone), which [`render::render_into`] uses to write a render host by host. Keys
//! are generated on hosts ([`key_file`]) or kept encrypted in the repository
//! ([`sealed_keys`]); the caller supplies the random generator. Nothing in this crate parses command lines.
//!
//! The crates above this one carry the decisions made here out: `wgfabric-store` publishes
//! desired states, `wgfabric-host` applies them on a host (comparing with [`wgconf::parse`]
//! and [`diff::diff_device`]) and fails over between relays
//! ([`HostConfig::with_active_relay`]), `wgfabric-ops` drives apply and rotation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cidr;
pub mod config;
pub mod diff;
pub mod durations;
pub mod endpoint;
pub mod error;
pub mod example;
pub mod explain;
pub mod fabric;
pub mod files;
pub mod fingerprint;
pub mod host_path;
pub mod inventory;
pub mod key_file;
pub mod key_source;
pub mod lint;
pub mod lock;
pub mod names;
pub mod paths;
pub mod policy;
pub mod render;
pub mod sealed_keys;
pub mod serde_keys;
mod serde_stream;
mod serde_text;
mod toml_position;
pub mod wallclock;
pub mod wgconf;

pub use config::{Failover, HostConfig, PeerConfig};
pub use error::{Error, SourceError};
pub use fabric::Fabric;
pub use inventory::Inventory;
pub use lock::Lock;
