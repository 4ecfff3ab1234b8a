//! Validated names of hosts, networks, groups and external networks.
//!
//! Names become file names (`rendered/HOST/wg0.conf`), Ansible group names and graph node ids,
//! so they are restricted up front rather than escaped in every renderer.

use core::fmt;
use core::str::FromStr;

use crate::serde_text::serde_as_text;

/// Longest name accepted: a DNS label.
const MAX_LEN: usize = 63;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid name: use 1 to 63 letters, digits, `-`, `_` or `.`, starting with a letter or digit")]
pub struct NameError(String);

/// A host, network, group or external-network name: 1 to 63 ASCII letters, digits, `-`, `_`
/// or `.`, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let starts_well = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if starts_well && text.len() <= MAX_LEN && text.chars().all(valid_char) {
            Ok(Self(text.to_owned()))
        } else {
            Err(NameError(text.to_owned()))
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl core::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Longest free text accepted.
const MAX_TEXT: usize = 200;

/// Why free text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a one-line text: use at most 200 characters and no control characters (no line breaks or tabs)")]
pub struct TextError(String);

/// Free text for people (an external network's kind or description): one line of at most 200
/// characters without control characters, so it cannot start a new line or directive in any
/// file it is copied into.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(String);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Text {
    type Err = TextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.chars().count() <= MAX_TEXT && !text.chars().any(char::is_control) {
            Ok(Self(text.to_owned()))
        } else {
            Err(TextError(text.chars().take(MAX_TEXT).flat_map(char::escape_debug).collect()))
        }
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

serde_as_text!(Name, Text);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_like_names_only() {
        assert!("relay-fra.eu_1".parse::<Name>().is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "é", &"a".repeat(64)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_is_one_line() {
        assert!("Pods of the EU cluster — prod".parse::<Text>().is_ok());
        for bad in ["a\nb", "a\tb", "a\u{1b}[31m", "a\u{85}b", &"x".repeat(201)] {
            let error = bad.parse::<Text>().unwrap_err().to_string();
            assert!(!error.contains('\n') && !error.contains('\u{1b}'), "{error}");
        }
    }
}
