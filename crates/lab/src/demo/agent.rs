//! `wgfabric agent` on the hosts of the lab that have a direct path to try. It follows the
//! desired state the lab writes to a directory source in the run directory, with the host's
//! key in a 0600 file beside it, and reports its paths there. It runs with `--no-link`: the
//! lab configured the interface's addresses, routes and firewall itself.

use std::path::Path;
use std::process::Child;

use super::daemon::{spawn_logged, stop_child};
use super::Error;
use crate::netns::Netns;
use wgfabric_model::names::Name;

/// How often the agents report and repair: often enough for the demo to see a path move.
const STATUS_INTERVAL: &str = "1s";

/// Where an agent finds what it needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgentFiles<'a> {
    /// The `wgfabric` binary.
    pub(crate) wgfabric: &'a Path,
    /// The directory source of desired states and statuses.
    pub(crate) source: &'a Path,
    /// The host's private key.
    pub(crate) key_file: &'a Path,
    /// Its log.
    pub(crate) log: &'a Path,
}

/// A running agent, stopped (SIGTERM, then SIGKILL) when dropped unless kept.
#[derive(Debug)]
pub(crate) struct Agent {
    child: Option<Child>,
}

impl Agent {
    /// Starts the agent of `host` on `interface` in `ns`, in its own process group.
    pub(crate) fn start(
        ns: &Netns,
        host: &Name,
        interface: &str,
        files: AgentFiles<'_>,
    ) -> Result<Self, Error> {
        let mut command = ns.command(&files.wgfabric.to_string_lossy());
        command
            .args(["agent", "--host", host.as_str(), "--interface", interface, "--source"])
            .arg(files.source)
            .arg("--key-file")
            .arg(files.key_file)
            .args(["--no-link", "--status-interval", STATUS_INTERVAL]);
        Ok(Self { child: Some(spawn_logged(command, files.log)?) })
    }

    /// Leaves it running after the guard is gone.
    pub(crate) fn keep(mut self) {
        self.child = None;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}
