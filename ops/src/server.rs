//! `GET /metrics` over plain HTTP on the configured address.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{prometheus_text, text},
    registry::Registry,
};
use tokio::{sync::oneshot, task::JoinHandle};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running endpoint; `shutdown` closes it.
pub struct MetricsServer {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves `registry` until shut down.
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: binding {addr}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    tracing::info!(%addr, "metrics served at /metrics");
    Ok(MetricsServer { addr, stop, task })
}

async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    // Collectors read maps and take the daemon's lock: off the async workers.
    let encoded = tokio::task::spawn_blocking(move || render(&registry, openmetrics)).await;
    match encoded {
        Ok(Ok((content_type, body))) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

/// The registry as OpenMetrics or as the classic text format (0.0.4), with its content type.
pub fn render(registry: &Registry, openmetrics: bool) -> Result<(&'static str, String)> {
    let mut body = String::new();
    if openmetrics {
        text::encode(&mut body, registry)?;
        Ok((OPENMETRICS, body))
    } else {
        prometheus_text::encode(&mut body, registry)?;
        Ok((prometheus_text::CONTENT_TYPE, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Collector, Scrape, register_build_info};

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, encoder: crate::DescriptorEncoder) -> std::fmt::Result {
            let mut s = Scrape::new(encoder);
            s.counters(
                "x0_test_packets",
                "Packets by reason",
                None,
                [(vec![("reason", "ttl".to_string())], 7)],
            )?;
            s.gauge("x0_test_routes", "Routes", None, 3.0)
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::default();
        register_build_info(&mut r, "test");
        r.register_collector(Box::new(Fixed));
        r
    }

    #[test]
    fn classic_text_names_counters_with_total_and_info_as_a_gauge() {
        let (ct, body) = render(&registry(), false).unwrap();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        assert!(
            body.contains("# TYPE x0_test_packets_total counter"),
            "{body}"
        );
        assert!(
            body.contains("x0_test_packets_total{reason=\"ttl\"} 7"),
            "{body}"
        );
        assert!(body.contains("x0_test_routes 3"), "{body}");
        assert!(body.contains("x0_build_info{daemon=\"test\""), "{body}");
        assert!(!body.contains("# EOF"), "{body}");
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let (ct, body) = render(&registry(), true).unwrap();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert!(body.contains("# TYPE x0_test_packets counter"), "{body}");
    }
}
