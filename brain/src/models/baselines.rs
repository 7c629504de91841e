//! The detectors GraphSAGE must beat, on the same features and the same data: the MAPE-K
//! loop's own adaptive thresholds (EWMA, percentile, IQR: `mapek::analyze`) run per router
//! over every feature, and a per-feature z-score against the fault-free training data.
//! Each gets its threshold the way GraphSAGE does: the best event-F1 on the training data.

use super::{
    dataset::Dataset,
    evaluate::{Scores, evaluate, event_f1},
    features::{FEATURES, Features},
    graphsage::GraphSage,
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

/// The threshold with the best event-F1 on `train` (incidents detected against false
/// alarms, as the benchmark judges), among 200 quantiles of the training scores.
pub fn calibrate(d: &dyn Detector, train: &[Dataset]) -> f32 {
    let scored: Vec<(&Dataset, Scores)> = train.iter().map(|ds| (ds, d.scores(ds))).collect();
    let mut all: Vec<f32> = scored
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|(_, v)| v.iter().copied()))
        .collect();
    all.sort_by(f32::total_cmp);
    all.dedup();
    if all.is_empty() {
        return f32::INFINITY;
    }
    let candidates = (0..200).map(|i| all[i * (all.len() - 1) / 199]);
    let f1 = |threshold: f32| {
        let (mut faults, mut detected, mut alarms) = (0, 0, 0);
        for (ds, s) in &scored {
            let r = evaluate(ds, s, threshold);
            (faults, detected, alarms) = (
                faults + r.faults,
                detected + r.detected,
                alarms + r.false_alarms,
            );
        }
        event_f1(detected, faults, alarms)
    };
    candidates
        .map(|t| (f1(t), t))
        .fold(
            (-1.0, f32::INFINITY),
            |best, c| if c.0 > best.0 { c } else { best },
        )
        .1
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

    fn fit(&mut self, train: &[Dataset]) {
        self.threshold = calibrate(self, train);
    }

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

type ForestModel = smartcore::ensemble::random_forest_regressor::RandomForestRegressor<
    f32,
    f32,
    smartcore::linalg::basic::matrix::DenseMatrix<f32>,
    Vec<f32>,
>;

/// A random forest on each router's own features and the mean of its neighbours' (the
/// baseline GADBench found hardest to beat), regression on 0/1 labels: the trees' mean is
/// the score. smartcore, 50 trees of depth at most 10, seeded.
#[derive(Default)]
pub struct Forest {
    model: Option<ForestModel>,
    threshold: f32,
}

/// A router's row: its features, then its neighbours' mean.
fn forest_rows(g: &super::graphsage::Graph) -> Vec<Vec<f32>> {
    g.features
        .iter()
        .zip(&g.neighbours)
        .map(|(own, ns)| {
            let mut row = own.to_vec();
            let n = ns.len().max(1) as f32;
            row.extend(
                (0..FEATURES).map(|i| ns.iter().map(|&u| g.features[u][i]).sum::<f32>() / n),
            );
            row
        })
        .collect()
}

impl Detector for Forest {
    fn name(&self) -> String {
        "random forest (own + neighbours' mean)".into()
    }

    fn fit(&mut self, train: &[Dataset]) {
        use smartcore::{
            ensemble::random_forest_regressor::RandomForestRegressorParameters,
            linalg::basic::matrix::DenseMatrix,
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (_, e) in train.iter().flat_map(Dataset::examples) {
            x.extend(forest_rows(&e.graph));
            y.extend(e.labels.iter().map(|&l| f32::from(u8::from(l))));
        }
        let params = RandomForestRegressorParameters::default()
            .with_n_trees(50)
            .with_max_depth(10)
            .with_seed(1);
        self.model = DenseMatrix::from_2d_vec(&x)
            .ok()
            .and_then(|x| ForestModel::fit(&x, &y, params).ok());
        self.threshold = calibrate(self, train);
    }

    fn scores(&self, ds: &Dataset) -> Scores {
        use smartcore::linalg::basic::matrix::DenseMatrix;
        let Some(model) = &self.model else {
            return Vec::new();
        };
        ds.examples()
            .into_iter()
            .map(|(t, e)| {
                let x =
                    DenseMatrix::from_2d_vec(&forest_rows(&e.graph)).expect("rows of equal length");
                (t, model.predict(&x).unwrap_or_default())
            })
            .collect()
    }

    fn threshold(&self) -> f32 {
        self.threshold
    }

    fn bytes(&self) -> usize {
        // 50 trees of at most 2^10 nodes; an upper bound (smartcore does not report it).
        50 * 1024 * 16
    }
}
