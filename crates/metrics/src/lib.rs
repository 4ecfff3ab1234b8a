//! Prometheus metrics of WireGuard interfaces, shared by `wgfabricd --metrics` and
//! `wgfabric exporter` so both print the same names.
//!
//! ```text
//!  wgfabricd: Device ──► DeviceSnapshot + Counters ─┐
//!                                                   ├─► wireguard::families ─► exposition::render
//!  exporter:  *.sock ──get=1──► DeviceSnapshot ─────┘        (Family)            (text 0.0.4)
//!                                                                                    │
//!                                              http::MetricsServer: GET /metrics ◄───┘
//! ```
//!
//! Dependency-light on purpose: the text format and the HTTP responder are a few hundred
//! lines of std, so the daemon does not pull in an async runtime to answer a scrape every
//! few seconds. Nothing here exports a secret: snapshots carry the private and preshared
//! keys, and no family reads them except to derive the interface's public key.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(
    clippy::disallowed_methods,
    reason = "the exporter serves HTTP and bounds its clients in real time"
)]

pub mod exporter;
pub mod exposition;
pub mod http;
pub mod limits;
pub mod paths;
pub mod policy;
pub mod wireguard;

pub use exporter::Exporter;
pub use exposition::{render, Family, Kind, CONTENT_TYPE};
pub use http::{MetricsServer, Running};
pub use paths::{path_families, PathSample};
pub use policy::{policy_families, RuleCount};
pub use wireguard::{families, Counters, FriendlyNames, Interface, QueueDepth, CONNECTED_WITHIN};
