//! Every `--format json` output of `wgfabric` against the shape docs/cli.md shows for it:
//! the verbs that need no root here, run on the example fabric with changes that bring out
//! each kind of element; `agent --once` and `rotate` on the lab fabric (root); `demo` in
//! tests/demo.rs, `up` and `down` in tests/up_down.rs, `show` and `probe` in
//! tests/show_probe.rs, `paths` in tests/paths.rs.

mod lab;
mod util;

use std::collections::BTreeSet;

use util::shape::{assert_shape, documented, matches};
use util::{assert_code, stdout, Scratch};

/// The shapes checked in other test files, where their verb already runs.
const CHECKED_ELSEWHERE: &[&str] = &["demo", "up", "down", "show", "probe", "paths"];

/// The shapes this file checks.
const CHECKED_HERE: &[&str] = &[
    "check",
    "plan",
    "addresses",
    "explain",
    "audit-verify",
    "audit-verify-broken",
    "audit-show",
    "apply",
    "agent",
    "rotate",
];

#[test]
fn every_documented_shape_is_checked_and_every_checked_one_documented() {
    let documented: BTreeSet<String> = documented().into_iter().map(|(name, _)| name).collect();
    let checked: BTreeSet<String> =
        CHECKED_HERE.iter().chain(CHECKED_ELSEWHERE).map(|name| (*name).to_owned()).collect();
    assert_eq!(documented, checked);
}

/// Runs `wgfabric ARGS` in `scratch`, expecting `code`; returns standard output.
fn json(scratch: &Scratch, args: &[&str], code: i32) -> String {
    let output = scratch.run(args);
    assert_code(&output, code);
    stdout(&output)
}

/// Replaces `old` with `new` in the scratch's `fabric.toml`.
fn edit(scratch: &Scratch, old: &str, new: &str) {
    let text = scratch.read("fabric.toml");
    assert!(text.contains(old), "{old}");
    std::fs::write(scratch.path("fabric.toml"), text.replacen(old, new, 1)).unwrap();
}

#[test]
fn check_plan_addresses_and_explain_print_what_the_docs_show() {
    let scratch = Scratch::with_example();
    assert_shape(
        "explain",
        &json(&scratch, &["explain", "laptop-ana", "10.20.0.10", "tcp/22", "--format", "json"], 1),
    );
    json(&scratch, &["render", "--out", "out"], 0);
    // A host added, one removed, one changed with its peers, the network changed.
    let text = scratch.read("fabric.toml");
    let start = text.find("[host.laptop-ana]").unwrap();
    let end = text.find("[host.laptop-ben]").unwrap();
    std::fs::write(scratch.path("fabric.toml"), format!("{}{}", &text[..start], &text[end..]))
        .unwrap();
    edit(&scratch, "relay-iad.example.net:51820", "vpn.example.com:51820");
    edit(
        &scratch,
        "routes = [\"10.244.1.0/24\"]",
        "routes = [\"10.244.1.0/24\", \"10.244.9.0/24\"]",
    );
    edit(&scratch, "interface = \"wg0\"", "interface = \"wg1\"");
    edit(
        &scratch,
        "[host.laptop-ben]",
        "[host.laptop-cy]\nnat = true\npublic_key = \"CDk7ZZzZzd3L9yq2Xb+vYxwZ4tX3B0dOq6sS3rmC8WA=\"\ngroups = [\"engineers\"]\n\n[host.laptop-ben]",
    );
    let plan = json(&scratch, &["plan", "--out", "out", "--format", "json"], 0);
    for change in ["\"added\"", "\"removed\"", "\"changed\"", "\"allowed_ips\"", "\"endpoint\""] {
        assert!(plan.contains(change), "the plan shows each kind: {change}");
    }
    assert_shape("plan", &plan);
    assert_shape("addresses", &json(&scratch, &["addresses", "--format", "json"], 0));
    edit(
        &scratch,
        "[host.ci-runner-1]\nnat = true\n",
        "[host.ci-runner-1]\nnat = true\nkeepalive = 0\n",
    );
    let check = json(&scratch, &["check", "--format", "json"], 1);
    assert!(check.contains("nat-keepalive"), "{check}");
    assert_shape("check", &check);
}

#[test]
fn apply_and_audit_print_what_the_docs_show() {
    let scratch = Scratch::with_example();
    let apply =
        json(&scratch, &["apply", "--timeout", "1s", "--source", "src", "--format", "json"], 1);
    assert!(apply.contains("\"waiting\""), "{apply}");
    assert_shape("apply", &apply);
    let show = json(&scratch, &["audit", "show", "--format", "json"], 0);
    assert!(show.contains("config.written"), "{show}");
    assert_shape("audit-show", &show);
    assert_shape("audit-verify", &json(&scratch, &["audit", "verify", "--format", "json"], 0));
    let log = scratch.read("audit.jsonl");
    std::fs::write(
        scratch.path("audit.jsonl"),
        log.replacen("\"detail\":\"", "\"detail\":\"edited ", 1),
    )
    .unwrap();
    assert_shape(
        "audit-verify-broken",
        &json(&scratch, &["audit", "verify", "--format", "json"], 1),
    );
}

#[test]
#[ignore = "needs root and network namespaces"]
fn agent_and_rotate_print_what_the_docs_show() {
    let spaces = lab::Spaces::new();
    let lab = lab::Lab::start(&spaces, lab::Source::Directory, &[]);
    let rotate = lab.run_controller_ok(&["rotate", "s1", "--format", "json"]);
    assert_shape("rotate", &rotate);
    let apply = lab.run_controller_ok(&["apply", "--format", "json"]);
    assert!(apply.contains("\"applied\""), "{apply}");
    assert_shape("apply", &apply);
    let interface = &lab.interfaces["s2"];
    let once = spaces
        .ns("s2")
        .command(&lab::wgfabric().display().to_string())
        .args(["agent", "--once", "--host", "s2", "--interface", interface, "--format", "json"])
        .args(["--source", &lab.source])
        .output()
        .unwrap();
    assert_code(&once, 0);
    let status = stdout(&once);
    assert!(status.contains("\"latest_handshake\""), "{status}");
    assert_shape("agent", &status);
}

#[test]
fn shapes_read_as_docs_cli_md_says() {
    let shape = serde_json::json!({
        "name": "a", "count": 1, "gone?": true, "tags": ["x"],
        "by_host": {"<host>": {"state": "waiting"}, "<other>": {"state": "refused", "reason": "r"}},
        "items": [{"kind": "a"}, {"kind": "b", "extra": 2}]
    });
    let real = serde_json::json!({
        "name": null, "count": 2, "tags": [],
        "by_host": {"s1": {"state": "x"}, "s2": {"state": "y", "reason": "z"}},
        "items": [{"kind": "b", "extra": 3}, {"kind": "a"}]
    });
    assert_eq!(matches(&shape, &real, ""), Ok(()));
    let mut extra = real.clone();
    extra["new"] = serde_json::Value::Bool(true);
    assert_eq!(matches(&shape, &extra, ""), Err(".new is not documented".to_owned()));
    let mut missing = real.clone();
    missing.as_object_mut().unwrap().remove("count");
    assert_eq!(matches(&shape, &missing, ""), Err(".count is missing".to_owned()));
    let mut wrong = real;
    wrong["count"] = serde_json::Value::from("one");
    assert!(matches(&shape, &wrong, "").unwrap_err().starts_with(".count is \"one\""));
}
