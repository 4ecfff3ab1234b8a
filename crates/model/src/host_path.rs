//! Absolute paths on a host, as the inventory and desired states name them (key files and key
//! directories).
//!
//! They are written into wg-quick hooks, networkd files, `wg setconf` headers and Ansible
//! variables, and run through a shell by wg-quick. Rather than quote them differently for each
//! format, they are limited up front to characters that no format and no shell gives a meaning
//! to: a path that passes can be pasted anywhere as it is.

use core::fmt;
use core::str::FromStr;
use std::path::Path;

use crate::serde_text::serde_as_text;

/// Longest path accepted (Linux's `PATH_MAX` less the terminating NUL).
const MAX_LEN: usize = 4095;

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` {problem}")]
pub struct HostPathError {
    /// The path, with control characters escaped.
    shown: String,
    problem: String,
}

/// An absolute path on a host made only of ASCII letters, digits and `/ . _ - + @ , :`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPath(String);

/// Whether `c` may appear in a [`HostPath`].
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ',' | ':')
}

impl HostPath {
    /// The path.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/name`, for a file name that is itself plain.
    pub(crate) fn join(&self, name: &str) -> Self {
        debug_assert!(name.chars().all(is_plain) && !name.contains('/'));
        Self(format!("{}/{name}", self.0.trim_end_matches('/')))
    }
}

impl FromStr for HostPath {
    type Err = HostPathError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error =
            |problem: String| HostPathError { shown: text.escape_debug().collect(), problem };
        if !text.starts_with('/') {
            return Err(error("is not an absolute path; start it with `/`".into()));
        }
        if text.len() > MAX_LEN {
            return Err(error(format!("is longer than {MAX_LEN} bytes")));
        }
        if let Some(c) = text.chars().find(|c| !is_plain(*c)) {
            let what = match c {
                ' ' => "a space".to_owned(),
                c if c.is_control() => format!("the control character {}", c.escape_debug()),
                c => format!("`{c}`"),
            };
            return Err(error(format!(
                "contains {what}; paths on hosts are written into wg-quick hooks and shell \
                 commands, so they may hold only letters, digits and `/ . _ - + @ , :` \
                 (rename the directory or point a symlink at it)"
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

serde_as_text!(HostPath);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_absolute_paths_pass() {
        for path in ["/etc/wgfabric/private.key", "/srv/keys/laptop-ana@corp,v2:1+x"] {
            assert_eq!(path.parse::<HostPath>().unwrap().as_str(), path);
        }
        let dir: HostPath = "/etc/wgfabric/".parse().unwrap();
        assert_eq!(dir.join("private.key").as_str(), "/etc/wgfabric/private.key");
    }

    #[test]
    fn anything_a_format_or_a_shell_reads_is_refused_with_the_reason() {
        let refused = |path: &str| path.parse::<HostPath>().unwrap_err().to_string();
        assert!(refused("keys/private.key").contains("not an absolute path"));
        assert!(refused("/etc/my keys/private.key").contains("contains a space"));
        assert!(refused("/etc/k;reboot").contains("contains `;`"));
        let newline = refused("/etc/k\n[Peer]");
        assert!(newline.contains("the control character \\n"), "{newline}");
        assert!(!newline.contains('\n'), "the message itself stays on one line");
        for c in ['$', '`', '\'', '"', '\\', '#', '%', '*', '?', '<', '>', '|', '&', '(', '~', '=']
        {
            assert!(format!("/etc/a{c}b").parse::<HostPath>().is_err(), "{c}");
        }
        assert!(format!("/{}", "a".repeat(MAX_LEN)).parse::<HostPath>().is_err());
    }
}
