//! Fingerprints: short, one-way names for keys and contents, as the audit log and render
//! reports show them. A fingerprint never reveals what it names.

use sha2::{Digest as _, Sha256};
use wgfabric_proto::keys::PublicKey;

/// A short, non-secret identifier of a key or of contents: the first 16 hex digits (64 bits)
/// of their SHA-256. Enough to tell versions apart in a log, and one-way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a public key's 32 raw bytes
    /// (`echo KEY | base64 -d | sha256sum | cut -c1-16`).
    pub fn of_public_key(key: &PublicKey) -> Self {
        Self::of_contents(key.as_bytes())
    }

    /// The fingerprint of some contents, such as a rendered file (which may hold a private
    /// key: the hash does not reveal it).
    pub fn of_contents(contents: &[u8]) -> Self {
        Self(sha256_hex(contents)[..16].to_owned())
    }

    /// The fingerprint of several pieces taken together, such as the paths and contents of
    /// a host's rendered files. Each piece is length-prefixed, so moving bytes from one piece
    /// to the next changes the fingerprint.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hex(&hasher.finalize())[..16].to_owned())
    }

    /// The 16 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 16 hex digits, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
