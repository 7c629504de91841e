//! MAPE-K for misbehaviour, acting through the dataplane's policy. Monitor: link-state
//! records each neighbour's brain floods that fail verification (forged, malformed), and
//! the packets from each neighbour that the fast path hands to this router's own stack
//! (the dataplane's stats stream: transit traffic, however much of it, is the mesh's job
//! and never a flood; what floods the router itself is). Analyse: a detector
//! per neighbour and metric, with absolute floors. Plan: "router-misbehaving" ->
//! quarantine-node (deny everything from its prefixes and link addresses), "source-flood"
//! -> rate-limit-source (cap what comes from its prefixes), from the strategy table the
//! knowledge base scores. Execute: GetPolicy, add the brain's own identity and rule in
//! front of the operator's, SetPolicy, read back to confirm; the executor's rate limit and
//! circuit breaker guard it, and an unconfirmed action is rolled back. Everything the
//! brain adds is named `brain-...`, so it never touches the operator's entries, and it
//! lifts its own actions after a hold time.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use x0_proto::dataplane::v1 as dpb;

use crate::{
    mapek::analyze::{Detector, Model, Strategy},
    mapek::execute::Executor,
    mapek::knowledge::Knowledge,
};

/// Bad records a minute below this are never an anomaly (a restarted peer may send a few).
pub const BAD_RECORDS_FLOOR: f64 = 5.0;
/// Packets a second to the router itself below this are never a flood.
pub const FLOOD_FLOOR_PPS: f64 = 5_000.0;
/// How long a quarantine or rate limit lasts.
pub const HOLD: Duration = Duration::from_secs(600);
/// The strategies, best first before the knowledge base scores them.
const STRATEGIES: &[(&str, &[&str])] = &[
    ("router-misbehaving", &["quarantine-node"]),
    ("source-flood", &["rate-limit-source"]),
];

/// What the guard asks the daemon to do to the dataplane's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quarantine {
        router: String,
        prefixes: Vec<String>,
    },
    RateLimit {
        router: String,
        prefixes: Vec<String>,
        pps: u64,
    },
    /// Remove what the brain added for this router.
    Lift { router: String },
}

impl Action {
    /// The identity the action adds (or, for Lift, removes).
    pub fn identity(&self) -> String {
        match self {
            Action::Quarantine { router, .. } => format!("brain-quarantine-{router}"),
            Action::RateLimit { router, .. } => format!("brain-rate-limit-{router}"),
            Action::Lift { router } => format!("brain-*-{router}"),
        }
    }
}

fn is_brains_for(name: &str, router: &str) -> bool {
    name == format!("brain-quarantine-{router}") || name == format!("brain-rate-limit-{router}")
}

/// The policy with `action` applied: the brain's identity and rule go first, so that they
/// win over the operator's rules (the first matching rule decides).
pub fn apply(policy: &dpb::Policy, action: &Action) -> dpb::Policy {
    let mut p = policy.clone();
    p.generation = 0;
    for r in &mut p.rules {
        r.packets = 0;
        r.id = 0;
    }
    match action {
        Action::Lift { router } => {
            p.identities.retain(|i| !is_brains_for(&i.name, router));
            p.rules
                .retain(|r| !is_brains_for(&r.from, router) && !is_brains_for(&r.to, router));
        }
        Action::Quarantine { prefixes, .. } | Action::RateLimit { prefixes, .. } => {
            let name = action.identity();
            p.identities.retain(|i| i.name != name);
            p.rules.retain(|r| r.from != name);
            let id = p.identities.iter().map(|i| i.id).max().unwrap_or(0) + 1;
            p.identities.push(dpb::Identity {
                name: name.clone(),
                id,
                prefixes: prefixes.clone(),
            });
            let (action, rate) = match action {
                Action::RateLimit { pps, .. } => (
                    "allow",
                    Some(dpb::RateLimit {
                        pps: *pps,
                        burst: (*pps / 10).max(1),
                    }),
                ),
                _ => ("deny", None),
            };
            p.rules.insert(
                0,
                dpb::Rule {
                    from: name,
                    to: "any".into(),
                    proto: "any".into(),
                    ports: String::new(),
                    action: action.into(),
                    rate,
                    packets: 0,
                    id: 0,
                },
            );
            p.enabled = true;
        }
    }
    p
}

/// Whether `policy` shows `action` in force (the confirmation the executor waits for).
pub fn in_force(policy: &dpb::Policy, action: &Action) -> bool {
    match action {
        Action::Lift { router } => !policy
            .identities
            .iter()
            .any(|i| is_brains_for(&i.name, router)),
        _ => {
            let name = action.identity();
            policy.enabled
                && policy.identities.iter().any(|i| i.name == name)
                && policy.rules.first().is_some_and(|r| r.from == name)
        }
    }
}

