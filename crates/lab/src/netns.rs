//! Network namespaces and the commands run inside them: the plumbing `wgfabric demo` builds a
//! fabric on one machine with, and that its system tests reuse.
//!
//! Namespaces are created and deleted with `ip netns` (iproute2), which also makes them
//! visible to `ip netns exec`. Sockets that must live inside one (netlink, probes) are opened
//! by [`wgfabric_host::namespace::enter`], in a thread that joined the namespace. A [`Netns`] is a guard: dropping it kills whatever still runs inside and
//! deletes the namespace, unless [`Netns::keep`] disarmed it. Namespaces of one owner share a
//! prefix (`PREFIX-NAME`), which is how [`delete_with_prefix`] finds what a crashed run left.

use core::fmt;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use wgfabric_host::namespace::{command_in, enter};

/// A command that failed, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command line, space-separated.
    pub command: String,
    /// Its exit code; `None` if it could not start or was killed by a signal.
    pub status: Option<i32>,
    /// What it printed on standard error (or why it could not start).
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(code) => write!(f, "`{}` exited with status {code}", self.command)?,
            None => write!(f, "`{}` did not run to completion", self.command)?,
        }
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            write!(f, ": {stderr}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

impl From<CommandError> for std::io::Error {
    fn from(error: CommandError) -> Self {
        Self::other(error)
    }
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` to completion and returns its standard output.
///
/// # Errors
/// When it cannot start or exits unsuccessfully.
pub fn run(command: &mut Command) -> Result<String, CommandError> {
    run_with_input(command, None)
}

/// Runs `command` with `input` on its standard input (so that secrets never touch a file)
/// and returns its standard output.
///
/// # Errors
/// When it cannot start or exits unsuccessfully. The input is never part of the error.
pub fn run_with_input(command: &mut Command, input: Option<&[u8]>) -> Result<String, CommandError> {
    let line = describe(command);
    let failed = |stderr: String| CommandError { command: line.clone(), status: None, stderr };
    command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).map_err(|e| failed(format!("writing its input: {e}")))?;
    }
    let Output { status, stdout, stderr } =
        child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(CommandError {
            command: line,
            status: status.code(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

/// Runs `argv` (program first) on this host's own network stack.
///
/// # Errors
/// As [`run`].
pub fn run_argv(argv: &[&str]) -> Result<String, CommandError> {
    let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
    run(Command::new(program).args(args))
}

/// A network namespace, deleted with everything still running in it when dropped.
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
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
        }
        Ok(ns)
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
    /// As [`run`].
    pub fn run(&self, argv: &[&str]) -> Result<String, CommandError> {
        let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
        run(self.command(program).args(args))
    }

    /// Sets a sysctl of the namespace, such as `net.ipv4.ip_forward` (no interface names with
    /// dots in it: the dots become slashes of the `/proc/sys` path).
    ///
    /// # Errors
    /// When the namespace cannot be joined or the parameter cannot be written.
    pub fn sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        enter(Some(&self.name), || {
            wgfabric_host::sysctl::write(&key.replace('.', "/"), value)
                .map_err(|error| std::io::Error::other(error.to_string()))
        })
    }

    /// Adds `cidr` (such as `192.0.2.1/24`) to `device`, without duplicate address detection
    /// for IPv6.
    ///
    /// # Errors
    /// As [`run`].
    pub fn add_address(&self, device: &str, cidr: &str) -> Result<(), CommandError> {
        let mut argv = vec!["ip", "address", "add", cidr, "dev", device];
        if cidr.contains(':') {
            argv.push("nodad");
        }
        self.run(&argv).map(drop)
    }

    /// Sets `device` up.
    ///
    /// # Errors
    /// As [`run`].
    pub fn link_up(&self, device: &str) -> Result<(), CommandError> {
        self.run(&["ip", "link", "set", device, "up"]).map(drop)
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
            // Nothing to report to from a destructor; `delete_with_prefix` catches leftovers.
            let _ = delete(&self.name);
        }
    }
}

/// Links two namespaces with a veth pair, `a_dev` in `a` and `b_dev` in `b`, both up.
///
/// # Errors
/// As [`run`].
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<(), CommandError> {
    run_argv(&[
        "ip", "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev,
        "netns", &b.name,
    ])?;
    a.link_up(a_dev)?;
    b.link_up(b_dev)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_commands_say_what_ran_and_why() {
        let error =
            run(Command::new("sh").args(["-c", "echo out; echo oops >&2; exit 3"])).unwrap_err();
        assert_eq!(error.status, Some(3));
        assert_eq!(
            error.to_string(),
            "`sh -c echo out; echo oops >&2; exit 3` exited with status 3: oops"
        );
        let missing = run(&mut Command::new("/nonexistent/wgfabric-tool")).unwrap_err();
        assert_eq!(missing.status, None);
        assert_eq!(run_argv(&["echo", "hi"]).unwrap(), "hi\n");
    }

    #[test]
    fn input_goes_to_standard_input_and_never_into_errors() {
        assert_eq!(
            run_with_input(&mut Command::new("cat"), Some(b"secret\n")).unwrap(),
            "secret\n"
        );
        let error = run_with_input(
            Command::new("sh").args(["-c", "cat >/dev/null; exit 1"]),
            Some(b"secret"),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }
}
