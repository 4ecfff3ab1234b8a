//! The tables the policy compiles to load into the kernel (root, in a namespace of their own):
//! both forms nft reads, the JSON batch the agent loads and the file `render` writes, give the
//! same ruleset, and a second load replaces the first whole.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use wgfabric_model::policy::nft::Table;
use wgfabric_model::{Fabric, Inventory, Lock};
use wgfabric_testkit::{require_tool, Netns};

const POLICY: &str = r#"
[[policy]]
name = "ci-deploys"
from = ["group:ci"]
to = ["external:aws-prod-vpc"]
ports = ["tcp/22", "tcp/443", "udp/8000-8999"]

[[policy]]
name = "no-prod-for-engineers"
from = ["group:engineers"]
to = ["external:aws-prod-vpc"]
action = "deny"

[[policy]]
name = "engineers-everywhere"
from = ["group:engineers"]
to = ["*"]
ports = ["icmp", "tcp"]
"#;

fn nft(ns: &Netns, args: &[&str], input: &str) -> String {
    let mut child = ns
        .command("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn every_hosts_table_loads_as_json_and_as_a_file_to_the_same_ruleset() {
    if require_tool("nft").is_err() {
        return;
    }
    let example = wgfabric_model::example::INVENTORY;
    let without_policy = example.find("\n# Access policy:").map_or(example, |end| &example[..end]);
    let text = format!("{without_policy}\n{POLICY}");
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let fabric = Fabric::new(inventory, lock).unwrap();
    let ns = Netns::new("wgnft");
    for config in fabric.host_configs() {
        let table = Table::of(config.firewall.as_ref().unwrap());
        nft(&ns, &["-j", "-f", "-"], &table.to_json().to_string());
        let from_json = nft(&ns, &["list", "table", "inet", "wgfabric"], "");
        // Loading again replaces the table: nothing doubles.
        nft(&ns, &["-f", "-"], &table.to_text());
        let from_text = nft(&ns, &["list", "table", "inet", "wgfabric"], "");
        assert_eq!(from_json, from_text, "{}", config.host);
        let rules = from_text.lines().filter(|l| l.contains(" comment \"")).count();
        let expected = table.to_text().lines().filter(|l| l.contains(" comment \"")).count();
        assert_eq!(rules, expected, "{}:\n{from_text}", config.host);
    }
}
