//! Kernel parameters read and written under `/proc/sys`, as `sysctl -w` would, with a record
//! of every value changed so that it can be put back.
//!
//! Keys are paths relative to `/proc/sys` (`net/ipv4/conf/wg0/forwarding`), so that interface
//! names with dots need no escaping. Files under `/proc/sys/net` belong to the network
//! namespace of the thread that opens them (see [`crate::namespace::enter`]).

use std::path::{Path, PathBuf};

/// Where the kernel exposes its parameters.
const ROOT: &str = "/proc/sys";

/// A parameter that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub struct SysctlError {
    /// The file.
    pub path: PathBuf,
    /// What the system said.
    pub cause: std::io::Error,
}

fn path(key: &str) -> PathBuf {
    Path::new(ROOT).join(key)
}

/// Whether the kernel has the parameter `key`.
pub fn exists(key: &str) -> bool {
    path(key).exists()
}

/// The value of `key`, without the trailing newline.
///
/// # Errors
/// [`SysctlError`] when it cannot be read.
pub fn read(key: &str) -> Result<String, SysctlError> {
    let path = path(key);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim_end().to_owned()),
        Err(cause) => Err(SysctlError { path, cause }),
    }
}

/// Sets `key` to `value`.
///
/// # Errors
/// [`SysctlError`] when it cannot be written (no such parameter, not root, a value the
/// kernel refuses).
pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = path(key);
    std::fs::write(&path, value).map_err(|cause| SysctlError { path, cause })
}

/// One parameter changed, with the value it had before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changed {
    /// The key, relative to `/proc/sys`.
    pub key: String,
    /// Its value before.
    pub before: String,
}

/// The parameters changed so far, oldest first, to be put back in reverse order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes(Vec<Changed>);

impl Changes {
    /// Sets `key` to `value`, remembering its old value when it differed (a parameter that
    /// already had the value is left out, so that restoring does not undo someone else's
    /// setting).
    ///
    /// # Errors
    /// [`SysctlError`] when it cannot be read or written.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SysctlError> {
        let before = read(key)?;
        if before != value {
            write(key, value)?;
            self.0.push(Changed { key: key.to_owned(), before });
        }
        Ok(())
    }

    /// The changes, oldest first.
    pub fn list(&self) -> &[Changed] {
        &self.0
    }

    /// Puts every parameter back, newest first. A parameter that is gone with its interface
    /// needs no restoring and is skipped.
    ///
    /// # Errors
    /// The first parameter that could not be restored; those after it are still tried, and
    /// the ones not restored stay in the record.
    pub fn restore(&mut self) -> Result<(), SysctlError> {
        let mut first_error = None;
        let mut kept = Vec::new();
        while let Some(changed) = self.0.pop() {
            if !exists(&changed.key) {
                continue;
            }
            if let Err(error) = write(&changed.key, &changed.before) {
                first_error.get_or_insert(error);
                kept.push(changed);
            }
        }
        kept.reverse();
        self.0 = kept;
        first_error.map_or(Ok(()), Err)
    }
}

impl From<Vec<Changed>> for Changes {
    fn from(changes: Vec<Changed>) -> Self {
        Self(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parameters_are_named_errors() {
        let error = read("net/ipv4/conf/wgf-no-such-iface/forwarding").unwrap_err();
        assert!(error.to_string().starts_with("/proc/sys/net/ipv4/conf/wgf-no-such-iface"));
        assert!(!exists("net/ipv4/conf/wgf-no-such-iface/forwarding"));
        let mut changes = Changes::default();
        assert!(changes.set("net/ipv4/conf/wgf-no-such-iface/forwarding", "1").is_err());
        assert!(changes.list().is_empty());
    }

    #[test]
    fn restoring_skips_parameters_gone_with_their_interface() {
        let mut changes = Changes::from(vec![Changed {
            key: "net/ipv4/conf/wgf-gone/forwarding".to_owned(),
            before: "0".to_owned(),
        }]);
        changes.restore().unwrap();
        assert!(changes.list().is_empty());
    }
}
