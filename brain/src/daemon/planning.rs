//! MAPE-K's plan and execute for the mesh: when the mesh changed (and now and then, to
//! repair drift) the links that left are incidents, the paths are planned anew, and the
//! next-hop sets pushed; an incident ends when the new paths are in force.

use std::{
    collections::BTreeSet,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use x0_proto::brain::v1 as pb;

use super::{adjacency::Adjacencies, dataplane::Dataplane, metrics::Live};
use crate::{
    config::{BrainConfig, Mode},
    linkstate::{
        mesh::Mesh,
        state::{Shared, unix_ns},
    },
    paths::{plan::plan, push},
};

/// The first plan waits this long for the neighbours' records.
const SETTLE: Duration = Duration::from_secs(3);
/// Without a change, the plan is checked against the dataplane this often.
const RECHECK: Duration = Duration::from_secs(5);

use push::Routes as Wanted;

pub struct Planner {
    live: std::sync::Arc<Live>,
    started: Instant,
    last_check: Instant,
    /// Links seen in the last plan: one that goes is an incident until new paths are in force.
    prev_links: Option<BTreeSet<String>>,
}

impl Planner {
    pub fn new(live: std::sync::Arc<Live>) -> Self {
        let now = Instant::now();
        Planner {
            live,
            started: now,
            last_check: now - Duration::from_secs(10),
            prev_links: None,
        }
    }

    pub async fn step(
        &mut self,
        dataplane: &mut Dataplane,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
        adjacencies: &Adjacencies,
    ) {
        expire(shared);
        if !self.due(shared, config, adjacencies) {
            return;
        }
        self.last_check = Instant::now();
        let Some(dp) = dataplane.client() else {
            shared.lock().expect("brain lock").changed = true;
            return;
        };
        let Some(wanted) = self.analyse_and_plan(shared, config) else {
            return;
        };
        let began = Instant::now();
        let pushed = push::sync(dp, &wanted, config.mode).await;
        self.live
            .pushed(began.elapsed().as_secs_f64(), pushed.is_ok());
        match pushed {
            Ok(n) => in_force(shared, config.mode, n),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not update the dataplane; will retry");
                shared.lock().expect("brain lock").changed = true;
                dataplane.lost();
            }
        }
    }

    /// Settled (or waited long enough for the neighbours' records) and either the mesh
    /// changed or the last check is old. A change not acted on stays pending.
    fn due(&self, shared: &Mutex<Shared>, config: &BrainConfig, adj: &Adjacencies) -> bool {
        let mut s = shared.lock().expect("brain lock");
        let settled = self.started.elapsed() >= SETTLE
            || config
                .neighbors
                .iter()
                .filter(|n| adj.is_adjacent(&n.router))
                .all(|n| s.lsdb.get(&n.router).is_some());
        let changed = std::mem::take(&mut s.changed);
        if !settled || (!changed && self.last_check.elapsed() < RECHECK) {
            s.changed |= changed;
            return false;
        }
        true
    }

    /// Records the incidents, plans, and publishes the paths in the status; what to push.
    fn analyse_and_plan(&mut self, shared: &Mutex<Shared>, config: &BrainConfig) -> Option<Wanted> {
        let mut s = shared.lock().expect("brain lock");
        let mesh = s.mesh();
        let me = mesh.index(&config.router).ok()?;
        let links = link_names(&mesh);
        if let Some(prev) = &self.prev_links {
            open_incidents(&s, &mesh, prev, &links);
        }
        self.prev_links = Some(links);
        let p = plan(&mesh.graph, me, config.k);
        let wanted = mesh.routes(me, &p);
        s.paths = wanted
            .iter()
            .map(|(prefix, via)| pb::PathEntry {
                prefix: prefix.to_string(),
                next_hops: via.iter().map(|(g, i)| format!("{g}@{i}")).collect(),
            })
            .collect();
        s.unprotected = p
            .unprotected
            .iter()
            .map(|d| mesh.names[*d].clone())
            .collect();
        Some(wanted)
    }
}

fn expire(shared: &Mutex<Shared>) {
    let mut s = shared.lock().expect("brain lock");
    let expired = s.lsdb.expire(SystemTime::now());
    if !expired.is_empty() {
        tracing::info!(?expired, "link-state records aged out");
        s.changed = true;
    }
}

fn link_names(mesh: &Mesh) -> BTreeSet<String> {
    mesh.graph
        .links
        .iter()
        .map(|(a, b, _)| format!("{}-{}", mesh.names[*a], mesh.names[*b]))
        .collect()
}

/// Analyse: links and routers that left the mesh since the last plan are incidents.
fn open_incidents(s: &Shared, mesh: &Mesh, prev: &BTreeSet<String>, links: &BTreeSet<String>) {
    let now = unix_ns(SystemTime::now());
    for lost in prev.difference(links) {
        tracing::warn!(link = %lost, "incident: link lost");
        if let Err(e) = s
            .knowledge
            .open_incident("link-lost", lost, now, "recompute-paths")
        {
            tracing::error!(error = %e, "knowledge base: incident not recorded");
        }
    }
    let attached =
        |set: &BTreeSet<String>, r: &str| set.iter().any(|l| l.split('-').any(|x| x == r));
    for r in &mesh.names {
        if attached(prev, r) && !attached(links, r) {
            tracing::warn!(router = %r, "incident: router lost");
            let _ = s
                .knowledge
                .open_incident("router-lost", r, now, "recompute-paths");
        }
    }
}

/// Execute confirmed: the paths the mesh calls for are in force (or, in observe mode,
/// would be), so open incidents end here.
fn in_force(shared: &Mutex<Shared>, mode: Mode, replaced: usize) {
    let mut s = shared.lock().expect("brain lock");
    if replaced > 0 && mode == Mode::Enforce {
        s.pushes += 1;
        s.last_push_unix_ns = unix_ns(SystemTime::now());
        tracing::info!(replaced, ?mode, "next-hop sets updated");
    }
    let now = unix_ns(SystemTime::now());
    for i in s.knowledge.open_incidents().unwrap_or_default() {
        if let Err(e) = s.knowledge.close_incident(i.id, now, mode == Mode::Enforce) {
            tracing::error!(error = %e, "knowledge base: incident not closed");
        } else {
            let ms = (now - i.detected_unix_ns) / 1_000_000;
            tracing::info!(kind = %i.kind, subject = %i.subject, ms, "incident repaired");
        }
    }
}
