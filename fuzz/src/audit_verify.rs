//! `audit_verify`: audit log verification (`wgfabric_audit::verify`), record parsing,
//! timestamps and filters.
//!
//! The input is first verified as it is, with and without an anchor. Then its lines that read
//! as records are chained into a valid log (each `seq` and `prev` set as `Audit::append` sets
//! them), which must verify; the first input byte then picks a tampering (edit, removal, swap
//! or insertion of a line), which must be caught where `verify`'s table says.

use wgfabric_audit::verify::verify;
use wgfabric_audit::{line_hash, Filter, Record, Timestamp, GENESIS};

/// Records chained at most.
const MAX_RECORDS: usize = 64;

fn chain(records: &mut [Record]) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    let mut lines = Vec::with_capacity(records.len());
    for (i, record) in records.iter_mut().enumerate() {
        record.seq = i as u64 + 1;
        record.prev = prev;
        let line = serde_json::to_string(record).expect("a record serializes");
        prev = line_hash(line.as_bytes());
        lines.push(line);
    }
    lines
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn timestamps(record: &Record) {
    if let Some(time) = record.timestamp() {
        let shown = time.to_string();
        assert_eq!(shown.parse::<Timestamp>(), Ok(time), "{shown} reads differently");
    }
    let now = Timestamp::from_unix(1_780_000_000);
    for text in [record.target.as_str(), record.time.as_str()] {
        if let Ok(time) = Timestamp::parse_relative(text, now) {
            let filter = Filter { since: Some(time), until: Some(time), ..Filter::default() };
            let _ = filter.matches(record);
        }
    }
    let filter = Filter {
        target: Some(record.target.clone()),
        action: record.action.split('.').next().map(str::to_owned),
        since: None,
        until: None,
    };
    assert!(filter.matches(record), "a record matches its own target and action");
}

pub fn run(data: &[u8]) {
    let Some((&tamper, rest)) = data.split_first() else { return };
    let input = String::from_utf8_lossy(rest);

    // As it is.
    match verify(&input, None) {
        Ok(verified) => {
            assert_eq!(verify(&input, Some(&verified.head)), Ok(verified.clone()));
            assert!(verify(&input, Some(&line_hash(b"not a line"))).is_err());
        }
        Err(broken) => {
            let _ = broken.to_string();
        }
    }

    // Chained.
    let mut records: Vec<Record> =
        input.lines().filter_map(|line| Record::parse(line).ok()).take(MAX_RECORDS).collect();
    for record in &records {
        timestamps(record);
    }
    let lines = chain(&mut records);
    let log = text(&lines);
    let verified = verify(&log, None).unwrap_or_else(|b| panic!("a chained log fails: {b}"));
    assert_eq!(verified.entries, lines.len() as u64);
    assert_eq!(verify(&log, Some(&verified.head)), Ok(verified.clone()));
    if lines.len() < 2 {
        return;
    }

    let n = lines.len();
    let at = usize::from(tamper >> 2) % (n - 1); // never the last line: nothing follows it
    let mut tampered = lines.clone();
    let expected_line = match tamper & 3 {
        0 => {
            // An edit: the next line's prev no longer matches.
            tampered[at].insert(1, ' ');
            at + 2
        }
        1 => {
            // A removal: the line after it has the wrong seq.
            tampered.remove(at);
            at + 1
        }
        2 => {
            // A swap with the next line.
            tampered.swap(at, at + 1);
            at + 1
        }
        _ => {
            // A copy of a line inserted before it.
            tampered.insert(at, lines[at].clone());
            at + 2
        }
    };
    let broken =
        verify(&text(&tampered), Some(&verified.head)).expect_err("a tampered log verifies");
    assert_eq!(broken.line, Some(expected_line), "{broken}");

    // Lines cut off the end show only against an anchor.
    let cut = &lines[..n - 1];
    assert!(verify(&text(cut), None).is_ok());
    assert!(verify(&text(cut), Some(&verified.head)).is_err());
}
