//! The secrets an agent holds for its host: its private key, the next one during a rotation,
//! and preshared keys.
//!
//! Host-generated keys live in the key file the desired state names
//! (`/etc/wgfabric/private.key` by default). A rotation's new key is generated beside it as
//! `private.key.next` (0600) and only its public half is reported; once the inventory carries
//! that public key, the agent renames it over the old file (atomically), so the old key
//! stays on disk until the rotation is done and a rollback has something to return to.
//!
//! A host whose key source is a systemd credential or a command gets its key from there
//! each time it accepts a new desired state; its rotations need central mode, since the agent
//! cannot write a new key into a secrets manager.
//!
//! In central mode the desired state carries the private key sealed with age, and so does a
//! rotation order for the new key; preshared keys are always sealed. The agent opens them
//! with its age identity (`--identity`), in memory only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};
use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};

use wgfabric_model::error::Error as ModelError;
use wgfabric_model::inventory::DEFAULT_KEY_DIR;
use wgfabric_model::key_file::{generate_key_file, read_key_file};
use wgfabric_model::key_source::{KeySourceError, DEFAULT_TIMEOUT as FETCH_TIMEOUT};
use wgfabric_model::names::Name;
use wgfabric_model::sealed_keys::Identities;
use wgfabric_store::state::{DesiredState, Phase, Sealed};

/// The secrets needed to apply one desired state.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The key of the public key the inventory has.
    pub(crate) current: PrivateKey,
    /// The new key of this host's running rotation (prepare to switch).
    pub(crate) next: Option<PrivateKey>,
    /// Preshared keys by peer.
    pub(crate) preshared: BTreeMap<Name, PresharedKey>,
    /// New preshared keys of running rotations, by rotation id and peer.
    pub(crate) rotated_preshared: BTreeMap<(String, Name), PresharedKey>,
    /// The key source the current key was fetched from (as the audit log names it), unless
    /// it came sealed.
    pub(crate) fetched_from: Option<String>,
}

/// Why the secrets of a desired state cannot be had here; never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// A rotation of a key that comes from a source the agent cannot write to.
    #[error(
        "this host's key comes from {0}, where the agent cannot store a new key; rotate it in \
         central mode (wgfabric rotate with keys sealed to --identity), or put the new key there \
         and update public_key"
    )]
    NoKeyFile(String),
    /// The key source failed.
    #[error(transparent)]
    Fetch(#[from] KeySourceError),
    /// A key file could not be read or written.
    #[error(transparent)]
    KeyFile(ModelError),
    /// The next key file could not become the key file.
    #[error("committing {}: {source}", path.display())]
    Commit {
        /// The next key file.
        path: PathBuf,
        /// Why the rename failed.
        source: std::io::Error,
    },
    /// A private key whose public key is not the inventory's.
    #[error("the private key {location} belongs to {found}, but the inventory has {expected} for this host")]
    NotTheInventorysKey {
        /// Where the key came from: `from SOURCE` or `in FILE`.
        location: String,
        /// The key's public key.
        found: PublicKey,
        /// The inventory's public key for this host.
        expected: PublicKey,
    },
    /// A rotation's new key that is not the one the rotation expects.
    #[error("rotation {id}: the new key here is {found}, the rotation expects {expected}")]
    NotTheRotationsKey {
        /// The rotation.
        id: String,
        /// The new key here.
        found: PublicKey,
        /// The key in the rotation order.
        expected: PublicKey,
    },
    /// A sealed key that belongs to another public key.
    #[error("{what} belongs to {found}, not to {expected}")]
    SealedKeyMismatch {
        /// Which key.
        what: String,
        /// The sealed key's public key.
        found: PublicKey,
        /// The public key it should have.
        expected: PublicKey,
    },
    /// A sealed key and no identity to open it.
    #[error("{0} is sealed; start the agent with --identity FILE to open it")]
    NoIdentity(String),
    /// A sealed key the identity could not open.
    #[error(transparent)]
    Unseal(ModelError),
    /// A sealed text that is not a key.
    #[error("{0} does not hold a key")]
    NotAKey(String),
}

/// Where an agent finds its host's secrets.
pub(crate) struct KeyRing {
    /// The key file, when the agent is told instead of following the desired state.
    key_file: Option<PathBuf>,
    identities: Option<Identities>,
    rng: Box<dyn RngCoreCrypto>,
}

