//! Sources of truth: where desired states are published and statuses reported.
//!
//! ```text
//!  wgfabric apply / rotate ──put(Desired, HOST)──►┌──────────────┐──watch(Desired, HOST)──► agent
//!                          ◄─watch(Status)──────  │ Store         │ ◄──put(Status, HOST)──
//!                                                 │  DirStore     │  DIR/desired/HOST.json, DIR/status/HOST.json
//!                                                 │  EtcdStore    │  PREFIX/desired/HOST, PREFIX/status/HOST
//!                                                 └──────────────┘
//! ```
//!
//! A store holds opaque documents (JSON bytes, see [`crate::state`]) by kind and host. The
//! two implementations behave alike: a directory (a Git checkout or a synced directory; the
//! default) noticed by polling file metadata, and etcd v3 (for fleets that outgrow one
//! repository), watched from a revision so no change is missed across reconnections.
//!
//! A [`Watch`] reports changes made after it was created; readers create the watch first and
//! read the current documents second, so nothing falls between the two.

mod dir;
mod etcd;

use core::fmt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use dir::{DirStore, DEFAULT_POLL};
pub use etcd::{EtcdStore, DEFAULT_PREFIX};

use crate::names::Name;

/// Which documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Desired states, written by the controller.
    Desired,
    /// Statuses, written by agents.
    Status,
}

impl Kind {
    /// The directory or key segment of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Desired => "desired",
            Self::Status => "status",
        }
    }
}

/// Why a store could not be read or written. Each cause is part of the message rather than a
/// separate `source()`, so that printing the error chain does not repeat it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file of a directory store.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// An etcd request.
    #[error("etcd at {endpoint}: {cause}")]
    Etcd {
        /// The etcd endpoint.
        endpoint: String,
        /// What failed.
        cause: crate::etcd::Error,
    },
    /// A source specification that names no store.
    #[error("{0}")]
    Spec(String),
}

/// Desired states and statuses by host.
pub trait Store: Send + Sync + fmt::Debug {
    /// Where the store is, for messages (`/srv/fabric`, `etcd://10.0.0.1:2379/wgfabric`).
    fn describe(&self) -> String;

    /// The document of `kind` for `host`, if there is one.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn get(&self, kind: Kind, host: &Name) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes the document of `kind` for `host`. Writing what is already there changes
    /// nothing (no watcher is woken).
    ///
    /// # Errors
    /// When the store cannot be written.
    fn put(&self, kind: Kind, host: &Name, bytes: &[u8]) -> Result<(), StoreError>;

    /// Every document of `kind`, by host. Entries whose name is not a host name are skipped.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn list(&self, kind: Kind) -> Result<BTreeMap<Name, Vec<u8>>, StoreError>;

    /// Starts watching the documents of `kind`: of `host` only, or of every host.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn watch(&self, kind: Kind, host: Option<&Name>) -> Result<Box<dyn Watch>, StoreError>;
}

/// Changes to watched documents.
pub trait Watch: Send + fmt::Debug {
    /// Waits up to `timeout` and returns the hosts whose documents changed (created, written
    /// or removed), each once; empty when nothing changed in time. A change may be reported
    /// that leaves the document as it was: readers compare.
    ///
    /// # Errors
    /// When the store cannot be reached; the watch stays usable and resumes where it was.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Name>, StoreError>;
}

/// Opens the store a `--source` names: `etcd://HOST:PORT[/PREFIX]` (default prefix
/// [`DEFAULT_PREFIX`]), or a directory.
///
/// # Errors
/// [`StoreError::Spec`] for a malformed etcd address.
pub fn open(spec: &str) -> Result<Box<dyn Store>, StoreError> {
    match spec.strip_prefix("etcd://") {
        Some(rest) => {
            let (endpoint, prefix) = match rest.split_once('/') {
                Some((endpoint, prefix)) if !prefix.is_empty() => {
                    (endpoint, format!("/{}", prefix.trim_end_matches('/')))
                }
                Some((endpoint, _)) => (endpoint, DEFAULT_PREFIX.to_owned()),
                None => (rest, DEFAULT_PREFIX.to_owned()),
            };
            Ok(Box::new(EtcdStore::new(endpoint, &prefix)?))
        }
        None if spec.is_empty() => Err(StoreError::Spec("an empty source".into())),
        None => Ok(Box::new(DirStore::new(PathBuf::from(spec)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_directories_or_etcd() {
        assert_eq!(open("/srv/fabric").unwrap().describe(), "/srv/fabric");
        assert_eq!(
            open("etcd://127.0.0.1:2379").unwrap().describe(),
            "etcd://127.0.0.1:2379/wgfabric"
        );
        assert_eq!(
            open("etcd://127.0.0.1:2379/fleet/eu/").unwrap().describe(),
            "etcd://127.0.0.1:2379/fleet/eu"
        );
        assert!(open("etcd://nowhere").is_err());
        assert!(open("").is_err());
    }
}
