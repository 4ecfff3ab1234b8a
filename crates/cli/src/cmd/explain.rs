//! `wgfabric explain SRC DST [PROTO/PORT]`: what the access policy does with a packet.

use std::process::ExitCode;

use wgfabric_model::explain::explain;
use wgfabric_model::policy::{PortSpec, Verdict};

use super::{print, print_json, InventoryArgs, OutputFormat, FINDINGS};

/// Explain what the access policy does with a packet from SRC to DST: the verdict, the rule
/// that decides it, and the hosts the packet crosses.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wgfabric explain ci-runner-1 10.20.4.7 tcp/443\n  \
wgfabric explain laptop-ana router-aws\n  \
wgfabric explain laptop-ana 10.20.0.10 tcp/22 --format json | jq .verdict\n\n\
SRC and DST are host names or IP addresses (an address in a routed subnet, say). Without\n\
PROTO/PORT the question is about all traffic: only a rule that names no ports decides it.\n\
Exit status: 0 if the packet is allowed, 1 if it is denied, 2 on error.")]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Where the packet comes from: a host or an address.
    source: String,
    /// Where it goes: a host or an address.
    destination: String,
    /// The traffic: tcp/PORT, udp/PORT or icmp.
    traffic: Option<PortSpec>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, _) = args.inventory.load()?;
    let explanation = explain(&fabric, &args.source, &args.destination, args.traffic)?;
    match args.format {
        OutputFormat::Human => {
            print(&explanation.text(&args.inventory.path().display().to_string()))?;
        }
        OutputFormat::Json => print_json(&explanation)?,
    }
    Ok(match explanation.verdict {
        Verdict::Allow => ExitCode::SUCCESS,
        Verdict::Deny => ExitCode::from(FINDINGS),
    })
}
