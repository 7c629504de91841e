//! Counts every RPC by name and status, and times it, for the metrics endpoint. The name
//! label only takes the API's own RPC names (from the proto descriptors): a caller cannot
//! grow the label set by calling made-up paths.

use std::{
    collections::HashSet,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use prost::Message;
use x0_ops::prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    histogram::{Histogram, exponential_buckets},
};

type CallLabels = [(&'static str, String); 2];
type RpcLabels = [(&'static str, String); 1];

/// The API's request metrics (registered with the daemon's registry).
#[derive(Debug)]
pub struct ApiMetrics {
    known: HashSet<String>,
    calls: Family<CallLabels, Counter>,
    latency: Family<RpcLabels, Histogram>,
}

fn latency_histogram() -> Histogram {
    // 100 us .. 2.4 s.
    Histogram::new(exponential_buckets(0.000_1, 2.5, 12))
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            known: known_rpcs(),
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// "/package.Service/Method" of every RPC the API serves.
fn known_rpcs() -> HashSet<String> {
    let sets = [
        x0_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ];
    let mut out = HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    out.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    out
}

impl ApiMetrics {
    pub fn register(self: &Arc<Self>, registry: &mut x0_ops::Registry) {
        registry.register(
            "x0_dataplane_api_requests",
            "gRPC calls by RPC and the status they opened with",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "x0_dataplane_api_request_duration",
            "Time until a call's response (a stream's: until it opened)",
            x0_ops::Unit::Seconds,
            self.latency.clone(),
        );
    }

    /// The RPC's name for the label: "Method" if the API has it, else "unknown".
    fn rpc(&self, path: &str) -> String {
        match self.known.contains(path) {
            true => path.rsplit('/').next().unwrap_or("unknown").to_string(),
            false => "unknown".to_string(),
        }
    }

    fn record(&self, rpc: String, code: &str, seconds: f64) {
        self.calls
            .get_or_create(&[("rpc", rpc.clone()), ("code", code.to_string())])
            .inc();
        self.latency.get_or_create(&[("rpc", rpc)]).observe(seconds);
    }
}

/// The gRPC status of a response as far as its headers tell: an error answered at once
/// carries it there; otherwise the call opened OK.
fn status_name<B>(response: &http::Response<B>) -> String {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok);
    match code {
        tonic::Code::Ok => "OK".to_string(),
        other => format!("{other:?}"),
    }
}

#[derive(Clone)]
pub struct MeteredLayer(pub Arc<ApiMetrics>);

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<ApiMetrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let rpc = self.metrics.rpc(req.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            let code = status_name(&response);
            metrics.record(rpc, &code, started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apis_own_rpcs_get_their_name() {
        let m = ApiMetrics::default();
        assert_eq!(
            m.rpc("/x0tta6bl4.dataplane.v1.Dataplane/ListRoutes"),
            "ListRoutes"
        );
        assert_eq!(m.rpc("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(
            m.rpc("/x0tta6bl4.dataplane.v1.Dataplane/MadeUp123"),
            "unknown"
        );
        assert_eq!(m.rpc("/evil/ListRoutes"), "unknown");
    }

    #[test]
    fn an_error_in_the_headers_is_its_status() {
        let denied = tonic::Status::permission_denied("no").into_http::<()>();
        assert_eq!(status_name(&denied), "PermissionDenied");
        assert_eq!(status_name(&http::Response::new(())), "OK");
    }
}
