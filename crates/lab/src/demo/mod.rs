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

mod agent;
mod daemon;
mod lab;
mod matrix;
mod monitors;
mod paths;
mod report;
mod scenario;
mod steady;
mod table;
mod underlay;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

pub use daemon::{locate_daemon, DAEMON};
pub use lab::{Kept, KeptHost, Lab, LabHost, Settings, Subnet};
pub use matrix::{Cell, Matrix, Via};
pub use monitors::{Monitors, SwitchRecord};
pub use paths::{all_direct_that_may, paths_text, spoke_paths, SpokePath};
pub use report::{
    FailoverReport, HostSummary, KeptSummary, SubnetSummary, Summary, SwitchSummary, FAILOVER_GOAL,
};
pub use scenario::run;
pub use steady::{lost_between, outage_after, Outage, Reply, SteadyPing};
pub use table::{links_text, Link};
pub use underlay::Site;

use crate::netns::{delete_with_prefix, CommandError};
use wgfabric_host::failover::{Policy, WatchError};

/// The namespace prefix of `wgfabric demo`.
pub const DEFAULT_PREFIX: &str = "wgfdemo";

/// Why a demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The machine or the run is not as the demo needs it (not root, a tool missing, a
    /// daemon that died, a milestone not reached in time, another run in the way); the
    /// message says what and how to fix it.
    #[error("{0}")]
    Setup(String),
    /// `wgfabricd` was not found.
    #[error(transparent)]
    Daemon(#[from] wgfabric_host::daemon_binary::MissingDaemon),
    /// A file of the run (a log, the pid file, the run directory) could not be written.
    #[error("{}: {cause}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// A program could not be started.
    #[error("starting `{command}`: {cause}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the system said.
        cause: std::io::Error,
    },
    /// A host the lab does not have.
    #[error("no host `{0}` in the lab")]
    NoSuchHost(String),
    /// An endpoint moved onto the demo's underlay does not parse.
    #[error(transparent)]
    Endpoint(#[from] wgfabric_model::endpoint::EndpointError),
    /// A command building or driving the fabric failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The inventory could not be turned into a fabric.
    #[error(transparent)]
    Fleet(#[from] wgfabric_model::Error),
    /// A daemon's userspace API failed.
    #[error(transparent)]
    Device(#[from] wgfabric_uapi::DeviceError),
    /// nftables refused a table.
    #[error(transparent)]
    Nft(#[from] wgfabric_host::nftables::NftError),
    /// An interface could not be configured.
    #[error(transparent)]
    Netlink(#[from] wgfabric_host::netlink::NetlinkError),
    /// A namespace, socket or sysctl could not be used.
    #[error(transparent)]
    Io(#[from] std::io::Error),
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

/// Seconds since the Unix epoch, to date the devices' handshake times.
#[expect(clippy::disallowed_methods, reason = "handshake times are wall-clock times")]
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
    /// The `wgfabric` binary, for the agents of the hosts with a direct path to try.
    pub wgfabric: PathBuf,
    /// Leave the fabric running at the end.
    pub keep: bool,
    /// The failover monitors' policy.
    pub policy: Policy,
    /// Install the `nftables` package when `nft` is missing (as root on Debian or Ubuntu).
    pub install: bool,
}

/// Checks that this process is root and that `ip` (iproute2), which builds the namespaces,
/// is installed.
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
    if on_path("ip") {
        Ok(())
    } else {
        Err(Error::Setup(
            "`ip` is missing: it creates the network namespaces; install it with \
             `sudo apt-get install iproute2`"
                .into(),
        ))
    }
}

/// Why the demo needs `nft`: the kernel takes nftables rules only in `nft`'s netlink
/// encoding, which the project leaves to nftables itself.
const WHY_NFT: &str = "`nft` (Debian package nftables) is missing: the NAT router's \
                       masquerade and the hosts' firewalls are nftables tables, which only \
                       `nft` can load";

/// Makes sure `nft` is installed: as root on Debian or Ubuntu, and when `install` allows it,
/// installs the `nftables` package after saying so through `reporter`; returns what it did.
///
/// # Errors
/// [`Error::Setup`] naming the package and how to install it, when it is missing and cannot
/// or may not be installed here.
pub fn ensure_nftables(install: bool, reporter: &mut dyn Reporter) -> Result<&'static str, Error> {
    if on_path("nft") {
        return Ok("nft is installed");
    }
    let refuse = |how: &str| {
        Err(Error::Setup(format!(
            "{WHY_NFT}; install it with `sudo apt-get install nftables`{how}"
        )))
    };
    if !install {
        return refuse(" (not installed by the demo: --no-install)");
    }
    if !is_debian_like() {
        return refuse(" or your distribution's equivalent");
    }
    reporter.step(&format!(
        "{WHY_NFT}; installing it: apt-get install -y --no-install-recommends nftables"
    ));
    let apt = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "nftables"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| Error::Spawn { command: "apt-get install nftables".into(), cause })?;
    if !apt.status.success() || !on_path("nft") {
        let said = String::from_utf8_lossy(&apt.stderr);
        return Err(Error::Setup(format!(
            "installing nftables failed ({}): {}",
            apt.status,
            said.lines().last().unwrap_or_default()
        )));
    }
    Ok("installed nftables")
}

/// Whether this is Debian or a derivative (Ubuntu), where apt-get installs packages.
fn is_debian_like() -> bool {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release.lines().any(|line| {
        let value = line
            .strip_prefix("ID=")
            .or_else(|| line.strip_prefix("ID_LIKE="))
            .map(|value| value.trim_matches('"'));
        value.is_some_and(|value| value.split(' ').any(|id| id == "debian" || id == "ubuntu"))
    })
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
    if let Ok(entries) = std::fs::read_dir(wgfabric_proto::uapi::SOCKET_DIR) {
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
