//! `wgfabric check`: lint the inventory.

use std::process::ExitCode;

use wgfabric_model::lint::{check, findings_text, has_errors, Report, RULES};

use super::{print, print_json, InventoryArgs, OutputFormat, FINDINGS};

/// Lint the inventory: overlapping or leaking routes, stray default routes, CIDR collisions,
/// duplicate keys, NAT without keepalive, MTU, unreachable hosts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric check\n  wgfabric check -i infra/fabric.toml --format json | jq '.findings[]'\n\n\
Exit status: 0 if there is no error (warnings allowed), 1 if any finding is an error, 2 if the\n\
inventory cannot be read."
)]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    /// List the rules and exit.
    #[arg(long)]
    list_rules: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list_rules {
        for (name, description) in RULES {
            print(&format!("{name:20} {description}\n"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Address assignment must succeed too (a full network is an error), but check writes nothing.
    let (fabric, _) = args.inventory.load()?;
    let findings = check(fabric.inventory());
    match args.format {
        OutputFormat::Human => {
            print(&findings_text(&findings, &args.inventory.path().display().to_string()))?
        }
        OutputFormat::Json => print_json(&Report::of(&findings))?,
    }
    Ok(if has_errors(&findings) { ExitCode::from(FINDINGS) } else { ExitCode::SUCCESS })
}
