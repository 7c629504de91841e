//! Training GraphSAGE offline: weighted binary cross-entropy over labelled mesh snapshots
//! (faults are rare, so the positives weigh as much as the negatives in all), Adam, a
//! seeded shuffle (the same seed and data give the same model), and optional INT8 weight
//! quantisation. The score threshold is chosen afterwards, on whole incidents
//! (`baselines::calibrate`), as for every detector.

use burn::{
    module::{Module, Quantizer},
    optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig},
    tensor::{
        Device, Tensor, TensorData,
        activation::log_sigmoid,
        quantization::{Calibration, QuantScheme},
    },
};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{
    features::{FEATURES, Features},
    graphsage::{Graph, GraphSage, tensors},
};

/// One mesh snapshot and, per router, whether a fault touched it.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub graph: Graph,
    pub labels: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub hidden: usize,
    pub epochs: usize,
    /// Snapshots per step (joined into one graph of disconnected parts).
    pub batch: usize,
    pub learning_rate: f64,
    /// L2 pull on the weights (the training sets are small; three seeds vary less with it).
    pub weight_decay: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: 16,
            epochs: 40,
            batch: 32,
            learning_rate: 1e-2,
            weight_decay: 1e-2,
            seed: 1,
        }
    }
}

pub struct Trained {
    pub model: GraphSage,
    /// Mean loss of each epoch.
    pub losses: Vec<f32>,
}

pub fn train(examples: &[Example], cfg: &TrainConfig) -> Trained {
    // The network learns on standardised features (their ranges differ by orders of
    // magnitude, and a unit-free input trains evenly); the scaling goes into its first
    // layer at the end, so the file and the brain take raw features.
    let (mean, scale) = standardisation(examples);
    let examples = standardised(examples, &mean, &scale);
    let examples = examples.as_slice();
    let device = Device::flex().autodiff();
    device.seed(cfg.seed);
    let mut model = GraphSage::new(cfg.hidden, &device);
    let mut optim = AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay)))
        .init();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let weight = positive_weight(examples);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut losses = Vec::new();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut steps) = (0.0f32, 0);
        for chunk in order.chunks(cfg.batch.max(1)) {
            let batch = join(chunk.iter().map(|&i| &examples[i]));
            let loss = loss(&model, &batch, weight, &device);
            sum += loss.clone().into_scalar::<f32>();
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
        }
        losses.push(sum / steps.max(1) as f32);
    }
    Trained {
        model: model
            .to_device(&Device::flex())
            .fold_standardisation(&mean, &scale),
        losses,
    }
}

