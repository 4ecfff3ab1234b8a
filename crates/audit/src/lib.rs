//! The audit log: every controller action that changes security state appends one JSON line
//! to an append-only file, and each line carries the hash of the line before it, so editing,
//! removing, reordering or inserting lines breaks the chain where it happened.
//!
//! ```text
//!  {"seq":1,"time":…,"actor":…,"action":"key.generated",…,"prev":"000…000"}   genesis
//!  {"seq":2,…,"prev":"<sha256 of line 1>"}
//!  {"seq":3,…,"prev":"<sha256 of line 2>"}          verify: recompute, compare, line by line
//! ```
//!
//! A line holds `seq` (1, 2, 3, ...), `time` (RFC 3339, UTC), `actor`, `action` (see
//! [`Action`]), `target` (usually a host), `before` and `after` fingerprints (a short hash of
//! a public key or of a file's contents, never a secret), an optional `detail`, and `prev`:
//! the SHA-256, in hex, of the previous line's bytes without its newline ([`GENESIS`] for the
//! first line). `docs/audit.md` documents the format and how to check it with shell tools.
//!
//! [`Audit::append`] writes each line with one `write` on a descriptor opened `O_APPEND`,
//! under an exclusive `flock` (so two processes cannot both chain to the same line), and
//! `fsync`s before returning; [`Audit::append_all`] does the same for a batch of lines. [`verify::verify`] checks a log; [`Filter`] selects lines for
//! `wgfabric audit show`.
//!
//! The chain makes tampering evident, not impossible: someone who can write the file can
//! rewrite every line after their edit. Keep the head hash [`verify::verify`] reports
//! somewhere else (a commit message, a ticket, another machine) and pass it back as an
//! anchor to detect that too.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod filter;
pub mod note;
mod time;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

pub use filter::Filter;
pub use time::{TimeParseError, Timestamp};

use wgfabric_model::error::Error;
use wgfabric_model::files::{create_dir, PUBLIC_MODE};
use wgfabric_model::fingerprint::sha256_hex;
pub use wgfabric_model::fingerprint::Fingerprint;

/// The `prev` of the first line: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The file name of the log beside an inventory (or in a host's key directory).
pub const FILE_NAME: &str = "audit.jsonl";

/// The longest line [`Audit::append`] will read back to chain to.
const MAX_LINE: usize = 1 << 20;

/// What was done. The names are stable: they are what `wgfabric audit show --action` and
/// alerting on the log match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// A private key was generated (`key.generated`); `after` is its public key.
    KeyGenerated,
    /// A host's key pair was replaced by rotation (`key.rotated`); `before` and `after` are
    /// the old and new public keys.
    KeyRotated,
    /// An encrypted private key was decrypted (`key.decrypted`), e.g. to inline it in a
    /// rendered configuration; `after` is its public key.
    KeyDecrypted,
    /// A private key was read from its key source (`key.fetched`): a file, a systemd
    /// credential or a command; `after` is its public key, `detail` the source.
    KeyFetched,
    /// A preshared key between two hosts was replaced (`psk.rotated`); never fingerprinted.
    PresharedKeyRotated,
    /// A peer was added to a host's interface (`peer.added`); `after` is its public key.
    PeerAdded,
    /// A peer was removed from a host's interface (`peer.removed`); `before` is its public key.
    PeerRemoved,
    /// A host's rendered configuration was written (`config.written`); `before` and `after`
    /// fingerprint the files' contents.
    ConfigWritten,
    /// A configuration was applied to a host's live interface (`config.applied`).
    ConfigApplied,
    /// The addresses held for a removed host were released (`addresses.released`).
    AddressesReleased,
    /// A host's firewall (`table inet wgfabric`) was loaded or removed (`policy.applied`);
    /// `detail` fingerprints the table.
    PolicyApplied,
}

impl Action {
    /// Every action, for listings.
    pub const ALL: [Self; 11] = [
        Self::KeyGenerated,
        Self::KeyRotated,
        Self::KeyDecrypted,
        Self::KeyFetched,
        Self::PresharedKeyRotated,
        Self::PeerAdded,
        Self::PeerRemoved,
        Self::ConfigWritten,
        Self::ConfigApplied,
        Self::AddressesReleased,
        Self::PolicyApplied,
    ];

