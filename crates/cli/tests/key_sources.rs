//! Keys from a real secrets manager: `pass` with a throwaway GPG key holds a host's private
//! key; the wg-quick hook `wgfabric render` writes for that host loads it through
//! `wgfabric fetchkey`, which records the fetch (never the key) in the audit log. The last
//! test (root) brings the rendered file up with the stock wg-quick over wgfabricd.

mod util;

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use util::{assert_code, stderr, stdout, Scratch};
use wgfabric_testkit::{
    keypair, require, require_tool, run_command, unique_interface_name, wait_until, Netns,
    PasswordStore, SOCKET_DIR,
};

/// The example fleet with laptop-ana's key in `store` under `wgfabric/laptop-ana`, and its
/// public key; the key source runs `pass` through `env` so it finds the throwaway store.
fn fleet_with_pass(store: &PasswordStore) -> (Scratch, String) {
    let (private, public) = keypair();
    let secret = private.to_base64_secret();
    store.insert("wgfabric/laptop-ana", &format!("{secret}\nnote: laptop of Ana\n"));
    let scratch = Scratch::with_example();
    let env: Vec<String> = store.env().iter().map(|(k, v)| format!("\"{k}={v}\"")).collect();
    let text = scratch.read("fabric.toml").replace(
        "public_key = \"lQHoZhX1IH7QKoFVyD+5cYLHkcWE9AgmSIO1FWSncQo=\"",
        &format!(
            "public_key = \"{public}\"\nkey_source = [\"exec:env\", {}, \"pass\", \"show\", \"wgfabric/laptop-ana\"]",
            env.join(", ")
        ),
    );
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    (scratch, secret)
}

fn audit_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn the_rendered_wg_quick_hook_loads_the_key_from_pass_and_records_the_fetch() {
    let Ok(store) = PasswordStore::new() else { return };
    let (scratch, secret) = fleet_with_pass(&store);
    assert_code(&scratch.run(&["render", "--out", "rendered", "--format", "wg-quick"]), 0);
    let conf = scratch.read("rendered/laptop-ana/wg0.conf");
    let hook = conf
        .lines()
        .find_map(|line| line.strip_prefix("PostUp = wg set %i private-key "))
        .unwrap_or_else(|| panic!("no key hook in\n{conf}"));
    assert!(
        hook.starts_with("<(wgfabric fetchkey --host laptop-ana --interface %i exec:env "),
        "{hook}"
    );
    assert!(!conf.contains(&secret), "the key itself is never rendered");

    // What wg-quick does with the hook: substitute %i and run it with bash.
    let bin = Path::new(env!("CARGO_BIN_EXE_wgfabric")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let audit = scratch.path("host-audit.jsonl");
    let out = Command::new("bash")
        .args(["-c", &format!("cat {}", hook.replace("%i", "wg0"))])
        .env("PATH", path)
        .env("WGFABRIC_AUDIT_LOG", &audit)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("{secret}\n"), "{}", stderr(&out));

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"action\":\"key.fetched\""), "{}", lines[0]);
    assert!(lines[0].contains("\"target\":\"laptop-ana\""), "{}", lines[0]);
    assert!(lines[0].contains("pass show wgfabric/laptop-ana"), "{}", lines[0]);
    assert!(!lines[0].contains(&secret), "the audit log never holds the key");
}

#[test]
fn a_failed_fetch_is_a_clear_error_with_nothing_on_standard_output() {
    let Ok(store) = PasswordStore::new() else { return };
    let scratch = Scratch::new();
    let mut argv: Vec<String> =
        ["fetchkey", "--host", "laptop-ana", "--audit-log", "audit.jsonl", "exec:env"]
            .map(String::from)
            .to_vec();
    argv.extend(store.env().iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(["pass", "show", "wgfabric/missing"].map(String::from));
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = scratch.run(&args);
    assert_code(&out, 2);
    assert_eq!(stdout(&out), "");
    let said = stderr(&out);
    assert!(said.contains("fetching the private key of `laptop-ana`"), "{said}");
    assert!(said.contains("is not in the password store"), "{said}");
    assert!(audit_lines(&scratch.path("audit.jsonl")).is_empty(), "no key was fetched");

    let bad = scratch.run(&["fetchkey", "--host", "h", "file:relative/key"]);
    assert_code(&bad, 2);
    assert!(stderr(&bad).contains("not an absolute path"), "{}", stderr(&bad));
}

/// An interface wg-quick brought up in a namespace; dropping it takes it down, stops whatever
/// still runs in the namespace and removes the socket, even when the test failed.
struct Up<'a> {
    ns: &'a Netns,
    conf: std::path::PathBuf,
    interface: String,
}

impl Drop for Up<'_> {
    fn drop(&mut self) {
        if self.ns.has_link(&self.interface) {
            let _ = run_command(self.ns.command("wg-quick").arg("down").arg(&self.conf));
        }
        for pid in self.ns.pids() {
            let _ = run_command(Command::new("kill").args(["-TERM", &pid.to_string()]));
        }
        wait_until(Duration::from_secs(3), || self.ns.pids().is_empty());
        let _ =
            std::fs::remove_file(Path::new(SOCKET_DIR).join(format!("{}.sock", self.interface)));
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wg_quick_brings_a_rendered_host_up_with_its_key_from_pass() {
    let module_loaded = Path::new("/sys/module/wireguard").exists();
    let reason = "the wireguard kernel module is loaded: wg-quick would use it, not wgfabricd";
    if require(!module_loaded, reason).is_err() || require_tool("wg-quick").is_err() {
        return;
    }
    let Ok(store) = PasswordStore::new() else { return };
    let (scratch, secret) = fleet_with_pass(&store);
    // No DNS in the namespace, and a socket name of its own.
    let interface = unique_interface_name("wgks");
    let text = scratch
        .read("fabric.toml")
        .replace("relay-fra.example.net:51820", "192.0.2.10:51820")
        .replace("relay-iad.example.net:51820", "192.0.2.11:51820")
        .replace("interface = \"wg0\"", &format!("interface = \"{interface}\""));
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    assert_code(&scratch.run(&["render", "--out", "rendered", "--format", "wg-quick"]), 0);

    let ns = Netns::new("wgks");
    let conf = scratch.path(&format!("rendered/laptop-ana/{interface}.conf"));
    let up = Up { ns: &ns, conf, interface: interface.clone() };
    let bin = Path::new(env!("CARGO_BIN_EXE_wgfabric")).parent().unwrap();
    let audit = scratch.path("host-audit.jsonl");
    run_command(
        ns.command("wg-quick")
            .arg("up")
            .arg(&up.conf)
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", bin.join("wgfabricd"))
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
            .env("WGFABRIC_AUDIT_LOG", &audit),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let shown = ns.run(&["wg", "show", &interface, "private-key"]);
    assert_eq!(shown.trim(), secret, "the interface runs on the key from pass");
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("key.fetched") && !lines[0].contains(&secret), "{}", lines[0]);
    drop(up);
    assert!(!ns.has_link(&interface), "the interface survived");
}
