//! A random forest (smartcore) on each router's features and the mean of its neighbours':
//! the kind of model GADBench (NeurIPS'23) found hardest to beat on graph anomalies, and
//! the brain's default where GraphSAGE does not beat it on held-out incidents
//! (docs/DETECTION.md). Regression on the 0/1 labels: the trees' mean is the score. It
//! needs only features from the neighbours' brains (no embedding), one hop.

use serde::{Deserialize, Serialize};
use smartcore::{
    ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters},
    linalg::basic::matrix::DenseMatrix,
};

use super::{
    features::{FEATURES, Features},
    graphsage::Graph,
    train::Example,
};

type Trees = RandomForestRegressor<f32, f32, DenseMatrix<f32>, Vec<f32>>;

/// The forest's size: enough trees to average out, shallow enough to stay small.
const TREES: usize = 30;
const DEPTH: u16 = 8;

#[derive(Debug, Serialize, Deserialize)]
pub struct Forest {
    trees: Trees,
}

impl Forest {
    /// Fits on every router-interval of `examples` (seeded: the same data and seed give
    /// the same forest). None when there is nothing to fit.
    pub fn fit(examples: &[Example], seed: u64) -> Option<Forest> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for e in examples {
            x.extend(rows(&e.graph));
            y.extend(e.labels.iter().map(|&l| f32::from(u8::from(l))));
        }
        let params = RandomForestRegressorParameters::default()
            .with_n_trees(TREES)
            .with_max_depth(DEPTH)
            .with_seed(seed);
        let x = DenseMatrix::from_2d_vec(&x).ok()?;
        let trees = Trees::fit(&x, &y, params).ok()?;
        Some(Forest { trees })
    }

    /// Scores for every router of `g` (0..1).
    pub fn scores(&self, g: &Graph) -> Vec<f32> {
        self.predict(rows(g))
    }

    /// One router's score from its features and those of the neighbours heard (none: the
    /// neighbours' mean is zero, as in training for a router without neighbours).
    pub fn score(&self, own: &Features, neighbours: &[Features]) -> f32 {
        let mean = mean(neighbours.iter());
        let mut row = own.to_vec();
        row.extend(mean);
        self.predict(vec![row]).first().copied().unwrap_or(0.0)
    }

    fn predict(&self, rows: Vec<Vec<f32>>) -> Vec<f32> {
        let Ok(x) = DenseMatrix::from_2d_vec(&rows) else {
            return Vec::new();
        };
        let s = self.trees.predict(&x).unwrap_or_default();
        s.into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
    }
}

/// A router's row: its features, then its neighbours' mean.
fn rows(g: &Graph) -> Vec<Vec<f32>> {
    g.features
        .iter()
        .zip(&g.neighbours)
        .map(|(own, ns)| {
            let mut row = own.to_vec();
            row.extend(mean(ns.iter().map(|&u| &g.features[u])));
            row
        })
        .collect()
}

fn mean<'a>(rows: impl Iterator<Item = &'a Features>) -> [f32; FEATURES] {
    let mut sum = [0.0f32; FEATURES];
    let mut n = 0;
    for r in rows {
        sum.iter_mut().zip(r).for_each(|(s, v)| *s += v);
        n += 1;
    }
    sum.map(|s| s / n.max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::train::tests::tiny;

    #[test]
    fn one_routers_score_from_its_neighbours_equals_the_whole_graphs() {
        let data = tiny(60, 3);
        let forest = Forest::fit(&data, 1).unwrap();
        let g = &data[0].graph;
        let all = forest.scores(g);
        for (v, ns) in g.neighbours.iter().enumerate() {
            let theirs: Vec<Features> = ns.iter().map(|&u| g.features[u]).collect();
            assert_eq!(forest.score(&g.features[v], &theirs), all[v]);
        }
        // It learnt the pattern: the faulty router of a faulty snapshot scores highest.
        let e = data.iter().find(|e| e.labels.iter().any(|l| *l)).unwrap();
        let s = forest.scores(&e.graph);
        let faulty = e.labels.iter().position(|l| *l).unwrap();
        assert!(s.iter().all(|x| *x <= s[faulty]), "{s:?}");
    }
}
