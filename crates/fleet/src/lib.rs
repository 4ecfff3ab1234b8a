//! The wgfabric controller: one Git-versioned inventory in, every host's WireGuard
//! configuration out.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cidr;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod fabric;
pub mod inventory;
pub mod lock;
pub mod names;
mod serde_keys;
mod source;

pub use config::{Failover, HostConfig, PeerConfig};
pub use error::{Error, SourceError};
pub use fabric::Fabric;
pub use inventory::Inventory;
pub use lock::Lock;
