//! `wgfabric genpsk`: a preshared key on standard output, as `wg genpsk` prints it.

use std::process::ExitCode;

use rand_core::OsRng;
use wgfabric_proto::keys::PresharedKey;
use zeroize::Zeroizing;

use super::genkey::warn_if_world_accessible;
use super::print;

/// Print a new preshared key (base64, like `wg genpsk`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  (umask 077; wgfabric genpsk > laptop-ana.psk)")]
pub(crate) struct Args {}

pub(crate) fn run(_: Args) -> anyhow::Result<ExitCode> {
    warn_if_world_accessible();
    let key = PresharedKey::generate(&mut OsRng);
    print(&Zeroizing::new(format!("{}\n", key.to_base64_secret())))?;
    Ok(ExitCode::SUCCESS)
}
