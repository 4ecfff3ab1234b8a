//! `wgfabric render` rewrites exactly the files whose bytes change: a render of an unchanged
//! inventory writes nothing, and an edit to one host rewrites only the files it changes.

mod util;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use util::{assert_code, stderr, Scratch};

// A public key from `wg pubkey` (wireguard-tools v1.0.20210914).
const NEW_KEY: &str = "vreiV32Fc+3EMQo3WGmmfRJ6Vy8WHQDgv9matssdIXo=";

/// A file as found: its inode and modification time (a rename over it changes the inode,
/// however quickly it happens) and its contents.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    inode: u64,
    mtime: (i64, i64),
    contents: Vec<u8>,
}

/// Every file under `root`, by path relative to it.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Found> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::metadata(&path).unwrap();
            if metadata.is_dir() {
                stack.push(path);
                continue;
            }
            let found = Found {
                inode: metadata.ino(),
                mtime: (metadata.mtime(), metadata.mtime_nsec()),
                contents: std::fs::read(&path).unwrap(),
            };
            files.insert(path.strip_prefix(root).unwrap().to_path_buf(), found);
        }
    }
    files
}

/// The files rewritten between two snapshots, checking that each was rewritten exactly when
/// its contents changed.
fn rewritten(before: &BTreeMap<PathBuf, Found>, after: &BTreeMap<PathBuf, Found>) -> Vec<String> {
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let mut rewritten = Vec::new();
    for (path, old) in before {
        let new = &after[path];
        let touched = (old.inode, old.mtime) != (new.inode, new.mtime);
        let changed = old.contents != new.contents;
        assert_eq!(touched, changed, "{}: rewritten {touched}, changed {changed}", path.display());
        if touched {
            rewritten.push(path.display().to_string());
        }
    }
    rewritten
}

/// The `written` and `unchanged` counts of the render's JSON summary event.
fn counts(output: &std::process::Output) -> (u64, u64) {
    let text = stderr(output);
    let summary = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["fields"]["written"].is_u64())
        .unwrap_or_else(|| panic!("no summary event in {text}"));
    let field = |name: &str| summary["fields"][name].as_u64().unwrap();
    (field("written"), field("unchanged"))
}

fn audited_hosts(scratch: &Scratch) -> Vec<String> {
    scratch
        .read("audit.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == "config.written")
        .map(|record| record["target"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_render_rewrites_only_the_files_that_change() {
    let scratch = Scratch::with_example();
    let render = ["render", "--locked", "--log-format", "json"];
    let first = scratch.run(&render);
    assert_code(&first, 0);
    let rendered = scratch.path("rendered");
    let initial = snapshot(&rendered);
    assert_eq!(counts(&first), (initial.len() as u64, 0));
    assert_eq!(audited_hosts(&scratch).len(), 7, "every host's files were written");

    let again = scratch.run(&render);
    assert_code(&again, 0);
    assert_eq!(counts(&again), (0, initial.len() as u64));
    let unchanged = snapshot(&rendered);
    assert_eq!(rewritten(&initial, &unchanged), Vec::<String>::new());
    assert_eq!(audited_hosts(&scratch).len(), 7, "nothing more to record");

    // A new key for laptop-ana changes what its peers, the relays, hold; its own files name
    // only its key file.
    let text = scratch.read("fabric.toml").replace(
        "public_key = \"lQHoZhX1IH7QKoFVyD+5cYLHkcWE9AgmSIO1FWSncQo=\"",
        &format!("public_key = \"{NEW_KEY}\""),
    );
    std::fs::write(scratch.path("fabric.toml"), text).unwrap();
    let edited = scratch.run(&render);
    assert_code(&edited, 0);
    let after = snapshot(&rendered);
    let expected = [
        "ansible-inventory.yml",
        "fabric.json",
        "relay-fra/50-wg0.netdev",
        "relay-fra/wg0.conf",
        "relay-fra/wg0.setconf",
        "relay-iad/50-wg0.netdev",
        "relay-iad/wg0.conf",
        "relay-iad/wg0.setconf",
        "state.json",
        "terraform.json",
    ];
    assert_eq!(rewritten(&unchanged, &after), expected);
    assert_eq!(counts(&edited), (expected.len() as u64, (initial.len() - expected.len()) as u64));
    assert_eq!(audited_hosts(&scratch)[7..], ["relay-fra", "relay-iad"]);
}
