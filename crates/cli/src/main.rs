//! `wgfabric`: the fabric controller's command line. Each verb is one module under `cmd/`
//! that parses its arguments and calls the library crates (`wgfabric-model`, `-store`,
//! `-host`, `-ops`, `-audit`, `-lab`); this file only installs logging, dispatches and turns
//! the outcome into an exit code (0 ok, 1 findings, 2 errors).
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the command is the I/O edge that gives the libraries the time and randomness"
)]

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    logging::init(cli.log_format());
    match cli.run() {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wgfabric: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A closed pipe (`wgfabric render HOST | head`) is not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
