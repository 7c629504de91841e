//! The MAPE-K loop for link health. Monitor: each neighbour's adjacency losses, as a
//! bounded series of flaps per minute. Analyse: a detector per neighbour (percentile of
//! its own history, with an absolute floor so that one flap is never an anomaly). Plan:
//! the strategy for the anomaly from a table the knowledge base scores (success rate).
//! Execute: through the executor's rate limit and circuit breaker; the effect is checked
//! (the mesh shows the drained cost) and the action rolled back when it does not show.
//! Knowledge: every anomaly is an incident with its strategy and outcome.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    config::Mode,
    mapek::analyze::{Detector, Model, Strategy},
    mapek::execute::Executor,
    mapek::knowledge::Knowledge,
};

/// Flaps per minute below this are never an anomaly.
pub const FLAP_FLOOR: f64 = 3.0;
/// A drained link's cost is multiplied by this.
pub const DRAIN_FACTOR: u32 = 10;
/// How long a drain lasts before the link is trusted again.
pub const DRAIN_HOLD: Duration = Duration::from_secs(120);
/// When the effect of an action is checked.
const CONFIRM_AFTER: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(60);

/// Recovery strategies per anomaly kind, best first before the knowledge base scores them.
const STRATEGIES: &[(&str, &[&str])] = &[("link-flapping", &["drain-link"])];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Drain(String),
    Undrain(String),
}

struct Drain {
    since: Instant,
    incident: u64,
    confirm_at: Option<Instant>,
}

pub struct LinkHealth {
    mode: Mode,
    flaps: HashMap<String, VecDeque<Instant>>,
    detectors: HashMap<String, Detector>,
    executor: Executor<Action>,
    drained: HashMap<String, Drain>,
    last_sample: Instant,
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl LinkHealth {
    pub fn new(mode: Mode, now: Instant) -> Self {
        Self {
            mode,
            flaps: HashMap::new(),
            detectors: HashMap::new(),
            // At most 3 actions, one more per minute; 2 failed ones open the breaker for 5 minutes.
            executor: Executor::new(3, Duration::from_secs(60), 2, Duration::from_secs(300), now),
            drained: HashMap::new(),
            last_sample: now,
        }
    }

    /// Monitor: watch this neighbour from now on (its series starts at zero flaps).
    pub fn watch(&mut self, neighbor: &str) {
        self.flaps.entry(neighbor.into()).or_default();
    }

    /// Monitor: an adjacency went down.
    pub fn on_down(&mut self, neighbor: &str, now: Instant) {
        self.flaps
            .entry(neighbor.into())
            .or_default()
            .push_back(now);
    }

    /// The cost to advertise for a neighbour.
    pub fn cost(&self, neighbor: &str, base: u32) -> u32 {
        if self.drained.contains_key(neighbor) {
            base.saturating_mul(DRAIN_FACTOR)
        } else {
            base
        }
    }

    /// What the loop is doing, for the status.
    pub fn state(&self) -> String {
        let mut drained: Vec<&String> = self.drained.keys().collect();
        drained.sort();
        format!(
            "breaker {:?}; drained {:?}",
            self.executor.breaker(),
            drained
        )
    }

    /// One turn of the loop. `mesh_cost(neighbor)` is the link's cost as the mesh (the
    /// database) has it now. Returns whether advertised costs changed (re-originate).
    pub fn tick(
        &mut self,
        now: Instant,
        kb: &Knowledge,
        router: &str,
        base_cost: &dyn Fn(&str) -> Option<u32>,
        mesh_cost: &dyn Fn(&str) -> Option<u32>,
    ) -> bool {
        let mut changed = false;
        // Execute, confirm: the drained cost must show in the mesh, or the drain is undone.
        let neighbors: Vec<String> = self.drained.keys().cloned().collect();
        for n in neighbors {
            let d = &self.drained[&n];
            if let Some(at) = d.confirm_at
                && now >= at
            {
                let want = base_cost(&n).map(|c| c.saturating_mul(DRAIN_FACTOR));
                let ok = want.is_some() && mesh_cost(&n) == want;
                let incident = d.incident;
                self.drained.get_mut(&n).expect("held").confirm_at = None;
                let undo = self.executor.confirm(ok, now);
                let _ = kb.close_incident(incident, unix_ns(), ok);
                if let Some(Action::Undrain(n)) = undo {
                    tracing::warn!(neighbor = %n, "drain not confirmed: rolled back");
                    self.drained.remove(&n);
                    changed = true;
                } else {
                    tracing::info!(neighbor = %n, "drain confirmed: the mesh routes around the link");
                }
            } else if d.since + DRAIN_HOLD <= now {
                tracing::info!(neighbor = %n, "drain over: the link is trusted again");
                self.drained.remove(&n);
                changed = true;
            }
        }
        if now.duration_since(self.last_sample) < SAMPLE_EVERY {
            return changed;
        }
        self.last_sample = now;
        // Monitor and analyse: flaps per minute, per neighbour.
        let neighbors: Vec<String> = self.flaps.keys().cloned().collect();
        for n in neighbors {
            let series = self.flaps.get_mut(&n).expect("held");
            while series
                .front()
                .is_some_and(|t| now.duration_since(*t) > WINDOW)
            {
                series.pop_front();
            }
            let per_min = series.len() as f64;
            let detector = self.detectors.entry(n.clone()).or_insert_with(|| {
                Detector::new(
                    "flaps_per_min",
                    Strategy::Percentile {
                        p: 0.95,
                        margin: 0.5,
                    },
                    600,
                    2,
                )
            });
            let anomaly = detector.observe(unix_ns(), per_min);
            if anomaly.is_none() || per_min < FLAP_FLOOR || self.drained.contains_key(&n) {
                continue;
            }
            // Plan.
            let Some(strategy) = kb.best_strategy(STRATEGIES, "link-flapping") else {
                continue;
            };
            let subject = format!("{router}-{n}");
            tracing::warn!(link = %subject, flaps_per_min = per_min, strategy, "anomaly: link flapping");
            if self.mode == Mode::Observe {
                let id = kb.open_incident(
                    "link-flapping",
                    &subject,
                    unix_ns(),
                    &format!("{strategy} (observe)"),
                );
                if let Ok(id) = id {
                    let _ = kb.close_incident(id, unix_ns(), false);
                }
                tracing::info!(link = %subject, "observe: would drain the link");
                continue;
            }
            // Execute, through the guards.
            match self
                .executor
                .begin(Action::Drain(n.clone()), Action::Undrain(n.clone()), now)
            {
                Ok(()) => {
                    let incident = kb
                        .open_incident("link-flapping", &subject, unix_ns(), strategy)
                        .unwrap_or(0);
                    self.drained.insert(
                        n.clone(),
                        Drain {
                            since: now,
                            incident,
                            confirm_at: Some(now + CONFIRM_AFTER),
                        },
                    );
                    tracing::warn!(link = %subject, factor = DRAIN_FACTOR, "draining the link (cost raised)");
                    changed = true;
                }
                Err(refusal) => {
                    tracing::warn!(link = %subject, ?refusal, "action refused by the guards")
                }
            }
        }
        changed
    }
}
