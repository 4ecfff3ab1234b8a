use super::*;

const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

fn source(words: &[&str]) -> KeySource {
    KeySource::from_words(words).unwrap()
}

fn refused(words: &[&str]) -> String {
    KeySource::from_words(words).unwrap_err().to_string()
}

#[test]
fn the_three_forms_parse_and_print_back() {
    for words in [
        &["file:/etc/wgfabric/private.key"][..],
        &["systemd-credential:wgfabric.key"],
        &["exec:pass", "show", "wgfabric/laptop ana"],
    ] {
        assert_eq!(source(words).words(), words);
    }
    let file = source(&["file:/etc/wgfabric/private.key"]);
    assert_eq!(file.file().map(HostPath::as_str), Some("/etc/wgfabric/private.key"));
    assert_eq!(source(&["exec:vault", "kv", "get"]).to_string(), "exec:vault kv get");
}

#[test]
fn json_and_toml_carry_a_string_or_a_list() {
    let exec = source(&["exec:pass", "show", "k"]);
    assert_eq!(serde_json::to_string(&exec).unwrap(), r#"["exec:pass","show","k"]"#);
    let file = source(&["file:/k"]);
    assert_eq!(serde_json::to_string(&file).unwrap(), r#""file:/k""#);
    for source in [exec, file] {
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(serde_json::from_str::<KeySource>(&json).unwrap(), source);
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        key_source: KeySource,
    }
    let doc: Doc =
        toml::from_str(r#"key_source = ["exec:sops", "-d", "--extract", '["wg"]', "k.yaml"]"#)
            .unwrap();
    assert_eq!(doc.key_source.words()[3], r#"["wg"]"#);
    let error = toml::from_str::<Doc>("key_source = 3").err().unwrap().to_string();
    assert!(error.contains("a key source is a string or a list of strings"), "{error}");
}

#[test]
fn bad_sources_are_refused_with_the_fix() {
    assert!(refused(&[]).contains("empty key source"));
    assert!(refused(&["etc/wgfabric/private.key"]).contains("is not a key source; write"));
    assert!(refused(&["file:keys/private.key"]).contains("not an absolute path"));
    assert!(refused(&["file:/etc/k;reboot"]).contains("contains `;`"));
    assert!(refused(&["file:/k", "x"]).contains("only an `exec:` source takes arguments"));
    assert!(refused(&["exec:"]).contains("needs a program"));
    assert!(refused(&["systemd-credential:../k"]).contains("not a systemd credential name"));
    assert!(refused(&["systemd-credential:"]).contains("not a systemd credential name"));
    let newline = refused(&["exec:pass", "show\nPostUp = reboot"]);
    assert!(newline.contains("control character \\n") && !newline.contains('\n'), "{newline}");
    assert!(refused(&["exec:pass", "a#b"]).contains("contains `#`"));
    assert!(refused(&["exec:pass", "%i"]).contains("contains `%`"));
}

#[test]
fn shell_words_come_back_as_the_same_argv() {
    let words = ["exec:get-key", "it's", "a b", "$HOME", "`x`", "\"q\"", "ok/1.2:3"];
    let quoted = source(&words).shell_words();
    assert_eq!(quoted[0], "exec:get-key");
    assert_eq!(quoted[1], r"'it'\''s'");
    assert_eq!(quoted[6], "ok/1.2:3");
    let script = format!("for w in {}; do printf '%s\\n' \"$w\"; done", quoted.join(" "));
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let back: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(back, words);
}

#[test]
fn a_command_gets_the_host_and_interface_and_its_first_line_is_the_key() {
    let script = format!(
        "test \"$WGFABRIC_HOST\" = laptop && test \"$WGFABRIC_INTERFACE\" = wg0 && \
         printf '{KEY}\\nnotes after the key\\n'"
    );
    let key = source(&["exec:sh", "-c", &script]).fetch("laptop", "wg0", DEFAULT_TIMEOUT).unwrap();
    assert_eq!(key.to_base64_secret().as_str(), KEY);
    let wrong_host = source(&["exec:sh", "-c", &script]).fetch("other", "wg0", DEFAULT_TIMEOUT);
    assert!(wrong_host.unwrap_err().to_string().contains("it failed"));
}

#[test]
fn a_failing_slow_or_wrong_command_is_a_clear_error_that_holds_no_output() {
    let failed =
        source(&["exec:sh", "-c", "echo 'Error: wg/x is not in the password store.' >&2; exit 1"])
            .fetch("h", "wg0", DEFAULT_TIMEOUT)
            .unwrap_err()
            .to_string();
    assert!(
        failed.contains("it failed") && failed.contains("is not in the password store"),
        "{failed}"
    );

    let slow = source(&["exec:sleep", "5"]).fetch("h", "wg0", Duration::from_millis(100));
    assert!(slow.unwrap_err().to_string().contains("no key within 0.1 s"));

    // Prints "frpergfrperg" (rot13), which appears nowhere in the command.
    let rot13 = "echo secretsecret | tr a-z n-za-m";
    let wrong = source(&["exec:sh", "-c", rot13]).fetch("h", "wg0", DEFAULT_TIMEOUT).unwrap_err();
    assert!(wrong.to_string().contains("is not a private key"), "{wrong}");
    assert!(!wrong.to_string().contains("frperg"), "the output stays out of the message");

    let missing = source(&["exec:/nonexistent/get-key"]).fetch("h", "wg0", DEFAULT_TIMEOUT);
    assert!(missing.unwrap_err().to_string().contains("cannot run /nonexistent/get-key"));
}

#[test]
fn a_file_source_reads_a_private_file_and_a_credential_needs_systemd() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("wgfabric-keysource-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("private.key");
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = source(&[&format!("file:{}", path.display())]);
    assert_eq!(file.fetch("h", "wg0", DEFAULT_TIMEOUT).unwrap().to_base64_secret().as_str(), KEY);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(file.fetch("h", "wg0", DEFAULT_TIMEOUT).unwrap_err().to_string().contains("chmod 600"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bare_absolute_path_is_a_file() {
    assert_eq!(source(&["/etc/wgfabric/private.key"]), source(&["file:/etc/wgfabric/private.key"]));
}

#[test]
fn a_credential_is_read_from_the_directory_systemd_passes() {
    use std::os::unix::fs::PermissionsExt as _;
    let unset = read_credential(None, "wg.key").unwrap_err().to_string();
    assert!(
        unset.contains("$CREDENTIALS_DIRECTORY is not set")
            && unset.contains("LoadCredential=wg.key:")
    );
    let dir = std::env::temp_dir().join(format!("wgfabric-credentials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wg.key");
    std::fs::write(&path, KEY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let key = read_credential(Some(dir.clone().into_os_string()), "wg.key").unwrap();
    assert_eq!(key.to_base64_secret().as_str(), KEY);
    let missing = read_credential(Some(dir.clone().into_os_string()), "other").unwrap_err();
    assert!(missing.to_string().starts_with("systemd credential `other`: "), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
