//! Network namespaces that delete themselves, veth links between them, and commands run
//! inside them.

use std::fmt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A command that failed, with everything needed to see why.
#[derive(Debug, Clone)]
pub struct CommandError {
    /// The command line, space-separated.
    pub command: String,
    /// The exit code, or `None` if it could not run or was killed by a signal.
    pub status: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr (or why it could not start).
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(code) => write!(f, "`{}` exited with {code}", self.command)?,
            None => write!(f, "`{}` did not run to completion", self.command)?,
        }
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.trim().is_empty() {
                write!(f, "\n--- {name} ---\n{}", text.trim_end())?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

/// Runs `command` to completion; its stdout on success.
///
/// # Errors
/// When it cannot start or exits non-zero.
pub fn run_command(command: &mut Command) -> Result<String, CommandError> {
    let line = describe(command);
    outcome(line, command.output())
}

/// What a finished command amounts to: its stdout, or everything needed to see why it failed.
fn outcome(command: String, output: std::io::Result<Output>) -> Result<String, CommandError> {
    match output {
        Ok(Output { status, stdout, stderr }) => {
            let stdout = String::from_utf8_lossy(&stdout).into_owned();
            let stderr = String::from_utf8_lossy(&stderr).into_owned();
            if status.success() {
                Ok(stdout)
            } else {
                Err(CommandError { command, status: status.code(), stdout, stderr })
            }
        }
        Err(error) => Err(CommandError {
            command,
            status: None,
            stdout: String::new(),
            stderr: error.to_string(),
        }),
    }
}

/// Runs `argv` in the current namespace, panicking with the full story if it fails.
///
/// # Panics
/// When the command fails.
pub fn run(argv: &[&str]) -> String {
    let (program, args) = argv.split_first().expect("a command line is not empty");
    run_command(Command::new(program).args(args)).unwrap_or_else(|error| panic!("{error}"))
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// A network namespace named `PREFIX-PID-N`, deleted (with every process left in it) on drop,
/// even when the test panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and IPv6 duplicate address detection off, so
    /// addresses are usable as soon as they are added.
    ///
    /// # Panics
    /// When `ip netns add` fails (not root, or no namespace support).
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        for key in ["all", "default"] {
            ns.run(&["sysctl", "-qw", &format!("net.ipv6.conf.{key}.accept_dad=0")]);
        }
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `argv` inside the namespace; its stdout on success.
    ///
    /// # Errors
    /// When the command cannot start or exits non-zero.
    pub fn exec(&self, argv: &[&str]) -> Result<String, CommandError> {
        let (program, args) = argv.split_first().expect("a command line is not empty");
        run_command(self.command(program).args(args))
    }

    /// Runs `argv` inside the namespace, panicking with the full story if it fails.
    ///
    /// # Panics
    /// When the command fails.
    pub fn run(&self, argv: &[&str]) -> String {
        self.exec(argv).unwrap_or_else(|error| panic!("in {}: {error}", self.name))
    }

    /// Starts `argv` inside the namespace without waiting for it, its output captured; the
    /// guard kills it if the test ends first.
    ///
    /// # Panics
    /// When it cannot start.
    pub fn spawn(&self, argv: &[&str]) -> Background {
        let (program, args) = argv.split_first().expect("a command line is not empty");
        let mut command = self.command(program);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let line = describe(&command);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting `{line}`: {e}"));
        Background { line, child: Some(child) }
    }

    /// Adds `cidr` (like `192.0.2.1/24` or `2001:db8::1/64`) to `device`; IPv6 addresses skip
    /// duplicate address detection.
    pub fn add_addr(&self, device: &str, cidr: &str) {
        let mut argv = vec!["ip", "addr", "add", cidr, "dev", device];
        if cidr.contains(':') {
            argv.push("nodad");
        }
        self.run(&argv);
    }

    /// Removes `cidr` from `device`.
    pub fn del_addr(&self, device: &str, cidr: &str) {
        self.run(&["ip", "addr", "del", cidr, "dev", device]);
    }

    /// Sets `device` up, with `mtu` if given.
    pub fn link_up(&self, device: &str, mtu: Option<u32>) {
        let mtu = mtu.map(|m| m.to_string());
        let mut argv = vec!["ip", "link", "set", device];
        if let Some(mtu) = &mtu {
            argv.extend(["mtu", mtu]);
        }
        argv.push("up");
        self.run(&argv);
    }

    /// The processes running in the namespace (asked from outside it, so the asking process is
    /// not among them).
    pub fn pids(&self) -> Vec<u32> {
        let listing = run_command(Command::new("ip").args(["netns", "pids", &self.name]));
        let listing = listing.unwrap_or_else(|error| panic!("{error}"));
        listing.split_whitespace().filter_map(|pid| pid.parse().ok()).collect()
    }

    /// Whether `device` exists in the namespace.
    pub fn has_link(&self, device: &str) -> bool {
        self.exec(&["ip", "link", "show", "dev", device]).is_ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Daemon guards stop their processes first; this catches anything they missed.
        if let Ok(pids) = run_command(Command::new("ip").args(["netns", "pids", &self.name])) {
            for pid in pids.split_whitespace() {
                let _ = run_command(Command::new("kill").args(["-KILL", pid]));
            }
        }
        if let Err(error) = run_command(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("testkit: could not delete namespace {}: {error}", self.name);
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

    /// Waits for it to finish; its stdout on success.
    ///
    /// # Errors
    /// When it exits non-zero.
    pub fn wait(mut self) -> Result<String, CommandError> {
        let child = self.child.take().expect("only `wait` and `drop` take the child");
        outcome(std::mem::take(&mut self.line), child.wait_with_output())
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

/// Links `a` and `b` with a veth pair (`a_dev` in `a`, `b_dev` in `b`), both up.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    run(&[
        "ip", "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev,
        "netns", &b.name,
    ]);
    a.link_up(a_dev, None);
    b.link_up(b_dev, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_errors_tell_the_whole_story() {
        let error = run_command(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap_err();
        assert_eq!(error.status, Some(3));
        let shown = error.to_string();
        assert!(shown.starts_with("`sh -c echo out; echo err >&2; exit 3` exited with 3"));
        assert!(shown.contains("--- stdout ---\nout") && shown.contains("--- stderr ---\nerr"));
        let missing = run_command(&mut Command::new("/nonexistent/tool")).unwrap_err();
        assert_eq!(missing.status, None);
        assert_eq!(run(&["echo", "hi"]), "hi\n");
    }
}
