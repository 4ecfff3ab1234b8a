//! Tests of staged writes: all or nothing, modes, and targets left alone when unchanged.

use std::os::unix::fs::MetadataExt as _;

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgfabric-files-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Inode and modification time: both stay when a file is left alone.
fn identity(path: &Path) -> (u64, i64, i64) {
    let metadata = fs::metadata(path).unwrap();
    (metadata.ino(), metadata.mtime(), metadata.mtime_nsec())
}

fn stream(set: &mut FileSet, path: &Path, text: &str) -> Staged {
    // Many small writes, as a serializer makes them.
    set.stage_streamed(path, PUBLIC_MODE, |out| {
        text.as_bytes().chunks(7).try_for_each(|chunk| out.write_all(chunk))
    })
    .unwrap()
}

#[test]
fn secrets_are_created_0600_and_checked() {
    let dir = scratch("secret");
    let path = dir.join("private.key");
    write_atomically(&path, b"k\n", SECRET_MODE).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    check_secret_mode(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = check_secret_mode(&path).unwrap_err();
    assert!(err.to_string().contains(&format!("run `chmod 600 {}`", path.display())), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failing_set_writes_nothing() {
    let dir = scratch("set");
    fs::create_dir_all(&dir).unwrap();
    // A file where a directory should be makes the second file unwritable.
    let blocked = dir.join("blocked");
    fs::write(&blocked, b"").unwrap();
    let files = [
        PendingFile { path: dir.join("a/one.conf"), contents: b"1", mode: PUBLIC_MODE },
        PendingFile { path: blocked.join("x"), contents: b"2", mode: PUBLIC_MODE },
    ];
    assert!(write_all_or_nothing(&files).is_err());
    assert!(!dir.join("a/one.conf").exists());
    let leftovers: Vec<_> = fs::read_dir(dir.join("a")).unwrap().collect();
    assert!(leftovers.is_empty(), "temporaries removed: {leftovers:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unchanged_files_are_left_alone_and_changed_ones_replaced() {
    let dir = scratch("unchanged");
    let (same, edited, secret) = (dir.join("same"), dir.join("edited"), dir.join("secret"));
    write_atomically(&same, b"same\n", PUBLIC_MODE).unwrap();
    write_atomically(&edited, b"old\n", PUBLIC_MODE).unwrap();
    write_atomically(&secret, b"key\n", PUBLIC_MODE).unwrap();
    let before = identity(&same);

    let mut set = FileSet::new(0o755);
    assert!(matches!(set.stage(&same, b"same\n", PUBLIC_MODE).unwrap(), Staged::Unchanged));
    let Staged::Changed { previous } = set.stage(&edited, b"new\n", PUBLIC_MODE).unwrap() else {
        panic!("edited is staged");
    };
    assert_eq!(previous.as_deref().map(Vec::as_slice), Some(&b"old\n"[..]));
    // Same bytes, but the mode must tighten.
    assert!(matches!(set.stage(&secret, b"key\n", SECRET_MODE).unwrap(), Staged::Changed { .. }));
    let fresh = dir.join("sub/fresh");
    let Staged::Changed { previous } = set.stage(&fresh, b"f", PUBLIC_MODE).unwrap() else {
        panic!("a missing file is staged");
    };
    assert!(previous.is_none());
    assert_eq!(fs::read(&edited).unwrap(), b"old\n", "nothing is replaced before commit");

    assert_eq!(set.commit().unwrap(), Committed { written: 3, unchanged: 1 });
    assert_eq!(identity(&same), before);
    assert_eq!(fs::read(&edited).unwrap(), b"new\n");
    assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, SECRET_MODE);
    assert_eq!(fs::read(&fresh).unwrap(), b"f");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn streamed_files_are_compared_as_they_are_written() {
    let dir = scratch("streamed");
    let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let path = dir.join("big.json");
    write_atomically(&path, text.as_bytes(), PUBLIC_MODE).unwrap();
    let before = identity(&path);

    let mut set = FileSet::new(0o755);
    assert!(matches!(stream(&mut set, &path, &text), Staged::Unchanged));
    assert_eq!(set.commit().unwrap(), Committed { written: 0, unchanged: 1 });
    assert_eq!(identity(&path), before);

    let middle = text.replacen("line 15000\n", "line 15000 changed\n", 1);
    let shorter = &text[..text.len() - 1];
    let longer = format!("{text}more\n");
    for (edited, expected) in
        [(middle.as_str(), middle.as_str()), (shorter, shorter), (longer.as_str(), longer.as_str())]
    {
        let mut set = FileSet::new(0o755);
        assert!(matches!(stream(&mut set, &path, edited), Staged::Changed { .. }));
        assert_eq!(set.commit().unwrap().written, 1);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    }
    let missing = dir.join("missing.json");
    let mut set = FileSet::new(0o755);
    assert!(matches!(stream(&mut set, &missing, "{}\n"), Staged::Changed { .. }));
    drop(set);
    assert!(!missing.exists(), "an uncommitted set writes nothing");
    let leftovers = fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "only big.json, no temporaries");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_large_set_is_committed_whole() {
    let dir = scratch("large");
    let mut set = FileSet::new(0o755);
    let count = SYNC_EACH_LIMIT * 3;
    for index in 0..count {
        let path = dir.join(format!("host-{}/file-{index}", index % 5));
        set.stage(&path, index.to_string().as_bytes(), PUBLIC_MODE).unwrap();
    }
    assert_eq!(set.commit().unwrap(), Committed { written: count, unchanged: 0 });
    for index in 0..count {
        let path = dir.join(format!("host-{}/file-{index}", index % 5));
        assert_eq!(fs::read_to_string(path).unwrap(), index.to_string());
    }
    fs::remove_dir_all(dir).unwrap();
}