    /// The name written in the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeyGenerated => "key.generated",
            Self::KeyRotated => "key.rotated",
            Self::KeyDecrypted => "key.decrypted",
            Self::KeyFetched => "key.fetched",
            Self::PresharedKeyRotated => "psk.rotated",
            Self::PeerAdded => "peer.added",
            Self::PeerRemoved => "peer.removed",
            Self::ConfigWritten => "config.written",
            Self::ConfigApplied => "config.applied",
            Self::AddressesReleased => "addresses.released",
            Self::PolicyApplied => "policy.applied",
        }
    }
}

/// One action to record. Time and actor come from the caller: the controller never reads the
/// clock, and only the caller knows who runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it happened.
    pub time: Timestamp,
    /// Who did it, such as `alice@laptop` or `ci:pipeline-1234`.
    pub actor: String,
    /// What was done.
    pub action: Action,
    /// What it was done to: usually a host name.
    pub target: String,
    /// The state before, if any.
    pub before: Option<Fingerprint>,
    /// The state after, if any.
    pub after: Option<Fingerprint>,
    /// Free text such as the file written; never a secret.
    pub detail: Option<String>,
}

impl Entry {
    /// An entry without fingerprints or detail.
    pub fn new(
        time: Timestamp,
        actor: impl Into<String>,
        action: Action,
        target: impl Into<String>,
    ) -> Self {
        Self {
            time,
            actor: actor.into(),
            action,
            target: target.into(),
            before: None,
            after: None,
            detail: None,
        }
    }

    /// With the state before.
    #[must_use]
    pub fn before(mut self, fingerprint: Fingerprint) -> Self {
        self.before = Some(fingerprint);
        self
    }

    /// With the state after.
    #[must_use]
    pub fn after(mut self, fingerprint: Fingerprint) -> Self {
        self.after = Some(fingerprint);
        self
    }

    /// With a detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One line of the log, as written and as read back. Fields are written in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 1 for the first line, then one more per line.
    pub seq: u64,
    /// RFC 3339, UTC, whole seconds.
    pub time: String,
    /// Who did it.
    pub actor: String,
    /// The [`Action`] name (kept as text so that names from newer versions still read).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Fingerprint of the state before.
    pub before: Option<String>,
    /// Fingerprint of the state after.
    pub after: Option<String>,
    /// Free text.
    pub detail: Option<String>,
    /// SHA-256 (hex) of the previous line; [`GENESIS`] on the first.
    pub prev: String,
}

impl Record {
    /// Reads one line.
    ///
    /// # Errors
    /// The JSON error, when the line is not a record.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// When it happened, if its time reads.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }
}

/// The SHA-256 of `bytes`, in lowercase hex: what the next line's `prev` holds for a line.
pub fn line_hash(line: &[u8]) -> String {
    sha256_hex(line)
}

/// An audit log open for appending.
#[derive(Debug)]
pub struct Audit {
    file: File,
    path: PathBuf,
}

impl Audit {
    /// Opens the log at `path` for appending, creating it (mode 0644; no secret is ever in
    /// it) if needed, and its directory (mode 0700, since it may be a key directory).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            create_dir(dir, 0o700)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(PUBLIC_MODE)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self { file, path: path.to_owned() })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` chained to the current last line, and syncs it to disk. Returns the
    /// record written.
    ///
    /// # Errors
    /// [`Error::Refused`] when the log ends with an incomplete or unreadable line (appending
    /// would hide it: run `wgfabric audit verify`); [`Error::Io`].
    pub fn append(&mut self, entry: Entry) -> Result<Record, Error> {
        self.locked(|audit| {
            let (seq, prev) = audit.head()?;
            let (record, line) = chained(entry, seq, prev);
            audit.write_synced(&line)?;
            Ok(record)
        })
    }

