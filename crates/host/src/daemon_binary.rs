//! Finding the `wgfabricd` executable, for `wgfabric up` and the demo.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The daemon's program name.
pub const DAEMON: &str = "wgfabricd";

/// No daemon executable where one was looked for; the message says where and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MissingDaemon(String);

/// Finds `wgfabricd`: `explicit` if given, else next to the running executable (or one level
/// up, where `cargo test` binaries live in `deps/`), else on `PATH`.
///
/// # Errors
/// [`MissingDaemon`] saying where it looked and how to build it.
pub fn locate_daemon(explicit: Option<&Path>) -> Result<PathBuf, MissingDaemon> {
    if let Some(path) = explicit {
        return if is_executable(path) {
            Ok(path.to_owned())
        } else {
            Err(MissingDaemon(format!("{} is not an executable file", path.display())))
        };
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        [dir, dir.parent()?].into_iter().map(|dir| dir.join(DAEMON)).find(|p| is_executable(p))
    });
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join(DAEMON)).find(|p| is_executable(p))
        })
    };
    beside.or_else(on_path).ok_or_else(|| {
        MissingDaemon(format!(
            "{DAEMON} was found neither next to this executable nor on PATH; build it with \
             `cargo build --release -p {DAEMON}` or pass --daemon PATH"
        ))
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_daemon_is_named() {
        let error = locate_daemon(Some(Path::new("/nonexistent/wgfabricd"))).unwrap_err();
        assert_eq!(error.to_string(), "/nonexistent/wgfabricd is not an executable file");
    }
}
