//! Detaching from the terminal, the way `wg-quick` expects of a userspace implementation: the
//! command returns only once the daemon is ready (interface and socket exist), with status 0,
//! or with the daemon's error and a non-zero status.
//!
//! The process forks first, while it is still single-threaded (forking a multi-threaded
//! process leaves locks held by threads that no longer exist), and the child does all the
//! work; it reports "ready" or its error over a socket pair the parent waits on.
//!
//! This is the only module of the daemon with `unsafe`: the raw `fork`, which rustix leaves
//! out on purpose; `setsid`, `dup2` and `umask` go through rustix.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context as _};

const READY: &str = "ready\n";

/// The child's half of the readiness channel; absent in the foreground.
#[derive(Debug)]
pub(crate) struct Readiness(Option<UnixStream>);

impl Readiness {
    /// Nothing to report to: the process did not detach.
    pub(crate) fn foreground() -> Self {
        Self(None)
    }

    /// Tells the waiting parent to exit with status 0.
    pub(crate) fn ready(self) {
        self.send(READY);
    }

    /// Tells the waiting parent to print `error` and exit with status 1.
    pub(crate) fn failed(self, error: &anyhow::Error) {
        self.send(&format!("{error:#}\n"));
    }

    fn send(self, message: &str) {
        if let Some(mut stream) = self.0 {
            // The parent may have been killed; nobody is left to tell.
            let _ = stream.write_all(message.as_bytes());
        }
    }
}

/// Forks. In the parent this never returns: it waits for the child's report and exits. In the
/// child it returns the channel to report on, after starting a new session and pointing
/// stdin, stdout and stderr at `/dev/null`.
///
/// # Errors
/// When the process already runs threads, or `fork`, `setsid` or the redirection fail.
pub(crate) fn detach() -> anyhow::Result<Readiness> {
    let threads = std::fs::read_dir("/proc/self/task").context("counting threads")?.count();
    if threads != 1 {
        bail!("refusing to fork with {threads} threads running");
    }
    let (mut parent_end, child_end) =
        UnixStream::pair().context("creating the readiness channel")?;
    // SAFETY: the process is single-threaded (checked above), so the child starts with a
    // consistent copy of every lock and allocator state.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()).context("fork"),
        0 => {
            drop(parent_end);
            // A forked child is never a process group leader, so this succeeds.
            rustix::process::setsid().map_err(io::Error::from).context("setsid")?;
            redirect_stdio_to_null()?;
            Ok(Readiness(Some(child_end)))
        }
        _child => {
            drop(child_end);
            std::process::exit(wait_for_report(&mut parent_end));
        }
    }
}

/// Reads the child's report: 0 for ready, 1 (after printing the error) otherwise.
fn wait_for_report(channel: &mut UnixStream) -> i32 {
    let mut report = String::new();
    // A read error means the same as silence: the child is gone.
    let _ = channel.read_to_string(&mut report);
    if report == READY {
        return 0;
    }
    match report.trim_end() {
        "" => eprintln!("wgfabricd: the daemon exited before it was ready"),
        error => eprintln!("wgfabricd: {error}"),
    }
    1
}

fn redirect_stdio_to_null() -> anyhow::Result<()> {
    let null: File =
        OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    rustix::stdio::dup2_stdin(&null)
        .and_then(|()| rustix::stdio::dup2_stdout(&null))
        .and_then(|()| rustix::stdio::dup2_stderr(&null))
        .map_err(io::Error::from)
        .context("redirecting stdio to /dev/null")
}

/// Makes every file the daemon creates (the socket above all) private to root from the start,
/// rather than fixing permissions after a window in which others could connect.
pub(crate) fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}
