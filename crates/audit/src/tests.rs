//! The chain holds for what `Audit` writes, and breaks, at the right line, for every kind of
//! tampering.

use std::path::{Path, PathBuf};

use super::verify::{verify, Broken};
use super::*;
use wgfabric_proto::keys::PublicKey;

/// A scratch log path, removed with its directory on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wgfabric-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn log(&self) -> PathBuf {
        self.0.join("sub/audit.jsonl")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(seed: u8) -> PublicKey {
    PublicKey::from_bytes([seed; 32])
}

fn entry(n: u8) -> Entry {
    Entry::new(
        Timestamp::from_unix(1_700_000_000 + u64::from(n)),
        "alice@ci",
        Action::KeyGenerated,
        format!("host-{n}"),
    )
    .after(Fingerprint::of_public_key(&key(n)))
}

/// A log of `n` entries, as text.
fn log_of(name: &str, n: u8) -> (Scratch, String) {
    let scratch = Scratch::new(name);
    let mut audit = Audit::open(&scratch.log()).unwrap();
    for i in 1..=n {
        audit.append(entry(i)).unwrap();
    }
    let text = std::fs::read_to_string(scratch.log()).unwrap();
    (scratch, text)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn joined(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn broken(text: &str) -> Broken {
    verify(text, None).expect_err("tampering must be detected")
}

#[test]
fn appended_lines_chain_from_the_genesis_and_verify() {
    let (scratch, text) = log_of("chain", 3);
    let records: Vec<Record> = text.lines().map(|l| Record::parse(l).unwrap()).collect();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(records[0].prev, GENESIS);
    assert_eq!(records[1].prev, line_hash(text.lines().next().unwrap().as_bytes()));
    assert_eq!(records[0].time, "2023-11-14T22:13:21Z");
    assert_eq!(records[0].action, "key.generated");
    assert_eq!(records[0].after.as_deref(), Some(Fingerprint::of_public_key(&key(1)).as_str()));
    assert_eq!(records[0].before, None);
    let verified = verify(&text, None).unwrap();
    assert_eq!(verified.entries, 3);
    assert_eq!(verified.head, line_hash(text.lines().last().unwrap().as_bytes()));

    // Another process appends later: it chains to what is there.
    let mut again = Audit::open(&scratch.log()).unwrap();
    let record = again.append(entry(4).detail("rotated by hand")).unwrap();
    assert_eq!((record.seq, &record.prev), (4, &verified.head));
    let text = std::fs::read_to_string(scratch.log()).unwrap();
    assert_eq!(verify(&text, None).unwrap().entries, 4);
    let last = text.lines().last().unwrap();
    assert!(
        last.ends_with(&format!(",\"detail\":\"rotated by hand\",\"prev\":\"{}\"}}", record.prev)),
        "{last}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&scratch.log()), 0o644, "no secret is in it");
    assert_eq!(mode(scratch.log().parent().unwrap()), 0o700, "it may be a key directory");
}

#[test]
fn a_batch_chains_like_single_appends() {
    let (_one_by_one, expected) = log_of("single", 4);
    let scratch = Scratch::new("batch");
    let mut audit = Audit::open(&scratch.log()).unwrap();
    audit.append(entry(1)).unwrap();
    assert_eq!(audit.append_all((2..=4).map(entry)).unwrap(), 3);
    assert_eq!(audit.append_all(std::iter::empty()).unwrap(), 0);
    let text = std::fs::read_to_string(scratch.log()).unwrap();
    assert_eq!(text, expected);
    assert_eq!(verify(&text, None).unwrap().entries, 4);
}

#[test]
fn an_empty_log_is_valid_and_its_head_is_the_genesis() {
    assert_eq!(verify("", None).unwrap(), verify::Verified { entries: 0, head: GENESIS.into() });
}

#[test]
fn an_edited_line_breaks_the_chain_at_the_next_line() {
    let (_scratch, text) = log_of("edit", 5);
    let edited = text.replacen("\"target\":\"host-3\"", "\"target\":\"host-9\"", 1);
    assert_ne!(edited, text);
    let error = broken(&edited);
    assert_eq!(error.line, Some(4), "{error}");
    assert!(error.problem.contains("line 3 was edited"), "{error}");
    // A fingerprint changed, or the whitespace of the JSON: the same.
    let reformatted = text.replacen("{\"seq\":2,", "{\"seq\": 2,", 1);
    assert_eq!(broken(&reformatted).line, Some(3));
}

#[test]
fn a_removed_line_is_reported_where_it_is_missing() {
    let (_scratch, text) = log_of("remove", 5);
    let mut kept = lines(&text);
    kept.remove(2);
    let error = broken(&joined(&kept));
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.problem.contains("1 line(s) before it were removed"), "{error}");
    let first_removed = joined(&lines(&text)[1..]);
    assert_eq!(broken(&first_removed).line, Some(1));
}

#[test]
fn reordered_lines_are_reported_where_the_order_breaks() {
    let (_scratch, text) = log_of("reorder", 5);
    let mut swapped = lines(&text);
    swapped.swap(1, 3);
    let error = broken(&joined(&swapped));
    assert_eq!(error.line, Some(2), "{error}");
    assert!(error.problem.contains("record 2 is at line 4: lines were reordered"), "{error}");
}

#[test]
fn inserted_lines_are_reported_even_with_a_forged_chain() {
    let (_scratch, text) = log_of("insert", 4);
    let original = lines(&text);
    // A copy of line 2 inserted after it.
    let mut copied = original.clone();
    copied.insert(2, original[1]);
    let error = broken(&joined(&copied));
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.problem.contains("inserted"), "{error}");
    // A forged line that chains correctly to line 2: the line after it no longer does.
    let forged = Record {
        seq: 3,
        time: "2023-11-14T22:13:22Z".into(),
        actor: "mallory".into(),
        action: "key.generated".into(),
        target: "host-x".into(),
        before: None,
        after: None,
        detail: None,
        prev: line_hash(original[1].as_bytes()),
    };
    let forged = serde_json::to_string(&forged).unwrap();
    let mut inserted = original.clone();
    inserted.insert(2, &forged);
    let error = broken(&joined(&inserted));
    assert_eq!(error.line, Some(4), "{error}");
    assert!(error.problem.contains("record 3 again where 4 was due"), "{error}");
}

#[test]
fn the_end_of_the_log_is_covered_by_an_anchor() {
    let (_scratch, text) = log_of("anchor", 4);
    let head = verify(&text, None).unwrap().head;
    assert!(verify(&text, Some(&head)).is_ok());
    let all = lines(&text);
    // Cutting the last line, or editing it, goes unnoticed without the anchor only.
    let cut = joined(&all[..3]);
    let edited = joined(&[&all[..3], &[all[3].replacen("host-4", "host-5", 1).as_str()]].concat());
    for tampered in [cut, edited] {
        assert!(verify(&tampered, None).is_ok());
        let error = verify(&tampered, Some(&head)).unwrap_err();
        assert_eq!(error.line, None);
        assert!(error.problem.contains(&head), "{error}");
    }
    // An anchor from earlier still holds after more lines are appended.
    let earlier = verify(&joined(&all[..2]), None).unwrap().head;
    assert!(verify(&text, Some(&earlier)).is_ok());
    assert!(verify(&text, Some(GENESIS)).is_ok());
}

#[test]
fn garbage_and_torn_writes_are_refused_not_appended_to() {
    let (scratch, text) = log_of("torn", 2);
    let torn = format!("{text}{{\"seq\":3,\"time\"");
    let error = broken(&torn);
    assert_eq!(error.line, Some(3));
    assert!(error.problem.contains("incomplete"), "{error}");
    assert!(broken(&format!("{text}not json\n")).problem.contains("not an audit record"));

    std::fs::write(scratch.log(), &torn).unwrap();
    let mut audit = Audit::open(&scratch.log()).unwrap();
    assert!(matches!(audit.append(entry(3)), Err(Error::Refused(_))));
    std::fs::write(scratch.log(), format!("{text}not json\n")).unwrap();
    assert!(matches!(audit.append(entry(3)), Err(Error::Refused(_))));
    assert_eq!(std::fs::read_to_string(scratch.log()).unwrap(), format!("{text}not json\n"));
}

#[test]
fn long_lines_are_read_back_across_blocks() {
    let scratch = Scratch::new("long");
    let mut audit = Audit::open(&scratch.log()).unwrap();
    audit.append(entry(1).detail("x".repeat(10_000))).unwrap();
    audit.append(entry(2).detail("y".repeat(5_000))).unwrap();
    audit.append(entry(3)).unwrap();
    let text = std::fs::read_to_string(scratch.log()).unwrap();
    assert_eq!(verify(&text, None).unwrap().entries, 3);
}

#[test]
fn concurrent_writers_take_turns() {
    let scratch = Scratch::new("concurrent");
    Audit::open(&scratch.log()).unwrap();
    let writers: Vec<_> = (0..4u8)
        .map(|writer| {
            let path = scratch.log();
            std::thread::spawn(move || {
                let mut audit = Audit::open(&path).unwrap();
                for i in 0..25 {
                    audit.append(entry(writer * 25 + i)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let text = std::fs::read_to_string(scratch.log()).unwrap();
    assert_eq!(verify(&text, None).unwrap().entries, 100);
}

#[test]
fn fingerprints_are_short_one_way_hashes() {
    let fingerprint = Fingerprint::of_public_key(&key(7));
    assert_eq!(fingerprint.as_str().len(), 16);
    assert!(fingerprint.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(fingerprint, Fingerprint::of_contents(&[7; 32]));
    assert_ne!(fingerprint, Fingerprint::of_public_key(&key(8)));
    // SHA-256 of the empty string starts e3b0c442...
    assert_eq!(Fingerprint::of_contents(b"").as_str(), "e3b0c44298fc1c14");
    let parts = |pieces: &[&'static [u8]]| Fingerprint::of_parts(pieces.iter().copied());
    assert_eq!(parts(&[b"a/wg0.conf", b"x"]), parts(&[b"a/wg0.conf", b"x"]));
    assert_ne!(parts(&[b"a/wg0.conf", b"x"]), parts(&[b"a/wg0.conf", b"y"]));
    assert_ne!(parts(&[b"ab", b"c"]), parts(&[b"a", b"bc"]), "boundaries count");
}

#[test]
fn filters_select_by_target_action_prefix_and_time() {
    let record = |target: &str, action: &str, time: &str| Record {
        seq: 1,
        time: time.into(),
        actor: "a".into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: None,
        detail: None,
        prev: GENESIS.into(),
    };
    let generated = record("web", "key.generated", "2024-05-01T10:00:00Z");
    let written = record("db", "config.written", "2024-05-02T10:00:00Z");
    let all = Filter::default();
    assert!(all.matches(&generated) && all.matches(&written));
    let web = Filter { target: Some("web".into()), ..Filter::default() };
    assert!(web.matches(&generated) && !web.matches(&written));
    let keys = Filter { action: Some("key".into()), ..Filter::default() };
    assert!(keys.matches(&generated) && !keys.matches(&written));
    let prefix_only = Filter { action: Some("ke".into()), ..Filter::default() };
    assert!(!prefix_only.matches(&generated));
    let exact = Filter { action: Some("config.written".into()), ..Filter::default() };
    assert!(exact.matches(&written));
    let may_second = Filter { since: Some("2024-05-02".parse().unwrap()), ..Filter::default() };
    assert!(!may_second.matches(&generated) && may_second.matches(&written));
    let until =
        Filter { until: Some("2024-05-01T10:00:00Z".parse().unwrap()), ..Filter::default() };
    assert!(until.matches(&generated) && !until.matches(&written));
    let unreadable = record("web", "key.generated", "yesterday");
    assert!(all.matches(&unreadable) && !may_second.matches(&unreadable));
}

#[test]
fn action_names_are_unique_and_dotted() {
    let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Action::ALL.len());
    assert!(names.iter().all(|n| n.split('.').count() == 2));
}
