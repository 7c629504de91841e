//! What the brain's gRPC service and its loop share: the link-state database, the plan in
//! force, the knowledge base, and what the status reports.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use x0_identity::Trust;
use x0_proto::brain::v1 as pb;

use crate::{
    config::Mode, linkstate::lsdb::Lsdb, linkstate::lsp::Reject, mapek::knowledge::Knowledge,
};

/// What the service and the loop share.
pub struct Shared {
    pub lsdb: Lsdb,
    pub trust: Arc<Trust>,
    pub router: String,
    pub mode: Mode,
    /// The database changed since the last plan.
    pub changed: bool,
    /// The highest sequence seen for our own name (after a lost state file).
    pub own_seen: u64,
    pub paths: Vec<pb::PathEntry>,
    pub unprotected: Vec<String>,
    pub pushes: u64,
    pub last_push_unix_ns: u64,
    pub knowledge: Knowledge,
    pub mapek: String,
    /// Static mode: an orchestrator's topology (its text, kept in `static_path`).
    pub static_topology: Option<String>,
    pub static_path: std::path::PathBuf,
    /// The monitor's view of each link, for the status.
    pub links: Vec<pb::LinkQuality>,
    /// Records each neighbour's brain flooded that failed verification (forged, malformed).
    pub bad_from: HashMap<String, u64>,
    /// Telemetry the neighbours' brains sent (Exchange), newest per router.
    pub heard: HashMap<String, Heard>,
    /// Our own latest telemetry (features, score), for the status.
    pub own_telemetry: Option<pb::Telemetry>,
    /// The anomaly model in use, or why there is none.
    pub model: String,
}

/// One neighbour's latest telemetry.
#[derive(Clone, Debug)]
pub struct Heard {
    pub features: Vec<f32>,
    pub embedding: Vec<f32>,
    /// Its own brain's score of it, and whether it flagged itself.
    pub score: Option<f32>,
    pub anomalous: bool,
    pub at: std::time::Instant,
}