struct Held {
    since: Instant,
}

pub struct Guard {
    /// Bad records each neighbour sent, as last seen (a running count).
    bad_seen: HashMap<String, u64>,
    bad: HashMap<String, Vec<(Instant, u64)>>,
    passed_last: HashMap<String, (Instant, u64)>,
    detectors: HashMap<(String, &'static str), Detector>,
    executor: Executor<Action>,
    /// Actions in force, by router.
    held: HashMap<String, Held>,
    /// The action awaiting confirmation, with its incident.
    pending: Option<(Action, u64)>,
    last_sample: Instant,
}

impl Guard {
    pub fn new(now: Instant) -> Self {
        Self {
            bad_seen: HashMap::new(),
            bad: HashMap::new(),
            passed_last: HashMap::new(),
            detectors: HashMap::new(),
            // At most 2 actions, one more per 5 minutes; 2 failed ones open the breaker.
            executor: Executor::new(
                2,
                Duration::from_secs(300),
                2,
                Duration::from_secs(600),
                now,
            ),
            held: HashMap::new(),
            pending: None,
            last_sample: now,
        }
    }

    /// Monitor: the running count of bad records `neighbor`'s brain has flooded to us.
    pub fn on_bad_records(&mut self, neighbor: &str, total: u64, now: Instant) {
        let before = self.bad_seen.insert(neighbor.into(), total).unwrap_or(0);
        // the series exists from the first look, so that the quiet time is the baseline
        let series = self.bad.entry(neighbor.into()).or_default();
        if total > before {
            series.push((now, total - before));
        }
    }

    /// Monitor: packets from `neighbor`'s interface passed to the router's own stack, in all.
    pub fn on_passed_packets(&mut self, neighbor: &str, total: u64, now: Instant) -> Option<f64> {
        let last = self.passed_last.insert(neighbor.into(), (now, total));
        let (then, before) = last?;
        let secs = now.duration_since(then).as_secs_f64();
        (total >= before && secs > 0.0).then(|| (total - before) as f64 / secs)
    }

    fn detector(&mut self, neighbor: &str, metric: &'static str) -> &mut Detector {
        self.detectors
            .entry((neighbor.to_string(), metric))
            .or_insert_with(|| match metric {
                "bad_records_per_min" => Detector::new(
                    metric,
                    Strategy::Percentile {
                        p: 0.95,
                        margin: 0.5,
                    },
                    600,
                    2,
                ),
                _ => Detector::new(
                    metric,
                    Strategy::Ewma {
                        alpha: 0.1,
                        k_sigma: 4.0,
                    },
                    600,
                    10,
                ),
            })
    }

