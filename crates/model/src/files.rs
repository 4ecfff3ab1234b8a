//! Writing files the way the controller promises: all or nothing, never half-written, secrets
//! created with mode 0600 from the first byte, and a file that already holds the right bytes
//! left exactly as it is.
//!
//! A [`FileSet`] stages each file that differs from its target in a temporary file in the
//! target's directory, created with the final mode (never loosened later). Only
//! [`FileSet::commit`] touches the targets: it makes every temporary durable, then renames each
//! over its target, so a failure while staging leaves every target untouched and no reader
//! ever sees a half-written file. A target that already holds exactly the staged bytes, with
//! the staged mode, is not rewritten: its modification time stays, and whatever watches it
//! sees no change.
//!
//! Durability: the first few temporaries of a set are synced as they are written. A larger
//! set (a full render writes four files per host) is instead synced once per file system at
//! commit, with `syncfs`: one journal commit rather than one per file, which on ext4 is the
//! difference between a fraction of a second and ten seconds for 20,000 files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::Error;

/// Mode of files holding a secret.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of other files.
pub const PUBLIC_MODE: u32 = 0o644;

/// How many temporaries of a set are synced one by one; beyond, commit syncs file systems.
const SYNC_EACH_LIMIT: usize = 16;
/// How much of a streamed file is compared with its target at a time.
const STREAM_CHUNK: usize = 64 * 1024;

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

/// What staging a file found.
#[derive(Debug)]
pub enum Staged {
    /// The target already holds these bytes with this mode; it will not be touched.
    Unchanged,
    /// The target differs (or is missing, or has another mode); commit replaces it.
    Changed {
        /// The target's bytes before, if it was a regular file (`None` for a streamed file,
        /// whose earlier bytes are compared as they go, not kept).
        previous: Option<Zeroizing<Vec<u8>>>,
    },
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Files replaced or created.
    pub written: usize,
    /// Files left alone because they already held the right bytes.
    pub unchanged: usize,
}

/// A temporary waiting to be renamed over its target.
#[derive(Debug)]
struct Temporary {
    path: PathBuf,
    target: PathBuf,
    /// The file system it is on, for `syncfs`.
    device: u64,
}

/// A set of files written all or nothing: see the module documentation. Dropping a set that
/// was not committed removes its temporaries and leaves every target as it was.
#[derive(Debug)]
pub struct FileSet {
    dir_mode: u32,
    staged: Vec<Temporary>,
    unchanged: usize,
    /// The directory created last: a host's files share one, which is created once.
    created: Option<PathBuf>,
}

impl FileSet {
    /// An empty set whose missing directories are created with `dir_mode` (0700 for a set
    /// that will hold secrets, else 0755).
    pub fn new(dir_mode: u32) -> Self {
        Self { dir_mode, staged: Vec::new(), unchanged: 0, created: None }
    }

    /// Stages `contents` for `target` with `mode`, unless the target already holds exactly
    /// that.
    ///
    /// # Errors
    /// [`Error::Io`] naming the target (it could not be read) or the temporary.
    pub fn stage(&mut self, target: &Path, contents: &[u8], mode: u32) -> Result<Staged, Error> {
        let previous = read_regular(target)?;
        if let Some((bytes, existing_mode)) = &previous {
            if *existing_mode == mode && bytes.as_slice() == contents {
                self.unchanged += 1;
                return Ok(Staged::Unchanged);
            }
        }
        let (path, mut file) = self.create_temporary(target, mode)?;
        file.write_all(contents).map_err(|e| Error::io(&path, e))?;
        self.seal(&file, &path)?;
        Ok(Staged::Changed { previous: previous.map(|(bytes, _)| bytes) })
    }

