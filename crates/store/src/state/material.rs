//! Key material the controller publishes besides configurations: in central mode each host's
//! sealed private key (`keys/HOST.age`), and the sealed preshared key of each pair of hosts
//! that has one (`keys/psk/HOST_A+HOST_B.age`, names sorted). All of it is ciphertext for the
//! inventory's `[keys] recipients`, read verbatim so that publishing twice gives the same
//! documents and the same revision.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::Sealed;
use wgfabric_model::error::Error;
use wgfabric_model::inventory::Inventory;
use wgfabric_model::names::Name;

/// The directory of sealed preshared keys inside the key directory.
pub const PSK_DIR: &str = "psk";

/// The file name of the preshared key between `a` and `b`: `A+B.age` with the names sorted
/// (`+` cannot appear in a name, so the pair is unambiguous).
pub fn psk_file_name(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{first}+{second}.age")
}

/// Sealed keys found beside an inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Centrally keyed hosts and their sealed private keys.
    pub private_keys: BTreeMap<Name, Sealed>,
    /// Sealed preshared keys by pair of hosts, names sorted.
    pub preshared_keys: BTreeMap<(Name, Name), Sealed>,
}

impl KeyMaterial {
    /// The key directory of an inventory (`[keys] dir`, default `keys/` beside it).
    pub fn dir(inventory: &Inventory) -> PathBuf {
        inventory.dir().join(&inventory.keys.dir)
    }

    /// Where the sealed preshared key of `a` and `b` lives.
    pub fn psk_path(inventory: &Inventory, a: &str, b: &str) -> PathBuf {
        Self::dir(inventory).join(PSK_DIR).join(psk_file_name(a, b))
    }

    /// Reads the sealed private key of every host that has one and the preshared key of
    /// every pair of hosts of one network that has one. Missing files are not errors.
    ///
    /// # Errors
    /// [`Error::Io`] for a file that exists but cannot be read.
    pub fn load(inventory: &Inventory) -> Result<Self, Error> {
        let dir = Self::dir(inventory);
        let mut material = Self::default();
        for host in inventory.hosts.keys() {
            if let Some(sealed) = read_optional(&dir.join(format!("{host}.age")))? {
                material.private_keys.insert(host.clone(), sealed);
            }
        }
        for (a, host_a) in &inventory.hosts {
            for (b, host_b) in inventory.hosts.range(a.clone()..).skip(1) {
                if host_a.network != host_b.network {
                    continue;
                }
                let path = dir.join(PSK_DIR).join(psk_file_name(a.as_str(), b.as_str()));
                if let Some(sealed) = read_optional(&path)? {
                    material.preshared_keys.insert((a.clone(), b.clone()), sealed);
                }
            }
        }
        Ok(material)
    }

    /// The sealed preshared key between `a` and `b`, in either order.
    pub fn preshared_key(&self, a: &Name, b: &Name) -> Option<&Sealed> {
        let pair = if a <= b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
        self.preshared_keys.get(&pair)
    }
}

fn read_optional(path: &Path) -> Result<Option<Sealed>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Sealed::new(text))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_names_are_sorted() {
        assert_eq!(psk_file_name("relay", "laptop"), "laptop+relay.age");
        assert_eq!(psk_file_name("laptop", "relay"), "laptop+relay.age");
    }
}
