//! The verbs, one module each, and what they share: where the inventory is, how output is
//! formatted, and how the lock file is kept.

mod addresses;
mod agent;
mod apply;
mod audit;
mod check;
mod completions;
mod demo;
mod down;
mod explain;
mod exporter;
mod fetchkey;
mod genkey;
mod genpsk;
mod graph;
mod keygen;
mod paths;
mod plan;
mod probe;
mod progress;
mod pubkey;
mod render;
mod rotate;
mod show;
mod source;
mod trail;
mod up;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use wgfabric_model::files::{write_atomically, PUBLIC_MODE};
use wgfabric_model::lint::{check, findings_text, has_errors, Report};
use wgfabric_model::sealed_keys::Identities;
use wgfabric_model::{Fabric, Lock};

use crate::logging::LogFormat;
pub(crate) use source::{EtcdArgs, SourceArgs};

/// Exit code when a verb found something (lint errors, plan changes with --exit-code).
pub(crate) const FINDINGS: u8 = 1;

/// WireGuard fabric controller: one Git-versioned inventory renders, lints and keys every host.
#[derive(Debug, Parser)]
#[command(name = "wgfabric", version, about, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 findings (lint errors, plan changes with --exit-code), 2 errors.\n\
See docs/cli.md for the full reference and docs/inventory.md for fabric.toml."
)]
pub(crate) struct Cli {
    /// How lifecycle events on standard error look: plain messages, or one JSON object per
    /// line with every field (for journald and log collectors).
    #[arg(long, global = true, value_enum, env = "WGFABRIC_LOG_FORMAT", default_value_t)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(check::Args),
    Render(render::Args),
    Plan(plan::Args),
    Addresses(addresses::Args),
    Graph(graph::Args),
    Explain(explain::Args),
    Keygen(keygen::Args),
    Genkey(genkey::Args),
    Pubkey(pubkey::Args),
    Genpsk(genpsk::Args),
    Fetchkey(fetchkey::Args),
    Exporter(exporter::Args),
    Audit(audit::Args),
    Demo(demo::Args),
    Completions(completions::Args),
    Apply(apply::Args),
    Agent(agent::Args),
    Rotate(rotate::Args),
    Up(up::Args),
    Down(down::Args),
    Show(show::Args),
    Probe(probe::Args),
    Paths(paths::Args),
}

impl Cli {
    /// The log format asked for.
    pub(crate) fn log_format(&self) -> LogFormat {
        self.log_format
    }

    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Check(args) => check::run(args),
            Command::Render(args) => render::run(args),
            Command::Plan(args) => plan::run(args),
            Command::Addresses(args) => addresses::run(args),
            Command::Graph(args) => graph::run(args),
            Command::Explain(args) => explain::run(args),
            Command::Keygen(args) => keygen::run(args),
            Command::Genkey(args) => genkey::run(args),
            Command::Pubkey(args) => pubkey::run(args),
            Command::Genpsk(args) => genpsk::run(args),
            Command::Fetchkey(args) => fetchkey::run(args),
            Command::Exporter(args) => exporter::run(args),
            Command::Audit(args) => audit::run(args),
            Command::Demo(args) => demo::run(args),
            Command::Completions(args) => completions::run(args),
            Command::Apply(args) => apply::run(args),
            Command::Agent(args) => agent::run(args),
            Command::Rotate(args) => rotate::run(args),
            Command::Up(args) => up::run(args),
            Command::Down(args) => down::run(args),
            Command::Show(args) => show::run(args),
            Command::Probe(args) => probe::run(args),
            Command::Paths(args) => paths::run(args),
        }
    }
}

/// The inventory option, for every verb that reads the inventory or files beside it.
#[derive(Debug, Args)]
pub(crate) struct InventoryFile {
    /// The inventory; its lock file (fabric.lock), rendered/ and audit.jsonl are beside it.
    #[arg(
        short,
        long,
        global = true,
        env = "WGFABRIC_INVENTORY",
        default_value = "fabric.toml",
        value_name = "FILE"
    )]
    inventory: PathBuf,
}

impl InventoryFile {
    pub(crate) fn path(&self) -> &Path {
        &self.inventory
    }

    /// The directory of the inventory, for defaults relative to it.
    pub(crate) fn dir(&self) -> PathBuf {
        self.inventory.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Where the inventory is and how its lock file is treated, shared by every verb that loads
/// the fabric.
#[derive(Debug, Args)]
pub(crate) struct InventoryArgs {
    #[command(flatten)]
    file: InventoryFile,
    /// Fail instead of assigning addresses to new hosts (for CI: the lock must be up to date).
    #[arg(long, global = true)]
    locked: bool,
}

impl InventoryArgs {
    /// Loads the fabric, assigning new hosts in memory. The flag says whether the lock
    /// changed (and so should be written by verbs that write).
    pub(crate) fn load(&self) -> anyhow::Result<(Fabric, bool)> {
        if self.locked {
            return Ok((Fabric::load_locked(self.path())?, false));
        }
        Ok(Fabric::load(self.path())?)
    }

    /// Loads the fabric as [`Self::load`] does, but refuses it while `wgfabric check` reports
    /// errors: the findings are printed (as text on standard error, or with `format` JSON as
    /// `check --format json` prints them on standard output), and the error says the verb did
    /// nothing (`not DOING: the inventory has errors`).
    pub(crate) fn load_checked(
        &self,
        doing: &str,
        format: OutputFormat,
    ) -> anyhow::Result<(Fabric, bool)> {
        let loaded = self.load()?;
        let findings = check(loaded.0.inventory());
        if has_errors(&findings) {
            match format {
                OutputFormat::Human => {
                    eprint!("{}", findings_text(&findings, &self.path().display().to_string()));
                }
                OutputFormat::Json => print_json(&Report::of(&findings))?,
            }
            bail!("not {doing}: the inventory has errors");
        }
        Ok(loaded)
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        Lock::path_for(self.path())
    }

    /// The directory of the inventory, for defaults relative to it.
    pub(crate) fn dir(&self) -> PathBuf {
        self.file.dir()
    }

    /// rendered/ beside the inventory: where `render` writes and `plan` looks by default, and
    /// the default source of truth.
    pub(crate) fn rendered_dir(&self) -> PathBuf {
        self.dir().join("rendered")
    }

    /// Writes the lock file.
    pub(crate) fn write_lock(&self, lock: &Lock) -> anyhow::Result<()> {
        Ok(write_atomically(&self.lock_path(), lock.to_toml().as_bytes(), PUBLIC_MODE)?)
    }
}

/// Loads the age identity file given with `--identity`, if any.
pub(crate) fn load_identities(path: Option<&Path>) -> anyhow::Result<Option<Identities>> {
    path.map(Identities::load).transpose().context("loading the age identity")
}

/// Human or machine output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Text for people.
    #[default]
    Human,
    /// JSON for programs.
    Json,
}

/// Prints a value as pretty JSON on standard output, through [`print`].
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    text.push('\n');
    print(&text)
}

/// Writes text to standard output. Every verb's output goes through here, so that the
/// operating system's error reaches `main` intact: a closed pipe there is a success.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}
