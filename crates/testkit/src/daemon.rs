//! WireGuard implementations started inside a namespace, and stopped (TERM, then KILL) with
//! their socket removed when the guard drops.

use std::fs::{File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wgfabric_uapi::Device;

use crate::tools::{require_tool, Skip};
use crate::wg::{WgConfig, WgDump};
use wgfabric_netns::wait_until;
use wgfabric_netns::{run_command, CommandError, Netns};

/// A userspace WireGuard implementation that speaks the wireguard-go contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Impl {
    /// Our daemon, at this path (in tests: `env!("CARGO_BIN_EXE_wgfabricd")`).
    Wgfabricd(PathBuf),
    /// The `wireguard-go` on `PATH` (Debian's package).
    WireguardGo,
    /// The `boringtun-cli` on `PATH` (`cargo install boringtun-cli`).
    Boringtun,
}

impl Impl {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Wgfabricd(_) => "wgfabricd",
            Self::WireguardGo => "wireguard-go",
            Self::Boringtun => "boringtun-cli",
        }
    }

    /// Checks that the implementation can run here; see [`require_tool`] for the policy.
    ///
    /// # Errors
    /// [`Skip`] when it is missing outside CI.
    ///
    /// # Panics
    /// When it is missing in CI.
    pub fn require(&self) -> Result<(), Skip> {
        match self {
            Self::Wgfabricd(path) => {
                assert!(path.exists(), "{} is not built", path.display());
                Ok(())
            }
            other => require_tool(other.name()),
        }
    }

    /// Whether `wg show`'s latest handshake is a real time. boringtun 0.7 reports the time
    /// elapsed since the handshake instead, which reads as "0 seconds after the epoch".
    pub fn reports_handshake_time(&self) -> bool {
        !matches!(self, Self::Boringtun)
    }

    fn command(&self, ns: &Netns, interface: &str) -> Command {
        match self {
            Self::Wgfabricd(path) => {
                let mut command = ns.command(&path.to_string_lossy());
                command.args(["--foreground", "-v", interface]);
                command
            }
            Self::WireguardGo => {
                let mut command = ns.command("wireguard-go");
                command.args(["-f", interface]).env("LOG_LEVEL", "debug");
                command
            }
            Self::Boringtun => {
                let mut command = ns.command("boringtun-cli");
                command.args(["--foreground", "--disable-drop-privileges", interface]);
                command
            }
        }
    }
}

/// An interface name no other test uses: `PREFIX` (shortened to fit Linux's 15 bytes, so
/// keep it ASCII) + pid + counter. Sockets live in one global directory, so names must differ even across
/// namespaces.
pub fn unique_interface_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{:x}{n}", std::process::id());
    let keep = prefix.len().min(15usize.saturating_sub(suffix.len()));
    format!("{}{suffix}", &prefix[..keep])
}

pub use wgfabric_proto::uapi::SOCKET_DIR;

/// A running implementation. Dropping it sends SIGTERM, waits briefly, then SIGKILL, and
/// removes a socket left behind; if the test is panicking, its log is printed.
#[derive(Debug)]
pub struct Daemon<'ns> {
    ns: &'ns Netns,
    implementation: Impl,
    interface: String,
    child: Option<Child>,
    log: PathBuf,
}

impl<'ns> Daemon<'ns> {
    /// Starts `implementation` in the foreground inside `ns`, creating `interface`, and waits
    /// (10 s at most) until its API socket answers.
    ///
    /// # Panics
    /// When it cannot start, exits early, or never answers; the message includes its log.
    pub fn start(ns: &'ns Netns, implementation: Impl, interface: &str) -> Self {
        let log = std::env::temp_dir().join(format!("wgfabric-testkit-{interface}.log"));
        let mut daemon =
            Self { ns, implementation, interface: interface.to_owned(), child: None, log };
        daemon.launch(File::create(&daemon.log).expect("creating the daemon's log file"));
        daemon
    }

    /// Stops it (as on drop) and starts the same implementation again on the same interface
    /// name, waiting as [`Self::start`] does; the log keeps both runs. The new process starts
    /// with an empty configuration and its interface down.
    ///
    /// # Panics
    /// As [`Self::start`].
    pub fn restart(&mut self) {
        self.terminate();
        let log = OpenOptions::new().append(true).open(&self.log).expect("reopening the log");
        self.launch(log);
    }