/// At most this many routers' telemetry is kept (neighbours only send their own).
const HEARD_MAX: usize = 256;
/// Telemetry older than this is gone (its sender stopped: a missing feature, not an error).
pub const HEARD_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Shared {
    /// A fresh view for `config`'s router: the knowledge base and any orchestrator's
    /// topology come from its state directory.
    pub fn open(config: &crate::config::BrainConfig, trust: Arc<Trust>) -> Result<Self> {
        let static_path = config.state_dir.join("static-topology.toml");
        Ok(Shared {
            lsdb: Lsdb::default(),
            trust,
            router: config.router.clone(),
            mode: config.mode,
            changed: true,
            own_seen: 0,
            paths: Vec::new(),
            unprotected: Vec::new(),
            pushes: 0,
            last_push_unix_ns: 0,
            knowledge: Knowledge::open(&config.state_dir.join("knowledge.redb"))?,
            mapek: String::new(),
            static_topology: std::fs::read_to_string(&static_path).ok(),
            static_path,
            links: Vec::new(),
            bad_from: HashMap::new(),
            heard: HashMap::new(),
            own_telemetry: None,
            model: "none".into(),
        })
    }

    /// Offers a neighbour's record. Err: (originator, why not).
    pub fn offer(&mut self, r: &pb::SignedRecord) -> Result<(), (String, Reject)> {
        let originator = <pb::LinkStateRecord as prost::Message>::decode(r.record.as_ref())
            .map(|x| x.originator)
            .unwrap_or_default();
        if originator == self.router {
            // Our own, coming back: never taken from others, but its sequence is noted.
            if let Ok(v) = crate::linkstate::lsp::verify(r, &self.trust, SystemTime::now()) {
                self.own_seen = self.own_seen.max(v.record.sequence);
            }
            return Err((originator, Reject::Duplicate));
        }
        match self.lsdb.offer(r, &self.trust, SystemTime::now()) {
            Ok(_) => {
                self.changed = true;
                Ok(())
            }
            Err(e) => Err((originator, e)),
        }
    }

    /// Takes a neighbour's telemetry if it is well formed: the current feature set, at
    /// most 64 embedding values, all finite. Err: why not, in one sentence.
    pub fn hear(&mut self, router: String, r: &pb::ExchangeRequest) -> Result<(), String> {
        use crate::models::features::{FEATURES, VERSION};
        if r.features_version != VERSION || r.features.len() != FEATURES {
            return Err(format!(
                "features: version {} with {} values; this brain takes version {VERSION} with {FEATURES}",
                r.features_version,
                r.features.len()
            ));
        }
        if r.embedding.len() > 64 {
            return Err(format!(
                "embedding: {} values, at most 64",
                r.embedding.len()
            ));
        }
        if !r
            .features
            .iter()
            .chain(&r.embedding)
            .chain(&r.score)
            .all(|v| v.is_finite())
        {
            return Err("features, embedding and score must be finite".into());
        }
        let now = std::time::Instant::now();
        self.heard
            .retain(|_, h| now.duration_since(h.at) < HEARD_FRESH);
        if self.heard.len() >= HEARD_MAX && !self.heard.contains_key(&router) {
            return Err(format!("telemetry from more than {HEARD_MAX} routers"));
        }
        let heard = Heard {
            features: r.features.clone(),
            embedding: r.embedding.clone(),
            score: r.score.map(|s| s.clamp(0.0, 1.0)),
            anomalous: r.anomalous,
            at: now,
        };
        self.heard.insert(router, heard);
        Ok(())
    }

    fn telemetry(&self) -> Vec<pb::Telemetry> {
        let mut heard: Vec<(&String, &Heard)> = self
            .heard
            .iter()
            .filter(|(_, h)| h.at.elapsed() < HEARD_FRESH)
            .collect();
        heard.sort_by_key(|(r, _)| r.as_str());
        let theirs = heard.into_iter().map(|(router, h)| pb::Telemetry {
            router: router.clone(),
            features: h.features.clone(),
            age_ms: h.at.elapsed().as_millis() as u64,
            score: h.score,
            anomalous: h.anomalous,
        });
        self.own_telemetry
            .clone()
            .into_iter()
            .chain(theirs)
            .collect()
    }

    /// A link's anomaly score: the lower of its two ends' (ours, and what the neighbour's
    /// brain sent of its own, if fresh).
    pub fn link_score(&self, neighbor: &str) -> Option<f32> {
        let own = self.own_telemetry.as_ref()?.score?;
        let heard = self.heard.get(neighbor)?;
        let theirs = heard.score.filter(|_| heard.at.elapsed() < HEARD_FRESH)?;
        Some(own.min(theirs))
    }

    /// Sets (or clears) the orchestrator's topology and keeps it on disk.
    pub fn set_static(&mut self, text: Option<String>) -> Result<()> {
        match &text {
            Some(t) => {
                if let Some(dir) = self.static_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = self.static_path.with_extension("tmp");
                std::fs::write(&tmp, t)?;
                std::fs::rename(&tmp, &self.static_path)?;
            }
            None => match std::fs::remove_file(&self.static_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        tracing::info!(static_mode = text.is_some(), "topology source changed");
        self.static_topology = text;
        self.changed = true;
        Ok(())
    }

    /// The mesh to plan from: the orchestrator's, or the one link state describes.
    pub fn mesh(&self) -> crate::linkstate::mesh::Mesh {
        self.static_topology
            .as_deref()
            .and_then(|t| crate::linkstate::mesh::Mesh::parse(t).ok())
            .unwrap_or_else(|| self.lsdb.mesh())
    }

    pub fn status(&self) -> pb::Status {
        let mesh = self.mesh();
        pb::Status {
            router: self.router.clone(),
            mode: format!("{:?}", self.mode).to_lowercase(),
            routers: mesh.names.clone(),
            links: mesh
                .graph
                .links
                .iter()
                .map(|(a, b, c)| format!("{}-{} ({c})", mesh.names[*a], mesh.names[*b]))
                .collect(),
            paths: self.paths.clone(),
            unprotected: self.unprotected.clone(),
            accepted: self.lsdb.accepted,
            rejected: self
                .lsdb
                .rejected
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            duplicates: self.lsdb.duplicates,
            pushes: self.pushes,
            last_push_unix_ns: self.last_push_unix_ns,
            incidents: self
                .knowledge
                .incidents()
                .unwrap_or_default()
                .iter()
                .rev()
                .take(100)
                .rev()
                .map(incident_message)
                .collect(),
            mapek: self.mapek.clone(),
            link_quality: self
                .links
                .iter()
                .map(|l| pb::LinkQuality {
                    anomaly_score: self.link_score(&l.neighbor),
                    ..l.clone()
                })
                .collect(),
            model: self.model.clone(),
            telemetry: self.telemetry(),
            source: if self.static_topology.is_some() {
                "static"
            } else {
                "link-state"
            }
            .into(),
            repair_times: ["link-lost", "router-lost", "link-flapping"]
                .iter()
                .filter_map(|k| {
                    let m = self.knowledge.mttr(k).ok().flatten()?;
                    Some(pb::RepairTime {
                        kind: k.to_string(),
                        count: m.count,
                        p50_ms: m.p50_ms,
                        p99_ms: m.p99_ms,
                        max_ms: m.max_ms,
                    })
                })
                .collect(),
        }
    }
}

/// An incident of the knowledge base as the API sends it.
pub fn incident_message(i: &crate::mapek::knowledge::Incident) -> pb::Incident {
    pb::Incident {
        id: i.id,
        kind: i.kind.clone(),
        subject: i.subject.clone(),
        detected_unix_ns: i.detected_unix_ns,
        strategy: i.strategy.clone(),
        repaired_unix_ns: i.repaired_unix_ns.unwrap_or(0),
        success: i.success.unwrap_or(false),
        onset_unix_ns: i.onset_unix_ns.unwrap_or(0),
        causes: i
            .causes
            .iter()
            .map(|c| pb::RankedCause {
                element: c.element.clone(),
                fault: c.fault.clone(),
                confidence: c.confidence,
            })
            .collect(),
        evidence: i.evidence.clone(),
        outcome: i.outcome.clone(),
        restored_unix_ns: i.restored_unix_ns.unwrap_or(0),
    }
}
