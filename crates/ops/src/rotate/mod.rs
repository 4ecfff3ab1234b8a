//! Key rotation without downtime: a [`machine::Rotation`] per host, driven over a source of
//! truth by [`driver::rotate`], which also rewrites the inventory ([`inventory_edit`]) once
//! the new key is verified.

pub mod driver;
pub mod inventory_edit;
pub mod machine;

pub use driver::{rotate, Lag, RotateError, Settings};
pub use machine::{Event, Outcome, Plan, Rotation, Step, Timeouts};
