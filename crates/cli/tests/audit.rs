//! The audit trail end to end: what `keygen`, `render` and `addresses release` record, that
//! `audit verify` catches each kind of tampering with exit 1 and the line, and that `audit
//! show` filters. Logs and the audit log never hold a private key.

mod util;

use std::process::{Command, Output};

use serde_json::Value;
use util::{assert_code, central_fabric, stderr, stdout, Scratch};
use wgfabric_audit::Fingerprint;
use wgfabric_proto::keys::PublicKey;

const ACTOR: &str = "ci:audit-test#7";

/// Runs `wgfabric` in the scratch directory as a known actor, with `env` set.
fn run(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgfabric"));
    command
        .args(args)
        .current_dir(&scratch.0)
        .env("WGFABRIC_ACTOR", ACTOR)
        .env_remove("WGFABRIC_AUDIT_LOG")
        .env_remove("WGFABRIC_INVENTORY")
        .env_remove("WGFABRIC_AGE_IDENTITY")
        .env_remove("WGFABRIC_LOG_FORMAT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn records(scratch: &Scratch, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["audit", "show", "--format", "json"];
    argv.extend_from_slice(args);
    let output = run(scratch, &argv, &[]);
    assert_code(&output, 0);
    let shown: Value = serde_json::from_str(&stdout(&output)).unwrap();
    shown["records"].as_array().unwrap().clone()
}

fn actions(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r["action"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect()
}

fn fingerprint(public_key: &str) -> String {
    Fingerprint::of_public_key(&PublicKey::from_base64(public_key.trim()).unwrap())
        .as_str()
        .to_owned()
}

#[test]
fn keys_generated_and_decrypted_and_configs_written_are_recorded() {
    let scratch = Scratch::new();
    let keys = central_fabric(&scratch, |args| run(&scratch, args, &[])).public_keys;
    let render = ["render", "--out", "bootstrap", "--identity", "identity.txt"];
    assert_code(&run(&scratch, &render, &[]), 0);
    // Unchanged files are not recorded again; the keys were decrypted again, and are.
    assert_code(&run(&scratch, &render, &[]), 0);
    let all = records(&scratch, &[]);
    assert_eq!(
        actions(&all),
        [
            "key.generated relay",
            "key.generated runner",
            "key.decrypted relay",
            "key.decrypted runner",
            "config.written relay",
            "config.written runner",
            "key.decrypted relay",
            "key.decrypted runner",
        ]
    );
    assert!(all.iter().all(|r| r["actor"] == ACTOR));
    assert_eq!(all[1]["after"], fingerprint(&keys[1]));
    assert_eq!(all[1]["before"], Value::Null);
    assert_eq!(all[3]["after"], fingerprint(&keys[1]));
    assert!(all[5]["detail"].as_str().unwrap().ends_with("bootstrap/runner"), "{}", all[5]);

    // A new key for runner: its fingerprint before is the one the inventory had.
    assert_code(&run(&scratch, &["keygen", "runner", "--central", "--force"], &[]), 0);
    let rotated = records(&scratch, &["--host", "runner", "--action", "key.generated"]);
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1]["before"], fingerprint(&keys[1]));
    assert_ne!(rotated[1]["after"], rotated[1]["before"]);

    let keys_only = records(&scratch, &["--action", "key", "--host", "relay"]);
    assert_eq!(
        actions(&keys_only),
        ["key.generated relay", "key.decrypted relay", "key.decrypted relay"]
    );
    assert!(records(&scratch, &["--until", "2000-01-01"]).is_empty());
    assert_eq!(records(&scratch, &["--since", "1h"]).len(), 9);

    let verify = run(&scratch, &["audit", "verify"], &[]);
    assert_code(&verify, 0);
    assert!(stdout(&verify).starts_with("audit.jsonl: 9 record(s), chain intact\nhead "));

    // The rendered files hold the private keys; the log holds none of them.
    let log = scratch.read("audit.jsonl");
    for host in ["relay", "runner"] {
        let conf = scratch.read(&format!("bootstrap/{host}/wg0.conf"));
        let private = conf.lines().find_map(|l| l.strip_prefix("PrivateKey = ")).unwrap();
        assert!(!log.contains(private), "the audit log holds {host}'s private key");
    }
}

