//! [`Netns`], a network namespace that deletes itself, and what runs inside one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::command::{describe, outcome, run_argv, run_command, CommandError};
use crate::enter::{command_in, enter};

/// A network namespace, deleted with everything still running in it when dropped (even when
/// a test panics), unless [`Netns::keep`] disarmed it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    armed: bool,
}

impl Netns {
    /// Creates the namespace `name` with loopback up and IPv6 duplicate address detection
    /// off (addresses are usable at once).
    ///
    /// # Errors
    /// When `ip netns add` fails (not root, no namespace support, or the name is taken), or
    /// the namespace's sysctls cannot be written.
    pub fn create(name: &str) -> std::io::Result<Self> {
        run_argv(&["ip", "netns", "add", name])?;
        let ns = Self { name: name.to_owned(), armed: true };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
        }
        Ok(ns)
    }

    /// Creates a namespace named `PREFIX-PID-N`, unique within this machine, for tests.
    ///
    /// # Panics
    /// When [`Netns::create`] fails.
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        Self::create(&name).unwrap_or_else(|error| panic!("creating namespace {name}: {error}"))
    }

    /// The namespace's name, as `ip netns exec` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        command_in(&self.name, program)
    }

    /// Runs `argv` (program first) inside the namespace; its standard output on success.
    ///
    /// # Errors
    /// As [`run_command`].
    pub fn exec(&self, argv: &[&str]) -> Result<String, CommandError> {
        let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
        run_command(self.command(program).args(args))
    }

    /// Runs `argv` inside the namespace, for tests.
    ///
    /// # Panics
    /// When the command fails, with the whole story.
    pub fn run(&self, argv: &[&str]) -> String {
        self.exec(argv).unwrap_or_else(|error| panic!("in {}: {error}", self.name))
    }

    /// Starts `argv` inside the namespace without waiting for it, its output captured; the
    /// returned guard kills it if it is dropped first.
    ///
    /// # Panics
    /// When it cannot start.
    pub fn spawn(&self, argv: &[&str]) -> Background {
        let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
        let mut command = self.command(program);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let line = describe(&command);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting `{line}`: {e}"));
        Background { line, child: Some(child) }
    }

    /// Sets a sysctl of the namespace, such as `net.ipv4.ip_forward` (no interface names with
    /// dots in it: the dots become slashes of the `/proc/sys` path).
    ///
    /// # Errors
    /// When the namespace cannot be joined or the parameter cannot be written.
    pub fn sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        enter(Some(&self.name), || {
            std::fs::write(&path, value).map_err(|error| {
                std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
            })
        })
    }

    /// Adds `cidr` (such as `192.0.2.1/24`) to `device`, without duplicate address detection
    /// for IPv6.
    ///
    /// # Errors
    /// As [`run_command`].
    pub fn add_address(&self, device: &str, cidr: &str) -> Result<(), CommandError> {
        let mut argv = vec!["ip", "address", "add", cidr, "dev", device];
        if cidr.contains(':') {
            argv.push("nodad");
        }
        self.exec(&argv).map(drop)
    }

    /// Removes `cidr` from `device`.
    ///
    /// # Errors
    /// As [`run_command`].
    pub fn delete_address(&self, device: &str, cidr: &str) -> Result<(), CommandError> {
        self.exec(&["ip", "address", "del", cidr, "dev", device]).map(drop)
    }

    /// Sets `device` up, with `mtu` if given.
    ///
    /// # Errors
    /// As [`run_command`].
    pub fn link_up(&self, device: &str, mtu: Option<u32>) -> Result<(), CommandError> {
        let mtu = mtu.map(|m| m.to_string());
        let mut argv = vec!["ip", "link", "set", device];
        if let Some(mtu) = &mtu {
            argv.extend(["mtu", mtu]);
        }
        argv.push("up");
        self.exec(&argv).map(drop)
    }

    /// Whether `device` exists in the namespace.
    pub fn has_link(&self, device: &str) -> bool {
        self.exec(&["ip", "link", "show", "dev", device]).is_ok()
    }

    /// The processes running in the namespace (asked from outside it, so the asking process
    /// is not among them).
    ///
    /// # Panics
    /// When `ip netns pids` fails.
    pub fn pids(&self) -> Vec<u32> {
        let listing = run_argv(&["ip", "netns", "pids", &self.name]);
        let listing = listing.unwrap_or_else(|error| panic!("{error}"));
        listing.split_whitespace().filter_map(|pid| pid.parse().ok()).collect()
    }

    /// Leaves the namespace in place when the guard drops (for `wgfabric demo --keep`).
    pub fn keep(mut self) -> String {
        self.armed = false;
        core::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.armed {
            // Nothing to return an error to from a destructor; `delete_with_prefix` catches
            // what is left.
            if let Err(error) = delete(&self.name) {
                eprintln!("could not delete network namespace {}: {error}", self.name);
            }
        }
    }
}

/// A command running in the background, killed (and reaped) on drop unless waited for.
#[derive(Debug)]
pub struct Background {
    line: String,
    child: Option<Child>,
}

impl Background {
    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Waits for it to finish; its standard output on success.
    ///
    /// # Errors
    /// When it exits unsuccessfully.
    pub fn wait(mut self) -> Result<String, CommandError> {
        let line = core::mem::take(&mut self.line);
        match self.child.take() {
            Some(child) => outcome(line, child.wait_with_output()),
            None => Ok(String::new()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Links two namespaces with a veth pair, `a_dev` in `a` and `b_dev` in `b`, both up.
///
/// # Errors
/// As [`run_command`].
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<(), CommandError> {
    run_argv(&[
        "ip", "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev,
        "netns", &b.name,
    ])?;
    a.link_up(a_dev, None)?;
    b.link_up(b_dev, None)
}

/// The names of every network namespace on this machine.
///
/// # Errors
/// When `ip netns list` fails.
pub fn list() -> Result<Vec<String>, CommandError> {
    // Lines look like `NAME` or `NAME (id: 3)`.
    let text = run_argv(&["ip", "netns", "list"])?;
    Ok(text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect())
}

/// Kills every process left in the namespace `name`, then deletes it.
///
/// # Errors
/// When `ip netns del` fails.
pub fn delete(name: &str) -> Result<(), CommandError> {
    if let Ok(pids) = run_argv(&["ip", "netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run_argv(&["kill", "-KILL", pid]);
        }
    }
    run_argv(&["ip", "netns", "del", name]).map(drop)
}

/// Deletes every namespace named `PREFIX-...` (and what runs in it); returns their names.
///
/// # Errors
/// When listing or deleting fails.
pub fn delete_with_prefix(prefix: &str) -> Result<Vec<String>, CommandError> {
    let owned = format!("{prefix}-");
    let mut deleted = Vec::new();
    for name in list()?.into_iter().filter(|name| name.starts_with(&owned)) {
        delete(&name)?;
        deleted.push(name);
    }
    Ok(deleted)
}
