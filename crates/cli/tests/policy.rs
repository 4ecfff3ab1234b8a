//! Access policy enforced by the agents' nftables tables, on the lab fabric (one relay, three
//! spokes, in network namespaces; root only): allowed pairs pass, denied ones are dropped at
//! the relay, a spoke that rewrites its own AllowedIPs and routes still cannot reach a denied
//! subnet, spoofed overlay sources from the underlay are dropped, a policy change keeps
//! established flows, and a strict host still answers on its WireGuard port.

mod lab;
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use lab::{Lab, Source, Spaces};
use wgfabric_testkit::{require_tool, transfer, veth, wait_until, Netns};

/// s1 is an engineer, s2 runs production (with a LAN behind it), s3 is a CI runner.
const GROUPS_AND_LAN: [(&str, &str); 3] = [
    ("[host.s1]\n", "[host.s1]\ngroups = [\"engineers\"]\n"),
    ("[host.s2]\n", "[host.s2]\ngroups = [\"prod\"]\nroutes = [\"10.99.2.0/24\"]\n"),
    ("[host.s3]\n", "[host.s3]\ngroups = [\"ci\"]\n"),
];

const POLICY: &str = r#"
[external.prod-lan]
cidr = "10.99.2.0/24"
host = "s2"

[[policy]]
name = "engineers-to-prod"
from = ["group:engineers"]
to = ["group:prod", "external:prod-lan"]

[[policy]]
name = "ci-deploys"
from = ["group:ci"]
to = ["group:prod"]
ports = ["tcp/22"]
"#;

/// The packets counted by the rules commented `rule` in `ns`'s `table inet wgfabric`.
fn counted(ns: &Netns, rule: &str) -> u64 {
    let listing = ns.run(&["nft", "-j", "list", "table", "inet", "wgfabric"]);
    let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|r| r["comment"] == rule)
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Whether a TCP connection from `ns` to `addr` is answered (accepted or refused) within a
/// second, rather than dropped.
fn tcp_answered(ns: &Netns, addr: &str, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{addr}/{port}");
    let status = ns.command("timeout").args(["1", "bash", "-c", &script]).status().unwrap();
    status.code() != Some(124)
}

fn edit_inventory(lab: &Lab<'_>, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(lab.inventory()).unwrap();
    std::fs::write(lab.inventory(), edit(text)).unwrap();
}

