//! Keys from a real secrets manager: `pass` with a throwaway GPG key holds a host's private
//! key; the wg-quick hook `wgfabric render` writes for that host loads it through
//! `wgfabric fetchkey`, which records the fetch (never the key) in the audit log.

mod util;

use std::path::Path;
use std::process::Command;

use util::{assert_code, stderr, stdout, Scratch};
use wgfabric_testkit::{keypair, PasswordStore};

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
