//! A TCP transfer between namespaces whose content the receiver checks by hash: the stream is
//! pseudo-random from a seed, so corruption, truncation and reordering all show.
//!
//! Both ends run the `netprobe` binary of this crate under `ip netns exec`.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use wgfabric_netns::{run_command, CommandError, Netns};

/// Where `netprobe` was built: `$WGFABRIC_NETPROBE`, else next to the running test's
/// `deps/` directory (`target/debug/netprobe`).
///
/// # Panics
/// When it cannot be found; the message says how to build it.
pub fn netprobe_path() -> PathBuf {
    testkit_binary("netprobe", "WGFABRIC_NETPROBE")
}

/// Where this crate's binary `name` was built: `$variable`, else next to the running test's
/// `deps/` directory.
///
/// # Panics
/// When it cannot be found; the message says how to build it.
pub(crate) fn testkit_binary(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .filter(|path| path.exists());
    candidate.unwrap_or_else(|| {
        panic!("{name} is not built: run `cargo build -p wgfabric-testkit --bin {name}`")
    })
}

/// Streams `bytes` from `sender` to `listen` (an address in `receiver`) over TCP and checks
/// them there; the receiver's report on success.
///
/// # Errors
/// When either end fails: refused, cut short, or a hash mismatch.
pub fn transfer(
    receiver: &Netns,
    listen: SocketAddr,
    sender: &Netns,
    bytes: u64,
) -> Result<String, CommandError> {
    let probe = netprobe_path().to_string_lossy().into_owned();
    let seed = u64::from(std::process::id()) ^ bytes;
    let (addr, bytes, seed) = (listen.to_string(), bytes.to_string(), seed.to_string());
    let mut listener = receiver
        .command(&probe)
        .args(["listen", &addr, &bytes, &seed])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError {
            command: format!("netprobe listen {addr}"),
            status: None,
            stdout: String::new(),
            stderr: e.to_string(),
        })?;
    let mut stdout = BufReader::new(listener.stdout.take().expect("stdout is piped"));
    let mut first = String::new();
    let _ = stdout.read_line(&mut first);
    let sent = if first.trim() == "listening" {
        run_command(sender.command(&probe).args(["send", &addr, &bytes, &seed]))
    } else {
        Ok(String::new())
    };
    if sent.is_err() || first.trim() != "listening" {
        // Nothing will connect: do not wait for the receiver's own timeout.
        let _ = listener.kill();
    }
    let output = listener.wait_with_output();
    let mut report = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut report);
    let received = match output {
        Ok(output) if output.status.success() => Ok(report),
        Ok(output) => Err(CommandError {
            command: format!("netprobe listen {addr} {bytes}"),
            status: output.status.code(),
            stdout: format!("{first}{report}"),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Err(e) => Err(CommandError {
            command: format!("netprobe listen {addr}"),
            status: None,
            stdout: first,
            stderr: e.to_string(),
        }),
    };
    sent.and(received)
}
