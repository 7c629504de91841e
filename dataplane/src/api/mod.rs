//! The gRPC control API (`x0tta6bl4.dataplane.v1`): a thin layer over `control::Control`.
//! Two optional listeners — a Unix socket and TCP with SPIFFE mutual TLS — serve the same
//! services: the dataplane's, `grpc.health.v1` and server reflection.

pub mod authz;
pub mod config;
pub mod guard;
pub mod metered;
pub mod service;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::{sync::watch, task::JoinHandle};
use tonic::transport::Server;
use x0_proto::{dataplane::v1::dataplane_server::DataplaneServer, status::StatusLayer};

use crate::control::Control;
use config::ApiConfig;
use guard::{GuardLayer, GuardState};
use metered::{ApiMetrics, MeteredLayer};

/// The running API; `shutdown` stops the listeners and ends open streams.
pub struct ApiHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Where the TCP listener is bound (useful with port 0).
    pub tcp_addr: Option<SocketAddr>,
}

impl ApiHandle {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

type Layers = tower::layer::util::Stack<
    StatusLayer,
    tower::layer::util::Stack<
        GuardLayer,
        tower::layer::util::Stack<MeteredLayer, tower::layer::util::Identity>,
    >,
>;

fn router(
    config: &ApiConfig,
    control: &Control,
    guard: &Arc<GuardState>,
    metrics: &Arc<ApiMetrics>,
) -> Result<tonic::transport::server::Router<Layers>> {
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        health
            .set_serving::<DataplaneServer<service::Service>>()
            .await;
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(x0_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let dataplane = DataplaneServer::new(service::Service::new(control.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    Ok(x0_proto::server::limited(Server::builder())
        // Metered outside the guard: refused calls are counted too.
        .layer(MeteredLayer(metrics.clone()))
        .layer(GuardLayer(guard.clone()))
        // Innermost, so that the metrics count what callers get: every status short, an
        // over-size request RESOURCE_EXHAUSTED (docs/API.md, "Errors").
        .layer(StatusLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(dataplane))
}

/// Starts the configured listeners; every call is counted in `metrics`.
pub async fn serve(
    config: ApiConfig,
    control: Control,
    metrics: Arc<ApiMetrics>,
) -> Result<ApiHandle> {
    config.validate()?;
    let guard = Arc::new(GuardState::new(
        authz::Authorizer::new(&config.allow)?,
        config.requests_per_sec,
        config.request_burst,
    ));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut tcp_addr = None;

    let mut serve_on =
        |incoming: x0_identity::listen::Incoming, what: &'static str| -> Result<()> {
            let router = router(&config, &control, &guard, &metrics)?;
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let r = router
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(listener = what, error = %e, "API server failed");
                }
            }));
            Ok(())
        };

    if let Some(path) = &config.unix_socket {
        let incoming = x0_identity::listen::unix(path, config.mode()?)?;
        serve_on(incoming, "unix")?;
        tracing::info!(path = %path.display(), mode = %config.unix_mode, "API listening on the Unix socket");
    }
    if let Some(addr) = config.listen {
        let source = config.tls.as_ref().expect("validated").source()?;
        let reload = Duration::from_millis(config.tls.as_ref().expect("validated").reload_ms);
        let identity = x0_identity::IdentityWatcher::start(source, reload)
            .await
            .context("api.tls: loading our SVID")?;
        tracing::info!(spiffe_id = %identity.current().spiffe_id, "API identity");
        let (incoming, local) = x0_identity::listen::tls(addr, identity, config.pq).await?;
        serve_on(incoming, "tls")?;
        tcp_addr = Some(local);
        tracing::info!(%local, pq = %config.pq, "API listening with mutual TLS");
    }
    Ok(ApiHandle {
        stop,
        tasks,
        tcp_addr,
    })
}
