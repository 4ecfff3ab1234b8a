//! Reading a daemon's `--metrics` from inside its namespace, as Prometheus would, and running
//! wgfabricd with extra flags under testkit's launcher.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::daemon::Impl;
use wgfabric_netns::Netns;

/// `GET /metrics` on `127.0.0.1:port` from inside `ns`, with bash's /dev/tcp (no HTTP client
/// needed); the body, after checking the status and content type.
///
/// # Panics
/// When the request fails or the answer is not a Prometheus text exposition.
pub fn scrape(ns: &Netns, port: u16) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && \
         printf 'GET /metrics HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let response = ns.run(&["bash", "-c", &script]);
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The value of the sample of `family` whose labels contain every one of `labels`.
pub fn metric_value(text: &str, family: &str, labels: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// An executable script that runs `daemon` with extra flags, so testkit can start it as it
/// starts the daemon itself. Removed on drop.
#[derive(Debug)]
pub struct WithFlags(PathBuf);

impl WithFlags {
    /// A script that runs `daemon FLAGS "$@"`.
    ///
    /// # Panics
    /// When the script cannot be written.
    pub fn new(daemon: &Path, flags: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wgfabricd-wrapper-{}-{n}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let script = format!("#!/bin/sh\nexec {} {flags} \"$@\"\n", daemon.display());
        file.write_all(script.as_bytes())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self(path)
    }

    /// The wrapped daemon, for [`crate::Daemon::start`].
    pub fn implementation(&self) -> Impl {
        Impl::Wgfabricd(self.0.clone())
    }
}

impl Drop for WithFlags {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
