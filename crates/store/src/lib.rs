//! Where the fabric's desired states and the hosts' statuses are kept, and what those
//! documents hold.
//!
//! ```text
//!  wgfabric apply / rotate ──► state::DesiredState ──► store::Store ──► agent (wgfabric-host)
//!                         ◄── state::Status       ◄──   DirStore: a directory (default)
//!                                                       EtcdStore: etcd v3 over etcd::Client
//! ```
//!
//! [`state`] defines the documents, [`store`] the two backends behind one trait, and
//! [`etcd`] the etcd client the second backend uses. The crate reads the clocks only to pace
//! polling and retries ([`wgfabric_model::wallclock`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod etcd;
pub mod state;
pub mod store;
