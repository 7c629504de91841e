//! A SPIFFE Workload API server for tests (feature `workload-server`): what a SPIRE agent
//! serves to a workload, reduced to `FetchX509SVID`. It streams the current SVID and bundle,
//! then a new message on every `set`/`rotate`. Other RPCs answer Unimplemented.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::Identity;

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

use pb::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use pb::{X509svid, X509svidRequest, X509svidResponse};

/// Handle of a running server; dropping it stops the server and removes the socket.
pub struct WorkloadServer {
    socket: PathBuf,
    tx: watch::Sender<X509svidResponse>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WorkloadServer {
    /// Serves `initial` on the Unix socket `socket` (replacing a stale socket file).
    pub async fn start(socket: &Path, initial: &Identity) -> Result<WorkloadServer> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        let (tx, rx) = watch::channel(response_for(initial));
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(Api { rx }))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stop.await;
            });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("workload API test server: {e}");
            }
        });
        Ok(WorkloadServer {
            socket: socket.to_path_buf(),
            tx,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The endpoint to give a client: `unix:/path/to/socket`.
    pub fn endpoint(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Streams `id` to every client, as SPIRE does on a rotation.
    pub fn set(&self, id: &Identity) {
        self.tx.send_replace(response_for(id));
    }

    /// Streams raw material (which may be invalid, to test how clients react).
    pub fn rotate(
        &self,
        chain_der: &[CertificateDer<'_>],
        key_pkcs8_der: &[u8],
        bundle_der: &[CertificateDer<'_>],
    ) {
        let spiffe_id = chain_der
            .first()
            .and_then(|leaf| spiffe::cert::spiffe_id_from_der(leaf).ok())
            .map(|id| id.to_string())
            .unwrap_or_default();
        self.tx
            .send_replace(response(spiffe_id, chain_der, key_pkcs8_der, bundle_der));
    }
}

impl Drop for WorkloadServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn response_for(id: &Identity) -> X509svidResponse {
    response(
        id.spiffe_id.to_string(),
        &id.chain,
        id.key().secret_der(),
        &id.bundle,
    )
}

fn response(
    spiffe_id: String,
    chain: &[CertificateDer<'_>],
    key: &[u8],
    bundle: &[CertificateDer<'_>],
) -> X509svidResponse {
    // The Workload API carries chains and bundles as concatenated DER.
    let concat = |certs: &[CertificateDer<'_>]| certs.iter().flat_map(|c| c.to_vec()).collect();
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id,
            x509_svid: concat(chain),
            x509_svid_key: key.to_vec(),
            bundle: concat(bundle),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: Default::default(),
    }
}

struct Api {
    rx: watch::Receiver<X509svidResponse>,
}

type SvidStream = Pin<Box<dyn Stream<Item = Result<X509svidResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for Api {
    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<SvidStream>, Status> {
        // SPIRE refuses calls without this header (protection against SSRF-style proxies).
        match request.metadata().get("workload.spiffe.io") {
            Some(v) if v == "true" => {}
            _ => {
                return Err(Status::invalid_argument(
                    "security header missing from request",
                ));
            }
        }
        let updates = WatchStream::new(self.rx.clone()).map(Ok);
        Ok(Response::new(Box::pin(updates)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_calls_without_the_security_header() {
        let (_tx, rx) = watch::channel(X509svidResponse::default());
        let api = Api { rx };
        let err = api
            .fetch_x509svid(Request::new(X509svidRequest {}))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        let mut req = Request::new(X509svidRequest {});
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().unwrap());
        let mut stream = api.fetch_x509svid(req).await.unwrap().into_inner();
        assert!(
            stream.next().await.unwrap().is_ok(),
            "the current SVID comes first"
        );
    }
}
