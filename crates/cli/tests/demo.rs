//! `wgfabric demo` as a user runs it (root): the whole run with its JSON summary, what a
//! crashed run leaves being cleaned first, a run with nothing but `ip` and `nft` on PATH,
//! `--keep` then `--clean`, and Ctrl-C.
//!
//! Each test uses its own prefix (`wgfcPIDxN`), so tests and a real demo never touch each
//! other's namespaces. Run with `cargo test -p wgfabric --test demo -- --ignored`.

mod util;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use util::{assert_code, stderr, stdout, Scratch};
use wgfabric_lab::demo;
use wgfabric_lab::netns::{list, run_argv};

/// A prefix of its own, and a guard that removes whatever is left of it.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("wgfc{:x}x{n}", std::process::id()))
    }

    fn namespaces(&self) -> Vec<String> {
        let owned = format!("{}-", self.0);
        list().unwrap().into_iter().filter(|name| name.starts_with(&owned)).collect()
    }

    fn sockets(&self) -> Vec<String> {
        let entries = std::fs::read_dir("/var/run/wireguard").into_iter().flatten().flatten();
        let names = entries.map(|entry| entry.file_name().to_string_lossy().into_owned());
        names.filter(|name| name.starts_with(&self.0)).collect()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // What `wgfabric demo --clean` removes, in case a test failed before it ran.
        let _ = demo::clean(&self.0);
    }
}

/// The daemon built beside the `wgfabric` under test.
fn daemon() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_wgfabric"));
    let daemon = exe.with_file_name("wgfabricd");
    assert!(daemon.exists(), "{} is not built: cargo build -p wgfabricd", daemon.display());
    daemon
}

