//! A directory as the source of truth: `DIR/desired/HOST.json` and `DIR/status/HOST.json`,
//! each written atomically (temporary file, then rename), and changes noticed by polling the
//! files' metadata (inode, size, modification time) at a modest interval.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Kind, Store, StoreError, Watch};
use wgfabric_model::files::{write_atomically, PUBLIC_MODE};
use wgfabric_model::names::Name;
use wgfabric_model::wallclock::monotonic;

/// How often a directory watch looks at the files unless told otherwise.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Documents as files in a directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    poll: Duration,
}

impl DirStore {
    /// The store in `root` (created on the first write), polled every [`DEFAULT_POLL`].
    pub fn new(root: PathBuf) -> Self {
        Self { root, poll: DEFAULT_POLL }
    }

    /// The file holding the document of `kind` for `host`.
    pub fn path(&self, kind: Kind, host: &Name) -> PathBuf {
        self.root.join(kind.as_str()).join(format!("{host}.json"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |cause| StoreError::Io { path: path.to_owned(), cause }
    }
}

impl Store for DirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, kind: Kind, host: &Name) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(kind, host);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn put(&self, kind: Kind, host: &Name, bytes: &[u8]) -> Result<(), StoreError> {
        if self.get(kind, host)?.as_deref() == Some(bytes) {
            return Ok(());
        }
        let path = self.path(kind, host);
        write_atomically(&path, bytes, PUBLIC_MODE).map_err(|error| match error {
            wgfabric_model::Error::Io { path, cause } => StoreError::Io { path, cause },
            other => StoreError::Io { path, cause: std::io::Error::other(other.to_string()) },
        })
    }

    fn list(&self, kind: Kind) -> Result<BTreeMap<Name, Vec<u8>>, StoreError> {
        let mut documents = BTreeMap::new();
        for host in stamps(&self.root.join(kind.as_str()), None)?.into_keys() {
            if let Some(bytes) = self.get(kind, &host)? {
                documents.insert(host, bytes);
            }
        }
        Ok(documents)
    }

    fn watch(&self, kind: Kind, host: Option<&Name>) -> Result<Box<dyn Watch>, StoreError> {
        let dir = self.root.join(kind.as_str());
        let host = host.cloned();
        let seen = stamps(&dir, host.as_ref())?;
        Ok(Box::new(PollWatch { dir, host, seen, poll: self.poll }))
    }
}

/// What tells one version of a file from the next: atomic writes make a new inode, and the
/// size and modification time catch writes in place.
type Stamp = (u64, u64, i64, i64);

/// The stamps of the documents in `dir` (of `host` only, if given); a missing directory has
/// none.
fn stamps(dir: &Path, host: Option<&Name>) -> Result<BTreeMap<Name, Stamp>, StoreError> {
    let mut found = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(DirStore::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(DirStore::io(dir))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        // Temporaries of atomic writes start with a dot, which no host name does.
        let Ok(name) = name.parse::<Name>() else { continue };
        if host.is_some_and(|host| *host != name) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => {
                found.insert(name, (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(DirStore::io(&entry.path())(e)),
        }
    }
    Ok(found)
}

/// A directory watch: compares stamps every `poll`.
#[derive(Debug)]
struct PollWatch {
    dir: PathBuf,
    host: Option<Name>,
    seen: BTreeMap<Name, Stamp>,
    poll: Duration,
}

impl Watch for PollWatch {
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Name>, StoreError> {
        let deadline = monotonic() + timeout;
        loop {
            let now = stamps(&self.dir, self.host.as_ref())?;
            let mut changed: Vec<Name> = now
                .iter()
                .filter(|(name, stamp)| self.seen.get(*name) != Some(stamp))
                .map(|(name, _)| name.clone())
                .collect();
            changed.extend(self.seen.keys().filter(|name| !now.contains_key(*name)).cloned());
            changed.sort();
            self.seen = now;
            let left = deadline.saturating_duration_since(monotonic());
            if !changed.is_empty() || left.is_zero() {
                return Ok(changed);
            }
            std::thread::sleep(left.min(self.poll));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wgfabric-dirstore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn documents_are_files_and_watches_see_changes() {
        let root = scratch("watch");
        let store = DirStore::new(root.clone());
        let (a, b): (Name, Name) = ("alpha".parse().unwrap(), "beta".parse().unwrap());
        let mut all = store.watch(Kind::Status, None).unwrap();
        let mut only_b = store.watch(Kind::Status, Some(&b)).unwrap();
        assert_eq!(store.get(Kind::Status, &a).unwrap(), None);

        store.put(Kind::Status, &a, b"one").unwrap();
        assert_eq!(all.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&a));
        assert!(only_b.wait(Duration::from_millis(250)).unwrap().is_empty());
        assert_eq!(std::fs::read(root.join("status/alpha.json")).unwrap(), b"one");

        store.put(Kind::Status, &a, b"one").unwrap();
        assert!(all.wait(Duration::from_millis(250)).unwrap().is_empty(), "same bytes, no change");

        store.put(Kind::Status, &b, b"two").unwrap();
        store.put(Kind::Status, &a, b"three").unwrap();
        assert_eq!(all.wait(Duration::from_secs(5)).unwrap(), [a.clone(), b.clone()]);
        assert_eq!(only_b.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&b));

        std::fs::write(root.join("status/.beta.json.1.0.tmp"), b"partial").unwrap();
        std::fs::write(root.join("status/not a host.json"), b"x").unwrap();
        let listed = store.list(Kind::Status).unwrap();
        assert_eq!(listed.keys().cloned().collect::<Vec<_>>(), [a.clone(), b.clone()]);
        assert_eq!(listed[&a], b"three");
        assert!(store.list(Kind::Desired).unwrap().is_empty());

        std::fs::remove_file(store.path(Kind::Status, &b)).unwrap();
        assert_eq!(only_b.wait(Duration::from_secs(5)).unwrap(), [b]);
        std::fs::remove_dir_all(root).unwrap();
    }
}
