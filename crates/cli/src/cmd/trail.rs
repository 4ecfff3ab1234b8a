//! How verbs record what they change in the audit log (`wgfabric_audit`): where the log
//! is, who the actor is, and when. A verb opens its trail before acting, so a log it cannot
//! write stops it before anything changed, and appends once the change is made.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use wgfabric_audit::{Action, Audit, Entry, Timestamp, FILE_NAME};

/// The audit log option of verbs that change security state.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditLogArgs {
    /// Audit log to append to [default: audit.jsonl beside the inventory, or in the key
    /// directory for keys generated on a host].
    #[arg(long, env = "WGFABRIC_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<PathBuf>,
}

impl AuditLogArgs {
    /// Opens the log given, or `DIR/audit.jsonl`.
    ///
    /// # Errors
    /// When the log cannot be created or opened.
    pub(crate) fn open(&self, default_dir: &Path) -> anyhow::Result<Trail> {
        let path = self.audit_log.clone().unwrap_or_else(|| default_dir.join(FILE_NAME));
        let audit = Audit::open(&path).context("opening the audit log")?;
        Ok(Trail { audit, actor: actor() })
    }
}

/// An open audit log and the actor its entries name.
#[derive(Debug)]
pub(crate) struct Trail {
    audit: Audit,
    actor: String,
}

impl Trail {
    /// An entry for `action` on `target`, now, by this actor.
    pub(crate) fn entry(&self, action: Action, target: &str) -> Entry {
        Entry::new(Timestamp::from_system_time(SystemTime::now()), &*self.actor, action, target)
    }

    /// Appends `entry`.
    ///
    /// # Errors
    /// When the log cannot be written; the action it records has already happened.
    pub(crate) fn append(&mut self, entry: Entry) -> anyhow::Result<()> {
        let action = entry.action.as_str();
        self.audit.append(entry).with_context(|| format!("recording {action} in the audit log"))?;
        Ok(())
    }

    /// Appends `entries` in order, with one write and one sync: a render of thousands of
    /// hosts records each of them.
    ///
    /// # Errors
    /// When the log cannot be written; the actions it records have already happened.
    pub(crate) fn append_all(&mut self, entries: Vec<Entry>) -> anyhow::Result<()> {
        self.audit.append_all(entries).context("recording in the audit log")?;
        Ok(())
    }
}

/// Who runs this: `$WGFABRIC_ACTOR` when set (a CI pipeline names itself, e.g.
/// `ci:deploy#1234`), else the login name (under sudo, the user who invoked it) at the host.
fn actor() -> String {
    if let Some(actor) = std::env::var("WGFABRIC_ACTOR").ok().filter(|a| !a.trim().is_empty()) {
        return actor;
    }
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata("/proc/self")
                .map_or_else(|_| "unknown".into(), |m| format!("uid{}", m.uid()))
        });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}
