//! What the userspace API socket needs from the device: read it, change it.

use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest, UapiError};

/// The device as the userspace API sees it. Implemented by the data path (see `driver.rs`);
/// called from one thread per API connection, so implementations synchronize internally.
pub(crate) trait Control: Send + Sync {
    /// The configuration and counters for a `get=1` answer.
    ///
    /// # Errors
    /// An errno and message to answer with (rare: reading state should not fail).
    fn get(&self) -> Result<DeviceSnapshot, UapiError>;

    /// Applies a complete, already validated set request, in the order [`SetRequest`]
    /// documents, as one step: other connections never observe half of it.
    ///
    /// # Errors
    /// The errno to answer, with nothing changed: for example
    /// [`wgfabric_proto::uapi::EADDRINUSE`] when the new listen port cannot be bound.
    fn set(&self, request: SetRequest) -> Result<(), UapiError>;
}
