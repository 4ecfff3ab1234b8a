//! `WG_QUICK_USERSPACE_IMPLEMENTATION=wgfabricd wg-quick up|down`: the stock script brings
//! wgfabricd up with its addresses, routes and MTU, traffic crosses, and `down` takes the
//! interface and the daemon away.
//!
//! wg-quick falls back to the userspace implementation only where the wireguard kernel module
//! is absent; with the module loaded it would never run wgfabricd, so the test does not run.

mod common;

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{Link, Underlay, PORTS};
use wgfabric_testkit::{
    keypair, require, require_tool, run_command, unique_interface_name, wait_until, CommandError,
    Daemon, Netns, WgConfig, WgPeer, SOCKET_DIR,
};

const WGFABRICD: &str = env!("CARGO_BIN_EXE_wgfabricd");

/// An interface that `wg-quick up` brought up from a private config file. Dropping it takes
/// everything down even if the test failed half-way: `wg-quick down`, then SIGTERM to whatever
/// still runs in the namespace, then the socket and the file.
struct WgQuick<'ns> {
    ns: &'ns Netns,
    interface: String,
    dir: PathBuf,
}

impl<'ns> WgQuick<'ns> {
    /// Writes `config` to `INTERFACE.conf` in a private directory, where wg-quick takes the
    /// interface's name from.
    fn new(ns: &'ns Netns, interface: &str, config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgfabric-wg-quick-{interface}"));
        DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let guard = Self { ns, interface: interface.to_owned(), dir };
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(guard.conf()).unwrap();
        file.write_all(config.as_bytes()).unwrap();
        guard
    }

    fn conf(&self) -> PathBuf {
        self.dir.join(format!("{}.conf", self.interface))
    }

    fn socket(&self) -> PathBuf {
        Path::new(SOCKET_DIR).join(format!("{}.sock", self.interface))
    }

    fn wg_quick(&self, verb: &str) -> Result<String, CommandError> {
        run_command(
            self.ns
                .command("wg-quick")
                .env("WG_QUICK_USERSPACE_IMPLEMENTATION", WGFABRICD)
                .arg(verb)
                .arg(self.conf()),
        )
    }
}

impl Drop for WgQuick<'_> {
    fn drop(&mut self) {
        if self.ns.has_link(&self.interface) {
            let _ = self.wg_quick("down");
        }
        for pid in self.ns.pids() {
            let _ = run_command(Command::new("kill").args(["-TERM", &pid.to_string()]));
        }
        wait_until(Duration::from_secs(3), || self.ns.pids().is_empty());
        let _ = fs::remove_file(self.socket());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wg_quick_brings_wgfabricd_up_and_down() {
    let module_loaded = Path::new("/sys/module/wireguard").exists();
    let reason = "the wireguard kernel module is loaded: wg-quick would use it, not wgfabricd";
    if require(!module_loaded, reason).is_err() || require_tool("wg-quick").is_err() {
        return;
    }
    let link = Link::new(Underlay::V4);
    let (a_private, a_key) = keypair();
    let (b_private, b_key) = keypair();

    // The far side: a wgfabricd configured by hand.
    let far = Daemon::start(&link.b, wgfabricd(), &unique_interface_name("wgqb"));
    let mut a_as_peer = WgPeer::new(a_key);
    a_as_peer.allowed_ips = vec!["198.51.100.1/32".into(), "2001:db8:100::1/128".into()];
    far.setconf(&WgConfig {
        private_key: b_private,
        listen_port: Some(PORTS[1]),
        fwmark: None,
        peers: vec![a_as_peer],
    });
    far.up(&["198.51.100.2/24", "2001:db8:100::2/64"]);

    // This side: wg-quick's own config file, addresses and all, and no DNS.
    let mut b_as_peer = WgPeer::new(b_key);
    b_as_peer.endpoint = Some(format!("192.0.2.2:{}", PORTS[1]).parse().unwrap());
    b_as_peer.allowed_ips =
        vec!["198.51.100.2/32".into(), "2001:db8:100::2/128".into(), "203.0.113.0/24".into()];
    let config = WgConfig {
        private_key: a_private,
        listen_port: Some(PORTS[0]),
        fwmark: None,
        peers: vec![b_as_peer],
    };
    let config = config.to_conf_secret().replacen(
        "[Interface]\n",
        "[Interface]\nAddress = 198.51.100.1/24, 2001:db8:100::1/64\n",
        1,
    );
    let interface = unique_interface_name("wgq");
    let quick = WgQuick::new(&link.a, &interface, &config);
    quick.wg_quick("up").unwrap_or_else(|e| panic!("{e}"));

    // wgfabricd runs it: the one process in the namespace is ours, and it answers `wg`.
    let processes = link.a.pids();
    let [pid] = &processes[..] else { panic!("processes in the namespace: {processes:?}") };
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, fs::canonicalize(WGFABRICD).unwrap(), "wg-quick ran another implementation");
    assert!(quick.socket().exists());
    let shown = link.a.run(&["wg", "show", &interface, "dump"]);
    assert!(shown.contains(&b_key.to_base64()), "{shown}");

    let addresses = link.a.run(&["ip", "-o", "address", "show", "dev", &interface]);
    for cidr in ["198.51.100.1/24", "2001:db8:100::1/64"] {
        assert!(addresses.contains(cidr), "{cidr} missing:\n{addresses}");
    }
    let routes = link.a.run(&["ip", "-4", "route", "show", "dev", &interface]);
    for route in ["198.51.100.0/24", "203.0.113.0/24"] {
        assert!(routes.contains(route), "no route to {route}:\n{routes}");
    }
    let details = link.a.run(&["ip", "link", "show", "dev", &interface]);
    assert!(details.contains("mtu 1420") && details.contains(",UP"), "{details}");

    assert!(link.a.ping_until_reply("198.51.100.2", Duration::from_secs(15)), "no reply");
    assert!(link.a.ping("2001:db8:100::2", 3).all_answered(), "inner IPv6 lost");

    quick.wg_quick("down").unwrap_or_else(|e| panic!("{e}"));
    assert!(!link.a.has_link(&interface), "the interface survived wg-quick down");
    let gone =
        wait_until(Duration::from_secs(5), || link.a.pids().is_empty() && !quick.socket().exists());
    assert!(gone, "wgfabricd outlived its interface: {:?}", link.a.pids());
}
