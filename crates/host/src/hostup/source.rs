//! Where `up` reads a host's desired state: a render directory's `fabric.json`, or a source
//! of truth (a directory or etcd) as the agent reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgfabric_model::config::HostConfig;
use wgfabric_model::names::Name;
use wgfabric_store::state::{DesiredState, Revision, FORMAT};
use wgfabric_store::store::{Kind, Store};

use super::{located, UpError};

/// The fabric-wide document of a render directory that holds every host's configuration.
pub const FABRIC_JSON: &str = "fabric.json";

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
    /// [`UpError::Source`] naming the file (and line and column) or the store, and what is
    /// wrong.
    pub fn desired_state(&self, host: &Name) -> Result<DesiredState, UpError> {
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

fn from_rendered(path: &Path, host: &Name) -> Result<DesiredState, UpError> {
    let source = |reason: String| UpError::Source(format!("{}: {reason}", path.display()));
    let text = std::fs::read(path).map_err(|error| {
        source(format!(
            "{error} (render the fabric with `wgfabric render --out DIR`, whose {FABRIC_JSON} \
             holds every host)"
        ))
    })?;
    let mut fabric: FabricJson =
        serde_json::from_slice(&text).map_err(|error| UpError::Source(located(path, &error)))?;
    let Some(rendered) = fabric.hosts.remove(host) else {
        return Err(source(format!("no host named `{host}`")));
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
    doc.validate(host.as_str()).map_err(|reason| source(reason.to_string()))?;
    Ok(doc)
}

fn from_store(store: &dyn Store, host: &Name) -> Result<DesiredState, UpError> {
    let where_ = store.describe();
    let bytes = store
        .get(Kind::Desired, host)
        .map_err(|error| UpError::Source(error.to_string()))?
        .ok_or_else(|| {
            UpError::Source(format!(
                "{where_}: no desired state for `{host}` (publish one with `wgfabric apply`)"
            ))
        })?;
    DesiredState::from_json(&bytes, host.as_str()).map_err(|invalid| {
        UpError::Source(format!("{where_}: the desired state of `{host}`: {}", invalid.reason))
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
