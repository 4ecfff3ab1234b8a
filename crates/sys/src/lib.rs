//! The Linux edge of the wgfabricd data plane.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod offload;