#[test]
fn every_kind_of_tampering_fails_verify_at_its_line() {
    let scratch = Scratch::with_example();
    assert_code(&run(&scratch, &["render", "--locked"], &[]), 0);
    let original = scratch.read("audit.jsonl");
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 7, "one config.written per host");
    let joined = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let edited = original.replacen("\"target\":\"laptop-ana\"", "\"target\":\"laptop-eve\"", 1);
    let removed = joined(&[&lines[..3], &lines[4..]].concat());
    let mut swapped = lines.clone();
    swapped.swap(2, 4);
    let mut inserted = lines.clone();
    inserted.insert(3, lines[2]);
    for (what, text, line) in [
        ("edited", edited, "line 4:"),
        ("removed", removed, "line 4:"),
        ("reordered", joined(&swapped), "line 3:"),
        ("inserted", joined(&inserted), "line 4:"),
    ] {
        std::fs::write(scratch.path("audit.jsonl"), &text).unwrap();
        let output = run(&scratch, &["audit", "verify"], &[]);
        assert_code(&output, 1);
        assert!(
            stdout(&output).starts_with(&format!("audit.jsonl: {line}")),
            "{what}: {}",
            stdout(&output)
        );
        let json = run(&scratch, &["audit", "verify", "--format", "json"], &[]);
        assert_code(&json, 1);
        let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
        assert_eq!(report["intact"], false, "{what}");
    }

    // Cutting the last line off shows only against the head anchored before.
    std::fs::write(scratch.path("audit.jsonl"), &original).unwrap();
    let verified = run(&scratch, &["audit", "verify", "--format", "json"], &[]);
    let head = serde_json::from_str::<Value>(&stdout(&verified)).unwrap()["head"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_code(&run(&scratch, &["audit", "verify", "--head", &head.to_uppercase()], &[]), 0);
    std::fs::write(scratch.path("audit.jsonl"), joined(&lines[..6])).unwrap();
    assert_code(&run(&scratch, &["audit", "verify"], &[]), 0);
    let anchored = run(&scratch, &["audit", "verify", "--head", &head], &[]);
    assert_code(&anchored, 1);
    assert!(stdout(&anchored).contains(&head), "{}", stdout(&anchored));

    // A log that is not there is an error, not an intact log.
    std::fs::remove_file(scratch.path("audit.jsonl")).unwrap();
    assert_code(&run(&scratch, &["audit", "verify"], &[]), 2);
}

#[test]
fn releases_go_to_the_log_given_and_json_logs_carry_fields_without_keys() {
    let scratch = Scratch::with_example();
    scratch.remove_host("ci-runner-1");
    scratch.remove_policy("ci-deploys");
    assert_code(&run(&scratch, &["addresses", "update"], &[]), 0);
    let log = scratch.path("elsewhere/trail.jsonl");
    let log = log.to_str().unwrap();
    let release = run(
        &scratch,
        &["addresses", "release", "ci-runner-1", "--log-format", "json"],
        &[("WGFABRIC_AUDIT_LOG", log)],
    );
    assert_code(&release, 0);
    let event: Value = serde_json::from_str(stderr(&release).lines().next().unwrap()).unwrap();
    assert_eq!(event["fields"]["host"], "ci-runner-1");
    assert_eq!(event["fields"]["addresses"], "10.77.0.1, fd77:77::1");
    let released = records(&scratch, &["--log", log]);
    assert_eq!(actions(&released), ["addresses.released ci-runner-1"]);
    assert_eq!(released[0]["detail"], "10.77.0.1, fd77:77::1");
    assert!(!scratch.path("audit.jsonl").exists());

    let keygen =
        run(&scratch, &["keygen", "laptop-ana", "--dir", "etc", "--log-format", "json"], &[]);
    assert_code(&keygen, 0);
    let private = scratch.read("etc/private.key");
    let event: Value = serde_json::from_str(stderr(&keygen).lines().next().unwrap()).unwrap();
    assert_eq!(event["fields"]["host"], "laptop-ana");
    assert_eq!(event["fields"]["public_key"], stdout(&keygen).trim());
    assert!(!stderr(&keygen).contains(private.trim()) && !stdout(&keygen).contains(private.trim()));
    // On a host, the log is in the key directory.
    assert!(scratch.read("etc/audit.jsonl").contains("\"action\":\"key.generated\""));
    assert!(!scratch.read("etc/audit.jsonl").contains(private.trim()));
}
