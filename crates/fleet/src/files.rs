//! Writing files the way the controller promises: all or nothing, never half-written, secrets
//! created with mode 0600 from the first byte.
//!
//! Each file is written to a temporary file in its own directory (created with the final
//! mode, never loosened later), synced, then renamed over the target. A set of files is first
//! written to temporaries in full; only when every one of them is on disk do the renames
//! start, so a failure while writing leaves every target untouched.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Mode of files holding a secret.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of other files.
pub const PUBLIC_MODE: u32 = 0o644;

/// A file to write: where, what, and with which mode.
#[derive(Debug)]
pub struct PendingFile<'a> {
    /// Target path.
    pub path: PathBuf,
    /// Contents.
    pub contents: &'a [u8],
    /// Permission bits to create it with.
    pub mode: u32,
}

/// Creates `dir` and its missing parents; new directories get `mode`.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(|e| Error::io(dir, e))
}

fn temporary_path(path: &Path, index: usize) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{index}.tmp", std::process::id()))
}

fn write_temporary(file: &PendingFile<'_>, temporary: &Path) -> Result<(), Error> {
    let mut out: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(temporary)
        .map_err(|e| Error::io(temporary, e))?;
    out.write_all(file.contents).and_then(|()| out.sync_all()).map_err(|e| Error::io(temporary, e))
}

/// Writes every file or none: see the module documentation. Parent directories are created
/// (mode 0755, or 0700 if the set holds a secret file).
///
/// # Errors
/// [`Error::Io`] naming the file that failed; temporaries are removed.
pub fn write_all_or_nothing(files: &[PendingFile<'_>]) -> Result<(), Error> {
    let any_secret = files.iter().any(|f| f.mode == SECRET_MODE);
    let mut written: Vec<PathBuf> = Vec::with_capacity(files.len());
    let cleanup = |written: &[PathBuf]| {
        for temporary in written {
            let _ = fs::remove_file(temporary);
        }
    };
    for (index, file) in files.iter().enumerate() {
        let parent = file.path.parent().unwrap_or(Path::new(""));
        let temporary = temporary_path(&file.path, index);
        let result = create_dir(parent, if any_secret { 0o700 } else { 0o755 })
            .and_then(|()| write_temporary(file, &temporary));
        if let Err(error) = result {
            cleanup(&written);
            return Err(error);
        }
        written.push(temporary);
    }
    for (index, (file, temporary)) in files.iter().zip(&written).enumerate() {
        if let Err(e) = fs::rename(temporary, &file.path) {
            cleanup(&written[index..]);
            return Err(Error::io(&file.path, e));
        }
    }
    Ok(())
}

/// Writes one file atomically.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    write_all_or_nothing(&[PendingFile { path: path.to_owned(), contents, mode }])
}

/// Refuses a file holding a secret when group or others may read or write it.
///
/// # Errors
/// [`Error::KeyFileMode`] with the `chmod 600` fix, or [`Error::Io`].
pub fn check_secret_mode(path: &Path) -> Result<(), Error> {
    let mode = fs::metadata(path).map_err(|e| Error::io(path, e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFileMode { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wgfabric-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn secrets_are_created_0600_and_checked() {
        let dir = scratch("secret");
        let path = dir.join("private.key");
        write_atomically(&path, b"k\n", SECRET_MODE).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        check_secret_mode(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_secret_mode(&path).unwrap_err();
        assert!(err.to_string().contains(&format!("run `chmod 600 {}`", path.display())), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failing_set_writes_nothing() {
        let dir = scratch("set");
        fs::create_dir_all(&dir).unwrap();
        // A file where a directory should be makes the second file unwritable.
        let blocked = dir.join("blocked");
        fs::write(&blocked, b"").unwrap();
        let files = [
            PendingFile { path: dir.join("a/one.conf"), contents: b"1", mode: PUBLIC_MODE },
            PendingFile { path: blocked.join("x"), contents: b"2", mode: PUBLIC_MODE },
        ];
        assert!(write_all_or_nothing(&files).is_err());
        assert!(!dir.join("a/one.conf").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.join("a")).unwrap().collect();
        assert!(leftovers.is_empty(), "temporaries removed: {leftovers:?}");
        fs::remove_dir_all(dir).unwrap();
    }
}
