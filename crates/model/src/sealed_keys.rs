//! Central key mode: private keys encrypted at rest in the repository (`keys/HOST.age`,
//! ASCII-armored age files for the inventory's `[keys] recipients`), decrypted only in memory
//! while rendering or bootstrapping, with an identity file given by the operator.
//!
//! A decrypted key is checked against the host's public key in the inventory, so a stale or
//! swapped file is caught before it reaches a host.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use wgfabric_proto::keys::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::files::{check_secret_mode, write_atomically, PUBLIC_MODE};
use crate::inventory::Inventory;

/// The encrypted keys of an inventory and the recipients new ones are encrypted for.
pub struct KeyStore {
    dir: PathBuf,
    recipients: Vec<age::x25519::Recipient>,
}

impl core::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

fn bad_key(what: &str, reason: impl Into<String>) -> Error {
    Error::BadKey { what: what.to_owned(), reason: reason.into() }
}

impl KeyStore {
    /// The key store of an inventory: `[keys] dir` (default `keys/`) beside it.
    ///
    /// # Errors
    /// [`Error::BadKey`] if a recipient does not parse.
    pub fn new(inventory: &Inventory) -> Result<Self, Error> {
        let recipients = inventory
            .keys
            .recipients
            .iter()
            .map(|text| {
                text.parse().map_err(|e: &str| bad_key("keys.recipients", format!("`{text}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { dir: inventory.dir().join(&inventory.keys.dir), recipients })
    }

    /// Where the encrypted key of `host` lives.
    pub fn path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.age"))
    }

    /// Encrypts `key` for the recipients and writes it to [`KeyStore::path`].
    ///
    /// # Errors
    /// [`Error::Refused`] without recipients, or if the file exists and `overwrite` is false;
    /// [`Error::Io`].
    pub fn store(&self, host: &str, key: &PrivateKey, overwrite: bool) -> Result<PathBuf, Error> {
        let path = self.path(host);
        if path.exists() && !overwrite {
            return Err(Error::Refused(format!(
                "{} already exists (pass --force to replace it)",
                path.display()
            )));
        }
        let armored = self.seal(Zeroizing::new(key.to_base64_secret()).as_bytes())?;
        // Ciphertext only: readable like the rest of the repository.
        write_atomically(&path, armored.as_bytes(), PUBLIC_MODE)?;
        Ok(path)
    }

    /// Encrypts `secret` (a key in base64, without its newline) for the recipients, as
    /// ASCII-armored age text, followed by a newline.
    ///
    /// # Errors
    /// [`Error::Refused`] without recipients.
    pub fn seal(&self, secret: &[u8]) -> Result<String, Error> {
        if self.recipients.is_empty() {
            return Err(Error::Refused(
                "central mode needs [keys] recipients = [\"age1...\"] in the inventory".into(),
            ));
        }
        // Output goes to memory: only the recipients can make this fail.
        let failed = |e: &dyn core::fmt::Display| Error::Refused(format!("cannot encrypt: {e}"));
        let recipients = self.recipients.iter().map(|r| r as &dyn age::Recipient);
        let encryptor = age::Encryptor::with_recipients(recipients).map_err(|e| failed(&e))?;
        let mut armored = Vec::new();
        let armor =
            ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor).map_err(|e| failed(&e))?;
        let mut writer = encryptor.wrap_output(armor).map_err(|e| failed(&e))?;
        let plaintext = Zeroizing::new([secret, b"\n"].concat());
        writer.write_all(&plaintext).map_err(|e| failed(&e))?;
        writer.finish().and_then(ArmoredWriter::finish).map_err(|e| failed(&e))?;
        // Armored output is ASCII.
        Ok(String::from_utf8_lossy(&armored).into_owned())
    }

    /// Decrypts the key of `host` and checks it matches `public_key`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file is missing; [`Error::BadKey`] if no identity opens it or the
    /// key does not match.
    pub fn load(
        &self,
        host: &str,
        public_key: &PublicKey,
        identities: &Identities,
    ) -> Result<PrivateKey, Error> {
        let path = self.path(host);
        let what = path.display().to_string();
        let ciphertext = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let plaintext = identities.open(&ciphertext, &what)?;
        let key = PrivateKey::from_base64(&plaintext)
            .map_err(|e| bad_key(&what, format!("does not hold a private key: {e}")))?;
        if key.public_key() != *public_key {
            return Err(bad_key(
                &what,
                format!(
                    "holds the key of another public key than host `{host}` has in the inventory"
                ),
            ));
        }
        Ok(key)
    }
}

/// age identities (`AGE-SECRET-KEY-1...` lines) that open encrypted keys.
pub struct Identities(Vec<age::x25519::Identity>);

impl core::fmt::Debug for Identities {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Identities(<{} redacted>)", self.0.len())
    }
}

impl Identities {
    /// Reads an identity file as `age-keygen` writes it, refusing one others can read.
    ///
    /// # Errors
    /// [`Error::KeyFileMode`], [`Error::Io`], or [`Error::BadKey`] for a malformed file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        check_secret_mode(path)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        let identities: Vec<age::x25519::Identity> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .enumerate()
            .map(|(index, line)| {
                line.parse().map_err(|_| {
                    bad_key(
                        &path.display().to_string(),
                        format!("identity {} is not an AGE-SECRET-KEY-1 line", index + 1),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if identities.is_empty() {
            return Err(bad_key(&path.display().to_string(), "holds no identity"));
        }
        Ok(Self(identities))
    }

    /// Decrypts armored age `ciphertext` (sealed by [`KeyStore::seal`]); `what` names it in
    /// errors.
    ///
    /// # Errors
    /// [`Error::BadKey`] when it is not age, no identity opens it, or it is not text.
    pub fn open(&self, ciphertext: &[u8], what: &str) -> Result<Zeroizing<String>, Error> {
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(ciphertext))
            .map_err(|e| bad_key(what, format!("not an age file: {e}")))?;
        let mut reader = decryptor
            .decrypt(self.0.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| bad_key(what, format!("cannot decrypt with the given identity: {e}")))?;
        let mut plaintext = Zeroizing::new(String::new());
        reader
            .read_to_string(&mut plaintext)
            .map_err(|e| bad_key(what, format!("cannot decrypt: {e}")))?;
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use age::secrecy::ExposeSecret as _;

    use super::*;
    use crate::files::SECRET_MODE;

    #[test]
    fn keys_round_trip_through_age_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("wgfabric-keystore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let identity = age::x25519::Identity::generate();
        let identity_file = dir.join("identity.txt");
        write_atomically(
            &identity_file,
            format!("# test\n{}\n", identity.to_string().expose_secret()).as_bytes(),
            SECRET_MODE,
        )
        .unwrap();
        let store = KeyStore { dir: dir.join("keys"), recipients: vec![identity.to_public()] };
        let key = PrivateKey::from_bytes([3; 32]);
        let path = store.store("web", &key, false).unwrap();
        let armored = std::fs::read_to_string(&path).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains(&key.to_base64_secret()));
        assert!(matches!(store.store("web", &key, false), Err(Error::Refused(_))));

        let identities = Identities::load(&identity_file).unwrap();
        assert_eq!(store.load("web", &key.public_key(), &identities).unwrap(), key);
        let other = PrivateKey::from_bytes([4; 32]).public_key();
        assert!(matches!(store.load("web", &other, &identities), Err(Error::BadKey { .. })));

        std::fs::set_permissions(&identity_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Identities::load(&identity_file), Err(Error::KeyFileMode { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
