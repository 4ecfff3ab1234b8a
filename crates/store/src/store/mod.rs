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

use crate::etcd::Security;
use wgfabric_model::names::Name;

/// Which documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Desired states, written by the controller.
    Desired,
    /// Statuses, written by agents.
    Status,
    /// What each relay's socket observes of its peers, written by relays' agents.
    Observed,
    /// What each spoke offers for direct paths, written by spokes' agents.
    Candidates,
}

impl Kind {
    /// The directory or key segment of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Desired => "desired",
            Self::Status => "status",
            Self::Observed => "observed",
            Self::Candidates => "candidates",
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
    /// A source specification that names no store that can be opened.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Why a `--source` names no store that can be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The source is empty.
    #[error("an empty source")]
    Empty,
    /// etcd settings given for a directory.
    #[error("{0}: etcd's TLS files and user apply to etcd:// and etcds:// sources only")]
    EtcdSettings(String),
    /// An `etcds://` source without a CA.
    #[error("{0}: etcds:// needs the CA certificate that signs etcd's (--etcd-cacert)")]
    NoCa(String),
    /// TLS files given for an `etcd://` source.
    #[error("{0}: TLS files given for a plain-HTTP etcd:// source (use etcds://)")]
    PlainWithTls(String),
    /// The etcd client could not be made: the endpoint is not `HOST:PORT`, or a TLS file is
    /// unusable.
    #[error("etcd endpoint `{endpoint}`: {cause}")]
    Etcd {
        /// The endpoint.
        endpoint: String,
        /// Why.
        cause: crate::etcd::Error,
    },
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

/// Opens the store a `--source` names: `etcd://HOST:PORT[/PREFIX]` (plain HTTP),
/// `etcds://HOST:PORT[/PREFIX]` (TLS; `etcd.tls` must name the CA), both with default prefix
/// [`DEFAULT_PREFIX`], or a directory. `etcd` says how to reach an etcd source.
///
/// # Errors
/// [`StoreError::Spec`] for a malformed etcd address, TLS files that are missing, unusable
/// or given for a plain source, and etcd settings given for a directory.
pub fn open(spec: &str, etcd: &Security) -> Result<Box<dyn Store>, StoreError> {
    let (tls, rest) = match (spec.strip_prefix("etcds://"), spec.strip_prefix("etcd://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) if spec.is_empty() => return Err(SpecError::Empty.into()),
        (None, None) if etcd.tls.is_some() || etcd.credentials.is_some() => {
            return Err(SpecError::EtcdSettings(spec.to_owned()).into());
        }
        (None, None) => return Ok(Box::new(DirStore::new(PathBuf::from(spec)))),
    };
    match (tls, &etcd.tls) {
        (true, None) => return Err(SpecError::NoCa(spec.to_owned()).into()),
        (false, Some(_)) => return Err(SpecError::PlainWithTls(spec.to_owned()).into()),
        _ => {}
    }
    let (endpoint, prefix) = match rest.split_once('/') {
        Some((endpoint, prefix)) if !prefix.is_empty() => {
            (endpoint, format!("/{}", prefix.trim_end_matches('/')))
        }
        Some((endpoint, _)) => (endpoint, DEFAULT_PREFIX.to_owned()),
        None => (rest, DEFAULT_PREFIX.to_owned()),
    };
    Ok(Box::new(EtcdStore::new(endpoint, &prefix, etcd)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    use wgfabric_testkit::TestCa;
    use zeroize::Zeroizing;

    use crate::etcd::{Credentials, TlsFiles};

    fn describe(spec: &str, etcd: &Security) -> Result<String, String> {
        open(spec, etcd).map(|store| store.describe()).map_err(|e| e.to_string())
    }

    #[test]
    fn sources_are_directories_or_etcd() {
        let plain = Security::default();
        assert_eq!(describe("/srv/fabric", &plain).unwrap(), "/srv/fabric");
        assert_eq!(
            describe("etcd://127.0.0.1:2379", &plain).unwrap(),
            "etcd://127.0.0.1:2379/wgfabric"
        );
        assert_eq!(
            describe("etcd://127.0.0.1:2379/fleet/eu/", &plain).unwrap(),
            "etcd://127.0.0.1:2379/fleet/eu"
        );
        assert!(describe("etcd://nowhere", &plain).unwrap_err().contains("not HOST:PORT"));
        assert!(describe("", &plain).is_err());
    }

    #[test]
    fn tls_goes_with_etcds_and_etcd_settings_with_etcd() {
        let dir = std::env::temp_dir().join(format!("wgfabric-store-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new("test").write_cert(&dir.join("ca.pem"));
        let tls = Security { tls: Some(TlsFiles { ca, client: None }), credentials: None };
        let user = Security {
            tls: None,
            credentials: Some(Credentials::new("root", Zeroizing::new("pw".into()))),
        };
        let outcomes = [
            describe("etcds://10.0.0.5:2379/corp", &tls),
            describe("etcds://10.0.0.5:2379", &Security::default()),
            describe("etcd://10.0.0.5:2379", &tls),
            describe("/srv/fabric", &user),
            describe("etcd://10.0.0.5:2379", &user),
        ];
        let missing = TlsFiles { ca: Path::new("/nonexistent/ca.pem").into(), client: None };
        let missing = describe("etcds://h:1", &Security { tls: Some(missing), credentials: None });
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(outcomes[0].as_deref(), Ok("etcds://10.0.0.5:2379/corp"));
        assert!(outcomes[1].as_ref().unwrap_err().contains("--etcd-cacert"), "{outcomes:?}");
        assert!(outcomes[2].as_ref().unwrap_err().contains("use etcds://"), "{outcomes:?}");
        assert!(outcomes[3].as_ref().unwrap_err().contains("etcd:// and etcds:// sources only"));
        assert_eq!(outcomes[4].as_deref(), Ok("etcd://10.0.0.5:2379/wgfabric"));
        let missing = missing.unwrap_err();
        assert!(missing.contains("TLS: /nonexistent/ca.pem: No such file"), "{missing}");
    }
}
