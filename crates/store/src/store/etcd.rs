//! etcd v3 as the source of truth: `PREFIX/desired/HOST` and `PREFIX/status/HOST`, watched
//! from a revision. A watch that loses its connection reopens from the revision after the
//! last change it delivered, so no change is missed; if etcd compacted that history, every
//! watched host is reported changed and readers read the current documents again.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Kind, SpecError, Store, StoreError, Watch};
use crate::etcd::{Client, Error, Security, WatchMessage, WatchStream};
use wgfabric_model::names::Name;
use wgfabric_model::wallclock::monotonic;

/// Where documents live unless the source names a prefix.
pub const DEFAULT_PREFIX: &str = "/wgfabric";

/// Documents as etcd keys under a prefix.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

impl EtcdStore {
    /// The store at `endpoint` (`HOST:PORT`) under `prefix` (such as `/wgfabric`), reached
    /// as `security` says.
    ///
    /// # Errors
    /// [`StoreError::Spec`] when the endpoint is not `HOST:PORT` or a TLS file is unusable.
    pub fn new(endpoint: &str, prefix: &str, security: &Security) -> Result<Self, StoreError> {
        let client = Client::new(endpoint, security)
            .map_err(|cause| SpecError::Etcd { endpoint: endpoint.to_owned(), cause })?;
        Ok(Self { client, prefix: prefix.trim_end_matches('/').to_owned() })
    }

    /// The key of the document of `kind` for `host`.
    pub fn key(&self, kind: Kind, host: &Name) -> String {
        format!("{}/{}/{host}", self.prefix, kind.as_str())
    }

    fn dir(&self, kind: Kind) -> String {
        format!("{}/{}/", self.prefix, kind.as_str())
    }

    fn error(&self, source: Error) -> StoreError {
        StoreError::Etcd { endpoint: self.client.endpoint().to_owned(), cause: source }
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        let scheme = if self.client.is_tls() { "etcds" } else { "etcd" };
        format!("{scheme}://{}{}", self.client.endpoint(), self.prefix)
    }

    fn get(&self, kind: Kind, host: &Name) -> Result<Option<Vec<u8>>, StoreError> {
        let kv = self.client.get(self.key(kind, host).as_bytes()).map_err(|e| self.error(e))?;
        Ok(kv.map(|kv| kv.value))
    }

