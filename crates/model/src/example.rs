//! The example fabric (`examples/fabric.toml` at the top of the repository): two relays in
//! two clouds, five spokes behind NAT, a subnet router and a Kubernetes node. The demo runs
//! it, and tests throughout the workspace check against it.

use std::path::Path;

use crate::{Error, Fabric, Inventory, Lock};

/// The example inventory's text.
pub const INVENTORY: &str = include_str!("../example/fabric.toml");
/// Its lock file's text.
pub const LOCK: &str = include_str!("../example/fabric.lock");
/// The path messages about the example inventory name.
pub const INVENTORY_PATH: &str = "examples/fabric.toml";
/// The path messages about its lock file name.
pub const LOCK_PATH: &str = "examples/fabric.lock";

/// The example fabric, its lock brought up to date.
///
/// # Errors
/// Only if the bundled files are broken, which the crate's tests rule out.
pub fn fabric() -> Result<Fabric, Error> {
    let inventory = Inventory::parse(Path::new(INVENTORY_PATH), INVENTORY)?;
    let lock = Lock::parse(Path::new(LOCK_PATH), LOCK)?.update(&inventory)?;
    Fabric::new(inventory, lock)
}
