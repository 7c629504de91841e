//! Runs before every RPC: who is calling (from the connection), may they call this RPC
//! (the allow table; the Unix socket's peers are vetted by its file permissions), and are
//! they within their request rate. Refusals are logged and answered without reaching
//! the service.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use tonic::Status;

use super::authz::Authorizer;
use x0_identity::listen::{Caller, Peer};

/// Services any authenticated caller may use (health checks and reflection).
const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

pub struct GuardState {
    pub authz: Authorizer,
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl GuardState {
    pub fn new(authz: Authorizer, per_sec: u32, burst: u32) -> Self {
        Self {
            authz,
            rate: f64::from(per_sec),
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Token bucket per caller.
    fn take(&self, caller: &str) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().expect("rate buckets lock");
        if b.len() > 10_000 {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, at) = b.entry(caller.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// None: go ahead; Some: the refusal.
    pub fn check(&self, peer: Option<&Peer>, path: &str) -> Option<Status> {
        let Some(peer) = peer else {
            return Some(Status::unauthenticated(
                "no caller identity on this connection",
            ));
        };
        let (service, rpc) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let caller = peer.caller.to_string();
        let allowed = match &peer.caller {
            Caller::Local { .. } => true,
            Caller::Spiffe(_) if OPEN_SERVICES.contains(&service) => true,
            Caller::Spiffe(id) => {
                service == x0_proto::DATAPLANE_SERVICE && self.authz.allows(id, rpc)
            }
        };
        if !allowed {
            tracing::warn!(caller, rpc = path, "API: permission denied");
            return Some(Status::permission_denied(format!(
                "{caller} may not call {rpc} (see api.allow in the dataplane's config)"
            )));
        }
        if !self.take(&caller) {
            tracing::warn!(caller, rpc = path, "API: request rate exceeded");
            return Some(Status::resource_exhausted(format!(
                "{caller}: request rate limit exceeded; retry later"
            )));
        }
        None
    }
}

#[derive(Clone)]
pub struct GuardLayer(pub Arc<GuardState>);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: Arc<GuardState>,
}

impl<S, B> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
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
        if let Some(refusal) = self
            .state
            .check(req.extensions().get::<Peer>(), req.uri().path())
        {
            return Box::pin(async move { Ok(refusal.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_refuses_above_the_burst_and_refills() {
        let g = GuardState::new(Authorizer::default(), 1000, 5);
        let peer = Peer {
            caller: Caller::Local { uid: 0, pid: 1 },
            remote: None,
            group: String::new(),
        };
        let path = "/x0tta6bl4.dataplane.v1.Dataplane/GetInfo";
        for _ in 0..5 {
            assert!(g.check(Some(&peer), path).is_none());
        }
        let refused = g.check(Some(&peer), path).expect("over the burst");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(g.check(Some(&peer), path).is_none(), "refilled at 1000/s");
    }

    #[test]
    fn spiffe_callers_need_an_allow_entry() {
        let g = GuardState::new(Authorizer::default(), 1000, 10);
        let peer = Peer {
            caller: Caller::Spiffe(
                spiffe::SpiffeId::new("spiffe://mesh.example/brain/r1").unwrap(),
            ),
            remote: None,
            group: "X25519MLKEM768".into(),
        };
        let denied = g
            .check(Some(&peer), "/x0tta6bl4.dataplane.v1.Dataplane/AddRoute")
            .unwrap();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("spiffe://mesh.example/brain/r1 may not call AddRoute")
        );
        assert!(
            g.check(Some(&peer), "/grpc.health.v1.Health/Check")
                .is_none()
        );
        assert_eq!(
            g.check(None, "/grpc.health.v1.Health/Check")
                .unwrap()
                .code(),
            tonic::Code::Unauthenticated
        );
    }
}
