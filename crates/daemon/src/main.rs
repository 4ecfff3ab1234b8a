//! `wgfabricd IFNAME`: the userspace WireGuard daemon, with wireguard-go's command line and
//! userspace API socket, so that `wg` and `wg-quick` drive it unchanged.
//!
//! ```text
//!   wg / wg-quick ──► /var/run/wireguard/IFNAME.sock ──► uapi_socket ──► connection
//!                                                                          │ Control
//!   TUN IFNAME ◄──► driver (data path: wgfabric-sys + wgfabric-proto) ◄────┘
//!   signals, socket watcher, TUN removal ──► shutdown ──► clean exit
//!   Prometheus ──GET /metrics──► metrics (--metrics ADDR:PORT) ──► driver
//! ```
#![deny(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the daemon is the I/O edge that gives the protocol core the time and randomness"
)]

mod cli;
mod connection;
mod control;
#[allow(unsafe_code)]
mod daemonize;
mod datapath;
mod driver;
mod logging;
mod metrics;
mod shutdown;
mod uapi_socket;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Args, Config, Env};
use crate::daemonize::Readiness;
use crate::shutdown::Shutdown;
use crate::uapi_socket::UapiSocket;

fn main() -> ExitCode {
    let config = match Args::parse().resolve(Env::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("wgfabricd: {error:#}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level, config.log_format);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Detaches unless in the foreground, brings the daemon up, and runs it until shutdown.
fn run(config: &Config) -> anyhow::Result<()> {
    let readiness = if config.foreground { Readiness::foreground() } else { daemonize::detach()? };
    daemonize::restrict_umask();
    let shutdown = Shutdown::default();
    match start(config, &shutdown) {
        Ok(running) => {
            readiness.ready();
            running.run_until(&shutdown);
            Ok(())
        }
        Err(error) => {
            readiness.failed(&error);
            Err(error)
        }
    }
}

/// Everything that is up; dropping it takes the daemon down in reverse order.
struct Running {
    driver: std::sync::Arc<dyn driver::Driver>,
    tun_name_file: Option<TunNameFile>,
    socket: UapiSocket,
    metrics: Option<wgfabric_metrics::Running>,
}

fn start(config: &Config, shutdown: &Shutdown) -> anyhow::Result<Running> {
    shutdown.trigger_on_signals()?;
    let metrics = config.metrics.map(metrics::bind).transpose()?;
    let socket = UapiSocket::bind(&config.interface)?;
    let driver = driver::start(&config.interface, config.threads, shutdown)
        .with_context(|| format!("bringing up {}", config.interface))?;
    let tun_name_file = config
        .tun_name_file
        .as_deref()
        .map(|path| TunNameFile::write(path, driver.interface_name()))
        .transpose()?;
    socket.serve(std::sync::Arc::clone(&driver), shutdown)?;
    let metrics =
        metrics.map(|server| metrics::serve(server, std::sync::Arc::clone(&driver))).transpose()?;
    tracing::info!(
        interface = driver.interface_name(),
        socket = %socket.path().display(),
        pid = std::process::id(),
        "up"
    );
    Ok(Running { driver, tun_name_file, socket, metrics })
}

impl Running {
    fn run_until(self, shutdown: &Shutdown) {
        let reason = shutdown.wait();
        tracing::info!(interface = self.driver.interface_name(), %reason, "down");
        drop(self.metrics);
        self.driver.stop();
        drop(self.tun_name_file);
        drop(self.socket);
    }
}

/// The `WG_TUN_NAME_FILE` report, removed again on the way out.
struct TunNameFile(std::path::PathBuf);

impl TunNameFile {
    fn write(path: &std::path::Path, name: &str) -> anyhow::Result<Self> {
        std::fs::write(path, format!("{name}\n"))
            .with_context(|| format!("writing the interface name to {}", path.display()))?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for TunNameFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
