//! What `up` changed on one interface, kept in `STATE_DIR/IFACE.json` (0600) so that `down`,
//! in another process, undoes exactly that and nothing else.
//!
//! The record is written again after every change, so a process that dies halfway still
//! leaves `down` everything it needs. It holds no secret: the host's public key, never its
//! private key.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wgfabric_model::cidr::IfAddr;
use wgfabric_model::files::{write_atomically, SECRET_MODE};
use wgfabric_model::names::Name;

use super::UpError;
use crate::netlink::route::describe;
use crate::netlink::{Route, Rule};
use crate::sysctl::Changed;

/// The record's format, raised when its meaning changes.
pub const RECORD_FORMAT: u32 = 1;

/// How `up` came by the interface's daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum DaemonUse {
    /// `up` started this binary, and `down` stops it.
    Started {
        /// The daemon's executable.
        binary: PathBuf,
    },
    /// A daemon already served the interface; `down` leaves it running unless asked.
    Adopted,
}

/// The interface's MTU and state before `up` changed them (an adopted daemon's interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBefore {
    /// The MTU it had.
    pub mtu: u32,
    /// Whether it was up.
    pub up: bool,
}

/// What `up` did to one interface: printed by `up --format json`, kept for `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// [`RECORD_FORMAT`].
    pub format: u32,
    /// The host brought up.
    pub host: Name,
    /// Its interface.
    pub interface: String,
    /// The daemon, once it was started or adopted.
    pub daemon: Option<DaemonUse>,
    /// The host's public key (base64), once the private key was set.
    pub public_key: Option<String>,
    /// Where the private key came from, for people.
    pub key_source: Option<String>,
    /// Peers configured.
    pub peers: usize,
    /// The firewall mark set on the device for full-tunnel policy routing, and the one it
    /// had before (restored by `down`).
    pub fwmark: Option<FwMark>,
    /// The interface's MTU and state before, when `up` changed them.
    pub link_before: Option<LinkBefore>,
    /// Addresses added (those the interface had already are not listed).
    pub addresses: Vec<IfAddr>,
    /// Routes added, in order.
    pub routes: Vec<Route>,
    /// Policy routing rules added, in order.
    pub rules: Vec<Rule>,
    /// Kernel parameters changed, with the values they had.
    pub sysctls: Vec<Changed>,
}

/// A firewall mark set on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwMark {
    /// The mark set (also the number of the routing table).
    pub mark: u32,
    /// The mark before; 0 is none.
    pub before: u32,
}

impl Applied {
    /// A record of nothing done yet.
    pub(crate) fn new(host: Name, interface: String) -> Self {
        Self {
            format: RECORD_FORMAT,
            host,
            interface,
            daemon: None,
            public_key: None,
            key_source: None,
            peers: 0,
            fwmark: None,
            link_before: None,
            addresses: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            sysctls: Vec::new(),
        }
    }

    /// Whether anything recorded is left to undo.
    pub(crate) fn is_empty(&self) -> bool {
        self.daemon.is_none()
            && self.fwmark.is_none()
            && self.link_before.is_none()
            && self.addresses.is_empty()
            && self.routes.is_empty()
            && self.rules.is_empty()
            && self.sysctls.is_empty()
    }

    /// The changes, one per line, as `ip` and `sysctl` would write them.
    pub fn lines(&self) -> Vec<String> {
        let interface = &self.interface;
        let mut lines = Vec::new();
        match &self.daemon {
            Some(DaemonUse::Started { binary }) => {
                lines.push(format!("daemon started: {} {interface}", binary.display()));
            }
            Some(DaemonUse::Adopted) => lines.push(format!("daemon adopted on {interface}")),
            None => {}
        }
        if let (Some(key), Some(source)) = (&self.public_key, &self.key_source) {
            lines.push(format!("private key from {source} (public key {key})"));
        }
        if self.public_key.is_some() {
            lines.push(format!("peers: {}", self.peers));
        }
        if let Some(FwMark { mark, .. }) = self.fwmark {
            lines.push(format!("fwmark {mark:#x}"));
        }
        lines.extend(self.addresses.iter().map(|address| format!("address {address}")));
        if self.link_before.is_some() {
            lines.push(format!("link {interface} up"));
        }
        lines.extend(
            self.routes.iter().map(|route| format!("route {}", describe(route, interface))),
        );
        lines.extend(self.rules.iter().map(|rule| rule.to_string()));
        lines.extend(self.sysctls.iter().map(|changed| {
            format!("sysctl {} changed (was {})", changed.key.replace('/', "."), changed.before)
        }));
        lines
    }
}

