//! A fabric of one relay and three spokes in network namespaces, each host with its daemon
//! and its agent, driven by the built `wgfabric` as an operator would.
//!
//! ```text
//!   ns switch: br0 (192.0.2.254, etcd when asked)
//!      │ veth, 192.0.2.0/24 underlay
//!   ns relay (192.0.2.1:51820)  ns s1  ns s2  ns s3      each: daemon on a unique interface,
//!                                                         `wgfabric agent` with its log in DIR
//! ```
//!
//! Every namespace, daemon, agent and etcd is a guard that cleans up on drop, panics
//! included. Keys, the inventory, logs and a directory source live in a scratch directory.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a system test runs in real time, with real keys"
)]
#![allow(dead_code, unreachable_pub)]

pub mod probe;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::util::Scratch;
use age::secrecy::ExposeSecret as _;
use rand_core::OsRng;
use wgfabric_model::files::{write_atomically, SECRET_MODE};
use wgfabric_model::key_file::generate_key_file;
use wgfabric_model::sealed_keys::KeyStore;
use wgfabric_model::Fabric;
use wgfabric_model::Inventory;
use wgfabric_proto::keys::{PrivateKey, PublicKey};
use wgfabric_store::state::{desired_states, KeyMaterial, Status};
use wgfabric_testkit::{unique_interface_name, veth, wait_until, Daemon, Etcd, Impl, Netns};

/// The hosts, the relay first.
pub const HOSTS: [&str; 4] = ["relay", "s1", "s2", "s3"];
/// The relay's underlay endpoint.
const RELAY_ENDPOINT: &str = "192.0.2.1:51820";
/// The switch's address on the underlay (where etcd listens).
const SWITCH_ADDRESS: &str = "192.0.2.254";

/// The built `wgfabric`.
pub fn wgfabric() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wgfabric"))
}

/// The built `wgfabricd`, beside `wgfabric`.
pub fn wgfabricd() -> Impl {
    let path = wgfabric().with_file_name("wgfabricd");
    assert!(path.exists(), "{} is missing: run `cargo build -p wgfabricd` first", path.display());
    Impl::Wgfabricd(path)
}

/// The namespaces and their underlay. Created first; the fabric borrows them.
pub struct Spaces {
    pub switch: Netns,
    pub hosts: BTreeMap<&'static str, Netns>,
}

impl Spaces {
    pub fn new() -> Self {
        let switch = Netns::new("wgfag");
        switch.run(&["ip", "link", "add", "br0", "type", "bridge"]);
        switch.link_up("br0", None).unwrap();
        switch.add_address("br0", &format!("{SWITCH_ADDRESS}/24")).unwrap();
        let mut hosts = BTreeMap::new();
        for (index, name) in HOSTS.iter().enumerate() {
            let ns = Netns::new("wgfag");
            let port = format!("p{index}");
            veth(&ns, "u0", &switch, &port).unwrap();
            switch.run(&["ip", "link", "set", &port, "master", "br0"]);
            ns.add_address("u0", &format!("192.0.2.{}/24", index + 1)).unwrap();
            hosts.insert(*name, ns);
        }
        Self { switch, hosts }
    }

    pub fn ns(&self, host: &str) -> &Netns {
        &self.hosts[host]
    }

    /// Cuts or restores a host's underlay link (at its switch port).
    pub fn set_underlay(&self, host: &str, up: bool) {
        let index = HOSTS.iter().position(|h| *h == host).unwrap();
        let state = if up { "up" } else { "down" };
        self.switch.run(&["ip", "link", "set", &format!("p{index}"), state]);
    }
}

/// Where desired states and statuses go.
pub enum Source {
    Directory,
    Etcd,
}

