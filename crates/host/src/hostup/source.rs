//! Where `up` reads a host's desired state: a render directory's `fabric.json`, or a source
//! of truth (a directory or etcd) as the agent reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgfabric_model::config::HostConfig;
use wgfabric_model::names::Name;
use wgfabric_store::state::{DesiredState, InvalidReason, Revision, FORMAT};
use wgfabric_store::store::{Kind, Store, StoreError};

use super::located;

/// The fabric-wide document of a render directory that holds every host's configuration.
pub const FABRIC_JSON: &str = "fabric.json";

/// Why a host's desired state could not be had. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesiredStateError {
    /// A render directory's `fabric.json` could not be read.
    #[error(
        "{}: {cause} (render the fabric with `wgfabric render --out DIR`, whose {FABRIC_JSON} \
         holds every host)",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// `fabric.json` does not parse.
    #[error("{}", located(.path, .cause))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where and why it does not parse.
        cause: serde_json::Error,
    },
    /// `fabric.json` has no such host.
    #[error("{}: no host named `{host}`", path.display())]
    NoSuchHost {
        /// The file.
        path: PathBuf,
        /// The host asked for.
        host: Name,
    },
    /// The source of truth could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source of truth has no desired state for the host.
    #[error("{store}: no desired state for `{host}` (publish one with `wgfabric apply`)")]
    NotPublished {
        /// The source of truth, as it describes itself.
        store: String,
        /// The host.
        host: Name,
    },
    /// The desired state is one the agent would refuse.
    #[error("{place}: the desired state of `{host}`: {reason}")]
    Invalid {
        /// The file or source of truth it came from.
        place: String,
        /// The host.
        host: Name,
        /// What is wrong with it.
        reason: InvalidReason,
    },
}

/// Where a host's desired state comes from.
#[derive(Debug)]
pub enum HostSource {
    /// A directory `wgfabric render --out` wrote, read through its `fabric.json`.
    Rendered(PathBuf),
    /// A source of truth, read as the agent reads it (`desired/HOST`).
    Store(Box<dyn Store>),
}

impl HostSource {
    /// The desired state of `host`, validated as the agent validates it.
    ///
    /// # Errors
    /// A [`DesiredStateError`] naming the file (and line and column) or the store, and what
    /// is wrong.
    pub fn desired_state(&self, host: &Name) -> Result<DesiredState, DesiredStateError> {
        match self {
            Self::Rendered(dir) => from_rendered(&dir.join(FABRIC_JSON), host),
            Self::Store(store) => from_store(store.as_ref(), host),
        }
    }
}

/// `fabric.json` as far as `up` reads it.
#[derive(Deserialize)]
struct FabricJson {
    hosts: BTreeMap<Name, RenderedHost>,
}

#[derive(Deserialize)]
struct RenderedHost {
    config: HostConfig,
}

fn from_rendered(path: &Path, host: &Name) -> Result<DesiredState, DesiredStateError> {
    let text = std::fs::read(path)
        .map_err(|cause| DesiredStateError::Unreadable { path: path.to_owned(), cause })?;
    let mut fabric: FabricJson = serde_json::from_slice(&text)
        .map_err(|cause| DesiredStateError::Malformed { path: path.to_owned(), cause })?;
    let Some(rendered) = fabric.hosts.remove(host) else {
        return Err(DesiredStateError::NoSuchHost { path: path.to_owned(), host: host.clone() });
    };
    let doc = DesiredState {
        format: FORMAT,
        revision: Revision::new("rendered"),
        commit: None,
        config: rendered.config,
        sealed_private_key: None,
        preshared_keys: BTreeMap::new(),
        rotations: Vec::new(),
    };
    doc.validate(host.as_str()).map_err(|reason| DesiredStateError::Invalid {
        place: path.display().to_string(),
        host: host.clone(),
        reason,
    })?;
    Ok(doc)
}

fn from_store(store: &dyn Store, host: &Name) -> Result<DesiredState, DesiredStateError> {
    let not_published =
        || DesiredStateError::NotPublished { store: store.describe(), host: host.clone() };
    let bytes = store.get(Kind::Desired, host)?.ok_or_else(not_published)?;
    DesiredState::from_json(&bytes, host.as_str()).map_err(|invalid| DesiredStateError::Invalid {
        place: store.describe(),
        host: host.clone(),
        reason: invalid.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgfabric-up-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_broken_fabric_json_is_named_with_line_and_column() {
        let dir = scratch("broken");
        std::fs::write(dir.join(FABRIC_JSON), "{\"hosts\": {\n  \"a\": 7\n}}").unwrap();
        let source = HostSource::Rendered(dir.clone());
        let error = source.desired_state(&"a".parse().unwrap()).unwrap_err().to_string();
        let prefix = format!("{}:2:8: invalid type: integer `7`", dir.join(FABRIC_JSON).display());
        assert!(error.starts_with(&prefix), "{error}");
        assert!(!error.contains("line 2"), "the position is said once: {error}");
        std::fs::write(dir.join(FABRIC_JSON), "{\"hosts\": {}}").unwrap();
        let error = source.desired_state(&"a".parse().unwrap()).unwrap_err().to_string();
        assert!(error.ends_with("fabric.json: no host named `a`"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        let error = source.desired_state(&"a".parse().unwrap()).unwrap_err().to_string();
        assert!(error.contains("wgfabric render --out DIR"), "{error}");
    }
}
