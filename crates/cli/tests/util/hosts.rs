//! Two hosts of one network, each in its network namespace, for the tests of the verbs that
//! act on a host (`up`, `down`, `show`, `probe`): a relay and a full-tunnel spoke joined by
//! a veth pair (the underlay), the spoke's default route pointing at the relay. Nothing is
//! up until a test runs `up`; dropping the fixture takes down whatever is.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Output;

use wgfabric_testkit::{keypair, unique_interface_name, veth, Netns};

use super::{assert_code, Scratch};

/// The relay's underlay address, its WireGuard port, and an address it holds "outside" the
/// overlay (on its loopback), which the spoke reaches through the tunnel.
pub const RELAY_UNDERLAY: &str = "192.0.2.1";
pub const PORT: u16 = 51820;
pub const OUTSIDE: &str = "198.51.100.7";

/// The built `wgfabric` and the `wgfabricd` beside it.
pub fn binaries() -> (PathBuf, PathBuf) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_wgfabric"));
    let daemon = exe.with_file_name("wgfabricd");
    assert!(daemon.exists(), "{} is not built: cargo build -p wgfabricd", daemon.display());
    (exe, daemon)
}

/// Two hosts in their namespaces, rendered, with their keys in the scratch directory.
pub struct Fabric {
    pub scratch: Scratch,
    pub relay_ns: Netns,
    pub spoke_ns: Netns,
    /// The network's interface (the spoke's), and the relay's own: API sockets share one
    /// directory across namespaces.
    pub spoke_if: String,
    pub relay_if: String,
}

impl Fabric {
    /// `spoke_extra` is added to the spoke's table in fabric.toml.
    pub fn new(spoke_extra: &str) -> Self {
        let scratch = Scratch::new();
        let mut publics = Vec::new();
        for host in ["relay", "spoke"] {
            let (private, public) = keypair();
            let path = scratch.path(&format!("{host}.key"));
            std::fs::write(&path, format!("{}\n", private.to_base64_secret())).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            publics.push(public.to_base64());
        }
        let spoke_if = unique_interface_name("wgus");
        let relay_if = unique_interface_name("wgur");
        let dir = scratch.0.display().to_string();
        let inventory = format!(
            "[network.t]\nipv4 = \"10.99.0.0/24\"\nipv6 = \"fd99::/64\"\n\
             topology = \"hub-and-spoke\"\ninterface = \"{spoke_if}\"\n\n\
             [host.relay]\nrole = \"relay\"\nendpoint = \"{RELAY_UNDERLAY}:{PORT}\"\n\
             public_key = \"{}\"\nkey_source = \"file:{dir}/relay.key\"\n\n\
             [host.spoke]\ntunnel = \"full\"\npublic_key = \"{}\"\n\
             key_source = \"file:{dir}/spoke.key\"\n{spoke_extra}\n",
            publics[0], publics[1]
        );
        std::fs::write(scratch.path("fabric.toml"), inventory).unwrap();
        assert_code(&scratch.run(&["render", "--out", "rendered", "--format", "json"]), 0);

        let relay_ns = Netns::new("wgf-upr");
        let spoke_ns = Netns::new("wgf-ups");
        veth(&relay_ns, "under-r", &spoke_ns, "under-s").unwrap();
        // An IPv4-only underlay: any IPv6 packet on it would be a leak.
        for (ns, dev) in [(&relay_ns, "under-r"), (&spoke_ns, "under-s")] {
            ns.run(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        }
        relay_ns.add_address("under-r", &format!("{RELAY_UNDERLAY}/24")).unwrap();
        relay_ns.add_address("lo", &format!("{OUTSIDE}/32")).unwrap();
        spoke_ns.add_address("under-s", "192.0.2.2/24").unwrap();
        spoke_ns.run(&["ip", "route", "add", "default", "via", RELAY_UNDERLAY]);
        Self { scratch, relay_ns, spoke_ns, spoke_if, relay_if }
    }

    /// Runs `wgfabric ARGS` in `ns`; `up` and `down` keep the host's records in the scratch
    /// directory, and `up` starts the `wgfabricd` that was built.
    pub fn wgfabric(&self, ns: &Netns, args: &[&str]) -> Output {
        let (exe, daemon) = binaries();
        let mut command = ns.command(&exe.to_string_lossy());
        command.args(args).current_dir(&self.scratch.0);
        if matches!(args.first(), Some(&"up" | &"down")) {
            command.arg("--state-dir").arg(self.scratch.path(&format!("run-{}", ns.name())));
        }
        if args.first() == Some(&"up") {
            command.arg("--daemon").arg(daemon);
        }
        command.output().unwrap()
    }

    pub fn up_relay(&self, extra: &[&str]) -> Output {
        let mut args = vec!["up", "relay", "--interface", &self.relay_if];
        args.extend(extra);
        self.wgfabric(&self.relay_ns, &args)
    }

    pub fn up_spoke(&self, extra: &[&str]) -> Output {
        let mut args = vec!["up", "spoke"];
        args.extend(extra);
        self.wgfabric(&self.spoke_ns, &args)
    }

    pub fn down(&self, ns: &Netns, extra: &[&str]) -> Output {
        let mut args = vec!["down"];
        args.extend(extra);
        self.wgfabric(ns, &args)
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Stops the daemons of a test that failed while its interfaces were up; the
        // namespaces go after this.
        for ns in [&self.spoke_ns, &self.relay_ns] {
            let _ = self.down(ns, &["--stop-daemon"]);
        }
    }
}
