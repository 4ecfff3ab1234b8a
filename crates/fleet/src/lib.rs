//! The wgfabric controller: one Git-versioned inventory in, every host's WireGuard
//! configuration out.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cidr;
pub mod endpoint;
pub mod error;
pub mod inventory;
pub mod names;
mod source;

pub use error::{Error, SourceError};
