//! Tests of the policy: its syntax, what each host's table holds, the nft forms and
//! `explain`.

use std::path::Path;

use super::nft::{self, Table};
use super::*;
use crate::explain::explain;
use crate::{Fabric, Inventory, Lock};

/// The example fleet without its own policy.
fn example() -> &'static str {
    let text = crate::example::INVENTORY;
    text.find("\n# Access policy:").map_or(text, |end| &text[..end])
}

/// The example fleet with `policy` appended.
fn fabric(policy: &str) -> Fabric {
    let text = format!("{}\n{policy}", example());
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    Fabric::new(inventory, lock).unwrap()
}

fn parse_error(policy: &str) -> crate::error::SourceError {
    Inventory::parse(Path::new("fabric.toml"), &format!("{}\n{policy}", example())).unwrap_err()
}

const POLICY: &str = r#"
[[policy]]
name = "ci-deploys"
from = ["group:ci"]
to = ["external:aws-prod-vpc"]
ports = ["tcp/22", "tcp/443"]

[[policy]]
name = "no-prod-for-engineers"
from = ["group:engineers"]
to = ["external:aws-prod-vpc"]
action = "deny"

[[policy]]
name = "engineers-everywhere"
from = ["group:engineers"]
to = ["*"]

[[policy]]
name = "pods"
from = ["external:k8s-node-1-pods", "group:k8s"]
to = ["group:k8s", "external:k8s-node-1-pods"]
"#;

#[test]
fn selectors_and_ports_parse_and_print_back() {
    for text in ["*", "laptop-ana", "group:ci", "external:aws-prod-vpc"] {
        assert_eq!(text.parse::<Selector>().unwrap().to_string(), text);
    }
    assert!("tag:x".parse::<Selector>().is_err());
    for text in ["tcp", "udp/53", "tcp/8000-8999", "icmp"] {
        assert_eq!(text.parse::<PortSpec>().unwrap().to_string(), text);
    }
    for (bad, says) in [
        ("tcp/0", "out of range"),
        ("tcp/65536", "out of range"),
        ("tcp/99-10", "ends before it starts"),
        ("icmp/8", "ICMP does not have"),
        ("sctp/1", "not a protocol"),
        ("tcp/+22", "not a protocol"),
    ] {
        let error = bad.parse::<PortSpec>().unwrap_err().to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }
    let spec: PortSpec = "tcp/20-30".parse().unwrap();
    assert!(spec.matches(Protocol::Tcp, Some(22)) && !spec.matches(Protocol::Udp, Some(22)));
    assert!("tcp/22".parse::<PortSpec>().unwrap().within(&spec));
}

#[test]
fn bad_rules_are_refused_where_they_stand() {
    for (policy, field, says) in [
        (
            "[[policy]]\nfrom = [\"group:nobody\"]\nto = [\"*\"]\n",
            "policy[0].from",
            "no host is in group `nobody`",
        ),
        ("[[policy]]\nfrom = [\"*\"]\nto = [\"ghost\"]\n", "policy[0].to", "no host named `ghost`"),
        (
            "[[policy]]\nfrom = [\"*\"]\nto = [\"external:moon\"]\n",
            "policy[0].to",
            "no external network named `moon`",
        ),
        ("[[policy]]\nfrom = []\nto = [\"*\"]\n", "policy[0].from", "`from` is empty"),
        (
            "[[policy]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"tcp/70000\"]\n",
            "policy[0].ports",
            "out of range",
        ),
        (
            "[[policy]]\nfrom = [\"*\"]\nto = [\"*\"]\naction = \"maybe\"\n",
            "policy[0].action",
            "unknown variant",
        ),
    ] {
        let error = parse_error(policy);
        // Type errors found by serde name the array, the others the rule too.
        let key = field.rsplit('.').next().unwrap();
        assert!(error.field == field || error.field == format!("policy.{key}"), "{error}");
        assert!(error.message.contains(says), "{error}");
        assert!(error.line > example().lines().count(), "{error}");
    }
}

#[test]
fn without_a_policy_no_host_needs_a_table() {
    let fabric = fabric("");
    assert!(fabric.host_configs().all(|config| config.firewall.is_none()));
}

#[test]
fn each_host_judges_what_reaches_it_and_relays_judge_what_they_forward() {
    let fabric = fabric(POLICY);
    let config = |host: &str| fabric.host_config(host).unwrap();
    let names = |rules: &Option<Vec<FirewallRule>>| -> Vec<String> {
        rules.as_ref().unwrap().iter().map(|r| r.name.to_string()).collect()
    };

    let relay = config("relay-fra").firewall.unwrap();
    assert_eq!(
        names(&relay.forward),
        ["ci-deploys", "no-prod-for-engineers", "engineers-everywhere", "pods"]
    );
    assert_eq!(names(&relay.input), ["failover-probes", "engineers-everywhere"]);

    // The subnet router forwards into the VPC: only rules that reach it.
    let router = config("router-aws").firewall.unwrap();
    assert_eq!(
        names(&router.forward),
        ["ci-deploys", "no-prod-for-engineers", "engineers-everywhere"]
    );
    let node = config("k8s-node-1").firewall.unwrap();
    assert_eq!(names(&node.input), ["engineers-everywhere", "pods"]);
    assert_eq!(names(&node.forward), ["engineers-everywhere", "pods"]);
    // A laptop forwards nothing.
    assert!(config("laptop-ana").firewall.unwrap().forward.is_none());

    // Sources are sets of addresses: the group's hosts.
    let ci = &relay.forward.as_ref().unwrap()[0];
    let ci_runner = fabric.addresses("ci-runner-1").unwrap();
    assert_eq!(ci.from.len(), 2);
    assert!(ci_runner.addresses().all(|addr| ci.from.iter().any(|c| c.contains(addr))));
}

