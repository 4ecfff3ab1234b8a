//! `wgfabric plan`: what a render would change, host by host.

use std::path::PathBuf;
use std::process::ExitCode;

use wgfabric_model::render::plan::{plan, plan_text, RenderedState, STATE_FILE};

use super::{print, print_json, InventoryArgs, OutputFormat, FINDINGS};

/// Show, host by host, what would change against the last render: hosts added or removed,
/// peers added or removed, allowed IPs, endpoints, keepalives and interface settings.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric plan\n  wgfabric plan --out /srv/wgfabric/rendered --format json\n  \
wgfabric plan --exit-code || echo \"render needed\"\n\n\
The last render is DIR/state.json, written by `wgfabric render`. Nothing is written."
)]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Directory of the last render [default: rendered/ beside the inventory].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    /// Exit with status 1 when something would change.
    #[arg(long)]
    exit_code: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, _) = args.inventory.load()?;
    let out = args.out.clone().unwrap_or_else(|| args.inventory.rendered_dir());
    let last = RenderedState::load(&out.join(STATE_FILE))?;
    let plan = plan(&RenderedState::of(&fabric), &last);
    match args.format {
        OutputFormat::Human => print(&plan_text(&plan))?,
        OutputFormat::Json => print_json(&plan)?,
    }
    Ok(if args.exit_code && !plan.is_empty() {
        ExitCode::from(FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}
