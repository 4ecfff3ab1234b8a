//! `wgfabric`: the fabric controller's command line.
fn main() {}
