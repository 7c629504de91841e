//! The brain's Prometheus endpoint (`[metrics]` in brain.toml; off without it): floods
//! and pushes counted as they happen, and at scrape time what the shared state holds
//! (link-state records, the mesh, unprotected destinations, incidents, anomaly scores).
//! Label values are bounded: neighbours, reject reasons, incident kinds.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
};

use x0_ops::{
    Collector, DescriptorEncoder, Labels, Registry, Scrape, Unit,
    prometheus_client::metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
};

use crate::linkstate::state::Shared;

type NeighborOutcome = [(&'static str, String); 2];

/// Counted as it happens, by the peer tasks and the planner.
#[derive(Debug)]
pub struct Live {
    floods: Family<NeighborOutcome, Counter>,
    flooded_records: Family<[(&'static str, String); 1], Counter>,
    pushes: Family<[(&'static str, String); 1], Counter>,
    push_seconds: Histogram,
    /// Hellos refused before they became candidates, by reason.
    hellos_refused: Family<[(&'static str, String); 1], Counter>,
    /// Candidates' verifications (mutual TLS and status), by outcome or reason failed.
    verifications: Family<[(&'static str, String); 1], Counter>,
    /// Neighbours found and lost by discovery.
    discovered: Family<[(&'static str, String); 1], Counter>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            floods: Family::default(),
            flooded_records: Family::default(),
            pushes: Family::default(),
            // 1 ms .. 4 s.
            push_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            hellos_refused: Family::default(),
            verifications: Family::default(),
            discovered: Family::default(),
        }
    }
}

impl Live {
    /// Every neighbour's and outcome's series exist from the start (at 0), so queries and
    /// alerts see them before the first flood or push.
    pub fn new(neighbors: &[crate::config::NeighborConfig]) -> Self {
        let live = Self::default();
        for n in neighbors {
            live.watch(&n.router);
        }
        for outcome in ["ok", "failed"] {
            let _ = live.pushes.get_or_create(&[("outcome", outcome.into())]);
        }
        for change in ["up", "down"] {
            let _ = live.discovered.get_or_create(&[("change", change.into())]);
        }
        let _ = live
            .verifications
            .get_or_create(&[("outcome", "ok".into())]);
        live
    }

    /// A neighbour's series, at 0 until it is flooded to.
    pub fn watch(&self, router: &str) {
        for outcome in ["answered", "failed"] {
            let labels = [
                ("neighbor", router.to_string()),
                ("outcome", outcome.into()),
            ];
            let _ = self.floods.get_or_create(&labels);
        }
        let neighbor = [("neighbor", router.to_string())];
        let _ = self.flooded_records.get_or_create(&neighbor);
    }

    pub fn hello_refused(&self, reason: &str) {
        self.hellos_refused
            .get_or_create(&[("reason", reason.into())])
            .inc();
    }

    /// A verification's outcome: "ok" or the reason it failed.
    pub fn verified(&self, outcome: &str) {
        self.verifications
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
    }

    pub fn discovered(&self, up: bool) {
        let change = if up { "up" } else { "down" };
        self.discovered
            .get_or_create(&[("change", change.into())])
            .inc();
    }

    /// A Flood RPC to `neighbor` with `records`, and whether it answered.
    pub fn flooded(&self, neighbor: &str, records: usize, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        self.floods
            .get_or_create(&[
                ("neighbor", neighbor.to_string()),
                ("outcome", outcome.into()),
            ])
            .inc();
        self.flooded_records
            .get_or_create(&[("neighbor", neighbor.to_string())])
            .inc_by(records as u64);
    }

    /// A push of next-hop sets to the dataplane: how long it took and how it went.
    pub fn pushed(&self, seconds: f64, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.pushes
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
        if ok {
            self.push_seconds.observe(seconds);
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "x0_brain_floods",
            "Flood RPCs to each neighbour's brain, by outcome",
            self.floods.clone(),
        );
        r.register(
            "x0_brain_flooded_records",
            "Link-state records sent to each neighbour's brain",
            self.flooded_records.clone(),
        );
        r.register(
            "x0_brain_pushes",
            "Syncs of the next-hop sets with the dataplane, by outcome",
            self.pushes.clone(),
        );
        r.register(
            "x0_brain_hellos_refused",
            "Discovery hellos refused before they became candidates, by reason",
            self.hellos_refused.clone(),
        );
        r.register(
            "x0_brain_verifications",
            "Discovered candidates' mutual-TLS verifications, ok or by the reason they failed",
            self.verifications.clone(),
        );
        r.register(
            "x0_brain_discovered",
            "Neighbours found (up) and lost (down) by discovery",
            self.discovered.clone(),
        );
        r.register_with_unit(
            "x0_brain_push_duration",
            "Time a sync with the dataplane took",
            Unit::Seconds,
            self.push_seconds.clone(),
        );
    }
}

/// The registry the endpoint serves.
pub fn registry(live: &Arc<Live>, shared: Arc<Mutex<Shared>>) -> Registry {
    let mut r = Registry::default();
    x0_ops::register_build_info(&mut r, "brain");
    x0_ops::register_process(&mut r);
    live.register(&mut r);
    r.register_collector(Box::new(StateCollector(shared)));
    r
}

struct StateCollector(Arc<Mutex<Shared>>);

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateCollector")
    }
}

impl Collector for StateCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut s = Scrape::new(encoder);
        let state = self.0.lock().expect("brain lock");
        records(&mut s, &state)?;
        mesh(&mut s, &state)?;
        incidents(&mut s, &state)?;
        scores(&mut s, &state)
    }
}

fn one(name: &'static str, value: impl ToString) -> Labels {
    vec![(name, value.to_string())]
}

fn records(s: &mut Scrape, st: &Shared) -> fmt::Result {
    let mut outcomes = vec![(one("outcome", "accepted"), st.lsdb.accepted)];
    outcomes.push((one("outcome", "duplicate"), st.lsdb.duplicates));
    for (reason, n) in &st.lsdb.rejected {
        outcomes.push((one("outcome", reason), *n));
    }
    s.counters(
        "x0_brain_records",
        "Link-state records offered by neighbours: accepted, duplicates, and rejected by reason",
        None,
        outcomes,
    )?;
    s.counters(
        "x0_brain_records_failed_verification",
        "Records a neighbour's brain flooded that failed verification (forged, malformed)",
        None,
        st.bad_from.iter().map(|(n, v)| (one("neighbor", n), *v)),
    )
}

fn mesh(s: &mut Scrape, st: &Shared) -> fmt::Result {
    let mesh = st.mesh();
    s.gauge(
        "x0_brain_mesh_routers",
        "Routers in the mesh this brain plans over",
        None,
        mesh.names.len() as f64,
    )?;
    s.gauge(
        "x0_brain_mesh_links",
        "Links in the mesh this brain plans over",
        None,
        mesh.graph.links.len() as f64,
    )?;
    s.gauge(
        "x0_brain_paths",
        "Destinations with next hops planned",
        None,
        st.paths.len() as f64,
    )?;
    s.gauge(
        "x0_brain_unprotected_destinations",
        "Destinations without a safe backup path",
        None,
        st.unprotected.len() as f64,
    )?;
    s.gauge(
        "x0_brain_last_push_timestamp",
        "When next-hop sets were last pushed (0: never)",
        Some(Unit::Seconds),
        x0_ops::unix_seconds(st.last_push_unix_ns),
    )
}

fn incidents(s: &mut Scrape, st: &Shared) -> fmt::Result {
    let all = st.knowledge.incidents().unwrap_or_default();
    let mut by_kind: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut repair: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in &all {
        let outcome = match i.success {
            None => "open",
            Some(true) => "repaired",
            Some(false) => "observed",
        };
        *by_kind.entry((i.kind.clone(), outcome)).or_insert(0) += 1;
        if let Some(ms) = i.time_to_repair_ms() {
            repair
                .entry(i.kind.clone())
                .or_default()
                .push(ms as f64 / 1e3);
        }
    }
    s.counters(
        "x0_brain_incidents",
        "Incidents by kind and outcome (open, repaired, or observed only)",
        None,
        by_kind
            .into_iter()
            .map(|((kind, outcome), n)| (vec![("kind", kind), ("outcome", outcome.into())], n)),
    )?;
    s.gauges(
        "x0_brain_time_to_repair",
        "Time to repair by incident kind: median, 99th percentile and maximum",
        Some(Unit::Seconds),
        repair.into_iter().flat_map(|(kind, mut v)| {
            v.sort_by(f64::total_cmp);
            [("0.5", 0.5), ("0.99", 0.99), ("1", 1.0)].map(|(q, at)| {
                let idx = ((v.len() - 1) as f64 * at).round() as usize;
                (vec![("kind", kind.clone()), ("quantile", q.into())], v[idx])
            })
        }),
    )
}

fn scores(s: &mut Scrape, st: &Shared) -> fmt::Result {
    let own = st.own_telemetry.as_ref().and_then(|t| t.score);
    s.gauges(
        "x0_brain_anomaly_score",
        "The anomaly model's score of this router (0 calm .. 1 anomalous), if a model runs",
        None,
        own.map(|v| (Labels::new(), f64::from(v))),
    )?;
    s.gauges(
        "x0_brain_link_anomaly_score",
        "Each link's anomaly score (the lower of its two ends')",
        None,
        st.links.iter().filter_map(|l| {
            Some((
                one("neighbor", &l.neighbor),
                f64::from(st.link_score(&l.neighbor)?),
            ))
        }),
    )
}
