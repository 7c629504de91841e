//! What operators' tools talk to, the same for both daemons: their logs (`logs`), systemd's
//! notifications (`service`), and the Prometheus endpoint (off unless configured): `GET /metrics`
//! encodes a registry of `prometheus-client` metrics, as OpenMetrics when the scraper asks
//! for it (Prometheus does) and in the classic text format otherwise (curl, promtool).
//! Values read at scrape time (BPF counters, sessions) come from collectors that write
//! through [`Scrape`]; nothing is copied between scrapes.

pub mod logs;
mod process;
mod scrape;
mod server;
pub mod service;

pub use prometheus_client::{
    self,
    collector::Collector,
    encoding::DescriptorEncoder,
    registry::{Registry, Unit},
};
pub use scrape::{Labels, Scrape};
pub use server::{MetricsServer, render, serve};

use prometheus_client::metrics::info::Info;

/// Registers `x0_build_info{daemon, version}` (always 1): which build a series comes from.
pub fn register_build_info(registry: &mut Registry, daemon: &'static str) {
    let info = Info::new(vec![
        ("daemon", daemon.to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ]);
    registry.register("x0_build", "The daemon and its version", info);
}

/// Registers the standard `process_*` metrics (CPU, memory, descriptors, start time).
pub fn register_process(registry: &mut Registry) {
    registry.register_collector(Box::new(process::ProcessCollector));
}

/// Seconds since the Unix epoch of a wall-clock time in ns (0 stays 0: "never").
pub fn unix_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}
