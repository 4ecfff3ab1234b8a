//! `wgfabric pubkey`: the public key of a private key read from standard input, as
//! `wg pubkey` prints it.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use wgfabric_proto::keys::PrivateKey;
use zeroize::Zeroizing;

use super::print;

/// Read a private key on standard input and print its public key.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric pubkey < /etc/wgfabric/private.key\n  wgfabric genkey | tee private.key | wgfabric pubkey"
)]
pub(crate) struct Args {}

pub(crate) fn run(_: Args) -> anyhow::Result<ExitCode> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    let key = PrivateKey::from_base64(&text)
        .map_err(|e| anyhow!("standard input is not a private key: {e}"))?;
    print(&format!("{}\n", key.public_key()))?;
    Ok(ExitCode::SUCCESS)
}