    /// Spawns the process with `log` as its stdout and stderr and waits until it answers.
    fn launch(&mut self, log: File) {
        let stderr = log.try_clone().expect("sharing the daemon's log file");
        let child = self
            .implementation
            .command(self.ns, &self.interface)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.implementation.name()));
        self.child = Some(child);
        let answered = wait_until(Duration::from_secs(10), || {
            self.has_exited() || UnixStream::connect(self.socket_path()).is_ok()
        });
        if !answered || self.has_exited() {
            panic!(
                "{} did not come up on {}:\n{}",
                self.implementation.name(),
                self.socket_path().display(),
                self.log_text()
            );
        }
    }

    /// The namespace it runs in.
    pub fn ns(&self) -> &'ns Netns {
        self.ns
    }

    /// Which implementation this is.
    pub fn implementation(&self) -> &Impl {
        &self.implementation
    }

    /// Its interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Its userspace API socket.
    pub fn socket_path(&self) -> PathBuf {
        wgfabric_uapi::socket_path(&self.interface)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory in KiB (`VmRSS`), while it runs.
    pub fn resident_kib(&self) -> Option<i64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// How the process ended, once it has (reaping it); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `wg ARGS` inside the namespace.
    ///
    /// # Errors
    /// When `wg` fails.
    pub fn wg(&self, args: &[&str]) -> Result<String, CommandError> {
        run_command(self.ns.command("wg").args(args))
    }

    /// Sends `request` (like `"get=1\n\n"`) to its userspace API socket as is, and returns the
    /// whole reply: for requests the `wg` tool would never send.
    ///
    /// # Panics
    /// When the socket does not take the request or answer it.
    pub fn uapi(&self, request: &str) -> String {
        let device = Device::at(self.socket_path()).with_timeout(Duration::from_secs(10));
        let reply = device.exchange(request.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        reply.as_str().to_owned()
    }

    /// `wg set IFNAME ARGS`.
    ///
    /// # Panics
    /// When `wg` fails.
    pub fn set(&self, args: &[&str]) {
        let mut argv = vec!["set", &self.interface];
        argv.extend_from_slice(args);
        self.wg(&argv).unwrap_or_else(|error| panic!("{error}"));
    }

    /// `wg setconf IFNAME FILE` with `config` in a private (0600) temporary file.
    ///
    /// # Panics
    /// When `wg` fails.
    pub fn setconf(&self, config: &WgConfig) {
        let file = config.write_temp(&self.interface);
        let path = file.path().to_string_lossy().into_owned();
        self.wg(&["setconf", &self.interface, &path]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// `wg show IFNAME dump`, parsed.
    ///
    /// # Panics
    /// When `wg` fails or prints something unexpected.
    pub fn dump(&self) -> WgDump {
        let text =
            self.wg(&["show", &self.interface, "dump"]).unwrap_or_else(|error| panic!("{error}"));
        WgDump::parse(&text).unwrap_or_else(|error| panic!("wg show dump: {error}"))
    }

    /// Sets the interface up with `addresses` (CIDRs) and MTU 1420.
    pub fn up(&self, addresses: &[&str]) {
        for cidr in addresses {
            self.ns.add_address(&self.interface, cidr).unwrap();
        }
        self.ns.link_up(&self.interface, Some(1420)).unwrap();
    }

    /// Stops it now (as on drop) and waits for it; for restart scenarios.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = run_command(Command::new("kill").args(["-TERM", &pid]));
        let exited = wait_until(Duration::from_secs(3), || !matches!(child.try_wait(), Ok(None)));
        if !exited {
            eprintln!("testkit: {} ignored SIGTERM; killing it", self.implementation.name());
            let _ = child.kill();
        }
        let _ = child.wait();
        let _ = std::fs::remove_file(self.socket_path());
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!(
                "--- log of {} ({}) ---\n{}",
                self.implementation.name(),
                self.interface,
                self.log_text()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_unique_and_short() {
        let a = unique_interface_name("wgfabric");
        let b = unique_interface_name("wgfabric");
        assert_ne!(a, b);
        assert!(a.len() <= 15 && a.starts_with("wgfabric"), "{a}");
    }
}
