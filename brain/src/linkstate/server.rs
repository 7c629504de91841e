//! The brain's gRPC service: neighbours flood records into it; operators read its view.

use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};
use x0_identity::listen::{Caller, Peer};
use x0_proto::brain::v1::{self as pb, brain_server::Brain};

use crate::linkstate::state::Shared;

pub struct Service {
    pub shared: Arc<Mutex<Shared>>,
    pub trust_domain: String,
    /// Records accepted here are passed on to the other neighbours.
    pub flood: tokio::sync::mpsc::UnboundedSender<(Option<String>, Vec<pb::SignedRecord>)>,
    /// This process's number (`FloodResponse.instance`).
    pub instance: u64,
}

/// A number for this run of the process: a restarted brain answers with another one.
pub fn new_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(crate::linkstate::state::unix_ns(
        std::time::SystemTime::now(),
    ));
    h.finish()
}

/// The caller's brain name, if it is a brain of our trust domain.
fn brain_of(req: &Request<impl Sized>, td: &str) -> Option<String> {
    match &req.extensions().get::<Peer>()?.caller {
        Caller::Spiffe(id) if id.trust_domain().to_string() == td => {
            id.path().strip_prefix("/brain/").map(|s| s.to_string())
        }
        Caller::Local { .. } => Some(String::new()),
        _ => None,
    }
}

fn reader(req: &Request<impl Sized>, td: &str) -> bool {
    match req.extensions().get::<Peer>().map(|p| &p.caller) {
        Some(Caller::Spiffe(id)) => {
            id.trust_domain().to_string() == td
                && (id.path().starts_with("/brain/") || id.path().starts_with("/orchestrator/"))
        }
        Some(Caller::Local { .. }) => true,
        None => false,
    }
}

#[tonic::async_trait]
impl Brain for Service {
    async fn flood(
        &self,
        req: Request<pb::FloodRequest>,
    ) -> Result<Response<pb::FloodResponse>, Status> {
        let Some(from) = brain_of(&req, &self.trust_domain) else {
            return Err(Status::permission_denied(
                "only brains of this trust domain may flood",
            ));
        };
        let records = req.into_inner().records;
        if records.is_empty() {
            // a neighbour's latency probe: answer at once, without the lock
            return Ok(Response::new(pb::FloodResponse {
                instance: self.instance,
                ..Default::default()
            }));
        }
        if records.len() > 10_000 {
            return Err(Status::invalid_argument("records: more than 10000"));
        }
        let mut out = pb::FloodResponse {
            instance: self.instance,
            ..Default::default()
        };
        let mut fresh = Vec::new();
        {
            let mut s = self.shared.lock().expect("brain lock");
            for r in &records {
                match s.offer(r) {
                    Ok(()) => {
                        out.accepted += 1;
                        fresh.push(r.clone());
                    }
                    Err((originator, e)) => {
                        use crate::linkstate::lsp::Reject;
                        if matches!(
                            e,
                            Reject::Forged(_) | Reject::Malformed(_) | Reject::TooLarge
                        ) {
                            // the sender's doing, whoever it claims spoke (MAPE-K guard)
                            *s.bad_from.entry(from.clone()).or_default() += 1;
                        }
                        if !matches!(e, crate::linkstate::lsp::Reject::Duplicate) {
                            tracing::warn!(from = %from, originator, reason = e.name(), detail = %e, "link-state record rejected");
                        }
                        out.rejected.push(pb::Rejection {
                            originator,
                            reason: e.name().into(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let _ = self.flood.send((Some(from), fresh));
        }
        Ok(Response::new(out))
    }

    async fn get_link_state(
        &self,
        req: Request<pb::GetLinkStateRequest>,
    ) -> Result<Response<pb::LinkStateDatabase>, Status> {
        if !reader(&req, &self.trust_domain) {
            return Err(Status::permission_denied("brains and orchestrators only"));
        }
        let s = self.shared.lock().expect("brain lock");
        Ok(Response::new(pb::LinkStateDatabase {
            records: s.lsdb.records().map(|v| v.signed.clone()).collect(),
        }))
    }

    async fn set_topology(
        &self,
        req: Request<pb::SetTopologyRequest>,
    ) -> Result<Response<pb::SetTopologyResponse>, Status> {
        let orchestrator = matches!(
            req.extensions().get::<Peer>().map(|p| &p.caller),
            Some(Caller::Spiffe(id)) if id.trust_domain().to_string() == self.trust_domain && id.path().starts_with("/orchestrator/")
        );
        if !orchestrator {
            return Err(Status::permission_denied("orchestrators only"));
        }
        let r = req.into_inner();
        let mut s = self.shared.lock().expect("brain lock");
        if r.clear {
            s.set_static(None)
                .map_err(|e| Status::internal(format!("{e:#}")))?;
            return Ok(Response::new(pb::SetTopologyResponse::default()));
        }
        let mesh = crate::linkstate::mesh::Mesh::parse(&r.topology_toml)
            .map_err(|e| Status::invalid_argument(format!("topology_toml: {e:#}")))?;
        if mesh.index(&s.router).is_err() {
            return Err(Status::invalid_argument(format!(
                "topology_toml: no router named {:?} (this brain's)",
                s.router
            )));
        }
        let (routers, links) = (mesh.names.len() as u32, mesh.graph.links.len() as u32);
        s.set_static(Some(r.topology_toml))
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        Ok(Response::new(pb::SetTopologyResponse { routers, links }))
    }

    async fn exchange(
        &self,
        req: Request<pb::ExchangeRequest>,
    ) -> Result<Response<pb::ExchangeResponse>, Status> {
        let from = brain_of(&req, &self.trust_domain);
        let r = req.into_inner();
        if from.as_deref() != Some(r.router.as_str()) {
            return Err(Status::permission_denied(
                "only a brain of this trust domain, about its own router",
            ));
        }
        let mut s = self.shared.lock().expect("brain lock");
        s.hear(r.router.clone(), &r)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::ExchangeResponse {}))
    }

    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        if !reader(&req, &self.trust_domain) {
            return Err(Status::permission_denied("brains and orchestrators only"));
        }
        Ok(Response::new(
            self.shared.lock().expect("brain lock").status(),
        ))
    }

    async fn get_incident(
        &self,
        req: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        if !reader(&req, &self.trust_domain) {
            return Err(Status::permission_denied("brains and orchestrators only"));
        }
        let id = req.get_ref().id;
        let s = self.shared.lock().expect("brain lock");
        match s.knowledge.incident(id) {
            Ok(Some(i)) => Ok(Response::new(crate::linkstate::state::incident_message(&i))),
            Ok(None) => Err(Status::not_found(format!("no incident {id}"))),
            Err(e) => Err(Status::internal(format!("knowledge base: {e:#}"))),
        }
    }
}