    /// Stages what `produce` writes for `target` with `mode`, unless the target already holds
    /// exactly that. The output is compared with the target as it is produced and never held
    /// in memory: a temporary is started at the first difference, from the target's matching
    /// beginning.
    ///
    /// # Errors
    /// [`Error::Io`] naming the target, for failures of `produce` too.
    pub fn stage_streamed(
        &mut self,
        target: &Path,
        mode: u32,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Staged, Error> {
        let io = |e| Error::io(target, e);
        let comparing = match File::open(target) {
            Ok(file) => {
                let metadata = file.metadata().map_err(io)?;
                let same_mode = metadata.permissions().mode() & 0o777 == mode;
                (metadata.is_file() && same_mode).then_some(file)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let mut writer = BufWriter::with_capacity(
            STREAM_CHUNK,
            StreamedFile {
                set: self,
                target,
                mode,
                comparing,
                matched: 0,
                temporary: None,
                scratch: Vec::new(),
            },
        );
        produce(&mut writer).map_err(io)?;
        let streamed = writer.into_inner().map_err(|e| io(e.into_error()))?;
        streamed.finish()
    }

    /// Takes over what `other` staged, to commit it with this set's files. Sets staged on
    /// different threads for disjoint targets are joined this way.
    pub fn absorb(&mut self, mut other: Self) {
        self.staged.append(&mut other.staged);
        self.unchanged += other.unchanged;
    }

    /// Makes every staged file durable and renames it over its target.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file system or target that failed. A failed rename leaves the
    /// targets renamed before it replaced; the rest are untouched and their temporaries
    /// removed.
    pub fn commit(mut self) -> Result<Committed, Error> {
        if self.staged.len() > SYNC_EACH_LIMIT {
            self.sync_file_systems()?;
        }
        let staged = std::mem::take(&mut self.staged);
        let written = staged.len();
        let mut pending = staged.into_iter();
        while let Some(temporary) = pending.next() {
            if let Err(e) = fs::rename(&temporary.path, &temporary.target) {
                let _ = fs::remove_file(&temporary.path);
                // The rest are removed when `self` drops.
                self.staged = pending.collect();
                return Err(Error::io(&temporary.target, e));
            }
        }
        Ok(Committed { written, unchanged: self.unchanged })
    }

    /// Creates the temporary of `target` (and its directory), registered for cleanup.
    fn create_temporary(&mut self, target: &Path, mode: u32) -> Result<(PathBuf, File), Error> {
        let parent = target.parent().unwrap_or(Path::new(""));
        if self.created.as_deref() != Some(parent) {
            create_dir(parent, self.dir_mode)?;
            self.created = Some(parent.to_owned());
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = target.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            self.staged.len()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let device = file.metadata().map_err(|e| Error::io(&path, e))?.dev();
        self.staged.push(Temporary { path: path.clone(), target: target.to_owned(), device });
        Ok((path, file))
    }

    /// Syncs a finished temporary now if the set is still small (see the module docs).
    fn seal(&self, file: &File, path: &Path) -> Result<(), Error> {
        if self.staged.len() <= SYNC_EACH_LIMIT {
            file.sync_all().map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// One `syncfs` per file system holding a temporary.
    fn sync_file_systems(&self) -> Result<(), Error> {
        let mut synced: Vec<u64> = Vec::new();
        for temporary in &self.staged {
            if synced.contains(&temporary.device) {
                continue;
            }
            let io = |e| Error::io(&temporary.path, e);
            let file = File::open(&temporary.path).map_err(io)?;
            rustix::fs::syncfs(&file).map_err(|e| io(e.into()))?;
            synced.push(temporary.device);
        }
        Ok(())
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        for temporary in &self.staged {
            let _ = fs::remove_file(&temporary.path);
        }
    }
}

/// A file's bytes (zeroized when dropped: it may hold a key) and permission bits.
type Existing = (Zeroizing<Vec<u8>>, u32);

/// A regular file's bytes and permission bits; `None` if there is none at `path`.
fn read_regular(path: &Path) -> Result<Option<Existing>, Error> {
    let io = |e| Error::io(path, e);
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Ok(None);
    }
    // Sized up front so the buffer is never reallocated, leaving no stray copy of a secret.
    let capacity = usize::try_from(metadata.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(Some((bytes, metadata.permissions().mode() & 0o777)))
}

/// The writer behind [`FileSet::stage_streamed`].
struct StreamedFile<'s> {
    set: &'s mut FileSet,
    target: &'s Path,
    mode: u32,
    /// The target, while everything written so far matches its first `matched` bytes;
    /// `None` once a difference is found, or if there is no target to match.
    comparing: Option<File>,
    matched: u64,
    /// Where the output goes once it differs from the target.
    temporary: Option<(File, PathBuf)>,
    scratch: Vec<u8>,
}

impl StreamedFile<'_> {
    /// Whether `bytes` are the target's next bytes.
    fn matches(target: &mut File, scratch: &mut Vec<u8>, bytes: &[u8]) -> io::Result<bool> {
        scratch.resize(bytes.len(), 0);
        match target.read_exact(scratch) {
            Ok(()) => Ok(scratch.as_slice() == bytes),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The temporary, started on the first call with the target's first `matched` bytes:
    /// the output so far.
    fn diverge(&mut self) -> io::Result<&mut File> {
        let temporary = match self.temporary.take() {
            Some(temporary) => temporary,
            None => {
                let (path, mut file) =
                    self.set.create_temporary(self.target, self.mode).map_err(io::Error::other)?;
                if let Some(mut target) = self.comparing.take() {
                    target.seek(SeekFrom::Start(0))?;
                    io::copy(&mut target.take(self.matched), &mut file)?;
                }
                (file, path)
            }
        };
        Ok(&mut self.temporary.insert(temporary).0)
    }

    /// Ends the file: unchanged if the output was the whole target.
    fn finish(mut self) -> Result<Staged, Error> {
        let target = self.target;
        let io = |e| Error::io(target, e);
        if let Some(file) = &mut self.comparing {
            if file.read(&mut [0u8]).map_err(io)? == 0 {
                self.set.unchanged += 1;
                return Ok(Staged::Unchanged);
            }
        }
        self.diverge().map_err(io)?;
        if let Some((file, path)) = &self.temporary {
            self.set.seal(file, path)?;
        }
        Ok(Staged::Changed { previous: None })
    }
}

impl Write for StreamedFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(target) = &mut self.comparing {
            if Self::matches(target, &mut self.scratch, bytes)? {
                self.matched += bytes.len() as u64;
                return Ok(bytes.len());
            }
        }
        self.diverge()?.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every file or none, leaving alone those that already hold their bytes: see the
/// module documentation. Parent directories are created (mode 0755, or 0700 if the set holds
/// a secret file).
///
/// # Errors
/// [`Error::Io`] naming the file that failed; temporaries are removed.
pub fn write_all_or_nothing(files: &[PendingFile<'_>]) -> Result<(), Error> {
    let any_secret = files.iter().any(|f| f.mode == SECRET_MODE);
    let mut set = FileSet::new(if any_secret { 0o700 } else { 0o755 });
    for file in files {
        set.stage(&file.path, file.contents, file.mode)?;
    }
    set.commit().map(drop)
}

/// Writes one file atomically (unless it already holds `contents` with `mode`).
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
mod tests;
