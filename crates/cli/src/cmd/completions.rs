//! `wgfabric completions SHELL`: completion scripts, generated from the same command
//! definitions as `--help`, so they never fall behind the verbs.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{print, Cli};

/// Print a shell completion script for wgfabric.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric completions bash | sudo tee /etc/bash_completion.d/wgfabric\n  \
wgfabric completions zsh > ~/.zfunc/_wgfabric      # with fpath+=(~/.zfunc) in ~/.zshrc\n  \
wgfabric completions fish > ~/.config/fish/completions/wgfabric.fish"
)]
pub(crate) struct Args {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "wgfabric", &mut script);
    print(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser as _;

    use super::*;

    /// The `wgfabric ...` command lines of a help text's indented example lines: comments
    /// cut, each pipeline stage and `;`-separated command on its own, redirections and
    /// `sudo`/`cargo run` dropped.
    fn example_command_lines(help: &str) -> Vec<Vec<String>> {
        let mut lines = Vec::new();
        for line in joined(help).lines().filter(|line| line.starts_with("  ")) {
            let line = line.split(" #").next().unwrap_or_default().replace(" -- ", " ");
            for part in line.split(['|', ';', '(', ')', '&']) {
                let Some(start) = part.find("wgfabric ") else { continue };
                let command = part[start..].split(['>', '<']).next().unwrap_or_default();
                lines.push(command.split_whitespace().map(str::to_owned).collect());
            }
        }
        lines
    }

    /// `text` with shell line continuations (a `\` ending a line) joined into one line.
    fn joined(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let mut line = line.to_owned();
            while line.ends_with('\\') {
                line.pop();
                match lines.next() {
                    Some(next) => line.push_str(&format!(" {}", next.trim_start())),
                    None => break,
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn every_verb_has_help_with_examples_that_parse() {
        let cli = Cli::command();
        for verb in cli.get_subcommands() {
            let name = verb.get_name();
            let help = verb.get_after_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains("Example"), "`wgfabric {name} --help` shows no example");
            let examples = example_command_lines(&help);
            assert!(
                examples.iter().any(|argv| argv.get(1).map(String::as_str) == Some(name)),
                "`wgfabric {name} --help` has no `wgfabric {name} ...` example: {help}"
            );
            for argv in examples {
                if let Err(error) = Cli::try_parse_from(&argv) {
                    panic!("example `{}` of `{name}` does not parse:\n{error}", argv.join(" "));
                }
            }
        }
    }

    /// The reference pages whose example blocks are not run by the docs test: their
    /// `wgfabric` command lines must at least parse, so they cannot drift from the verbs.
    /// They are read when the test runs, from the repository's docs/.
    const REFERENCE_PAGES: [&str; 5] =
        ["docs/cli.md", "docs/metrics.md", "docs/agent.md", "docs/rotation.md", "docs/audit.md"];

    #[test]
    fn every_command_in_the_reference_pages_parses() {
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut checked = 0;
        for page in REFERENCE_PAGES {
            let path = repository.join(page);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            // Inside a fenced block, its info string. Commands are the lines of untagged and
            // `sh` blocks, and the `$ ` lines of `text` blocks (the rest is their output);
            // configuration files (ini, toml, json, ...) hold none.
            let mut block: Option<&str> = None;
            let text = joined(&text);
            for (number, line) in text.lines().enumerate() {
                if let Some(info) = line.strip_prefix("```") {
                    block = match block {
                        Some(_) => None,
                        None => Some(info.trim()),
                    };
                    continue;
                }
                let in_block = match block {
                    Some("" | "sh") => true,
                    Some("text") => line.starts_with("$ "),
                    _ => false,
                };
                // Synopsis lines (`[OPTION]`, `A|B`, `...`) and diagrams describe; they are not
                // commands.
                let synopsis = line.contains('[') || line.contains("...") || line.contains("|json");
                if !in_block || synopsis || !line.is_ascii() {
                    continue;
                }
                let command = line.trim_start_matches("$ ");
                for argv in example_command_lines(&format!("  {command}")) {
                    checked += 1;
                    if let Err(error) = Cli::try_parse_from(&argv) {
                        panic!(
                            "{page}:{}: `{}` does not parse:\n{error}",
                            number + 1,
                            argv.join(" ")
                        );
                    }
                }
            }
        }
        assert!(checked > 10, "only {checked} commands found in the reference pages");
    }

    #[test]
    fn example_lines_are_cut_like_a_shell_would() {
        let help = "Examples:\n  (umask 077; wgfabric genkey > private.key)\n  \
                    wgfabric genkey | tee k | wgfabric pubkey   # pipes\n  \
                    sudo cargo run --release --bin wgfabric -- demo\n\
                    Prose about `wgfabric plan` is not an example.";
        let lines: Vec<String> =
            example_command_lines(help).into_iter().map(|argv| argv.join(" ")).collect();
        assert_eq!(
            lines,
            ["wgfabric genkey", "wgfabric genkey", "wgfabric pubkey", "wgfabric demo"]
        );
    }

    #[test]
    fn completions_cover_every_verb() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "wgfabric", &mut script);
            let script = String::from_utf8(script).unwrap();
            for verb in Cli::command().get_subcommands() {
                assert!(script.contains(verb.get_name()), "{shell} lacks {}", verb.get_name());
            }
        }
    }
}
