//! The dataplane's Prometheus endpoint (`[metrics]` in the config; off without it).

mod collector;
pub mod maps;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use x0_ops::{MetricsServer, Registry};

use crate::{api::metered::ApiMetrics, control::Control};
pub use collector::DataplaneCollector;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, plain HTTP: keep it on loopback or a management
    /// network (it tells what the router forwards, never keys).
    pub listen: SocketAddr,
    /// Next hops and BFD sessions with series of their own (the rest show in the totals).
    #[serde(default = "default_max_nexthops")]
    pub max_nexthops: usize,
}

fn default_max_nexthops() -> usize {
    64
}

/// The registry: build info, the API's request metrics and the scrape-time collector.
pub fn registry(control: Control, api: &Arc<ApiMetrics>, max_nexthops: usize) -> Registry {
    let mut registry = Registry::default();
    x0_ops::register_build_info(&mut registry, "dataplane");
    x0_ops::register_process(&mut registry);
    api.register(&mut registry);
    registry.register_collector(Box::new(DataplaneCollector {
        control,
        max_nexthops,
    }));
    registry
}

/// Serves the metrics where the config says.
pub async fn serve(
    config: &MetricsConfig,
    control: Control,
    api: &Arc<ApiMetrics>,
) -> Result<MetricsServer> {
    let registry = registry(control, api, config.max_nexthops);
    x0_ops::serve(config.listen, registry).await
}
