//! The lab: the example fabric running on one machine, each host in its own network
//! namespace with its own `wgfabricd`, as `wgfabric demo` and the system tests run it.
//!
//! The lab builds nothing and reads no repository file: it runs the daemon binary it is
//! given (or finds next to the running executable), and the example fabric is compiled
//! into `wgfabric-model`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;

/// The network-namespace helpers the lab builds with.
pub use wgfabric_netns as netns;
