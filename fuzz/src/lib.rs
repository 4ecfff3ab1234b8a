//! The code of wgfabric's fuzz targets (`fuzz_targets/`), one module per target: each has a
//! `run` that takes the fuzzer's input and panics when a check fails. See docs/fuzzing.md.

pub mod audit_verify;
pub mod datagram;
#[cfg(fuzzing)] // Needs the entry points etcd has under `--cfg fuzzing`.
pub mod etcd_response;
pub mod inventory;
pub mod metrics_request;
pub mod offload;
pub mod uapi;
pub mod wg_ini;
