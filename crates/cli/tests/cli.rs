//! The `wgfabric` binary end to end: exit codes, files written (or not), key handling.

mod util;

use std::os::unix::fs::PermissionsExt as _;

use util::{assert_code, central_fabric, repo, stderr, stdout, Scratch};

// A pair produced by `wg genkey | tee /dev/stderr | wg pubkey` (wireguard-tools v1.0.20210914).
const WG_PRIVATE: &str = "2FkIUyxNcXlS+5AKQHncW+pwQIlPBsqVsInFxiWGpWw=";
const WG_PUBLIC: &str = "vreiV32Fc+3EMQo3WGmmfRJ6Vy8WHQDgv9matssdIXo=";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn pubkey_matches_wg() {
    let scratch = Scratch::new();
    let output = scratch.run_with_input(&["pubkey"], &format!("{WG_PRIVATE}\n"));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), format!("{WG_PUBLIC}\n"));
    let bad = scratch.run_with_input(&["pubkey"], "not a key\n");
    assert_code(&bad, 2);
    assert!(!stderr(&bad).contains("not a key"), "input is not echoed");
}

#[test]
fn genkey_and_genpsk_print_wg_formatted_keys() {
    let scratch = Scratch::new();
    for verb in ["genkey", "genpsk"] {
        let first = stdout(&scratch.run(&[verb]));
        let second = stdout(&scratch.run(&[verb]));
        assert_eq!(first.len(), 45, "44 base64 characters and a newline: {first:?}");
        assert!(first.ends_with("=\n"));
        assert_ne!(first, second);
    }
    let private = stdout(&scratch.run(&["genkey"]));
    let public = stdout(&scratch.run_with_input(&["pubkey"], &private));
    assert_eq!(public.len(), 45);
    // Cross-check with the reference tool when it is installed.
    if let Ok(mut wg) = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write as _;
        wg.stdin.take().unwrap().write_all(private.as_bytes()).unwrap();
        let output = wg.wait_with_output().unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), public);
    }
}

#[test]
fn keygen_writes_a_private_file_and_prints_only_the_public_key() {
    let scratch = Scratch::new();
    let dir = scratch.path("etc");
    let output = scratch.run(&["keygen", "laptop-ana", "--dir", dir.to_str().unwrap()]);
    assert_code(&output, 0);
    let key_file = dir.join("private.key");
    assert_eq!(mode(&key_file), 0o600);
    let private = std::fs::read_to_string(&key_file).unwrap();
    let public = stdout(&output);
    assert_eq!(stdout(&scratch.run_with_input(&["pubkey"], &private)), public);
    assert!(!public.contains(private.trim()) && !stderr(&output).contains(private.trim()));
    assert!(
        stderr(&output).contains(&format!("[host.laptop-ana]\npublic_key = \"{}\"", public.trim()))
    );

    let again = scratch.run(&["keygen", "laptop-ana", "--dir", dir.to_str().unwrap()]);
    assert_code(&again, 2);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), private, "not overwritten");
}

