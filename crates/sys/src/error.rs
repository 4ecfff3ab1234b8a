//! The error of blocking reads and writes: besides plain I/O failures, the two ways a data-plane
//! thread is told to stop.

use std::io;

/// Why a TUN read or write, or a UDP receive, returned without data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Shutdown::trigger`](crate::Shutdown::trigger) was called.
    #[error("shut down")]
    Shutdown,
    /// The TUN interface was deleted (for example with `ip link del`); the queue is dead.
    #[error("the TUN interface was deleted")]
    LinkDeleted,
    /// A UDP send asked for a source address that is no longer local, or from which the
    /// destination is unreachable; retry without it.
    #[error("source address unavailable: {0}")]
    SourceUnavailable(io::Error),
    /// Any other failure of the underlying system call.
    #[error(transparent)]
    Io(#[from] io::Error),
}
