//! `wgfabric graph`: the topology as Graphviz DOT or Mermaid.

use std::path::PathBuf;
use std::process::ExitCode;

use wgfabric_model::files::{write_atomically, PUBLIC_MODE};
use wgfabric_model::render::graph::{graph, GraphFormat};

use super::{print, InventoryArgs};

/// Draw the topology: networks, relays, spokes, mesh links and routed subnets.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  wgfabric graph | dot -Tsvg > fabric.svg\n  \
wgfabric graph --format mermaid --out docs/fabric.mmd\n\n\
A spoke's link to its primary relay is solid and labelled `primary`; links to other relays are dashed.")]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Output syntax.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, _) = args.inventory.load()?;
    let configs: Vec<_> = fabric.host_configs().collect();
    let text = graph(&fabric, &configs, args.format);
    match &args.out {
        Some(path) => write_atomically(path, text.as_bytes(), PUBLIC_MODE)?,
        None => print(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
