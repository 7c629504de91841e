//! GraphSAGE (Hamilton et al., 2017) over the mesh: two layers of mean aggregation, each
//! `relu(W_self h_v + W_neigh mean(h_u for u in N(v)) + b)`, then a linear score per router.
//! The same weights run centralised (training, evaluation: the whole graph at once, with
//! a row-normalised adjacency) or distributed (each brain: `embed` from its features and
//! its neighbours', the embeddings exchanged, then `score`): the two agree (tested).

use burn::{
    module::Module,
    nn::{Linear, LinearConfig},
    tensor::{
        Device, Tensor, TensorData,
        activation::{relu, sigmoid},
    },
};

use super::features::{FEATURES, Features};

#[derive(Module, Debug)]
pub struct GraphSage {
    self1: Linear,
    neigh1: Linear,
    self2: Linear,
    neigh2: Linear,
    out: Linear,
}

/// A mesh at one interval: each router's features and its neighbours (by index).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub features: Vec<Features>,
    pub neighbours: Vec<Vec<usize>>,
}

impl GraphSage {
    /// Fresh weights (the device's seed decides them).
    pub fn new(hidden: usize, device: &Device) -> Self {
        let layer = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        GraphSage {
            self1: layer(FEATURES, hidden, true),
            neigh1: layer(FEATURES, hidden, false),
            self2: layer(hidden, hidden, true),
            neigh2: layer(hidden, hidden, false),
            out: layer(hidden, 1, true),
        }
    }

    pub fn hidden(&self) -> usize {
        self.self1.weight.dims()[1]
    }

    /// The same model for raw features, when it was trained on `(x - mean) / scale`: the
    /// first layer's weights divided by the scale and the means moved into its bias. Exact
    /// for a router with at least one neighbour heard (with none, the neighbour mean is 0
    /// in raw units rather than in standardised ones).
    pub fn fold_standardisation(mut self, mean: &[f32], scale: &[f32]) -> Self {
        let device = self.self1.weight.val().device();
        let f = mean.len();
        let scale_t = Tensor::<2>::from_data(TensorData::new(scale.to_vec(), [f, 1]), &device);
        let shift: Vec<f32> = mean.iter().zip(scale).map(|(m, s)| m / s).collect();
        let shift = Tensor::<2>::from_data(TensorData::new(shift, [1, f]), &device);
        let moved =
            shift.clone().matmul(self.self1.weight.val()) + shift.matmul(self.neigh1.weight.val());
        let h = self.hidden();
        self.self1.bias = self.self1.bias.map(|b| b.map(|b| b - moved.reshape([h])));
        self.self1.weight = self.self1.weight.map(|w| w / scale_t.clone());
        self.neigh1.weight = self.neigh1.weight.map(|w| w / scale_t);
        self
    }

    /// Centralised: features [n, F] and the row-normalised adjacency [n, n] to logits [n, 1].
    pub fn logits(&self, x: Tensor<2>, adj: Tensor<2>) -> Tensor<2> {
        let h1 = sage(&self.self1, &self.neigh1, x, &adj);
        let h2 = sage(&self.self2, &self.neigh2, h1, &adj);
        self.out.forward(h2)
    }

    /// Scores in [0, 1] for every router of `g`.
    pub fn scores(&self, g: &Graph, device: &Device) -> Vec<f32> {
        let (x, adj) = tensors(g, device);
        let s = sigmoid(self.logits(x, adj));
        s.into_data().try_to_vec::<f32>().expect("f32 scores")
    }

    /// Distributed, first layer: our embedding from our features and the neighbours' we
    /// have (a silent neighbour is left out of the mean; none: the mean is zero).
    pub fn embed(&self, own: &Features, neighbours: &[Features], device: &Device) -> Vec<f32> {
        let rows: Vec<Vec<f32>> = neighbours.iter().map(|f| f.to_vec()).collect();
        let h = local(&self.self1, &self.neigh1, own, &rows, device);
        h.into_data().try_to_vec::<f32>().expect("f32 embedding")
    }

    /// Distributed, second layer and score: from our embedding and the neighbours'.
    pub fn score(&self, own: &[f32], neighbours: &[Vec<f32>], device: &Device) -> f32 {
        let h2 = local(&self.self2, &self.neigh2, own, neighbours, device);
        let s = sigmoid(self.out.forward(h2));
        s.into_data().try_to_vec::<f32>().expect("f32 score")[0]
    }
}

fn sage(own: &Linear, neigh: &Linear, h: Tensor<2>, adj: &Tensor<2>) -> Tensor<2> {
    let mean = adj.clone().matmul(h.clone());
    relu(own.forward(h) + neigh.forward(mean))
}

/// One layer for one router: [1, d] from its row and its neighbours' rows.
fn local(
    own_l: &Linear,
    neigh_l: &Linear,
    own: &[f32],
    rows: &[Vec<f32>],
    device: &Device,
) -> Tensor<2> {
    let d = own.len();
    let mut mean = vec![0.0f32; d];
    for r in rows.iter().filter(|r| r.len() == d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v;
        }
    }
    let n = rows.iter().filter(|r| r.len() == d).count().max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    let own = Tensor::<2>::from_data(TensorData::new(own.to_vec(), [1, d]), device);
    let mean = Tensor::<2>::from_data(TensorData::new(mean, [1, d]), device);
    relu(own_l.forward(own) + neigh_l.forward(mean))
}

/// The graph as tensors: features [n, F] and the row-normalised adjacency [n, n].
pub fn tensors(g: &Graph, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let n = g.features.len();
    let x: Vec<f32> = g.features.iter().flatten().copied().collect();
    let mut adj = vec![0.0f32; n * n];
    for (v, ns) in g.neighbours.iter().enumerate() {
        for &u in ns {
            adj[v * n + u] = 1.0 / ns.len() as f32;
        }
    }
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, FEATURES]), device);
    let adj = Tensor::<2>::from_data(TensorData::new(adj, [n, n]), device);
    (x, adj)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of six with a chord, features from a simple pattern.
    pub fn ring() -> Graph {
        let n = 6;
        let mut neighbours: Vec<Vec<usize>> =
            (0..n).map(|v| vec![(v + n - 1) % n, (v + 1) % n]).collect();
        neighbours[0].push(3);
        neighbours[3].push(0);
        let features = (0..n)
            .map(|v| std::array::from_fn(|f| ((v * 7 + f * 3) % 11) as f32 / 11.0))
            .collect();
        Graph {
            features,
            neighbours,
        }
    }

    #[test]
    fn distributed_scores_equal_the_centralised_forward_pass() {
        let device = Device::flex();
        device.seed(7);
        let model = GraphSage::new(16, &device);
        let g = ring();
        let central = model.scores(&g, &device);
        let h1: Vec<Vec<f32>> = (0..g.features.len())
            .map(|v| {
                let ns: Vec<Features> = g.neighbours[v].iter().map(|&u| g.features[u]).collect();
                model.embed(&g.features[v], &ns, &device)
            })
            .collect();
        for v in 0..g.features.len() {
            let ns: Vec<Vec<f32>> = g.neighbours[v].iter().map(|&u| h1[u].clone()).collect();
            let local = model.score(&h1[v], &ns, &device);
            assert!(
                (local - central[v]).abs() < 1e-5,
                "router {v}: {local} vs {}",
                central[v]
            );
        }
    }
}
