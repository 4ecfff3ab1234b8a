//! Finding the `wgfabricd` binary and running one per host inside its namespace.
//!
//! Each daemon runs in the foreground of its own process group (so a Ctrl-C meant for the
//! demo does not reach it before the demo has cleaned up), with its log in the run
//! directory. The guard stops it (SIGTERM, then SIGKILL) when dropped, unless kept.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wgfabric_host::daemon_binary;
pub use wgfabric_host::daemon_binary::DAEMON;
use wgfabric_uapi::socket_path;

use super::{now, Error};
use crate::netns::{describe, run_argv, Netns};

/// How long a daemon may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Finds `wgfabricd` as `wgfabric up` does ([`wgfabric_host::daemon_binary`]).
///
/// # Errors
/// [`Error::Daemon`] saying where it looked and how to build it.
pub fn locate_daemon(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    Ok(daemon_binary::locate_daemon(explicit)?)
}

/// The cargo arguments that select the profile this executable was built with.
fn profile_args() -> Vec<String> {
    // target/PROFILE/wgfabric, or target/PROFILE/deps/NAME-HASH for tests.
    let profile = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        let dir = if dir.ends_with("deps") { dir.parent()? } else { dir };
        Some(dir.file_name()?.to_string_lossy().into_owned())
    });
    match profile.as_deref() {
        Some("debug") | None => Vec::new(),
        Some("release") => vec!["--release".to_owned()],
        Some(other) => vec!["--profile".to_owned(), other.to_owned()],
    }
}

/// How the user runs `wgfabric`, to print commands they can paste: `wgfabric`, or the
/// `cargo run` line that started this process.
pub(crate) fn invocation() -> String {
    if std::env::var_os("CARGO").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        let mut words = vec!["cargo".to_owned(), "run".to_owned()];
        words.extend(profile_args());
        words.extend(["--bin".to_owned(), "wgfabric".to_owned(), "--".to_owned()]);
        words.join(" ")
    } else {
        "wgfabric".to_owned()
    }
}

/// A running `wgfabricd`.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Option<Child>,
    interface: String,
    log: PathBuf,
    kept: bool,
}

impl Daemon {
    /// Starts `binary -f interface` in `ns`, logging to `log`, and waits until its socket
    /// answers.
    pub(crate) fn start(
        ns: &Netns,
        binary: &Path,
        interface: &str,
        log: &Path,
    ) -> Result<Self, Error> {
        let mut command = ns.command(&binary.to_string_lossy());
        command.args(["--foreground", interface]);
        let child = spawn_logged(command, log)?;
        let mut daemon = Self {
            child: Some(child),
            interface: interface.to_owned(),
            log: log.to_owned(),
            kept: false,
        };
        let deadline = now() + START_TIMEOUT;
        loop {
            if daemon.has_exited() {
                return Err(daemon.failure("exited"));
            }
            if UnixStream::connect(socket_path(interface)).is_ok() {
                return Ok(daemon);
            }
            if now() >= deadline {
                return Err(daemon.failure("did not open its socket in 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failure(&self, what: &str) -> Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Error::Setup(format!(
            "{DAEMON} for {} {what}; last lines of {}:\n{}",
            self.interface,
            self.log.display(),
            tail.join("\n")
        ))
    }

    fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it outright (SIGKILL), as a crash or a power cut would.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it cleanly (SIGTERM, then SIGKILL after 3 s) and removes its socket, which a
    /// killed daemon leaves behind.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
        let _ = std::fs::remove_file(socket_path(&self.interface));
    }

    /// Leaves it running after the guard is gone.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

/// Starts a process of the lab with its output in `log` (created anew), in a process group of
/// its own, so that a Ctrl-C meant for the demo does not reach it before the demo has cleaned
/// up.
pub(crate) fn spawn_logged(mut command: Command, log: &Path) -> Result<Child, Error> {
    let io_error = |cause| Error::File { path: log.to_owned(), cause };
    let out = File::create(log).map_err(io_error)?;
    let err = out.try_clone().map_err(io_error)?;
    command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    command.spawn().map_err(|cause| Error::Spawn { command: describe(&command), cause })
}

/// Stops a process of the lab: SIGTERM, then SIGKILL if it has not exited within 3 s.
pub(crate) fn stop_child(mut child: Child) {
    let _ = run_argv(&["kill", "-TERM", &child.id().to_string()]);
    let deadline = now() + STOP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.kept {
            self.stop();
        }
    }
}
