//! Private keys on disk: generated on the host that uses them, written 0600 from the first
//! byte, and refused when others can read them.

use std::path::Path;

use rand_core::{CryptoRng, RngCore};
use wgfabric_proto::keys::PrivateKey;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::files::{check_secret_mode, create_dir, write_atomically, SECRET_MODE};

/// Generates a private key and writes it to `path` as `wg genkey` prints it. The directory is
/// created 0700 if missing.
///
/// # Errors
/// [`Error::Refused`] if `path` exists and `overwrite` is false (a new key cuts the host off
/// until every peer learns it); [`Error::Io`].
pub fn generate_key_file<R: RngCore + CryptoRng>(
    rng: &mut R,
    path: &Path,
    overwrite: bool,
) -> Result<PrivateKey, Error> {
    if path.exists() && !overwrite {
        return Err(Error::Refused(format!(
            "{} already exists; replacing it cuts this host off until the inventory has the new \
             public key (pass --force to replace it anyway)",
            path.display()
        )));
    }
    let key = PrivateKey::generate(rng);
    write_key_file(path, &key)?;
    Ok(key)
}

/// Writes `key` to `path` as `wg genkey` prints it, 0600 from the first byte, replacing any
/// file there. The directory is created 0700 if missing.
///
/// # Errors
/// [`Error::Io`].
pub fn write_key_file(path: &Path, key: &PrivateKey) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        create_dir(dir, 0o700)?;
    }
    let text = Zeroizing::new(format!("{}\n", key.to_base64_secret()));
    write_atomically(path, text.as_bytes(), SECRET_MODE)
}

/// Reads a private key file, refusing one that group or others can read.
///
/// # Errors
/// [`Error::KeyFileMode`] with the `chmod 600` fix; [`Error::BadKey`] if it does not hold a
/// key; [`Error::Io`].
pub fn read_key_file(path: &Path) -> Result<PrivateKey, Error> {
    check_secret_mode(path)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
    PrivateKey::from_base64(&text).map_err(|e| Error::BadKey {
        what: path.display().to_string(),
        reason: format!("not a private key: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn generated_keys_are_private_and_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("wgfabric-keys-{}", std::process::id()));
        let path = dir.join("etc/private.key");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let key = generate_key_file(&mut rng, &path, false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_key_file(&path).unwrap(), key);
        assert!(matches!(generate_key_file(&mut rng, &path, false), Err(Error::Refused(_))));
        let replaced = generate_key_file(&mut rng, &path, true).unwrap();
        assert_ne!(replaced, key);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(read_key_file(&path), Err(Error::KeyFileMode { mode: 0o640, .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    use rand_core::SeedableRng as _;
}