/// An agent process with its log in a file; SIGTERM, then SIGKILL on drop.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `wgfabric ARGS` in `ns` with `env` added, its output appended to `log`.
    pub fn spawn(ns: &Netns, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Self {
        let file = File::options().create(true).append(true).open(&log).unwrap();
        let child = ns
            .command(&wgfabric().display().to_string())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id (`ip netns exec` runs the agent in its place, in a mount namespace of
    /// its own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
        }
        let stopped =
            wait_until(Duration::from_secs(3), || !matches!(self.child.try_wait(), Ok(None)));
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- agent log {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// The running fabric.
pub struct Lab<'s> {
    pub spaces: &'s Spaces,
    /// The age identity that opens the fabric's sealed keys (every agent has it).
    pub identity: PathBuf,
    /// `--source` of agents and of the controller.
    pub source: String,
    pub interfaces: BTreeMap<&'static str, String>,
    /// The agents' `--status-interval`, unless they run at the default.
    status_interval: Option<&'static str>,
    // Fields drop in order: agents first, then daemons, etcd, and the directory last.
    pub agents: BTreeMap<&'static str, Agent>,
    pub daemons: BTreeMap<&'static str, Daemon<'s>>,
    etcd: Option<Etcd>,
    pub dir: Scratch,
}

impl<'s> Lab<'s> {
    /// Keys, inventory and lock; a daemon per host (`implementations` overrides wgfabricd for
    /// some hosts); an agent per host; then `wgfabric apply` and a first handshake of every
    /// spoke with the relay.
    pub fn start(spaces: &'s Spaces, source: Source, implementations: &[(&str, Impl)]) -> Self {
        Self::start_with(spaces, source, implementations, &[])
    }

    /// As [`Lab::start`], with the keys of `central` hosts sealed in `keys/HOST.age` for an
    /// age identity every agent gets (`--identity`), which also opens preshared keys.
    pub fn start_with(
        spaces: &'s Spaces,
        source: Source,
        implementations: &[(&str, Impl)],
        central: &[&str],
    ) -> Self {
        Self::start_full(spaces, source, implementations, central, Some("2s"))
    }

    /// As [`Lab::start`], with agents that report and repair at the default interval.
    pub fn start_at_default_rounds(spaces: &'s Spaces, source: Source) -> Self {
        Self::start_full(spaces, source, &[], &[], None)
    }

    fn start_full(
        spaces: &'s Spaces,
        source: Source,
        implementations: &[(&str, Impl)],
        central: &[&str],
        status_interval: Option<&'static str>,
    ) -> Self {
        let dir = Scratch::new();
        let identity = age::x25519::Identity::generate();
        let mut keys = BTreeMap::new();
        let mut sealed = Vec::new();
        for host in HOSTS {
            if central.contains(&host) {
                let key = PrivateKey::generate(&mut OsRng);
                keys.insert(host, key.public_key());
                sealed.push((host, key));
            } else {
                let path = dir.0.join(host).join("private.key");
                keys.insert(
                    host,
                    generate_key_file(&mut OsRng, &path, false).unwrap().public_key(),
                );
            }
        }
        let recipient = identity.to_public().to_string();
        std::fs::write(dir.0.join("fabric.toml"), inventory(&dir.0, &keys, &recipient)).unwrap();
        let identity_file = dir.0.join("identity.txt");
        let secret = identity.to_string();
        write_atomically(&identity_file, secret.expose_secret().as_bytes(), SECRET_MODE).unwrap();
        let store = KeyStore::new(&Inventory::load(&dir.0.join("fabric.toml")).unwrap()).unwrap();
        for (host, key) in &sealed {
            store.store(host, key, false).unwrap();
        }
        let etcd = match source {
            Source::Directory => None,
            Source::Etcd => {
                Some(Etcd::start_in(&spaces.switch, SWITCH_ADDRESS.parse().unwrap()).expect("etcd"))
            }
        };
        let source = match &etcd {
            None => dir.0.join("source").display().to_string(),
            Some(etcd) => format!("etcd://{}/lab", etcd.endpoint()),
        };
        let mut lab = Self {
            spaces,
            identity: identity_file,
            source,
            interfaces: BTreeMap::new(),
            status_interval,
            agents: BTreeMap::new(),
            daemons: BTreeMap::new(),
            etcd,
            dir,
        };
        lab.controller(&["addresses", "update"]).success();
        for host in HOSTS {
            let implementation = implementations
                .iter()
                .find(|(name, _)| *name == host)
                .map_or_else(wgfabricd, |(_, implementation)| implementation.clone());
            let interface = unique_interface_name("wgag");
            let daemon = Daemon::start(spaces.ns(host), implementation, &interface);
            lab.daemons.insert(host, daemon);
            lab.interfaces.insert(host, interface);
            lab.start_agent(host);
        }
        lab.controller(&["apply", "--timeout", "60s"]).success();
        for spoke in &HOSTS[1..] {
            let relay = lab.address("relay");
            assert!(
                spaces.ns(spoke).ping_until_reply(&relay, Duration::from_secs(20)),
                "{spoke} cannot reach the relay"
            );
        }
        lab
    }

    /// Starts `host`'s agent (again), its log appended to the one before.
    pub fn start_agent(&mut self, host: &'static str) {
        self.start_agent_with_env(host, &[]);
    }

    /// As [`Lab::start_agent`], with `env` added to the agent's environment.
    pub fn start_agent_with_env(&mut self, host: &'static str, env: &[(&str, &str)]) {
        let log = self.dir.0.join(format!("agent-{host}.log"));
        let identity = self.identity.display().to_string();
        let mut args = vec!["agent", "--host", host, "--interface", &self.interfaces[host]];
        args.extend(["--source", &self.source, "--identity", &identity]);
        if let Some(interval) = self.status_interval {
            args.extend(["--status-interval", interval]);
        }
        let agent = Agent::spawn(self.spaces.ns(host), &args, env, log);
        self.agents.insert(host, agent);
    }

    /// The agents' status interval: how long one round of repairs may take.
    pub fn round(&self) -> Duration {
        self.status_interval.map_or(Duration::from_secs(5), |interval| {
            Duration::from_secs(interval.trim_end_matches('s').parse().unwrap())
        })
    }

    /// The etcd of an etcd source.
    pub fn etcd(&mut self) -> &mut Etcd {
        self.etcd.as_mut().expect("the lab runs on etcd")
    }

    /// The inventory.
    pub fn inventory(&self) -> PathBuf {
        self.dir.0.join("fabric.toml")
    }

    /// Runs `wgfabric ARGS -i INVENTORY --source SOURCE` where the source is reachable (the
    /// root namespace for a directory, the switch for etcd).
    pub fn controller(&self, args: &[&str]) -> Run {
        let output = self.controller_command(args).output().unwrap();
        Run { line: format!("wgfabric {}", args.join(" ")), output }
    }

    /// Runs `wgfabric ARGS` as [`Lab::controller`] does, asserts it succeeded, and returns
    /// its standard output.
    pub fn run_controller_ok(&self, args: &[&str]) -> String {
        self.controller(args).success().stdout()
    }

    /// The command [`Lab::controller`] runs.
    pub fn controller_command(&self, args: &[&str]) -> Command {
        let mut command = match self.etcd {
            Some(_) => self.spaces.switch.command(&wgfabric().display().to_string()),
            None => Command::new(wgfabric()),
        };
        let inventory = self.inventory().display().to_string();
        command.args(args).args(["-i", &inventory]);
        if args[0] != "addresses" {
            command.args(["--source", &self.source]);
        }
        command.env_remove("WGFABRIC_SOURCE").env_remove("WGFABRIC_INVENTORY");
        command
    }

    /// A host's overlay IPv4 address.
    pub fn address(&self, host: &str) -> String {
        let fabric = Fabric::load_locked(&self.inventory()).unwrap();
        fabric.addresses(host).unwrap().ipv4.unwrap().to_string()
    }

    /// The revision of the inventory as it is now.
    pub fn revision(&self) -> String {
        let fabric = Fabric::load_locked(&self.inventory()).unwrap();
        let material = KeyMaterial::load(fabric.inventory()).unwrap();
        desired_states(&fabric, &material, None).0.to_string()
    }

    /// A host's public key in the inventory now.
    pub fn public_key(&self, host: &str) -> PublicKey {
        let fabric = Fabric::load_locked(&self.inventory()).unwrap();
        fabric.inventory().hosts[host].public_key
    }

    /// A host's status as its agent last reported it.
    pub fn status(&self, host: &str) -> Option<Status> {
        let bytes = match &self.etcd {
            None => {
                std::fs::read(Path::new(&self.source).join("status").join(format!("{host}.json")))
                    .ok()?
            }
            Some(etcd) => {
                let key = format!("/lab/status/{host}");
                let output = self
                    .spaces
                    .switch
                    .command("etcdctl")
                    .args(["--endpoints", &etcd.endpoint(), "get", "--print-value-only", &key])
                    .env("ETCDCTL_API", "3")
                    .output()
                    .unwrap();
                output.stdout
            }
        };
        Status::from_json(&bytes).ok()
    }

    /// Writes raw bytes as a host's desired state, as a broken pipeline or a bad hand edit
    /// would (directory source).
    pub fn corrupt_desired(&self, host: &str, bytes: &[u8]) {
        let path = Path::new(&self.source).join("desired").join(format!("{host}.json"));
        std::fs::write(path, bytes).unwrap();
    }

    /// The daemon's peers as `wg show dump` has them.
    pub fn dump(&self, host: &str) -> wgfabric_testkit::WgDump {
        self.daemons[host].dump()
    }

    /// Waits until every agent reports the inventory's current revision.
    pub fn wait_applied(&self, revision: &str) {
        let all = wait_until(Duration::from_secs(30), || {
            HOSTS.iter().all(|host| {
                self.status(host)
                    .is_some_and(|s| s.applied.as_ref().is_some_and(|r| r.as_str() == revision))
            })
        });
        assert!(all, "not every agent applied revision {revision}");
    }

    /// Pings `to` from `from` every 10 ms, `count` times, waiting for late replies.
    pub fn flood_ping(&self, from: &str, to: &str, count: u32) -> wgfabric_testkit::Background {
        let count = count.to_string();
        let address = self.address(to);
        self.spaces
            .ns(from)
            .spawn(&["ping", "-n", "-q", "-i", "0.01", "-c", &count, "-w", "120", &address])
    }
}

/// A finished `wgfabric` run.
pub struct Run {
    pub line: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts it succeeded, printing its output either way.
    pub fn success(self) -> Self {
        eprintln!("$ {}\n{}{}", self.line, self.stdout(), self.stderr());
        assert!(self.output.status.success(), "`{}` failed", self.line);
        self
    }
}

/// The lab's inventory: one relay, three spokes with a keepalive that never go direct, key
/// files in `dir`, and `recipient` for sealed keys.
fn inventory(dir: &Path, keys: &BTreeMap<&str, PublicKey>, recipient: &str) -> String {
    // Spokes keep to the relay: the scenarios here measure the relay path, and direct paths
    // have their own tests (tests/paths.rs).
    let mut text = format!(
        "[keys]\nrecipients = [\"{recipient}\"]\n\n[network.lab]\nipv4 = \"10.88.0.0/24\"\n\
         direct = \"never\"\n\n"
    );
    for host in HOSTS {
        text.push_str(&format!("[host.{host}]\n"));
        if host == "relay" {
            text.push_str(&format!("role = \"relay\"\nendpoint = \"{RELAY_ENDPOINT}\"\n"));
        } else {
            text.push_str("keepalive = 25\n");
        }
        text.push_str(&format!("public_key = \"{}\"\n", keys[host]));
        text.push_str(&format!(
            "key_file = \"{}\"\n\n",
            dir.join(host).join("private.key").display()
        ));
    }
    text
}

/// Parses ping's summary.
pub fn ping_stats(output: &str) -> wgfabric_testkit::PingStats {
    wgfabric_testkit::PingStats::parse(output)
        .unwrap_or_else(|| panic!("no ping summary in {output}"))
}

/// An address of the underlay, for messages.
pub fn underlay(host: &str) -> IpAddr {
    let index = HOSTS.iter().position(|h| *h == host).unwrap();
    format!("192.0.2.{}", index + 1).parse().unwrap()
}
