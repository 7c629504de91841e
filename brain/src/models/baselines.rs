//! The detectors GraphSAGE must beat, on the same features and the same data: the MAPE-K
//! loop's own adaptive thresholds (EWMA, percentile, IQR: `mapek::analyze`) run per router
//! over every feature, and a per-feature z-score against the fault-free training data; the
//! random forest (`forest`) is trained like GraphSAGE and judged as a `Trained` model.
//! Each gets its alarm rule (threshold and hold) the way GraphSAGE does: the best event-F1
//! on the training data.

use super::{
    dataset::Dataset,
    evaluate::{Rule, Scores, evaluate, event_f1},
    features::{FEATURES, Features},
    store::Model,
};
use crate::mapek::analyze::{Detector as Adaptive, Model as _, Strategy};

/// A detector under evaluation.
pub trait Detector {
    fn name(&self) -> String;
    /// Learns from the training datasets (and calibrates its rule).
    fn fit(&mut self, train: &[Dataset]);
    /// Scores every snapshot of `ds`, one per router (NaN where absent).
    fn scores(&self, ds: &Dataset) -> Scores;
    fn rule(&self) -> Rule;
    /// What it keeps to score (its model file's size, or its parameters').
    fn bytes(&self) -> usize;
}

/// The rule with the best event-F1 on `train` (incidents detected against false alarms,
/// as the benchmark judges): a hold of 1 to `MAX_HOLD` intervals, and a threshold among
/// 200 quantiles of the training scores. Ties go to the shorter hold, then the lower
/// threshold (the earlier alarm).
pub fn calibrate(d: &dyn Detector, train: &[Dataset]) -> Rule {
    let scored: Vec<(&Dataset, Scores)> = train.iter().map(|ds| (ds, d.scores(ds))).collect();
    let mut all: Vec<f32> = scored
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|(_, v)| v.iter().copied()))
        .filter(|v| !v.is_nan())
        .collect();
    all.sort_by(f32::total_cmp);
    all.dedup();
    if all.is_empty() {
        return UNFIT;
    }
    let f1 = |rule: Rule| {
        let (mut faults, mut detected, mut alarms) = (0, 0, 0);
        for (ds, s) in &scored {
            let r = evaluate(ds, s, rule);
            (faults, detected, alarms) = (
                faults + r.faults,
                detected + r.detected,
                alarms + r.false_alarms,
            );
        }
        event_f1(detected, faults, alarms)
    };
    let candidates = (1..=MAX_HOLD).flat_map(|hold| {
        (0..200).map(move |i| (hold, i)).map(|(hold, i)| Rule {
            threshold: all[i * (all.len() - 1) / 199],
            hold,
        })
    });
    candidates
        .map(|r| (f1(r), r))
        .fold((-1.0, UNFIT), |best, c| if c.0 > best.0 { c } else { best })
        .1
}

/// The rule of a detector not yet fitted: never flags.
const UNFIT: Rule = Rule {
    threshold: f32::INFINITY,
    hold: 1,
};

/// The longest hold a rule may ask for (the goal's median delay is 3 intervals).
pub const MAX_HOLD: usize = 3;

/// Scores for every snapshot of `ds`: `score` maps a snapshot's graph to its routers'.
fn per_snapshot(
    ds: &Dataset,
    mut score: impl FnMut(&super::dataset::Snapshot) -> Vec<f32>,
) -> Scores {
    let routers = ds.meta.routers.len();
    ds.snapshots()
        .iter()
        .map(|snap| (snap.t, snap.spread(routers, &score(snap))))
        .collect()
}

/// Per feature: how many standard deviations from its fault-free training mean; the
/// router's score is the largest.
#[derive(Default)]
pub struct ZScore {
    mean: Vec<f32>,
    sd: Vec<f32>,
    rule: Option<Rule>,
}

impl Detector for ZScore {
    fn name(&self) -> String {
        "z-score (per feature)".into()
    }

