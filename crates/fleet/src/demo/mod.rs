//! `wgfabric demo`: the bundled example fabric running on this machine, in network
//! namespaces, with every claim checked live.
//!
//! ```text
//!  example fabric ──► Lab::build ──► Monitors (failover, one per spoke)
//!                       │               │
//!                       ▼               ▼
//!                  peer table ◄── live refresh ──► connectivity matrix (paths from counters)
//!                       │
//!                       ▼
//!  steady ping ──► kill the active relay ──► spokes fail over ──► restart it ──► fail back
//!                       │
//!                       ▼
//!                  Summary (text or JSON) ──► teardown, or --keep
//! ```
//!
//! Everything the demo creates is named after one prefix (`wgfdemo` by default):
//! namespaces `PREFIX-NAME`, interfaces `PREFIXN`, logs and a lock file in `/run/PREFIX/`.
//! A run first removes what an earlier run of the same prefix left (a crash, `--keep`), and
//! tears its own fabric down when it ends, fails, panics or is interrupted.

mod daemon;
mod lab;
mod matrix;
mod monitors;
mod report;
mod scenario;
mod steady;
mod table;
mod underlay;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use daemon::{locate_daemon, socket_path, CargoBuild, DAEMON, SOCKET_DIR};
pub use lab::{Kept, KeptHost, Lab, LabHost, Settings, Subnet};
pub use matrix::{Cell, Matrix, Via};
pub use monitors::{Monitors, SwitchRecord};
pub use report::{
    FailoverReport, HostSummary, KeptSummary, SubnetSummary, Summary, SwitchSummary, FAILOVER_GOAL,
};
pub use scenario::run;
pub use steady::{lost_between, outage_after, Outage, Reply, SteadyPing};
pub use table::{links_text, Link};
pub use underlay::Site;

use crate::fabric::Fabric;
use crate::failover::{DumpError, Policy, WatchError};
use crate::inventory::Inventory;
use crate::lock::Lock;
use crate::netns::{delete_with_prefix, CommandError};

/// The namespace prefix of `wgfabric demo`.
pub const DEFAULT_PREFIX: &str = "wgfdemo";
/// The bundled example inventory (`examples/fabric.toml`).
pub const EXAMPLE_INVENTORY: &str = include_str!("../../../../examples/fabric.toml");
/// Its lock file (`examples/fabric.lock`).
pub const EXAMPLE_LOCK: &str = include_str!("../../../../examples/fabric.lock");

/// Why a demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The machine is not ready (not root, a tool missing, a daemon that would not start)
    /// or another run is in the way.
    #[error("{0}")]
    Setup(String),
    /// A command building or driving the fabric failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The inventory could not be turned into a fabric.
    #[error(transparent)]
    Fleet(#[from] crate::Error),
    /// A device's dump did not parse.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A failover monitor stopped on an error.
    #[error(transparent)]
    Monitor(#[from] WatchError),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted; the fabric was removed")]
    Interrupted,
}

/// The monotonic clock: the demo is an I/O edge of the crate and runs in real time.
#[expect(clippy::disallowed_methods, reason = "the demo runs in real time")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch, to date `wg show`'s handshake times.
#[expect(clippy::disallowed_methods, reason = "handshake times are wall-clock times")]
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The bundled example fabric.
///
/// # Errors
/// Only if the bundled files are broken, which the crate's tests rule out.
pub fn example_fabric() -> Result<Fabric, crate::Error> {
    let inventory = Inventory::parse(Path::new("examples/fabric.toml"), EXAMPLE_INVENTORY)?;
    let lock = Lock::parse(Path::new("examples/fabric.lock"), EXAMPLE_LOCK)?.update(&inventory)?;
    Fabric::new(inventory, lock)
}

/// Where a run shows its progress.
pub trait Reporter {
    /// A long step begins.
    fn step(&mut self, what: &str);
    /// The current step ended, with a short result.
    fn done(&mut self, result: &str);
    /// A block of text (a table). A `live` block replaces the previous live block when
    /// shown right after it; other blocks stay. Where nothing can be redrawn, showing the
    /// last live block of a step when it ends is enough.
    fn show(&mut self, text: &str, live: bool);
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace prefix ([`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// The `wgfabricd` binary.
    pub daemon: PathBuf,
    /// Leave the fabric running at the end.
    pub keep: bool,
    /// The failover monitors' policy.
    pub policy: Policy,
}

/// Checks that this process is root and that the tools the demo drives are installed.
///
/// # Errors
/// [`Error::Setup`] saying what is missing and how to install it.
pub fn check_machine() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err(Error::Setup(
            "the demo creates network namespaces and interfaces: run it as root (sudo)".into(),
        ));
    }
    let tools = [("ip", "iproute2"), ("wg", "wireguard-tools"), ("ping", "iputils-ping")];
    let mut missing: Vec<&str> =
        tools.iter().filter(|(tool, _)| !on_path(tool)).map(|(_, package)| *package).collect();
    if !on_path("nft") && !on_path("iptables") {
        missing.push("nftables");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "missing tools; install them with `sudo apt-get install {}`",
            missing.join(" ")
        )))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The process id of a demo of `prefix` still running (not this process), if any.
fn running_demo(prefix: &str) -> Option<u32> {
    let text = std::fs::read_to_string(lab::run_dir(prefix).join("pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    // Alive and the same program: a recycled process id is some other program.
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let theirs = comm(&pid.to_string());
    let ours = comm("self");
    (pid != std::process::id() && theirs.is_some() && theirs == ours).then_some(pid)
}

/// Removes everything a run of `prefix` left behind: processes and namespaces, stale API
/// sockets and the run directory. Returns the namespaces removed.
///
/// # Errors
/// [`Error::Setup`] if a demo of that prefix is still running; [`Error::Command`] when a
/// namespace cannot be deleted.
pub fn clean(prefix: &str) -> Result<Vec<String>, Error> {
    if let Some(pid) = running_demo(prefix) {
        return Err(Error::Setup(format!(
            "a demo with prefix `{prefix}` is running (pid {pid}); stop it first (Ctrl-C)"
        )));
    }
    let removed = delete_with_prefix(prefix)?;
    if let Ok(entries) = std::fs::read_dir(SOCKET_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".sock"))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(lab::run_dir(prefix));
    Ok(removed)
}
