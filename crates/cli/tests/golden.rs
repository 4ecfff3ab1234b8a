//! The example fleet's renders, graph and check output, compared byte for byte with the files
//! under `tests/golden/`. Run with `UPDATE_GOLDEN=1` to rewrite them after a deliberate change.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use util::{assert_code, stdout, Scratch};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn files_under(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                files.insert(relative, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn example_fleet_matches_golden_files() {
    let scratch = Scratch::with_example();
    let out = scratch.path("out");
    let render = scratch.run(&["render", "--locked", "--out", out.to_str().unwrap()]);
    assert_code(&render, 0);
    for (name, args) in [
        ("graph.dot", &["graph"][..]),
        ("graph.mmd", &["graph", "--format", "mermaid"][..]),
        ("check.txt", &["check", "--locked"][..]),
    ] {
        let output = scratch.run(args);
        assert_code(&output, 0);
        std::fs::write(out.join(name), stdout(&output)).unwrap();
    }
    let actual = files_under(&out);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(golden_dir());
        for (path, contents) in &actual {
            let target = golden_dir().join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, contents).unwrap();
        }
    }
    let expected = files_under(&golden_dir());
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "set of rendered files differs (UPDATE_GOLDEN=1 to refresh)"
    );
    for (path, contents) in &actual {
        assert!(
            expected[path] == *contents,
            "{} differs from its golden file (UPDATE_GOLDEN=1 to refresh)",
            path.display()
        );
    }
}
