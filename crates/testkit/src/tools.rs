//! External tools and machine properties a scenario needs, and the policy when one is missing:
//! fail in CI (where `scripts/test` installs everything), skip with a printed reason elsewhere.

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("wgfabric-no-such-tool"));
    }
}