/// A cryptographic random generator behind a box.
pub trait RngCoreCrypto: RngCore + CryptoRng + Send {}
impl<T: RngCore + CryptoRng + Send> RngCoreCrypto for T {}

impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_file", &self.key_file)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

/// The file of the next key beside `key_file`.
pub(crate) fn next_key_file(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    key_file.with_file_name(name)
}

impl KeyRing {
    pub(crate) fn new(
        key_file: Option<PathBuf>,
        identities: Option<Identities>,
        rng: Box<dyn RngCoreCrypto>,
    ) -> Self {
        Self { key_file, identities, rng }
    }

    /// The key file for `doc`: the agent's own, else the desired state's file source.
    pub(crate) fn key_file(&self, doc: &DesiredState) -> Option<PathBuf> {
        self.key_file
            .clone()
            .or_else(|| doc.config.key_source.file().map(|path| path.as_path().to_owned()))
    }

    /// The directory of the key file, where the audit log goes unless told otherwise.
    pub(crate) fn key_dir(&self, doc: &DesiredState) -> PathBuf {
        self.key_file(doc)
            .and_then(|file| file.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_DIR))
    }

    /// The key file for `doc`, or why a rotation cannot work without one.
    fn rotation_key_file(&self, doc: &DesiredState) -> Result<PathBuf, SecretsError> {
        self.key_file(doc).ok_or_else(|| SecretsError::NoKeyFile(doc.config.key_source.to_string()))
    }

    /// Gathers the secrets of `doc`, committing, generating or discarding the next key file
    /// as its rotation orders say.
    ///
    /// # Errors
    /// Why `doc` cannot be applied here (a key that does not match the inventory, sealed
    /// keys without an identity, an unreadable key file); never a secret.
    pub(crate) fn resolve(
        &mut self,
        doc: &DesiredState,
        interface: &str,
    ) -> Result<Keys, SecretsError> {
        let config = &doc.config;
        let own_order = doc
            .rotations
            .iter()
            .find(|order| order.host == config.host && order.phase != Phase::Rollback);
        let (current, fetched_from) = match &doc.sealed_private_key {
            Some(sealed) => {
                (self.open_key(sealed, "the sealed private key", &config.public_key)?, None)
            }
            None if self.key_file(doc).is_some() => {
                let source = self.key_file.as_ref().map_or_else(
                    || doc.config.key_source.to_string(),
                    |file| format!("file:{}", file.display()),
                );
                (self.current_from_file(doc)?, Some(source))
            }
            None => {
                let source = &config.key_source;
                let key = source.fetch(config.host.as_str(), interface, FETCH_TIMEOUT)?;
                if key.public_key() != config.public_key {
                    return Err(SecretsError::NotTheInventorysKey {
                        location: format!("from {source}"),
                        found: key.public_key(),
                        expected: config.public_key,
                    });
                }
                (key, Some(source.to_string()))
            }
        };
        let next = match own_order {
            None => {
                self.discard_next(doc);
                None
            }
            Some(order) => {
                let next = match &order.sealed_new_key {
                    Some(sealed) => {
                        self.open(sealed, "the sealed new key", PrivateKey::from_base64)?
                    }
                    None => self.next_from_file(doc)?,
                };
                if let Some(expected) = order.new_key.filter(|key| *key != next.public_key()) {
                    return Err(SecretsError::NotTheRotationsKey {
                        id: order.id.clone(),
                        found: next.public_key(),
                        expected,
                    });
                }
                Some(next)
            }
        };
        let mut preshared = BTreeMap::new();
        for (peer, sealed) in &doc.preshared_keys {
            let what = format!("the preshared key with `{peer}`");
            preshared.insert(peer.clone(), self.open(sealed, &what, PresharedKey::from_base64)?);
        }
        let mut rotated_preshared = BTreeMap::new();
        for order in &doc.rotations {
            for (peer, sealed) in &order.preshared_keys {
                let what = format!("rotation {}: the new preshared key with `{peer}`", order.id);
                let key = self.open(sealed, &what, PresharedKey::from_base64)?;
                rotated_preshared.insert((order.id.clone(), peer.clone()), key);
            }
        }
        Ok(Keys { current, next, preshared, rotated_preshared, fetched_from })
    }

    /// The key in the key file, or in the next key file once the inventory has its public
    /// key (the rotation is done: the next file becomes the key file).
    fn current_from_file(&self, doc: &DesiredState) -> Result<PrivateKey, SecretsError> {
        let path = self.rotation_key_file(doc)?;
        let expected = doc.config.public_key;
        let current = read_key_file(&path).map_err(SecretsError::KeyFile)?;
        if current.public_key() == expected {
            return Ok(current);
        }
        let next_path = next_key_file(&path);
        if next_path.exists() {
            let next = read_key_file(&next_path).map_err(SecretsError::KeyFile)?;
            if next.public_key() == expected {
                std::fs::rename(&next_path, &path)
                    .map_err(|source| SecretsError::Commit { path: next_path, source })?;
                tracing::info!(key_file = %path.display(), public_key = %expected, "new private key committed");
                return Ok(next);
            }
        }
        Err(SecretsError::NotTheInventorysKey {
            location: format!("in {}", path.display()),
            found: current.public_key(),
            expected,
        })
    }

    /// The next key file's key, generated (0600) if there is none yet.
    fn next_from_file(&mut self, doc: &DesiredState) -> Result<PrivateKey, SecretsError> {
        let path = next_key_file(&self.rotation_key_file(doc)?);
        if path.exists() {
            return read_key_file(&path).map_err(SecretsError::KeyFile);
        }
        let key = generate_key_file(&mut self.rng, &path, false).map_err(SecretsError::KeyFile)?;
        tracing::info!(key_file = %path.display(), public_key = %key.public_key(), "new private key generated");
        Ok(key)
    }

    /// Removes a next key file no running rotation needs (rolled back, or abandoned).
    fn discard_next(&self, doc: &DesiredState) {
        let (None, Some(file)) = (&doc.sealed_private_key, self.key_file(doc)) else {
            return;
        };
        let path = next_key_file(&file);
        if path.exists() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(key_file = %path.display(), "unused new private key removed")
                }
                Err(e) => {
                    tracing::warn!(key_file = %path.display(), "cannot remove unused new private key: {e}")
                }
            }
        }
    }

    fn open_key(
        &self,
        sealed: &Sealed,
        what: &str,
        expected: &PublicKey,
    ) -> Result<PrivateKey, SecretsError> {
        let key = self.open(sealed, what, PrivateKey::from_base64)?;
        if key.public_key() != *expected {
            return Err(SecretsError::SealedKeyMismatch {
                what: what.to_owned(),
                found: key.public_key(),
                expected: *expected,
            });
        }
        Ok(key)
    }

    fn open<T, E>(
        &self,
        sealed: &Sealed,
        what: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<T, SecretsError> {
        let identities =
            self.identities.as_ref().ok_or_else(|| SecretsError::NoIdentity(what.to_owned()))?;
        let text =
            identities.open(sealed.as_str().as_bytes(), what).map_err(SecretsError::Unseal)?;
        parse(text.trim()).map_err(|_| SecretsError::NotAKey(what.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng as _;

    use super::*;
    use wgfabric_store::state::RotationOrder;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wgfabric-agentkeys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn ring(key_file: &Path) -> KeyRing {
        KeyRing::new(
            Some(key_file.to_owned()),
            None,
            Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(7)),
        )
    }

    fn doc(public_key: PublicKey) -> DesiredState {
        let text = wgfabric_model::example::INVENTORY;
        let inventory = wgfabric_model::Inventory::parse(Path::new("fabric.toml"), text).unwrap();
        let lock = wgfabric_model::Lock::default().update(&inventory).unwrap();
        let fabric = wgfabric_model::Fabric::new(inventory, lock).unwrap();
        let (_, docs) = wgfabric_store::state::desired_states(&fabric, &Default::default(), None);
        let mut doc = docs["laptop-ana"].clone();
        doc.config.public_key = public_key;
        doc
    }

    #[test]
    fn a_rotation_generates_commits_and_discards_the_next_key() {
        let dir = scratch("cycle");
        let key_file = dir.join("private.key");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let old = generate_key_file(&mut rng, &key_file, false).unwrap();
        let mut ring = ring(&key_file);
        let mut doc = doc(old.public_key());
        assert_eq!(ring.resolve(&doc, "wg0").unwrap().current, old);

        let order = RotationOrder {
            id: "r1".into(),
            host: doc.config.host.clone(),
            phase: Phase::Prepare,
            old_key: old.public_key(),
            new_key: None,
            sealed_new_key: None,
            preshared_keys: BTreeMap::new(),
        };
        doc.rotations.push(order);
        let next = ring.resolve(&doc, "wg0").unwrap().next.unwrap();
        assert_ne!(next, old);
        let next_file = next_key_file(&key_file);
        assert_eq!(next_file.file_name().unwrap(), "private.key.next");
        assert_eq!(read_key_file(&next_file).unwrap(), next, "written 0600 and readable");
        assert_eq!(
            ring.resolve(&doc, "wg0").unwrap().next.unwrap(),
            next,
            "the same key when asked again"
        );
        doc.rotations[0].new_key = Some(PublicKey::from_bytes([1; 32]));
        assert!(ring
            .resolve(&doc, "wg0")
            .unwrap_err()
            .to_string()
            .contains("the rotation expects"));

        // Rolled back: the next key goes away, the old one stays.
        doc.rotations[0].phase = Phase::Rollback;
        let keys = ring.resolve(&doc, "wg0").unwrap();
        assert_eq!((keys.current, keys.next), (old.clone(), None));
        assert!(!next_file.exists());

        // Done: the inventory has the new key, which replaces the old file.
        doc.rotations[0].phase = Phase::Prepare;
        doc.rotations[0].new_key = None;
        let next = ring.resolve(&doc, "wg0").unwrap().next.unwrap();
        let mut done = self::doc(next.public_key());
        done.rotations.clear();
        assert_eq!(ring.resolve(&done, "wg0").unwrap().current, next);
        assert!(!next_file.exists());
        assert_eq!(read_key_file(&key_file).unwrap(), next);

        // A key that belongs to nobody the inventory knows is refused.
        let error = ring.resolve(&self::doc(old.public_key()), "wg0").unwrap_err().to_string();
        assert!(error.contains("but the inventory has"), "{error}");
        assert!(!error.contains(&old.to_base64_secret()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sealed_keys_need_an_identity() {
        let dir = scratch("sealed");
        let key_file = dir.join("private.key");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let key = generate_key_file(&mut rng, &key_file, false).unwrap();
        let mut doc = doc(key.public_key());
        let peer = doc.config.peers[0].name.clone();
        doc.preshared_keys.insert(peer, Sealed::new("-----BEGIN AGE ENCRYPTED FILE-----"));
        let error = ring(&key_file).resolve(&doc, "wg0").unwrap_err().to_string();
        assert!(error.contains("--identity"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_from_a_secrets_manager_is_fetched_checked_and_named_for_the_audit_log() {
        let Ok(store) = wgfabric_testkit::PasswordStore::new() else { return };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let key = PrivateKey::generate(&mut rng);
        store.insert("wg/laptop-ana", &key.to_base64_secret());
        let mut words = vec!["exec:env".to_owned()];
        words.extend(store.env().iter().map(|(k, v)| format!("{k}={v}")));
        words.extend(["pass", "show", "wg/laptop-ana"].map(String::from));
        let mut doc = doc(key.public_key());
        doc.config.key_source = wgfabric_model::key_source::KeySource::from_words(&words).unwrap();
        let mut ring =
            KeyRing::new(None, None, Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(4)));

        let keys = ring.resolve(&doc, "wg0").unwrap();
        assert_eq!(keys.current, key);
        let fetched_from = keys.fetched_from.unwrap();
        assert!(fetched_from.ends_with("pass show wg/laptop-ana"), "{fetched_from}");
        assert!(!fetched_from.contains(&key.to_base64_secret()));

        // The inventory moved on to another key: refused, so the interface keeps its last one.
        let mut other_doc = self::doc(PrivateKey::generate(&mut rng).public_key());
        other_doc.config.key_source = doc.config.key_source.clone();
        let error = ring.resolve(&other_doc, "wg0").unwrap_err().to_string();
        assert!(error.contains("but the inventory has"), "{error}");

        // A rotation cannot store a new key in the secrets manager.
        doc.rotations.push(RotationOrder {
            id: "r1".into(),
            host: doc.config.host.clone(),
            phase: Phase::Prepare,
            old_key: key.public_key(),
            new_key: None,
            sealed_new_key: None,
            preshared_keys: BTreeMap::new(),
        });
        let error = ring.resolve(&doc, "wg0").unwrap_err().to_string();
        assert!(error.contains("central mode"), "{error}");
    }
}