fn demo(prefix: &Prefix, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgfabric"));
    command
        .args(["demo", "--prefix", &prefix.0, "--daemon"])
        .arg(daemon())
        .args(args)
        // As a user runs the installed binary: without cargo's variables, which make the
        // demo print `cargo run` lines.
        .env_remove("CARGO")
        .env_remove("CARGO_MANIFEST_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(prefix: &Prefix, args: &[&str]) -> Output {
    demo(prefix, args).output().unwrap()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_run_cleans_up_after_a_crash_shows_every_path_and_fails_over_within_ten_seconds() {
    let prefix = Prefix::new();
    // What a crashed run leaves: a namespace of the prefix with a process still in it.
    let crashed = format!("{}-relay-fra", prefix.0);
    run_argv(&["ip", "netns", "add", &crashed]).unwrap();
    let mut sleeper =
        Command::new("ip").args(["netns", "exec", &crashed, "sleep", "600"]).spawn().unwrap();

    let output = run(&prefix, &["--format", "json"]);
    assert_code(&output, 0);
    assert!(stderr(&output).contains("removed 1 namespace(s)"), "{}", stderr(&output));
    assert!(sleeper.wait().is_ok(), "the leftover's process was killed");

    util::shape::assert_shape("demo", &stdout(&output));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["hosts"].as_array().unwrap().len(), 7);
    let cells = summary["matrix"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 56);
    for cell in cells {
        assert_eq!(cell["answered"], cell["allowed"], "as the access policy says: {cell}");
    }
    let cell =
        |from: &str, to: &str| cells.iter().find(|c| c["from"] == from && c["to"] == to).unwrap();
    let ci = cell("ci-runner-1", "aws-prod-vpc");
    assert_eq!(ci["via"]["relay"], "relay-fra");
    assert_eq!(
        ci["hops"],
        serde_json::json!(["ci-runner-1", "relay-fra", "router-aws", "aws-prod-vpc"])
    );
    // Engineers reach everything but production.
    assert_eq!(cell("laptop-ana", "aws-prod-vpc")["allowed"], false);
    assert_eq!(cell("laptop-ana", "k8s-node-1-pods")["answered"], true);
    let denied = &summary["denied"];
    assert_eq!(denied["verdict"], "deny", "{denied}");
    assert!(denied["reason"].as_str().is_some_and(|r| !r.is_empty()), "{denied}");

    let failover = &summary["failover"];
    assert_eq!(failover["relay"], "relay-fra");
    let resumed = failover["outage"]["resumed_after_ms"].as_u64().unwrap();
    assert!(resumed < 10_000, "traffic resumed after {resumed} ms");
    assert!(failover["all_back_after_ms"].as_u64().is_some(), "{failover}");
    // The laptops run agents, which fail over by themselves; the demo's monitors move the
    // other three spokes.
    let moves = failover["switches"].as_array().unwrap();
    assert_eq!(moves.iter().filter(|m| m["reason"] == "failover").count(), 3, "{failover}");

    // The two laptops share the office LAN and the policy lets them talk: direct, in the
    // matrix's counters and in their agents' words. Every other pair is relayed by policy.
    assert_eq!(summary["agents"], serde_json::json!(["laptop-ana", "laptop-ben"]));
    assert_eq!(cell("laptop-ana", "laptop-ben")["via"]["kind"], "direct");
    assert_eq!(cell("laptop-ben", "laptop-ana")["reply_via"]["kind"], "direct");
    let paths = summary["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 10, "every pair of the five spokes");
    for pair in paths {
        let laptops = pair["host"] == "laptop-ana" && pair["peer"] == "laptop-ben";
        let (mode, reason) = if laptops { ("direct", "handshake") } else { ("relayed", "policy") };
        assert_eq!((pair["mode"].as_str(), pair["reason"].as_str()), (Some(mode), Some(reason)));
    }
    eprintln!("wgfabric demo: traffic resumed {resumed} ms after relay-fra was killed");

    assert!(prefix.namespaces().is_empty(), "left behind: {:?}", prefix.namespaces());
    assert!(prefix.sockets().is_empty(), "sockets left behind: {:?}", prefix.sockets());
}

/// Where `program` is on this machine's PATH.
fn which(program: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed"))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_machine_with_only_iproute2_and_nftables_runs_the_demo_to_its_summary() {
    let prefix = Prefix::new();
    let bin = Scratch::new();
    for program in ["ip", "nft"] {
        std::os::unix::fs::symlink(which(program), bin.path(program)).unwrap();
    }
    let output =
        demo(&prefix, &["--format", "json", "--no-install"]).env("PATH", &bin.0).output().unwrap();
    assert_code(&output, 0);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["ok"], true, "{}", stderr(&output));
    assert_eq!(summary["matrix"]["cells"].as_array().unwrap().len(), 56);
    assert!(prefix.namespaces().is_empty(), "left behind: {:?}", prefix.namespaces());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn keep_leaves_a_working_fabric_that_clean_removes() {
    let prefix = Prefix::new();
    let output = run(&prefix, &["--keep"]);
    assert_code(&output, 0);
    let text = stdout(&output);
    let spoke = format!("{}-ci-runner-1", prefix.0);
    let iface = format!("{}0", prefix.0);
    for hint in [
        format!("sudo ip netns exec {spoke} wgfabric show {iface}\n"),
        format!("sudo ip netns exec {spoke} wgfabric probe 10.20.0.2 -c 3\n"),
    ] {
        assert!(text.contains(&hint), "{text}");
    }
    let clean = format!("sudo wgfabric demo --clean --prefix {}", prefix.0);
    assert!(text.contains(&clean), "{text}");

    assert_eq!(prefix.namespaces().len(), 11, "7 hosts, 2 subnets, internet, NAT router");
    // The hints work as printed, with the binary under test.
    let wgfabric = env!("CARGO_BIN_EXE_wgfabric");
    let shown = run_argv(&["ip", "netns", "exec", &spoke, wgfabric, "show", &iface]).unwrap();
    assert_eq!(shown.matches("latest handshake").count(), 2, "both relays:\n{shown}");
    let vpc =
        ["ip", "netns", "exec", &spoke, wgfabric, "probe", "10.20.0.2", "-c", "1", "-W", "2s"];
    let vpc = run_argv(&vpc);
    assert!(vpc.is_ok(), "the kept fabric still routes: {vpc:?}");

    let output = run(&prefix, &["--clean"]);
    assert_code(&output, 0);
    assert!(stderr(&output).contains("removed 11 namespace(s)"), "{}", stderr(&output));
    assert!(prefix.namespaces().is_empty(), "left behind: {:?}", prefix.namespaces());
    assert!(prefix.sockets().is_empty(), "sockets left behind: {:?}", prefix.sockets());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn ctrl_c_removes_the_fabric_before_exiting() {
    let prefix = Prefix::new();
    let mut child = demo(&prefix, &[]).spawn().unwrap();
    // Read standard error to the end in the background: a closed pipe would fail the demo.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (sender, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut seen = Vec::new();
    for line in lines.iter() {
        let reached = line.contains("waiting for every host to handshake");
        seen.push(line);
        if reached {
            break;
        }
    }
    assert!(!prefix.namespaces().is_empty(), "the fabric is up: {seen:?}");
    run_argv(&["kill", "-INT", &child.id().to_string()]).unwrap();
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    assert_eq!(output.status.code(), Some(2), "{seen:?}");
    assert!(seen.iter().any(|line| line.contains("interrupted")), "{seen:?}");
    assert!(prefix.namespaces().is_empty(), "left behind: {:?}", prefix.namespaces());
    assert!(prefix.sockets().is_empty(), "sockets left behind: {:?}", prefix.sockets());
}