fn apply(lab: &Lab<'_>) {
    lab.controller(&["apply", "--timeout", "30s"]).success();
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_policy_is_enforced_at_the_relay_and_survives_a_cheating_spoke() {
    if require_tool("nft").is_err() {
        return;
    }
    let spaces = Spaces::new();
    let lab = Lab::start(&spaces, Source::Directory, &[]);
    let (s1, s2, s3) = (spaces.ns("s1"), spaces.ns("s2"), spaces.ns("s3"));
    let s2_address = lab.address("s2");
    // The production LAN behind s2, which forwards into it: one machine, 10.99.2.1.
    let lan_host = Netns::new("wgfal");
    veth(s2, "lan0", &lan_host, "lan1").unwrap();
    s2.add_address("lan0", "10.99.2.254/24").unwrap();
    lan_host.add_address("lan1", "10.99.2.1/24").unwrap();
    lan_host.run(&["ip", "route", "add", "default", "via", "10.99.2.254"]);
    assert!(s3.ping(&s2_address, 1).all_answered(), "without a policy everything passes");

    edit_inventory(&lab, |text| {
        let text = GROUPS_AND_LAN.iter().fold(text, |text, (from, to)| text.replace(from, to));
        format!("{text}{POLICY}")
    });
    apply(&lab);
    for host in lab::HOSTS {
        let status = lab.status(host).unwrap();
        assert_eq!(status.policy_error, None, "{host}");
    }

    // Allowed: an engineer reaches production and its LAN.
    assert!(s1.ping(&s2_address, 2).all_answered(), "engineers reach prod");
    assert!(s1.ping("10.99.2.1", 2).all_answered(), "engineers reach the prod LAN");
    // Allowed: CI reaches prod on tcp/22, and nothing else of it.
    let listen: SocketAddr = format!("{s2_address}:22").parse().unwrap();
    transfer(s2, listen, s3, 1 << 16).unwrap_or_else(|e| panic!("ci -> prod tcp/22: {e}"));
    assert!(!tcp_answered(s3, &s2_address, 80), "ci -> prod tcp/80 is dropped, not refused");

    // Denied: CI pings prod; the relay drops it, prod never sees it.
    let relay_before = counted(spaces.ns("relay"), "default-deny");
    let prod_before = counted(s2, "default-deny");
    assert_eq!(s3.ping(&s2_address, 3).received, 0, "ci must not ping prod");
    assert!(
        counted(spaces.ns("relay"), "default-deny") >= relay_before + 3,
        "dropped at the relay"
    );
    assert_eq!(counted(s2, "default-deny"), prod_before, "nothing reached prod to be dropped");

    // A cheating spoke: CI widens its own AllowedIPs on the relay's peer and routes the LAN.
    let s3_interface = &lab.interfaces["s3"];
    let relay_key = lab.public_key("relay").to_base64();
    s3.run(&["wg", "set", s3_interface, "peer", &relay_key, "allowed-ips", "0.0.0.0/0"]);
    s3.run(&["ip", "route", "replace", "10.99.2.0/24", "dev", s3_interface]);
    assert_eq!(s3.ping("10.99.2.1", 3).received, 0, "the relay still drops what CI may not reach");
    assert_eq!(s3.ping(&s2_address, 2).received, 0);

    // Spoofed: an overlay source arriving on the relay's underlay is dropped there.
    let spoofed = format!("{s2_address}/32");
    spaces.switch.add_address("br0", &spoofed).unwrap();
    let before = counted(spaces.ns("relay"), "antispoof");
    let _ = spaces
        .switch
        .command("ping")
        .args(["-c", "3", "-W", "1", "-I", &s2_address, "192.0.2.1"])
        .output();
    spaces.switch.delete_address("br0", &spoofed).unwrap();
    assert!(
        counted(spaces.ns("relay"), "antispoof") >= before + 3,
        "spoofed sources counted and dropped"
    );

    // The table deleted by hand on the relay: its agent loads it again within a round.
    let relay = spaces.ns("relay");
    relay.run(&["nft", "delete", "table", "inet", "wgfabric"]);
    let reloaded = wait_until(Duration::from_secs(12), || {
        let listed = relay.command("nft").args(["list", "table", "inet", "wgfabric"]).output();
        listed.is_ok_and(|out| out.status.success())
    });
    assert!(reloaded, "the relay's agent did not restore its firewall");
    assert_eq!(s3.ping("10.99.2.1", 2).received, 0, "denied again");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_policy_change_keeps_established_flows_and_a_strict_relay_keeps_its_port() {
    if require_tool("nft").is_err() {
        return;
    }
    let spaces = Spaces::new();
    let lab = Lab::start(&spaces, Source::Directory, &[]);
    edit_inventory(&lab, |text| {
        let text = GROUPS_AND_LAN.iter().fold(text, |text, (from, to)| text.replace(from, to));
        format!("{text}{POLICY}")
    });
    apply(&lab);

    // An allowed flow runs while the policy changes (CI gains ping to prod).
    let flow = lab.flood_ping("s1", "s2", 600);
    edit_inventory(&lab, |text| {
        text.replace("ports = [\"tcp/22\"]", "ports = [\"tcp/22\", \"icmp\"]")
    });
    apply(&lab);
    let stats = lab::ping_stats(&flow.wait().unwrap());
    assert_eq!(stats.received, stats.transmitted, "no packet of the allowed flow lost");
    assert!(spaces.ns("s3").ping(&lab.address("s2"), 2).all_answered(), "the new rule applies");
    let audit = std::fs::read_to_string(lab.dir.0.join("relay").join("audit.jsonl")).unwrap();
    assert!(audit.matches("\"action\":\"policy.applied\"").count() >= 2, "{audit}");

    // Strict underlay input on the relay: WireGuard and SSH stay open, the rest is dropped.
    edit_inventory(&lab, |text| {
        text.replace("[host.relay]\n", "[host.relay]\nstrict_input = true\n")
    });
    apply(&lab);
    let switch = &spaces.switch;
    let dropped_before = counted(spaces.ns("relay"), "strict-underlay");
    assert!(!tcp_answered(switch, "192.0.2.1", 8080), "a closed port is dropped, not refused");
    assert!(counted(spaces.ns("relay"), "strict-underlay") > dropped_before);
    assert!(
        tcp_answered(switch, "192.0.2.1", 22),
        "SSH is never cut: refused (no sshd), not dropped"
    );
    let settled = wait_until(Duration::from_secs(5), || {
        spaces.ns("s1").ping(&lab.address("s2"), 1).all_answered()
    });
    assert!(settled, "spokes still reach each other through the strict relay");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_exporter_serves_each_rules_counters_and_promtool_accepts_them() {
    if require_tool("nft").is_err() {
        return;
    }
    let spaces = Spaces::new();
    let lab = Lab::start(&spaces, Source::Directory, &[]);
    edit_inventory(&lab, |text| {
        let text = GROUPS_AND_LAN.iter().fold(text, |text, (from, to)| text.replace(from, to));
        format!("{text}{POLICY}")
    });
    apply(&lab);
    let relay = spaces.ns("relay");
    assert!(spaces.ns("s1").ping(&lab.address("s2"), 2).all_answered());
    assert_eq!(spaces.ns("s3").ping(&lab.address("s2"), 2).received, 0);

    let wgfabric = lab::wgfabric().display().to_string();
    let scrape = relay.run(&[&wgfabric, "exporter", "--once", "--socket-dir", "/nonexistent"]);
    let sample = |rule: &str, verdict: &str| {
        let prefix = format!(
            "wgfabric_policy_packets_total{{chain=\"tunnel_forward\",rule=\"{rule}\",verdict=\"{verdict}\"}} "
        );
        scrape.lines().find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
    };
    // A flow's first packet meets the rule; the rest pass as established.
    assert!(sample("engineers-to-prod", "accept").is_some_and(|n| n >= 1), "{scrape}");
    assert!(sample("default-deny", "drop").is_some_and(|n| n >= 2), "{scrape}");
    assert!(scrape.contains("# TYPE wgfabric_policy_bytes_total counter"), "{scrape}");
    wgfabric_testkit::assert_promtool_accepts(&scrape);
}