    /// Analyse and plan: the action to take now, if any (at most one per call). `pps` is
    /// the latest packet rate per neighbour; `prefixes(router)` what it is reached for
    /// (its advertised prefixes and its link addresses). Observe mode records the incident
    /// and returns nothing.
    pub fn tick(
        &mut self,
        now: Instant,
        kb: &Knowledge,
        observe: bool,
        pps: &HashMap<String, f64>,
        prefixes: &dyn Fn(&str) -> Vec<String>,
    ) -> Option<Action> {
        // Lift what has been held long enough.
        if self.pending.is_none()
            && let Some(router) = self
                .held
                .iter()
                .find(|(_, h)| now.duration_since(h.since) >= HOLD)
                .map(|(r, _)| r.clone())
        {
            self.held.remove(&router);
            tracing::info!(%router, "lifting the brain's policy action: hold time over");
            return Some(Action::Lift { router });
        }
        if self.pending.is_some() || now.duration_since(self.last_sample) < Duration::from_secs(1) {
            return None;
        }
        self.last_sample = now;
        let unix = crate::mapek::link_health::unix_ns();
        let mut found: Vec<(&'static str, String, f64)> = Vec::new();
        let neighbors: Vec<String> = self.bad.keys().cloned().collect();
        for n in neighbors {
            let series = self.bad.get_mut(&n).expect("held");
            series.retain(|(t, _)| now.duration_since(*t) <= Duration::from_secs(60));
            let per_min: f64 = series.iter().map(|x| x.1 as f64).sum();
            let anomaly = self
                .detector(&n, "bad_records_per_min")
                .observe(unix, per_min);
            if anomaly.is_some() && per_min >= BAD_RECORDS_FLOOR {
                found.push(("router-misbehaving", n, per_min));
            }
        }
        for (n, rate) in pps {
            let anomaly = self.detector(n, "passed_pps").observe(unix, *rate);
            if anomaly.is_some() && *rate >= FLOOD_FLOOR_PPS {
                found.push(("source-flood", n.clone(), *rate));
            }
        }
        for (kind, router, value) in found {
            if self.held.contains_key(&router) {
                continue;
            }
            let strategy = kb.best_strategy(STRATEGIES, kind)?;
            tracing::warn!(%router, kind, value, strategy, "anomaly");
            if observe {
                if let Ok(id) =
                    kb.open_incident(kind, &router, unix, &format!("{strategy} (observe)"))
                {
                    let _ = kb.close_incident(id, unix, false);
                }
                tracing::info!(%router, strategy, "observe: would act on the policy");
                continue;
            }
            let targets = prefixes(&router);
            if targets.is_empty() {
                continue;
            }
            let action = match kind {
                "router-misbehaving" => Action::Quarantine {
                    router: router.clone(),
                    prefixes: targets,
                },
                _ => Action::RateLimit {
                    router: router.clone(),
                    prefixes: targets,
                    // what it sent before the surge, with room: never below the floor
                    pps: (self.detectors[&(router.clone(), "passed_pps")].baseline() * 2.0)
                        .max(FLOOD_FLOOR_PPS) as u64,
                },
            };
            match self.executor.begin(
                action.clone(),
                Action::Lift {
                    router: router.clone(),
                },
                now,
            ) {
                Ok(()) => {
                    let incident = kb.open_incident(kind, &router, unix, strategy).unwrap_or(0);
                    self.pending = Some((action.clone(), incident));
                    return Some(action);
                }
                Err(refusal) => tracing::warn!(%router, ?refusal, "action refused by the guards"),
            }
        }
        None
    }

    /// Execute, confirmed or not: the daemon read the policy back after applying the
    /// pending action. Returns the rollback to apply when it did not take.
    pub fn confirm(&mut self, ok: bool, kb: &Knowledge, now: Instant) -> Option<Action> {
        let (action, incident) = self.pending.take()?;
        let _ = kb.close_incident(incident, crate::mapek::link_health::unix_ns(), ok);
        let undo = self.executor.confirm(ok, now);
        if ok {
            let router = match &action {
                Action::Quarantine { router, .. } | Action::RateLimit { router, .. } => router,
                Action::Lift { router } => router,
            };
            self.held.insert(router.clone(), Held { since: now });
        }
        undo
    }

    /// Routers the brain acts on now, for the status.
    pub fn state(&self) -> Vec<String> {
        let mut v: Vec<String> = self.held.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator_policy() -> dpb::Policy {
        dpb::Policy {
            identities: vec![dpb::Identity {
                name: "hosts".into(),
                id: 7,
                prefixes: vec!["198.18.1.0/24".into()],
            }],
            rules: vec![dpb::Rule {
                from: "hosts".into(),
                to: "any".into(),
                proto: "any".into(),
                action: "allow".into(),
                packets: 99,
                id: 1,
                ..Default::default()
            }],
            defaults: vec![],
            generation: 4,
            enabled: false,
        }
    }

    #[test]
    fn quarantine_goes_first_and_lifting_restores_the_operators_policy() {
        let op = operator_policy();
        let q = Action::Quarantine {
            router: "r1".into(),
            prefixes: vec!["198.18.1.0/24".into(), "198.18.12.1/32".into()],
        };
        let p = apply(&op, &q);
        assert!(in_force(&p, &q));
        assert_eq!(p.rules[0].from, "brain-quarantine-r1");
        assert_eq!(p.rules[0].action, "deny");
        assert_eq!(
            p.rules[1].from, "hosts",
            "the operator's rule is kept, after"
        );
        assert_eq!(p.identities.last().unwrap().id, 8, "a free identity id");
        assert!(p.enabled);
        // applying twice adds nothing
        assert_eq!(apply(&p, &q), p);
        let lift = Action::Lift {
            router: "r1".into(),
        };
        let back = apply(&p, &lift);
        assert!(in_force(&back, &lift));
        assert_eq!(back.identities, op.identities);
        assert_eq!(back.rules.len(), 1);
        assert_eq!(back.rules[0].from, "hosts");
        assert!(!in_force(&op, &q));
    }

    #[test]
    fn a_rate_limit_is_an_allow_with_a_rate() {
        let a = Action::RateLimit {
            router: "r4".into(),
            prefixes: vec!["198.18.2.0/24".into()],
            pps: 20_000,
        };
        let p = apply(&operator_policy(), &a);
        assert!(in_force(&p, &a));
        let r = &p.rules[0];
        assert_eq!(
            (
                r.action.as_str(),
                r.rate.unwrap().pps,
                r.rate.unwrap().burst
            ),
            ("allow", 20_000, 2_000)
        );
    }

    fn kb() -> (tempfile::TempDir, Knowledge) {
        let dir = tempfile::tempdir().unwrap();
        let kb = Knowledge::open(&dir.path().join("kb.redb")).unwrap();
        (dir, kb)
    }

    #[test]
    fn a_burst_of_forged_records_quarantines_the_sender_once_and_is_lifted_later() {
        let (_d, kb) = kb();
        let t0 = Instant::now();
        let mut g = Guard::new(t0);
        let prefixes = |r: &str| vec![format!("prefix-of-{r}")];
        let none = HashMap::new();
        // quiet for a while: nothing
        for s in 1..5 {
            g.on_bad_records("r1", 0, t0 + Duration::from_secs(s));
            assert_eq!(
                g.tick(t0 + Duration::from_secs(s), &kb, false, &none, &prefixes),
                None
            );
        }
        // then a few: below the floor
        g.on_bad_records("r1", 2, t0 + Duration::from_secs(5));
        assert_eq!(
            g.tick(t0 + Duration::from_secs(5), &kb, false, &none, &prefixes),
            None
        );
        // then many
        g.on_bad_records("r1", 40, t0 + Duration::from_secs(6));
        let a = g.tick(t0 + Duration::from_secs(6), &kb, false, &none, &prefixes);
        assert_eq!(
            a,
            Some(Action::Quarantine {
                router: "r1".into(),
                prefixes: vec!["prefix-of-r1".into()]
            })
        );
        assert!(g.is_pending());
        assert_eq!(g.confirm(true, &kb, t0 + Duration::from_secs(7)), None);
        assert_eq!(g.state(), vec!["r1".to_string()]);
        // still bad: no second action while held
        g.on_bad_records("r1", 80, t0 + Duration::from_secs(8));
        assert_eq!(
            g.tick(t0 + Duration::from_secs(8), &kb, false, &none, &prefixes),
            None
        );
        let i = kb.incidents().unwrap();
        assert_eq!(
            (i[0].kind.as_str(), i[0].strategy.as_str(), i[0].success),
            ("router-misbehaving", "quarantine-node", Some(true))
        );
        // after the hold time it is lifted
        let later = t0 + Duration::from_secs(7) + HOLD;
        assert_eq!(
            g.tick(later, &kb, false, &none, &prefixes),
            Some(Action::Lift {
                router: "r1".into()
            })
        );
        assert!(g.state().is_empty());
    }

    #[test]
    fn an_unconfirmed_action_is_rolled_back_and_observe_changes_nothing() {
        let (_d, kb) = kb();
        let t0 = Instant::now();
        let prefixes = |r: &str| vec![format!("prefix-of-{r}")];
        let mut g = Guard::new(t0);
        let mut pps = HashMap::new();
        for s in 1..=20 {
            pps.insert("r4".to_string(), 1000.0 + (s % 3) as f64 * 10.0);
            assert_eq!(
                g.tick(t0 + Duration::from_secs(s), &kb, false, &pps, &prefixes),
                None
            );
        }
        pps.insert("r4".to_string(), 80_000.0);
        let a = g
            .tick(t0 + Duration::from_secs(21), &kb, false, &pps, &prefixes)
            .unwrap();
        let Action::RateLimit { pps: limit, .. } = a else {
            panic!("{a:?}")
        };
        assert!(
            (5_000..=10_000).contains(&limit),
            "twice the baseline, at least the floor: {limit}"
        );
        assert_eq!(
            g.confirm(false, &kb, t0 + Duration::from_secs(22)),
            Some(Action::Lift {
                router: "r4".into()
            })
        );
        assert!(g.state().is_empty());

        let mut o = Guard::new(t0);
        for s in 1..=20 {
            pps.insert("r4".to_string(), 1000.0);
            o.tick(t0 + Duration::from_secs(s), &kb, true, &pps, &prefixes);
        }
        pps.insert("r4".to_string(), 80_000.0);
        assert_eq!(
            o.tick(t0 + Duration::from_secs(21), &kb, true, &pps, &prefixes),
            None
        );
        assert!(
            kb.incidents()
                .unwrap()
                .iter()
                .any(|i| i.strategy == "rate-limit-source (observe)")
        );
    }
}