    fn put(&self, kind: Kind, host: &Name, bytes: &[u8]) -> Result<(), StoreError> {
        if self.get(kind, host)?.as_deref() == Some(bytes) {
            return Ok(());
        }
        self.client.put(self.key(kind, host).as_bytes(), bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<BTreeMap<Name, Vec<u8>>, StoreError> {
        let dir = self.dir(kind);
        let range = self.client.range_prefix(dir.as_bytes()).map_err(|e| self.error(e))?;
        Ok(range
            .kvs
            .into_iter()
            .filter_map(|kv| Some((host_of(&dir, &kv.key)?, kv.value)))
            .collect())
    }

    fn watch(&self, kind: Kind, host: Option<&Name>) -> Result<Box<dyn Watch>, StoreError> {
        let dir = self.dir(kind);
        let revision =
            self.client.range_prefix(dir.as_bytes()).map_err(|e| self.error(e))?.revision;
        Ok(Box::new(EtcdWatch {
            store: self.clone(),
            dir,
            host: host.cloned(),
            next_revision: revision + 1,
            stream: None,
        }))
    }
}

/// The host a key under `dir` belongs to.
fn host_of(dir: &str, key: &[u8]) -> Option<Name> {
    std::str::from_utf8(key).ok()?.strip_prefix(dir)?.parse().ok()
}

/// A watch on etcd that reconnects from where it was.
#[derive(Debug)]
struct EtcdWatch {
    store: EtcdStore,
    dir: String,
    host: Option<Name>,
    next_revision: i64,
    stream: Option<WatchStream>,
}

impl EtcdWatch {
    fn open(&self) -> Result<WatchStream, StoreError> {
        let client = &self.store.client;
        let opened = match &self.host {
            Some(host) => {
                client.watch(format!("{}{host}", self.dir).as_bytes(), false, self.next_revision)
            }
            None => client.watch(self.dir.as_bytes(), true, self.next_revision),
        };
        opened.map_err(|e| self.store.error(e))
    }

    /// Every watched host, for when the history of changes is lost.
    fn everything(&self) -> Result<Vec<Name>, StoreError> {
        match &self.host {
            Some(host) => Ok(vec![host.clone()]),
            None => {
                let range = self.store.client.range_prefix(self.dir.as_bytes());
                let range = range.map_err(|e| self.store.error(e))?;
                Ok(range.kvs.iter().filter_map(|kv| host_of(&self.dir, &kv.key)).collect())
            }
        }
    }
}

impl Watch for EtcdWatch {
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Name>, StoreError> {
        let deadline = monotonic() + timeout;
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self.stream.insert(self.open()?),
            };
            let left = deadline.saturating_duration_since(monotonic());
            let message = match stream.next(left) {
                Ok(message) => message,
                Err(error) => {
                    // Reconnect from `next_revision` on the next call.
                    self.stream = None;
                    return Err(self.store.error(error));
                }
            };
            match message {
                None => return Ok(Vec::new()),
                Some(WatchMessage::Created) => {}
                Some(WatchMessage::Events(events)) => {
                    let mut changed = Vec::new();
                    for event in events {
                        self.next_revision = self.next_revision.max(event.kv.mod_revision + 1);
                        if let Some(host) = host_of(&self.dir, &event.kv.key) {
                            if !changed.contains(&host) {
                                changed.push(host);
                            }
                        }
                    }
                    if !changed.is_empty() {
                        changed.sort();
                        return Ok(changed);
                    }
                }
                Some(WatchMessage::Compacted { revision }) => {
                    self.next_revision = revision;
                    self.stream = None;
                    return self.everything();
                }
                Some(WatchMessage::Canceled(reason)) => {
                    self.stream = None;
                    return Err(self.store.error(Error::Canceled(reason)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use wgfabric_testkit::{wait_until, Etcd};

    use super::*;
    use crate::etcd::tests::security;

    #[test]
    fn the_etcd_store_behaves_like_the_directory_store() {
        let Ok(etcd) = Etcd::start() else { return };
        let store = EtcdStore::new(&etcd.endpoint(), "/fleet/", &security(&etcd)).unwrap();
        assert_eq!(store.describe(), format!("etcd://{}/fleet", etcd.endpoint()));
        let (a, b): (Name, Name) = ("alpha".parse().unwrap(), "beta".parse().unwrap());
        let mut all = store.watch(Kind::Status, None).unwrap();
        let mut only_b = store.watch(Kind::Status, Some(&b)).unwrap();

        store.put(Kind::Status, &a, b"one").unwrap();
        assert_eq!(all.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&a));
        assert!(only_b.wait(Duration::from_millis(200)).unwrap().is_empty());
        store.put(Kind::Status, &a, b"one").unwrap();
        assert!(all.wait(Duration::from_millis(200)).unwrap().is_empty(), "same bytes, no change");

        store.put(Kind::Status, &b, b"two").unwrap();
        store.put(Kind::Desired, &a, b"desired").unwrap();
        assert_eq!(all.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&b));
        assert_eq!(only_b.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&b));
        assert_eq!(store.get(Kind::Desired, &a).unwrap().unwrap(), b"desired");
        let listed = store.list(Kind::Status).unwrap();
        assert_eq!(
            listed.into_iter().collect::<Vec<_>>(),
            [(a, b"one".to_vec()), (b, b"two".to_vec())]
        );
    }

    #[test]
    fn an_etcd_watch_resumes_after_losing_its_connection() {
        let Ok(etcd) = Etcd::start() else { return };
        let store = EtcdStore::new(&etcd.endpoint(), DEFAULT_PREFIX, &security(&etcd)).unwrap();
        let a: Name = "alpha".parse().unwrap();
        let dir = store.dir(Kind::Desired);
        let revision = store.client.range_prefix(dir.as_bytes()).unwrap().revision;
        let mut watch = EtcdWatch {
            store: store.clone(),
            dir,
            host: Some(a.clone()),
            next_revision: revision + 1,
            stream: None,
        };
        assert!(watch.wait(Duration::from_millis(100)).unwrap().is_empty());
        assert!(watch.stream.is_some());
        // The connection drops (a restarting etcd, a flaky network) and a change happens
        // before the watch reconnects.
        watch.stream = None;
        store.put(Kind::Desired, &a, b"while away").unwrap();
        assert_eq!(watch.wait(Duration::from_secs(5)).unwrap(), [a]);
    }

    /// Waits for the next change `watch` reports, through errors while etcd is away.
    fn next_change(watch: &mut dyn Watch) -> Vec<Name> {
        let mut changes = None;
        let seen =
            wait_until(Duration::from_secs(20), || match watch.wait(Duration::from_millis(200)) {
                Ok(changed) => {
                    changes = Some(changed.clone());
                    !changed.is_empty()
                }
                Err(_) => false,
            });
        assert!(seen, "no change reported");
        changes.unwrap_or_default()
    }

    #[test]
    fn an_etcd_watch_survives_a_restart_without_losing_a_change() {
        let Ok(mut etcd) = Etcd::start_secure() else { return };
        let store = EtcdStore::new(&etcd.endpoint(), DEFAULT_PREFIX, &security(&etcd)).unwrap();
        let a: Name = "alpha".parse().unwrap();
        let mut watch = store.watch(Kind::Desired, Some(&a)).unwrap();
        assert!(watch.wait(Duration::from_millis(100)).unwrap().is_empty());

        // etcd goes away: the watch says so, and keeps saying so while etcd is down.
        etcd.stop();
        let gone = watch.wait(Duration::from_secs(5)).unwrap_err().to_string();
        assert!(gone.starts_with(&format!("etcd at {}: ", etcd.endpoint())), "{gone}");
        assert!(watch.wait(Duration::from_secs(5)).is_err(), "etcd is down");

        // Back: the watch reconnects by itself, then sees a change made afterwards.
        etcd.start_again();
        assert!(wait_until(Duration::from_secs(20), || watch
            .wait(Duration::from_millis(200))
            .is_ok_and(|changed| changed.is_empty())));
        store.put(Kind::Desired, &a, b"after the restart").unwrap();
        assert_eq!(watch.wait(Duration::from_secs(5)).unwrap(), std::slice::from_ref(&a));

        // A change made after etcd came back, having forgotten every token (as when they
        // expire), but before the watch noticed it had gone.
        etcd.stop();
        etcd.start_again();
        etcd.forget_tokens();
        store.put(Kind::Desired, &a, b"before the watch reconnects").unwrap();
        assert_eq!(next_change(&mut *watch), std::slice::from_ref(&a));
        assert!(watch.wait(Duration::from_millis(300)).unwrap().is_empty(), "seen once");
    }
}
