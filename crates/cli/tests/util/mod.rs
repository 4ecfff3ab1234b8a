//! Helpers for running the built `wgfabric` binary in scratch directories.

#![allow(dead_code, unreachable_pub)]

pub mod hosts;
pub mod shape;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory removed on drop, named by process id and a counter.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wgfabric-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A scratch directory holding a copy of the example fleet and its lock.
    pub fn with_example() -> Self {
        let scratch = Self::new();
        for name in ["fabric.toml", "fabric.lock"] {
            std::fs::copy(repo().join("examples").join(name), scratch.path(name)).unwrap();
        }
        scratch
    }

    /// Deletes the `[host.NAME]` table from `fabric.toml`.
    pub fn remove_host(&self, name: &str) {
        let text = self.read("fabric.toml");
        let start = text.find(&format!("[host.{name}]")).unwrap();
        let end = text[start..].find("\n\n").map_or(text.len(), |end| start + end);
        std::fs::write(self.path("fabric.toml"), format!("{}{}", &text[..start], &text[end..]))
            .unwrap();
    }

    /// Deletes the `[[policy]]` rule named `name` from `fabric.toml` (as an operator does when
    /// removing the last host of a group it names).
    pub fn remove_policy(&self, name: &str) {
        let text = self.read("fabric.toml");
        let rule = text.find(&format!("name = \"{name}\"")).unwrap();
        let start = text[..rule].rfind("[[policy]]").unwrap();
        let end = text[start..].find("\n\n").map_or(text.len(), |end| start + end);
        std::fs::write(self.path("fabric.toml"), format!("{}{}", &text[..start], &text[end..]))
            .unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `wgfabric` with `args`, to run in this directory, without the environment variables
    /// that would change what the tests mean.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wgfabric"));
        command.args(args).current_dir(&self.0);
        for variable in ["WGFABRIC_INVENTORY", "WGFABRIC_AGE_IDENTITY", "WGFABRIC_ETCD_PASSWORD"] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs `wgfabric` in this directory with `stdin`.
    pub fn run_with_input(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, "")
    }

    /// Runs `wgfabric` in this directory with standard output connected to a socket whose
    /// other end is already closed, so that its first write fails with a broken pipe (as
    /// `wgfabric ... | head -1` does once `head` has exited). Only standard error is captured.
    pub fn run_with_closed_stdout(&self, args: &[&str]) -> Output {
        let (writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_wgfabric"))
            .args(args)
            .current_dir(&self.0)
            .env_remove("WGFABRIC_INVENTORY")
            .env_remove("WGFABRIC_AGE_IDENTITY")
            .stdin(Stdio::null())
            .stdout(std::os::fd::OwnedFd::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the exit code, showing the output when it differs.
pub fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// A central-mode fabric written by [`central_fabric`].
pub struct CentralFabric {
    /// The text of its `fabric.toml`.
    pub inventory: String,
    /// The public keys of `relay` and `runner`, in that order.
    pub public_keys: Vec<String>,
}

/// Writes a central-mode fabric of two hosts, `relay` and `runner`, into `scratch`: an age
/// identity in `identity.txt` (mode 0600) as the one recipient, and keys made by `wgfabric
/// keygen --central`, run through `run` so that callers choose the environment.
pub fn central_fabric(scratch: &Scratch, run: impl Fn(&[&str]) -> Output) -> CentralFabric {
    let identity = age::x25519::Identity::generate();
    let secret = {
        use age::secrecy::ExposeSecret as _;
        identity.to_string().expose_secret().to_owned()
    };
    let identity_file = scratch.path("identity.txt");
    std::fs::write(&identity_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&identity_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut inventory = format!(
        "[keys]\nrecipients = [\"{}\"]\n\n[network.ci]\nipv4 = \"10.9.0.0/24\"\n",
        identity.to_public()
    );
    std::fs::write(scratch.path("fabric.toml"), &inventory).unwrap();
    let mut public_keys = Vec::new();
    for (host, extra) in
        [("relay", "role = \"relay\"\nendpoint = \"relay.example.com:51820\"\n"), ("runner", "")]
    {
        let output = run(&["keygen", host, "--central"]);
        assert_code(&output, 0);
        let public = stdout(&output).trim().to_owned();
        inventory.push_str(&format!("\n[host.{host}]\n{extra}public_key = \"{public}\"\n"));
        public_keys.push(public);
    }
    std::fs::write(scratch.path("fabric.toml"), &inventory).unwrap();
    CentralFabric { inventory, public_keys }
}
