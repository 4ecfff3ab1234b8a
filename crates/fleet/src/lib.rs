//! The wgfabric controller: one Git-versioned inventory in, every host's WireGuard
//! configuration out.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cidr;
pub mod config;
pub mod diff;
pub mod endpoint;
pub mod error;
pub mod fabric;
pub mod files;
pub mod inventory;
pub mod keys;
pub mod keystore;
pub mod lint;
pub mod lock;
pub mod names;
pub mod plan;
pub mod render;
mod serde_keys;
mod source;
pub mod wgconf;

pub use config::{Failover, HostConfig, PeerConfig};
pub use error::{Error, SourceError};
pub use fabric::Fabric;
pub use inventory::Inventory;
pub use lock::Lock;