/// The record of `interface` in `state_dir`.
pub(crate) fn path(state_dir: &Path, interface: &str) -> PathBuf {
    state_dir.join(format!("{interface}.json"))
}

/// A record kept on disk as it grows.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    applied: Applied,
}

impl Journal {
    /// Starts the record at `path`, refusing when one is there: the interface is up already.
    pub(crate) fn create(path: PathBuf, applied: Applied) -> Result<Self, UpError> {
        if path.exists() {
            return Err(UpError::AlreadyUp { interface: applied.interface, record: path });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|cause| UpError::Record {
                path: dir.to_owned(),
                cause: cause.to_string(),
            })?;
        }
        let journal = Self { path, applied };
        journal.save()?;
        Ok(journal)
    }

    /// The record of `interface` in `state_dir`.
    pub(crate) fn open(state_dir: &Path, interface: &str) -> Result<Self, UpError> {
        let path = path(state_dir, interface);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(UpError::NotUp { interface: interface.to_owned(), record: path })
            }
            Err(error) => return Err(UpError::Record { path, cause: error.to_string() }),
        };
        let applied: Applied = serde_json::from_slice(&bytes)
            .map_err(|cause| UpError::MalformedRecord { path: path.clone(), cause })?;
        if applied.format != RECORD_FORMAT {
            return Err(UpError::Record {
                path,
                cause: format!("format {} is not {RECORD_FORMAT}", applied.format),
            });
        }
        Ok(Self { path, applied })
    }

    /// What is recorded.
    pub(crate) fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Records a change (in memory first, so that a failure to save still undoes it).
    pub(crate) fn note(&mut self, change: impl FnOnce(&mut Applied)) -> Result<(), UpError> {
        change(&mut self.applied);
        self.save()
    }

    /// Replaces the record with what is left to undo, removing the file when nothing is.
    pub(crate) fn settle(&mut self, left: Applied) -> Result<(), UpError> {
        self.applied = left;
        if !self.applied.is_empty() {
            return self.save();
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => {
                Err(UpError::Record { path: self.path.clone(), cause: error.to_string() })
            }
        }
    }

    /// The record, as the process leaves it.
    pub(crate) fn into_applied(self) -> Applied {
        self.applied
    }

    fn save(&self) -> Result<(), UpError> {
        let text = serde_json::to_vec_pretty(&self.applied).map_err(|error| UpError::Record {
            path: self.path.clone(),
            cause: error.to_string(),
        })?;
        write_atomically(&self.path, &text, SECRET_MODE)
            .map_err(|error| UpError::Record { path: self.path.clone(), cause: error.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgfabric-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_round_trip_refuse_a_second_up_and_vanish_when_settled() {
        let dir = scratch();
        let mut applied = Applied::new("laptop-ben".parse().unwrap(), "wgt0".to_owned());
        assert!(applied.is_empty());
        applied.addresses.push("10.77.0.4/16".parse().unwrap());
        let mut journal = Journal::create(path(&dir, "wgt0"), applied.clone()).unwrap();
        journal
            .note(|applied| {
                applied.routes.push(Route::via("10.1.0.0/16".parse().unwrap(), 7));
            })
            .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path(&dir, "wgt0")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Journal::create(path(&dir, "wgt0"), applied).unwrap_err();
        assert!(again.to_string().contains("wgfabric down wgt0"), "{again}");
        let mut reopened = Journal::open(&dir, "wgt0").unwrap();
        assert_eq!(reopened.applied(), journal.applied());
        assert_eq!(
            reopened.applied().lines(),
            ["address 10.77.0.4/16", "route 10.1.0.0/16 dev wgt0"]
        );
        reopened.settle(Applied::new("laptop-ben".parse().unwrap(), "wgt0".to_owned())).unwrap();
        assert!(matches!(Journal::open(&dir, "wgt0"), Err(UpError::NotUp { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
