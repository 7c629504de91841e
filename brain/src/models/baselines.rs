//! The detectors GraphSAGE must beat, on the same features and the same data: the MAPE-K
//! loop's own adaptive thresholds (EWMA, percentile, IQR: `mapek::analyze`) run per router
//! over every feature, and a per-feature z-score against the fault-free training data.
//! Each gets its threshold the way GraphSAGE does: the best F1 on the training data.

use super::{
    dataset::Dataset,
    evaluate::Scores,
    features::{FEATURES, Features},
    graphsage::GraphSage,
    metrics,
};
use crate::mapek::analyze::{Detector as Adaptive, Model, Strategy};

/// A detector under evaluation.
pub trait Detector {
    fn name(&self) -> String;
    /// Learns from the training datasets (and calibrates its threshold).
    fn fit(&mut self, train: &[Dataset]);
    /// Scores every complete interval of `ds`, one per router.
    fn scores(&self, ds: &Dataset) -> Scores;
    fn threshold(&self) -> f32;
    /// What it keeps to score (its model file's size, or its parameters').
    fn bytes(&self) -> usize;
}

/// The threshold with the best F1 over every router-interval of `train`.
pub fn calibrate(d: &dyn Detector, train: &[Dataset]) -> f32 {
    let mut scored: Vec<(f32, bool)> = Vec::new();
    for ds in train {
        for (t, s) in d.scores(ds) {
            scored.extend(
                s.iter()
                    .enumerate()
                    .map(|(r, x)| (*x, ds.faulty(&ds.meta.routers[r], t))),
            );
        }
    }
    metrics::best_f1_threshold(&mut scored).unwrap_or(f32::INFINITY)
}

/// Per feature: how many standard deviations from its fault-free training mean; the
/// router's score is the largest.
#[derive(Default)]
pub struct ZScore {
    mean: Vec<f32>,
    sd: Vec<f32>,
    threshold: f32,
}

impl Detector for ZScore {
    fn name(&self) -> String {
        "z-score (per feature)".into()
    }

    fn fit(&mut self, train: &[Dataset]) {
        let calm: Vec<Features> = train
            .iter()
            .flat_map(|ds| {
                ds.examples().into_iter().flat_map(move |(_, e)| {
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
        self.threshold = calibrate(self, train);
    }

    fn scores(&self, ds: &Dataset) -> Scores {
        ds.examples()
            .into_iter()
            .map(|(t, e)| {
                let z = |f: &Features| {
                    (0..FEATURES)
                        .map(|i| ((f[i] - self.mean[i]) / self.sd[i]).abs())
                        .fold(0.0, f32::max)
                };
                (t, e.graph.features.iter().map(z).collect())
            })
            .collect()
    }

    fn threshold(&self) -> f32 {
        self.threshold
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
    threshold: f32,
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
            threshold: 0.0,
        })
        .collect()
    }
}

impl Detector for Adaptives {
    fn name(&self) -> String {
        self.name.into()
    }

    fn fit(&mut self, train: &[Dataset]) {
        self.threshold = calibrate(self, train);
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
        ds.examples()
            .into_iter()
            .map(|(t, e)| {
                let s = e
                    .graph
                    .features
                    .iter()
                    .zip(detectors.iter_mut())
                    .map(|(f, ds)| {
                        let mut flagged = 0;
                        for (d, v) in ds.iter_mut().zip(f) {
                            flagged += usize::from(d.observe(t, f64::from(*v)).is_some());
                        }
                        flagged as f32 / FEATURES as f32
                    })
                    .collect();
                (t, s)
            })
            .collect()
    }

    fn threshold(&self) -> f32 {
        self.threshold
    }

    fn bytes(&self) -> usize {
        FEATURES * 60 * 8
    }
}

/// A trained GraphSAGE (f32 or INT8), centralised over each interval's mesh (the same
/// scores as the distributed run: tested in `graphsage`).
pub struct Sage {
    pub name: String,
    pub model: GraphSage,
    pub threshold: f32,
    pub bytes: usize,
}

impl Detector for Sage {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fit(&mut self, _train: &[Dataset]) {}

    fn scores(&self, ds: &Dataset) -> Scores {
        let device = burn::tensor::Device::flex();
        ds.examples()
            .into_iter()
            .map(|(t, e)| (t, self.model.scores(&e.graph, &device)))
            .collect()
    }

    fn threshold(&self) -> f32 {
        self.threshold
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}
