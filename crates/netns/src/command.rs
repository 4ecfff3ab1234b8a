//! Commands run to completion, and errors that tell the whole story when they fail.

use core::fmt;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// A command that failed, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command line, space-separated.
    pub command: String,
    /// Its exit code; `None` if it could not start or was killed by a signal.
    pub status: Option<i32>,
    /// What it printed on standard output.
    pub stdout: String,
    /// What it printed on standard error (or why it could not start).
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(code) => write!(f, "`{}` exited with status {code}", self.command)?,
            None => write!(f, "`{}` did not run to completion", self.command)?,
        }
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            write!(f, ": {stderr}")?;
        }
        let stdout = self.stdout.trim();
        if !stdout.is_empty() {
            write!(f, "\n--- stdout ---\n{stdout}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

impl From<CommandError> for std::io::Error {
    fn from(error: CommandError) -> Self {
        Self::other(error)
    }
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` to completion and returns its standard output.
///
/// # Errors
/// When it cannot start or exits unsuccessfully.
pub fn run_command(command: &mut Command) -> Result<String, CommandError> {
    run_with_input(command, None)
}

/// Runs `command` with `input` on its standard input (so that secrets never touch a file)
/// and returns its standard output.
///
/// # Errors
/// When it cannot start or exits unsuccessfully. The input is never part of the error.
pub fn run_with_input(command: &mut Command, input: Option<&[u8]>) -> Result<String, CommandError> {
    let line = describe(command);
    let failed = |stderr: String| CommandError {
        command: line.clone(),
        status: None,
        stdout: String::new(),
        stderr,
    };
    command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).map_err(|e| failed(format!("writing its input: {e}")))?;
    }
    outcome(line, child.wait_with_output())
}

/// What a finished command amounts to: its standard output, or everything needed to see why
/// it failed.
pub(crate) fn outcome(
    command: String,
    output: std::io::Result<Output>,
) -> Result<String, CommandError> {
    let Output { status, stdout, stderr } = output.map_err(|error| CommandError {
        command: command.clone(),
        status: None,
        stdout: String::new(),
        stderr: error.to_string(),
    })?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    if status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    Err(CommandError { command, status: status.code(), stdout, stderr })
}

/// Runs `argv` (program first) on this host's own network stack.
///
/// # Errors
/// As [`run_command`].
pub fn run_argv(argv: &[&str]) -> Result<String, CommandError> {
    let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
    run_command(Command::new(program).args(args))
}

/// Runs `argv` in this host's own network stack, for tests.
///
/// # Panics
/// When the command fails, with the whole story.
pub fn run(argv: &[&str]) -> String {
    run_argv(argv).unwrap_or_else(|error| panic!("{error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_commands_say_what_ran_and_why() {
        let error = run_command(Command::new("sh").args(["-c", "echo out; echo oops >&2; exit 3"]))
            .unwrap_err();
        assert_eq!(error.status, Some(3));
        assert_eq!(
            error.to_string(),
            "`sh -c echo out; echo oops >&2; exit 3` exited with status 3: oops\n--- stdout ---\nout"
        );
        let missing = run_command(&mut Command::new("/nonexistent/wgfabric-tool")).unwrap_err();
        assert_eq!(missing.status, None);
        assert_eq!(run_argv(&["echo", "hi"]).unwrap(), "hi\n");
        assert_eq!(run(&["echo", "hi"]), "hi\n");
    }

    #[test]
    fn input_goes_to_standard_input_and_never_into_errors() {
        assert_eq!(
            run_with_input(&mut Command::new("cat"), Some(b"secret\n")).unwrap(),
            "secret\n"
        );
        let error = run_with_input(
            Command::new("sh").args(["-c", "cat >/dev/null; exit 1"]),
            Some(b"secret"),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }
}
