//! Operations on a running fabric, run by `wgfabric` on an operator's machine: publishing
//! desired states and following the hosts until they run them ([`apply`]), and rotating
//! keys without downtime ([`rotate`]). Both go through a store (`wgfabric-store`) and record
//! what they change in the audit log (`wgfabric-audit`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apply;
pub mod rotate;
