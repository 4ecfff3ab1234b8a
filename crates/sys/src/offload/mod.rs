//! Packet offloads done in userspace, in safe code: the virtio-net header, segmentation of TUN
//! superframes before encryption, and coalescing of decrypted packets before the TUN write.
//!
//! Everything here works on caller-owned buffers and never allocates per packet. Input comes
//! from the kernel or from authenticated peers, but is still treated as untrusted: a malformed
//! header yields an [`OffloadError`], never a panic.

mod checksum;
mod coalesce;
mod packet;
mod segment;
mod vnet;

#[cfg(test)]
mod tests;

pub use coalesce::Coalescer;
pub use segment::{complete_checksum, segment};
pub use vnet::{GsoType, VirtioNetHdr, VNET_HDR_LEN};

/// Why a frame could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The frame ends before its headers do.
    #[error("frame truncated")]
    Truncated,
    /// A virtio-net, IP or transport header field is invalid or unsupported.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The virtio-net header asks for a GSO type this crate never enables.
    #[error("unsupported GSO type {0:#x}")]
    UnsupportedGso(u8),
    /// Too few output buffers, or one too small for its segment.
    #[error("output buffers too small for the segments")]
    OutputTooSmall,
}