#[test]
fn the_table_reads_the_same_as_json_and_as_an_nft_file() {
    let fabric = fabric(POLICY);
    let firewall = fabric.host_config("relay-fra").unwrap().firewall.unwrap();
    let table = Table::of(&firewall);
    let text = table.to_text();
    assert!(text.starts_with("table inet wgfabric\ndelete table inet wgfabric\n"), "{text}");
    for expected in [
        "type filter hook forward priority 0; policy accept;",
        "iifname \"wg0\" jump tunnel_forward",
        "ct state established,related accept",
        "ip saddr @fwd0_from4 ip daddr @fwd0_to4 meta l4proto tcp th dport 22 counter accept comment \"ci-deploys\"",
        "ip saddr @fwd1_from4 ip daddr @fwd1_to4 counter drop comment \"no-prod-for-engineers\"",
        "ip6 saddr @fwd2_from6 counter accept comment \"engineers-everywhere\"",
        "iifname != { \"wg0\", \"lo\" } ip saddr @overlay4 counter drop comment \"antispoof\"",
        "counter drop comment \"default-deny\"",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    let json = table.to_json();
    let batch = json["nftables"].as_array().unwrap();
    let rules = batch.iter().filter(|c| c["add"]["rule"].is_object()).count();
    let text_rules = text
        .lines()
        .filter(|l| {
            l.starts_with("\t\t")
                && !l.contains("type filter")
                && !l.trim_start().starts_with("type ")
                && !l.trim_start().starts_with("flags")
                && !l.trim_start().starts_with("elements")
        })
        .count();
    assert_eq!(rules, text_rules, "{text}");
    assert_eq!(batch[1]["delete"]["table"]["name"], "wgfabric", "replaced in one transaction");
}

#[test]
fn explain_names_the_deciding_rule_and_the_way() {
    let fabric = fabric(POLICY);
    let tcp = |port: u16| Some(PortSpec { protocol: Protocol::Tcp, ports: Some((port, port)) });

    let allowed = explain(&fabric, "ci-runner-1", "10.20.1.5", tcp(443)).unwrap();
    assert_eq!(
        (allowed.verdict, allowed.rule.as_ref().map(Name::as_str)),
        (Verdict::Allow, Some("ci-deploys"))
    );
    assert_eq!(
        allowed.path.iter().map(Name::as_str).collect::<Vec<_>>(),
        ["ci-runner-1", "relay-fra", "router-aws"]
    );

    let other_port = explain(&fabric, "ci-runner-1", "10.20.1.5", tcp(80)).unwrap();
    assert_eq!((other_port.verdict, other_port.rule), (Verdict::Deny, None));
    assert!(other_port.reason.contains("no rule matches"), "{}", other_port.reason);

    let denied = explain(&fabric, "laptop-ana", "10.20.1.5", None).unwrap();
    assert_eq!(denied.verdict, Verdict::Deny);
    assert_eq!(denied.rule.as_ref().map(Name::as_str), Some("no-prod-for-engineers"));

    let icmp = Some(PortSpec { protocol: Protocol::Icmp, ports: None });
    let probe = explain(&fabric, "ci-runner-1", "relay-iad", icmp).unwrap();
    assert_eq!(
        (probe.verdict, probe.rule.as_ref().map(Name::as_str)),
        (Verdict::Allow, Some("failover-probes"))
    );
    assert_eq!(
        explain(&fabric, "ci-runner-1", "relay-iad", tcp(22)).unwrap().verdict,
        Verdict::Deny
    );
    let local = explain(&fabric, "router-aws", "10.20.1.5", None).unwrap();
    assert_eq!((local.verdict, local.rule), (Verdict::Allow, None));
    assert!(local.reason.contains("nothing crosses the fabric"), "{}", local.reason);

    let no_policy = explain(&self::fabric(""), "ci-runner-1", "laptop-ana", None).unwrap();
    assert_eq!(no_policy.verdict, Verdict::Allow);
    assert!(explain(&fabric, "nobody", "laptop-ana", None).is_err());
}

#[test]
fn counters_add_up_per_chain_rule_and_verdict() {
    let listing = serde_json::json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "inet", "name": "wgfabric"}},
        {"rule": {"chain": "tunnel_forward", "comment": "ci-deploys", "expr": [
            {"match": {}}, {"counter": {"packets": 3, "bytes": 300}}, {"accept": null}]}},
        {"rule": {"chain": "tunnel_forward", "comment": "ci-deploys", "expr": [
            {"counter": {"packets": 1, "bytes": 60}}, {"accept": null}]}},
        {"rule": {"chain": "tunnel_forward", "comment": "default-deny", "expr": [
            {"counter": {"packets": 7, "bytes": 700}}, {"drop": null}]}},
        {"rule": {"chain": "tunnel_forward", "expr": [{"match": {}}, {"accept": null}]}},
        {"rule": {"chain": "input", "comment": "jump", "expr": [{"jump": {"target": "x"}}]}}
    ]});
    let counters = nft::parse_counters(&listing);
    assert_eq!(counters.len(), 2, "{counters:?}");
    assert_eq!(
        (counters[0].rule.as_str(), counters[0].verdict, counters[0].packets, counters[0].bytes),
        ("ci-deploys", "accept", 4, 360)
    );
    assert_eq!(
        (counters[1].rule.as_str(), counters[1].verdict, counters[1].packets),
        ("default-deny", "drop", 7)
    );
}
