//! What every verb's output promises: a closed pipe is a quiet success, errors are printed
//! once, and findings and plans speak the inventory's language.

mod util;

use util::{assert_code, stderr, Scratch};

#[test]
fn a_closed_pipe_is_a_silent_success_for_human_and_json_output() {
    let scratch = Scratch::with_example();
    assert_code(&scratch.run(&["render"]), 0);
    let verbs: &[&[&str]] = &[
        &["plan"],
        &["plan", "--format", "json"],
        &["check", "--format", "json"],
        &["check", "--list-rules"],
        &["addresses"],
        &["addresses", "--format", "json"],
        &["render", "laptop-ana"],
        &["graph"],
        &["completions", "bash"],
        &["genkey"],
    ];
    for args in verbs {
        let output = scratch.run_with_closed_stdout(args);
        assert_code(&output, 0);
        assert_eq!(stderr(&output), "", "{args:?} printed nothing on standard error");
    }
}

#[test]
fn an_io_error_names_its_cause_once() {
    let scratch = Scratch::new();
    let output = scratch.run(&["check", "-i", "missing/fabric.toml"]);
    assert_code(&output, 2);
    let text = stderr(&output);
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
    assert!(text.starts_with("wgfabric: missing/fabric.toml: "), "{text}");
}

#[test]
fn a_bad_public_key_says_what_is_wrong_with_it() {
    let scratch = Scratch::with_example();
    let text = scratch.read("fabric.toml");
    let start = text.find("public_key = \"").unwrap() + "public_key = \"".len();
    // 41 characters of the key, then `A==`: 44 characters that decode to 31 bytes.
    let bad = format!("{}{}A=={}", &text[..start], &text[start..start + 41], &text[start + 44..]);
    std::fs::write(scratch.path("fabric.toml"), bad).unwrap();
    let output = scratch.run(&["check"]);
    assert_code(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("decodes to 31 bytes instead of 32"), "{message}");
    assert!(message.contains(".public_key: "), "names the field: {message}");
}

#[test]
fn locked_names_the_hosts_that_make_the_lock_stale() {
    let scratch = Scratch::with_example();
    scratch.remove_host("laptop-ben");
    let key = util::stdout(&scratch.run(&["genkey"]));
    let key = util::stdout(&scratch.run_with_input(&["pubkey"], &key)).trim().to_owned();
    let mut text = scratch.read("fabric.toml");
    text.push_str(&format!("\n[host.ci-runner-2]\nnat = true\npublic_key = \"{key}\"\n"));
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    let output = scratch.run(&["check", "--locked"]);
    assert_code(&output, 2);
    let message = stderr(&output);
    assert!(
        message.contains(
            "is out of date with fabric.toml: hosts added to the inventory: ci-runner-2; \
             hosts removed from it: laptop-ben; run `wgfabric addresses update`"
        ),
        "{message}"
    );
}

#[test]
fn a_full_network_names_the_host_and_the_counts() {
    let scratch = Scratch::with_example();
    let text = scratch.read("fabric.toml").replace("10.77.0.0/16", "10.77.0.0/29");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    std::fs::remove_file(scratch.path("fabric.lock")).unwrap();
    let output = scratch.run(&["check"]);
    assert_code(&output, 2);
    let message = stderr(&output);
    assert!(
        message.contains(
            "no overlay address left for host `router-aws` in network `corp`: ipv4 10.77.0.0/29 \
             has 6 usable address(es), 6 in use"
        ),
        "{message}"
    );
    assert!(message.contains("such as ipv4 = \"10.77.0.0/28\""), "{message}");
}

#[test]
fn plan_exit_code_sees_a_key_file_change_that_render_writes() {
    let scratch = Scratch::with_example();
    assert_code(&scratch.run(&["render"]), 0);
    let before = scratch.read("rendered/laptop-ana/wg0.conf");
    let text = scratch
        .read("fabric.toml")
        .replace("[host.laptop-ana]\n", "[host.laptop-ana]\nkey_file = \"/etc/wg/ana.key\"\n");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    let plan = scratch.run(&["plan", "--exit-code"]);
    assert_code(&plan, 1);
    assert_eq!(
        util::stdout(&plan),
        "~ laptop-ana:\n    ~ key_source file:/etc/wgfabric/private.key -> file:/etc/wg/ana.key\n\
         1 host(s) change.\n"
    );
    assert_code(&scratch.run(&["render"]), 0);
    assert_ne!(scratch.read("rendered/laptop-ana/wg0.conf"), before);
    assert_code(&scratch.run(&["plan", "--exit-code"]), 0);
}

#[test]
fn verbs_refusing_an_inventory_print_its_findings_as_json_when_asked() {
    let scratch = Scratch::with_example();
    let text = scratch.read("fabric.toml").replace("keepalive = 25 ", "keepalive = 0 ");
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    for args in [
        &["check", "--format", "json"][..],
        &["render", "--message-format", "json"],
        &["apply", "--format", "json", "--no-wait"],
    ] {
        let output = scratch.run(args);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stderr(&output)));
        let finding = &report["findings"][0];
        assert_eq!(finding["rule"], "nat-keepalive", "{args:?}: {report}");
        assert!(finding["column"].as_u64().is_some(), "{report}");
        assert!(report["errors"].as_u64() > Some(0), "{report}");
    }
    assert!(!scratch.path("rendered").exists());
}
