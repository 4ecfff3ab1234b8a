//! `wgfabric genkey`: a private key on standard output, as `wg genkey` prints it.

use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::ExitCode;

use rand_core::OsRng;
use wgfabric_proto::keys::PrivateKey;
use zeroize::Zeroizing;

use super::print;

/// Print a new private key (base64, like `wg genkey`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  (umask 077; wgfabric genkey > private.key)\n  wgfabric genkey | tee private.key | wgfabric pubkey"
)]
pub(crate) struct Args {}

pub(crate) fn run(_: Args) -> anyhow::Result<ExitCode> {
    warn_if_world_accessible();
    let key = PrivateKey::generate(&mut OsRng);
    print(&Zeroizing::new(format!("{}\n", key.to_base64_secret())))?;
    Ok(ExitCode::SUCCESS)
}

/// Warns, as `wg genkey` does, when standard output is a file others can read.
pub(crate) fn warn_if_world_accessible() {
    let stdout = std::io::stdout();
    let Ok(fd) = stdout.as_fd().try_clone_to_owned() else { return };
    let Ok(metadata) = std::fs::File::from(fd).metadata() else { return };
    if metadata.is_file() && metadata.permissions().mode() & 0o007 != 0 {
        eprintln!("Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.");
    }
}