    /// Appends `entries` in order, each chained to the one before, with one write and one
    /// sync for them all (a render of thousands of hosts records each host). Returns how
    /// many were written.
    ///
    /// # Errors
    /// As [`Audit::append`]; nothing is appended then.
    pub fn append_all(&mut self, entries: impl IntoIterator<Item = Entry>) -> Result<usize, Error> {
        self.locked(|audit| {
            let (mut seq, mut prev) = audit.head()?;
            let mut text = String::new();
            let mut count = 0;
            for entry in entries {
                let (_, line) = chained(entry, seq, prev);
                seq += 1;
                prev = line_hash(line.trim_end_matches('\n').as_bytes());
                text.push_str(&line);
                count += 1;
            }
            if count > 0 {
                audit.write_synced(&text)?;
            }
            Ok(count)
        })
    }

    /// Runs `append` under the exclusive lock that keeps two writers from chaining to the
    /// same line.
    fn locked<T>(&self, append: impl FnOnce(&Self) -> Result<T, Error>) -> Result<T, Error> {
        let lock =
            |operation| flock(&self.file, operation).map_err(|e| Error::io(&self.path, e.into()));
        lock(FlockOperation::LockExclusive)?;
        let result = append(self);
        // Closing the file would release the lock too; unlock now for the next writer.
        let unlocked = flock(&self.file, FlockOperation::Unlock);
        let value = result?;
        unlocked.map_err(|e| Error::io(&self.path, e.into()))?;
        Ok(value)
    }

    /// The sequence number and `prev` hash of the next line.
    fn head(&self) -> Result<(u64, String), Error> {
        match self.last_line()? {
            None => Ok((1, GENESIS.to_owned())),
            Some(line) => {
                let last = std::str::from_utf8(&line).ok().and_then(|l| Record::parse(l).ok());
                let Some(last) = last else {
                    return Err(self.refuse("its last line is not an audit record"));
                };
                Ok((last.seq + 1, line_hash(&line)))
            }
        }
    }

    /// Writes whole lines and syncs them.
    fn write_synced(&self, lines: &str) -> Result<(), Error> {
        // One write: with O_APPEND the lines land whole at the end.
        (&self.file).write_all(lines.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    fn refuse(&self, why: &str) -> Error {
        Error::Refused(format!(
            "{}: {why}; not appending to it (run `wgfabric audit verify --log {}`)",
            self.path.display(),
            self.path.display()
        ))
    }

    /// The last line without its newline; `None` for an empty log.
    fn last_line(&self) -> Result<Option<Vec<u8>>, Error> {
        let io = |e: std::io::Error| Error::io(&self.path, e);
        let len = self.file.metadata().map_err(io)?.len();
        if len == 0 {
            return Ok(None);
        }
        let mut last = [0u8];
        self.file.read_exact_at(&mut last, len - 1).map_err(io)?;
        if last != *b"\n" {
            return Err(self.refuse("it ends with an incomplete line"));
        }
        // Read backwards from the final newline to the one before it, a block at a time.
        let mut line = Vec::new();
        let mut end = len - 1;
        while end > 0 {
            let start = end.saturating_sub(4096);
            let mut block = vec![0u8; (end - start) as usize];
            self.file.read_exact_at(&mut block, start).map_err(io)?;
            let newline = block.iter().rposition(|&b| b == b'\n');
            block.drain(..newline.map_or(0, |at| at + 1));
            block.append(&mut line);
            line = block;
            if newline.is_some() {
                break;
            }
            if line.len() > MAX_LINE {
                return Err(self.refuse("its last line is too long"));
            }
            end = start;
        }
        Ok(Some(line))
    }
}

/// The record of `entry` as line `seq` after a line hashing to `prev`, and its text with the
/// newline.
fn chained(entry: Entry, seq: u64, prev: String) -> (Record, String) {
    let record = Record {
        seq,
        time: entry.time.to_string(),
        actor: entry.actor,
        action: entry.action.as_str().to_owned(),
        target: entry.target,
        before: entry.before.map(Fingerprint::into_string),
        after: entry.after.map(Fingerprint::into_string),
        detail: entry.detail,
        prev,
    };
    // Serializing a struct of strings and numbers cannot fail.
    let mut line = serde_json::to_string(&record).expect("a record serializes");
    line.push('\n');
    (record, line)
}

#[cfg(test)]
mod tests;
