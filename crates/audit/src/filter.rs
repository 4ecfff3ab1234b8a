//! Selecting records for `wgfabric audit show`: by target, by action (a name or a dotted
//! prefix such as `key`), and by time.

use super::{Record, Timestamp};

/// Which records to show; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The target (host) must be exactly this.
    pub target: Option<String>,
    /// The action must be this name, or start with it followed by a dot (`key` selects
    /// `key.generated`, `key.rotated` and `key.decrypted`).
    pub action: Option<String>,
    /// Not before this time.
    pub since: Option<Timestamp>,
    /// Not after this time.
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Whether `record` is selected. A record whose time does not read is selected only when
    /// no time bound is given.
    pub fn matches(&self, record: &Record) -> bool {
        let target = self.target.as_ref().is_none_or(|t| *t == record.target);
        let action = self.action.as_ref().is_none_or(|a| {
            record.action == *a
                || record.action.strip_prefix(a.as_str()).is_some_and(|rest| rest.starts_with('.'))
        });
        let time = match (self.since, self.until) {
            (None, None) => true,
            (since, until) => record.timestamp().is_some_and(|t| {
                since.is_none_or(|since| t >= since) && until.is_none_or(|until| t <= until)
            }),
        };
        target && action && time
    }
}
