//! A doorbell one thread rings to wake another that waits for it with [`wait_readable`]
//! (an eventfd; unlike [`Shutdown`], each ring is answered once).
//!
//! [`wait_readable`]: crate::wait_readable
//! [`Shutdown`]: crate::Shutdown

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

/// See the module doc.
#[derive(Debug)]
pub struct Doorbell(OwnedFd);

impl Doorbell {
    /// A doorbell nobody has rung.
    ///
    /// # Errors
    ///
    /// If the eventfd cannot be created.
    pub fn new() -> io::Result<Self> {
        Ok(Self(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?))
    }

    /// Makes the doorbell readable until [`Self::answer`] is called.
    pub fn ring(&self) {
        // Fails only if the counter would overflow, and then the eventfd is readable anyway.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Clears the rings so far; whether there were any.
    pub fn answer(&self) -> bool {
        let mut count = [0u8; 8];
        rustix::io::read(&self.0, &mut count).is_ok()
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait_readable;
    use std::time::Duration;

    #[test]
    fn a_ring_is_seen_once() {
        let bell = Doorbell::new().unwrap();
        let quiet = wait_readable(&[bell.as_fd()], &[], Some(Duration::ZERO)).unwrap();
        assert!(quiet.is_empty());
        assert!(!bell.answer(), "nobody rang");
        bell.ring();
        bell.ring();
        assert!(wait_readable(&[bell.as_fd()], &[], Some(Duration::ZERO)).unwrap().contains(0));
        assert!(bell.answer());
        assert!(wait_readable(&[bell.as_fd()], &[], Some(Duration::ZERO)).unwrap().is_empty());
    }
}
