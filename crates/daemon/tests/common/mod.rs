//! What every system test file of the daemon shares: the binary under test.

use std::path::PathBuf;

use wgfabric_testkit::Impl;

/// The `wgfabricd` binary Cargo built for these tests.
pub(crate) fn wgfabricd() -> Impl {
    Impl::Wgfabricd(PathBuf::from(env!("CARGO_BIN_EXE_wgfabricd")))
}
