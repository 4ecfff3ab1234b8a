//! `--metrics ADDR:PORT`: Prometheus metrics of the live device on `GET /metrics`.
//!
//! Each scrape reads the device's `get=1` view (the same bytes and handshake times `wg show`
//! reports; under its lock a page of peers at a time) and the counters only this daemon keeps, and renders them through `wgfabric-metrics`, so the names match what
//! `wgfabric exporter` prints for any userspace implementation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use wgfabric_metrics::{families, render, FriendlyNames, Interface, MetricsServer, Running};

use crate::driver::Driver;

/// Binds the metrics address, before anything else is brought up, so that a port in use
/// fails the start without touching the system.
///
/// # Errors
/// When the address cannot be bound.
pub(crate) fn bind(addr: SocketAddr) -> anyhow::Result<MetricsServer> {
    MetricsServer::bind(addr).with_context(|| format!("binding metrics on {addr}"))
}

/// Serves the metrics of `driver` from a background thread, until the returned handle is
/// dropped.
///
/// # Errors
/// When the thread cannot start.
pub(crate) fn serve(server: MetricsServer, driver: Arc<dyn Driver>) -> anyhow::Result<Running> {
    let running = server.spawn(move || scrape(&*driver)).context("starting the metrics thread")?;
    tracing::info!(address = %running.local_addr(), "serving metrics on /metrics");
    Ok(running)
}

fn scrape(driver: &dyn Driver) -> String {
    let snapshot = driver.snapshot();
    let counters = driver.counters();
    let interface = Interface {
        name: driver.interface_name(),
        snapshot: Some(&snapshot),
        counters: Some(&counters),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    render(&families(&[interface], &FriendlyNames::new(), now))
}
