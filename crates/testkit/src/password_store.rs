//! A throwaway `pass` password store (the standard Unix password manager) with a GPG key made
//! for it, for tests of key sources against a real secrets manager. Dropping it removes both.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::tools::{require_tool, Skip};

/// A password store and its GPG home in a scratch directory.
#[derive(Debug)]
pub struct PasswordStore {
    dir: PathBuf,
}

impl PasswordStore {
    /// Makes a GPG key without a passphrase and a store encrypted to it.
    ///
    /// # Errors
    /// [`Skip`] when `pass` or `gpg` is not installed outside CI.
    ///
    /// # Panics
    /// When GPG or `pass` fails; the message includes what they said.
    pub fn new() -> Result<Self, Skip> {
        require_tool("pass")?;
        require_tool("gpg")?;
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wgfabric-pass-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("gnupg")).expect("creating the scratch directory");
        let store = Self { dir };
        std::fs::set_permissions(
            store.dir.join("gnupg"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("gnupg home is private");
        let user = "wgfabric-test@example.invalid";
        store.run(
            &[
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                user,
                "default",
                "default",
                "never",
            ],
            None,
        );
        store.run(&["pass", "init", user], None);
        Ok(store)
    }

    /// Stores `secret` under `name`.
    ///
    /// # Panics
    /// When `pass insert` fails.
    pub fn insert(&self, name: &str, secret: &str) {
        self.run(&["pass", "insert", "--multiline", name], Some(secret));
    }

    /// The environment `pass` needs to find this store: `NAME=VALUE` pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("GNUPGHOME".into(), self.dir.join("gnupg").display().to_string()),
            ("PASSWORD_STORE_DIR".into(), self.dir.join("store").display().to_string()),
        ]
    }

    fn run(&self, argv: &[&str], stdin: Option<&str>) {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", argv[0]));
        let mut input = child.stdin.take().expect("piped");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("writing to pass");
        }
        drop(input);
        let out = child.wait_with_output().expect("waiting");
        assert!(
            out.status.success(),
            "`{}` failed: {}{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PasswordStore {
    fn drop(&mut self) {
        // The agent GPG started for this home would outlive it otherwise.
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
