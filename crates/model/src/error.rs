//! The controller's errors: a typed taxonomy that tells bad input (with its file, line and
//! field) apart from local failures (I/O with its path) and from key problems.
//!
//! Messages never contain secret material; a key is named by its file or its host.

use std::path::{Path, PathBuf};

/// A mistake in an input file, located by file, line, column and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct SourceError {
    /// The file that holds the mistake.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted path of the offending field, such as `host.laptop.endpoint`.
    pub field: String,
    /// What is wrong, and how to fix it where that is not obvious.
    pub message: String,
}

/// Everything the controller library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An inventory or lock file is malformed or inconsistent.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading or writing a file failed. The cause is part of the message, not a separate
    /// `source()`, so that printing the error chain does not repeat it.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// A private key file is readable by other users.
    #[error(
        "{}: private key file is readable by group or others (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file or key text did not hold a valid key.
    #[error("{what}: {reason}")]
    BadKey {
        /// The file or host whose key is bad.
        what: String,
        /// Why, without the key itself.
        reason: String,
    },
    /// Address assignment failed (a network is full, or a lock entry no longer fits).
    #[error("{0}")]
    Address(String),
    /// A host, network or file that was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A refusal to proceed, with the reason and the fix (such as overwriting a key).
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path, cause: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), cause }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