    fn fit(&mut self, train: &[Dataset]) {
        let calm: Vec<Features> = train
            .iter()
            .flat_map(|ds| {
                ds.examples().into_iter().flat_map(move |e| {
                    e.graph
                        .features
                        .into_iter()
                        .zip(e.labels)
                        .filter(|(_, l)| !l)
                        .map(|(f, _)| f)
                })
            })
            .collect();
        let n = calm.len().max(1) as f32;
        self.mean = (0..FEATURES)
            .map(|i| calm.iter().map(|f| f[i]).sum::<f32>() / n)
            .collect();
        self.sd = (0..FEATURES)
            .map(|i| {
                (calm
                    .iter()
                    .map(|f| (f[i] - self.mean[i]).powi(2))
                    .sum::<f32>()
                    / n)
                    .sqrt()
                    .max(1e-3)
            })
            .collect();
        self.rule = Some(calibrate(self, train));
    }

    fn scores(&self, ds: &Dataset) -> Scores {
        let z = |f: &Features| {
            (0..FEATURES)
                .map(|i| ((f[i] - self.mean[i]) / self.sd[i]).abs())
                .fold(0.0, f32::max)
        };
        per_snapshot(ds, |snap| {
            snap.example.graph.features.iter().map(z).collect()
        })
    }

    fn rule(&self) -> Rule {
        self.rule.unwrap_or(UNFIT)
    }

    fn bytes(&self) -> usize {
        2 * FEATURES * 4
    }
}

/// MAPE-K's own adaptive detectors, one per router and feature, run online through the
/// dataset in time order; the score is the share of features flagged.
pub struct Adaptives {
    name: &'static str,
    strategy: Strategy,
    rule: Option<Rule>,
}

impl Adaptives {
    pub fn all() -> Vec<Adaptives> {
        [
            (
                "MAPE-K EWMA (3 sigma)",
                Strategy::Ewma {
                    alpha: 0.1,
                    k_sigma: 3.0,
                },
            ),
            (
                "MAPE-K percentile (p99 + 10%)",
                Strategy::Percentile {
                    p: 0.99,
                    margin: 0.1,
                },
            ),
            ("MAPE-K IQR (3 IQR)", Strategy::Iqr { k: 3.0 }),
        ]
        .into_iter()
        .map(|(name, strategy)| Adaptives {
            name,
            strategy,
            rule: None,
        })
        .collect()
    }
}

impl Detector for Adaptives {
    fn name(&self) -> String {
        self.name.into()
    }

    fn fit(&mut self, train: &[Dataset]) {
        self.rule = Some(calibrate(self, train));
    }

    fn scores(&self, ds: &Dataset) -> Scores {
        let routers = ds.meta.routers.len();
        let mut detectors: Vec<Vec<Adaptive>> = (0..routers)
            .map(|_| {
                (0..FEATURES)
                    .map(|i| Adaptive::new(&i.to_string(), self.strategy, 60, 10))
                    .collect()
            })
            .collect();
        per_snapshot(ds, |snap| {
            let features = &snap.example.graph.features;
            features
                .iter()
                .zip(&snap.present)
                .map(|(f, &r)| {
                    let flagged = detectors[r]
                        .iter_mut()
                        .zip(f)
                        .map(|(d, v)| d.observe(snap.t, f64::from(*v)).is_some())
                        .filter(|x| *x)
                        .count();
                    flagged as f32 / FEATURES as f32
                })
                .collect()
        })
    }

    fn rule(&self) -> Rule {
        self.rule.unwrap_or(UNFIT)
    }

    fn bytes(&self) -> usize {
        FEATURES * 60 * 8
    }
}

/// A trained model read from its file (GraphSAGE f32 or INT8, or the forest), scored
/// centrally over each interval's mesh (the same scores as the brains' distributed run:
/// tested in `graphsage` and `forest`); `fit` only calibrates its rule.
pub struct Trained {
    pub name: String,
    pub model: Model,
    pub rule: Option<Rule>,
    /// Its file's size.
    pub bytes: usize,
}

impl Detector for Trained {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fit(&mut self, train: &[Dataset]) {
        self.rule = Some(calibrate(self, train));
    }

    fn scores(&self, ds: &Dataset) -> Scores {
        let device = burn::tensor::Device::flex();
        per_snapshot(ds, |snap| self.model.scores(&snap.example.graph, &device))
    }

    fn rule(&self) -> Rule {
        self.rule.unwrap_or(UNFIT)
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}
