//! What the userspace API socket needs from the device: read it, change it.

use std::io;

use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest, UapiError};

/// The device as the userspace API sees it. Implemented by the data path (see `driver.rs`);
/// called from one thread per API connection, so implementations synchronize internally.
pub(crate) trait Control: Send + Sync {
    /// The configuration and counters for a `get=1` answer, a page at a time, so that neither
    /// the time the device is locked nor the memory of an answer grows with the number of
    /// peers: `page` gets the device's own fields with the first peers, then the further
    /// peers (the device fields of later pages are left default).
    ///
    /// # Errors
    /// The first error `page` returns, which ends the walk.
    fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()>;

    /// Applies a complete, already validated set request, in the order [`SetRequest`]
    /// documents, as one step: other connections never observe half of it.
    ///
    /// # Errors
    /// The errno to answer, with nothing changed: for example
    /// [`wgfabric_proto::uapi::EADDRINUSE`] when the new listen port cannot be bound.
    fn set(&self, request: SetRequest) -> Result<(), UapiError>;

    /// The whole `get=1` view at once, from its pages.
    fn snapshot(&self) -> DeviceSnapshot {
        let mut whole: Option<DeviceSnapshot> = None;
        let collected = self.get(&mut |page| {
            match &mut whole {
                Some(whole) => whole.peers.extend_from_slice(&page.peers),
                None => whole = Some(page.clone()),
            }
            Ok(())
        });
        // Collecting into memory cannot fail.
        debug_assert!(collected.is_ok());
        whole.unwrap_or_default()
    }
}
