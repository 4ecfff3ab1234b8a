//! Every lint rule finds the mistake seeded in its fixture (the example fleet with one
//! change), and the clean example fleet has no findings at all.

use std::path::{Path, PathBuf};

use wgfabric_model::lint::{check, findings_text, has_errors, Severity, RULES};
use wgfabric_model::Inventory;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.toml"))
}

#[test]
fn the_example_fleet_is_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/fabric.toml");
    let findings = check(&Inventory::load(&path).unwrap());
    assert!(findings.is_empty(), "{}", findings_text(&findings, "examples/fabric.toml"));
}

#[test]
fn every_rule_finds_its_seeded_mistake() {
    for (rule, _) in RULES {
        let source = std::fs::read_to_string(fixture(rule)).unwrap();
        let inventory = Inventory::load(&fixture(rule)).unwrap();
        let findings = check(&inventory);
        let text = findings_text(&findings, rule);
        assert!(has_errors(&findings), "{rule}: {text}");
        let ours: Vec<_> = findings.iter().filter(|f| f.rule == *rule).collect();
        assert!(!ours.is_empty(), "{rule} not reported: {text}");
        assert!(ours.iter().all(|f| f.severity == Severity::Error), "{text}");
        for finding in ours {
            assert!(!finding.fix.is_empty() && !finding.field.is_empty());
            // The position is the field's key, or its table's header when it is inherited.
            let line = source.lines().nth(finding.line - 1).unwrap();
            let at: String = line.chars().skip(finding.column - 1).collect();
            let key = finding.field.rsplit('.').next().unwrap();
            assert!(
                at.starts_with(key) || at.starts_with('['),
                "{rule}: {}:{} is `{line}`, neither {key} nor a table",
                finding.line,
                finding.column
            );
        }
    }
}

#[test]
fn findings_name_host_field_and_fix() {
    let findings = check(&Inventory::load(&fixture("nat-keepalive")).unwrap());
    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!(finding.host.as_deref(), Some("ci-runner-1"));
    assert_eq!(finding.field, "host.ci-runner-1.keepalive");
    let text = findings_text(&findings, "fabric.toml");
    assert!(
        text.starts_with(&format!(
            "error[nat-keepalive]: fabric.toml:{}:{}: host.ci-runner-1.keepalive:",
            finding.line, finding.column
        )),
        "{text}"
    );
    assert!(text.contains("  fix: replace `keepalive = 0` with `keepalive = 25`"), "{text}");
    assert!(text.ends_with("1 error(s), 0 warning(s)\n"));
}

#[test]
fn a_route_wider_than_its_host_owns_is_flagged_not_the_overlap() {
    let findings = check(&Inventory::load(&fixture("route-leak")).unwrap());
    let leak = findings.iter().find(|f| f.rule == "route-leak").unwrap();
    assert!(leak.message.contains("10.0.0.0/8"), "{}", leak.message);
}