/// Each feature's mean and standard deviation over every router-interval (at least 0.01,
/// so a feature that hardly moves in training is not blown up when it does).
fn standardisation(examples: &[Example]) -> (Vec<f32>, Vec<f32>) {
    let rows: Vec<&Features> = examples.iter().flat_map(|e| &e.graph.features).collect();
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..FEATURES)
        .map(|i| rows.iter().map(|r| f64::from(r[i])).sum::<f64>() / n)
        .collect();
    let scale = (0..FEATURES)
        .map(|i| {
            let var = rows
                .iter()
                .map(|r| (f64::from(r[i]) - mean[i]).powi(2))
                .sum::<f64>()
                / n;
            var.sqrt().max(0.01) as f32
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

fn standardised(examples: &[Example], mean: &[f32], scale: &[f32]) -> Vec<Example> {
    let mut out = examples.to_vec();
    for f in out.iter_mut().flat_map(|e| e.graph.features.iter_mut()) {
        for i in 0..FEATURES {
            f[i] = (f[i] - mean[i]) / scale[i];
        }
    }
    out
}

/// INT8 weights (symmetric, per tensor, min-max calibrated): about a quarter of the size.
pub fn quantize(model: GraphSage) -> GraphSage {
    model.quantize_weights(&mut Quantizer::new(
        Calibration::MinMax,
        QuantScheme::default(),
    ))
}

/// Negatives per positive, so both classes weigh the same (1 without positives).
fn positive_weight(examples: &[Example]) -> f32 {
    let pos = examples
        .iter()
        .flat_map(|e| &e.labels)
        .filter(|l| **l)
        .count();
    let all = examples.iter().map(|e| e.labels.len()).sum::<usize>();
    if pos == 0 {
        1.0
    } else {
        ((all - pos) as f32 / pos as f32).min(100.0)
    }
}

fn loss(model: &GraphSage, batch: &Example, weight: f32, device: &Device) -> Tensor<1> {
    let (x, adj) = tensors(&batch.graph, device);
    let z = model.logits(x, adj).reshape([batch.labels.len()]);
    let y: Vec<f32> = batch
        .labels
        .iter()
        .map(|&l| f32::from(u8::from(l)))
        .collect();
    let y = Tensor::<1>::from_data(TensorData::new(y, [batch.labels.len()]), device);
    let pos = y.clone() * log_sigmoid(z.clone()) * weight;
    let neg = (y.neg() + 1.0) * log_sigmoid(z.neg());
    (pos + neg).mean().neg()
}

/// Several snapshots as one graph of disconnected parts.
pub fn join<'a>(examples: impl Iterator<Item = &'a Example>) -> Example {
    let mut out = Example {
        graph: Graph {
            features: Vec::new(),
            neighbours: Vec::new(),
        },
        labels: Vec::new(),
    };
    for e in examples {
        let base = out.graph.features.len();
        out.graph.features.extend_from_slice(&e.graph.features);
        out.graph.neighbours.extend(
            e.graph
                .neighbours
                .iter()
                .map(|ns| ns.iter().map(|u| u + base).collect()),
        );
        out.labels.extend_from_slice(&e.labels);
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use rand::RngExt;

    /// Rings of six; in some snapshots one router and its neighbours show loss.
    pub fn tiny(snapshots: usize, seed: u64) -> Vec<Example> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..snapshots)
            .map(|i| {
                let neighbours: Vec<Vec<usize>> =
                    (0..6).map(|v| vec![(v + 5) % 6, (v + 1) % 6]).collect();
                let faulty = (i % 3 == 0).then(|| rng.random_range(0..6));
                let features: Vec<Features> = (0..6)
                    .map(|v| {
                        let mut f: Features = std::array::from_fn(|_| rng.random_range(0.0..0.2));
                        if faulty == Some(v) {
                            f[6] = rng.random_range(0.3..0.9);
                        }
                        f
                    })
                    .collect();
                let labels = (0..6).map(|v| faulty == Some(v)).collect();
                assert_eq!(features[0].len(), FEATURES);
                Example {
                    graph: Graph {
                        features,
                        neighbours,
                    },
                    labels,
                }
            })
            .collect()
    }

    #[test]
    fn training_lowers_the_loss_and_the_same_seed_gives_the_same_model() {
        let data = tiny(60, 1);
        let cfg = TrainConfig {
            epochs: 12,
            batch: 8,
            ..Default::default()
        };
        let a = train(&data, &cfg);
        let first = a.losses[0];
        let last = *a.losses.last().unwrap();
        assert!(last < first * 0.7, "loss {first} -> {last}");
        let b = train(&data, &cfg);
        let device = Device::flex();
        assert_eq!(
            a.model.scores(&data[0].graph, &device),
            b.model.scores(&data[0].graph, &device)
        );
    }

    #[test]
    fn the_folded_model_scores_raw_features_as_the_trained_one_scores_standardised() {
        let data = tiny(12, 2);
        let device = Device::flex();
        device.seed(5);
        let model = GraphSage::new(8, &device);
        let (mean, scale) = standardisation(&data);
        assert!(scale.iter().all(|s| *s >= 0.01));
        let standard = standardised(&data, &mean, &scale);
        let folded = model.clone().fold_standardisation(&mean, &scale);
        for (raw, std) in data.iter().zip(&standard) {
            let a = folded.scores(&raw.graph, &device);
            let b = model.scores(&std.graph, &device);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }
}