#[test]
fn the_example_is_clean_and_fixtures_are_findings() {
    let scratch = Scratch::with_example();
    assert_code(&scratch.run(&["check", "--locked"]), 0);
    let fixtures = repo().join("crates/model/tests/fixtures");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let output = scratch.run(&["check", "-i", path.to_str().unwrap(), "--format", "json"]);
        assert_code(&output, 1);
        let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        let rule = path.file_stem().unwrap().to_str().unwrap();
        let findings = report["findings"].as_array().unwrap();
        assert!(
            findings.iter().any(|f| f["rule"] == rule && f["severity"] == "error"),
            "{rule}: {report}"
        );
        assert!(report["errors"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn a_malformed_inventory_names_file_line_and_field_and_writes_nothing() {
    let scratch = Scratch::with_example();
    let text = scratch.read("fabric.toml").replace("priority = 20", "priority = \"second\"");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    std::fs::remove_file(scratch.path("fabric.lock")).unwrap();
    let output = scratch.run(&["render"]);
    assert_code(&output, 2);
    let message = stderr(&output);
    assert!(
        message.contains("fabric.toml:28:12: host.relay-iad.priority: invalid type"),
        "{message}"
    );
    assert!(!scratch.path("rendered").exists());
    assert!(!scratch.path("fabric.lock").exists());
}

#[test]
fn render_refuses_an_inventory_with_lint_errors() {
    let scratch = Scratch::with_example();
    let text = scratch
        .read("fabric.toml")
        .replace("[host.ci-runner-1]\nnat = true", "[host.ci-runner-1]\nnat = true\nkeepalive = 0");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    let output = scratch.run(&["render"]);
    assert_code(&output, 2);
    assert!(stderr(&output).contains("error[nat-keepalive]"), "{}", stderr(&output));
    assert!(!scratch.path("rendered").exists());
}

#[test]
fn locked_refuses_a_stale_lock_and_render_updates_it() {
    let scratch = Scratch::with_example();
    let key = stdout(&scratch.run_with_input(&["pubkey"], WG_PRIVATE)).trim().to_owned();
    let mut text = scratch.read("fabric.toml");
    text.push_str(&format!("\n[host.ci-runner-2]\nnat = true\npublic_key = \"{key}\"\n"));
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    assert_code(&scratch.run(&["render", "--locked"]), 2);
    assert!(!scratch.path("rendered").exists());

    assert_code(&scratch.run(&["render"]), 0);
    let lock = scratch.read("fabric.lock");
    assert!(
        lock.contains("[host.ci-runner-2]\nnetwork = \"corp\"\nipv4 = \"10.77.0.8\""),
        "{lock}"
    );
    assert!(lock.contains("[host.laptop-ana]\nnetwork = \"corp\"\nipv4 = \"10.77.0.3\""), "{lock}");
}

#[test]
fn plan_compares_with_the_last_render() {
    let scratch = Scratch::with_example();
    let fresh = scratch.run(&["plan", "--exit-code"]);
    assert_code(&fresh, 1);
    assert!(stdout(&fresh).contains("+ relay-fra: new host"), "{}", stdout(&fresh));
    assert_code(&scratch.run(&["render"]), 0);
    let unchanged = scratch.run(&["plan", "--exit-code"]);
    assert_code(&unchanged, 0);
    assert!(stdout(&unchanged).starts_with("No changes"));

    let text = scratch
        .read("fabric.toml")
        .replace("relay-iad.example.net:51820", "relay-iad.example.org:51820");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    let changed = scratch.run(&["plan", "--format", "json"]);
    assert_code(&changed, 0);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&changed)).unwrap();
    let hosts = plan["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 7, "every host: peers, and relay-iad's own exports: {plan}");
    let field = &hosts[0]["peers"][0]["fields"][0];
    assert_eq!(field["field"], "endpoint");
    assert_eq!(field["new"], "relay-iad.example.org:51820");
    let iad = hosts.iter().find(|host| host["host"] == "relay-iad").unwrap();
    assert_eq!(
        iad["settings"][0],
        serde_json::json!({
            "setting": "endpoint",
            "old": "relay-iad.example.net:51820",
            "new": "relay-iad.example.org:51820"
        })
    );
}

#[test]
fn removed_addresses_are_held_until_released() {
    let scratch = Scratch::with_example();
    scratch.remove_host("ci-runner-1");
    scratch.remove_policy("ci-deploys");
    assert_code(&scratch.run(&["addresses", "update"]), 0);
    let listing = scratch.run(&["addresses", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&listing)).unwrap();
    let removed: Vec<_> =
        value["addresses"].as_array().unwrap().iter().filter(|r| r["removed"] == true).collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["ipv4"], "10.77.0.1");

    assert_code(&scratch.run(&["addresses", "release", "laptop-ana"]), 2);
    let release = scratch.run(&["addresses", "release", "ci-runner-1"]);
    assert_code(&release, 0);
    assert!(stderr(&release).contains("released 10.77.0.1, fd77:77::1"), "{}", stderr(&release));
    assert!(!scratch.read("fabric.lock").contains("ci-runner-1"));
}

#[test]
fn a_full_render_removes_the_files_of_removed_hosts() {
    let scratch = Scratch::with_example();
    assert_code(&scratch.run(&["render"]), 0);
    assert!(scratch.path("rendered/ci-runner-1/wg0.conf").exists());
    let text = scratch.read("fabric.toml").replace("[host.ci-runner-1]", "[host.ci-runner-2]");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    std::fs::write(scratch.path("rendered/notes.txt"), "kept").unwrap();
    assert_code(&scratch.run(&["render"]), 0);
    assert!(!scratch.path("rendered/ci-runner-1").exists());
    assert!(scratch.path("rendered/ci-runner-2/wg0.conf").exists());
    assert_eq!(scratch.read("rendered/notes.txt"), "kept");
}

#[test]
fn single_host_and_fabric_wide_formats_print_to_stdout() {
    let scratch = Scratch::with_example();
    let conf = scratch.run(&["render", "laptop-ana"]);
    assert_code(&conf, 0);
    assert!(stdout(&conf).contains("[Interface]\nAddress = 10.77.0.3/16, fd77:77::3/64"));
    let terraform = scratch.run(&["render", "--format", "terraform"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&terraform)).unwrap();
    assert!(value.as_object().unwrap().values().all(serde_json::Value::is_string));
    assert_code(&scratch.run(&["render", "no-such-host"]), 2);
    assert!(!scratch.path("rendered").exists());
}

#[test]
fn central_mode_encrypts_keys_and_inlines_them_only_with_an_identity() {
    let scratch = Scratch::new();
    let inventory = central_fabric(&scratch, |args| scratch.run(args)).inventory;
    let identity_file = scratch.path("identity.txt");
    assert!(scratch.read("keys/runner.age").starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));

    // Without --out the decrypted keys have nowhere safe to go.
    assert_code(&scratch.run(&["render", "runner", "--identity", "identity.txt"]), 2);
    let out = scratch.path("bootstrap");
    let output =
        scratch.run(&["render", "--out", out.to_str().unwrap(), "--identity", "identity.txt"]);
    assert_code(&output, 0);
    let conf = out.join("runner/wg0.conf");
    assert_eq!(mode(&conf), 0o600);
    let text = std::fs::read_to_string(&conf).unwrap();
    let private = text.lines().find_map(|l| l.strip_prefix("PrivateKey = ")).unwrap();
    let public = stdout(&scratch.run_with_input(&["pubkey"], private));
    assert!(inventory.contains(&format!("public_key = \"{}\"", public.trim())));
    assert!(!std::fs::read_to_string(out.join("state.json")).unwrap().contains(private));
    assert_eq!(mode(&out.join("fabric.json")), 0o644);

    std::fs::set_permissions(&identity_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused =
        scratch.run(&["render", "--out", out.to_str().unwrap(), "--identity", "identity.txt"]);
    assert_code(&refused, 2);
    assert!(stderr(&refused).contains("run `chmod 600 identity.txt`"), "{}", stderr(&refused));
}

#[test]
fn every_verb_has_examples_in_its_help() {
    let scratch = Scratch::new();
    for verb in
        ["check", "render", "plan", "addresses", "graph", "keygen", "genkey", "pubkey", "genpsk"]
    {
        let output = scratch.run(&[verb, "--help"]);
        assert_code(&output, 0);
        assert!(stdout(&output).contains("Example"), "{verb} --help has no examples");
    }
}
