//! External tools and machine properties a scenario needs, and the policy when one is missing:
//! fail in CI (where `scripts/test` installs everything), skip with a printed reason elsewhere.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a scenario did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks that `program` is on `PATH`.
///
/// # Errors
/// [`Skip`] (already printed) when it is missing and `CI` is not set.
///
/// # Panics
/// When it is missing and `CI` is set: CI must run every scenario.
pub fn require_tool(program: &str) -> Result<(), Skip> {
    require(on_path(program), &format!("{program} is not installed (scripts/test installs it)"))
}

/// Checks a precondition of the machine that a scenario needs, with the same policy as
/// [`require_tool`]: `reason` says what is wrong when `met` is false.
///
/// # Errors
/// [`Skip`] (already printed) when it is not met and `CI` is not set.
///
/// # Panics
/// When it is not met and `CI` is set: CI must run every scenario.
pub fn require(met: bool, reason: &str) -> Result<(), Skip> {
    if met {
        return Ok(());
    }
    assert!(std::env::var_os("CI").is_none(), "{reason}");
    eprintln!("SKIPPED: {reason}");
    Err(Skip(reason.to_owned()))
}

/// Asserts that Prometheus's own linter, `promtool check metrics`, accepts `text` without a
/// remark. Where promtool is missing the check is skipped, with the policy of
/// [`require_tool`].
///
/// # Panics
/// When promtool refuses `text` or remarks on it, cannot be run, or is missing in CI.
pub fn assert_promtool_accepts(text: &str) {
    if require_tool("promtool").is_err() {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("promtool's standard input is piped");
    stdin.write_all(text.as_bytes()).expect("promtool reads its input");
    drop(stdin);
    let output = child.wait_with_output().expect("promtool finishes");
    let report = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool refused the output:\n{report}\n---\n{text}");
    assert!(report.trim().is_empty(), "promtool has remarks:\n{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("wgfabric-no-such-tool"));
    }
}
