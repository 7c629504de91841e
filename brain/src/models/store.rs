//! Model files. GraphSAGE: burn-store's Burnpack (it keeps quantised tensors, SafeTensors
//! does not) with our metadata beside the weights: the model kind, the feature set's
//! version, the hidden size, the calibrated alarm rule (threshold and hold) and whether
//! the weights are INT8. Forest: `x0-forest` on a line, then the same facts and the trees
//! in postcard (serde's compact binary form). A file that does not parse, belongs to
//! another feature set or does not fit the model is refused with one sentence, and the
//! caller keeps what it had.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::{
    store::{BurnpackStore, ModuleSnapshot, burn_pack::Reader},
    tensor::{Bytes, Device},
};
use serde::{Deserialize, Serialize};

use super::{features, forest::Forest, graphsage::Graph, graphsage::GraphSage};

const KIND: &str = "x0-graphsage";
const FOREST_MAGIC: &[u8] = b"x0-forest\n";

/// The anomaly model a brain runs.
#[derive(Debug)]
pub enum Model {
    Sage(Box<GraphSage>),
    Forest(Forest),
}

impl Model {
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Sage(_) => "graphsage",
            Model::Forest(_) => "forest",
        }
    }

    /// Scores for every router of `g`, centrally (the same as the brains' distributed run).
    pub fn scores(&self, g: &Graph, device: &Device) -> Vec<f32> {
        match self {
            Model::Sage(m) => m.scores(g, device),
            Model::Forest(f) => f.scores(g),
        }
    }
}

/// A loaded model and what it needs to be used.
#[derive(Debug)]
pub struct ModelFile {
    pub model: Model,
    pub threshold: f32,
    /// Intervals in a row at or above the threshold before the brain calls it an anomaly.
    pub hold: usize,
    pub quantized: bool,
}

impl ModelFile {
    /// What it is, in words: "forest", "graphsage int8" or "graphsage f32".
    pub fn kind(&self) -> &'static str {
        match (&self.model, self.quantized) {
            (Model::Forest(_), _) => "forest",
            (Model::Sage(_), true) => "graphsage int8",
            (Model::Sage(_), false) => "graphsage f32",
        }
    }
}

/// A forest file after its first line.
#[derive(Serialize, Deserialize)]
struct ForestFile<F> {
    features_version: u32,
    threshold: f32,
    hold: u32,
    forest: F,
}

pub fn save(path: &Path, m: &ModelFile) -> Result<()> {
    let saved = match &m.model {
        Model::Sage(model) => save_sage(path, model, m),
        Model::Forest(forest) => save_forest(path, forest, m),
    };
    saved.with_context(|| format!("model {}: not saved", path.display()))
}

fn save_sage(path: &Path, model: &GraphSage, m: &ModelFile) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true)
        .metadata("x0.kind", KIND)
        .metadata("x0.features_version", features::VERSION.to_string())
        .metadata("x0.features", features::NAMES.join(","))
        .metadata("x0.hidden", model.hidden().to_string())
        .metadata("x0.threshold", m.threshold.to_string())
        .metadata("x0.hold", m.hold.to_string())
        .metadata("x0.quantized", m.quantized.to_string());
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn save_forest(path: &Path, forest: &Forest, m: &ModelFile) -> Result<()> {
    let file = ForestFile {
        features_version: features::VERSION,
        threshold: m.threshold,
        hold: m.hold as u32,
        forest,
    };
    let mut bytes = FOREST_MAGIC.to_vec();
    bytes.extend(postcard::to_stdvec(&file)?);
    Ok(std::fs::write(path, bytes)?)
}

/// The model shipped inside the brain (`brain/shipped/`: how it was made), used when
/// brain.toml names none.
pub const SHIPPED: &[u8] = include_bytes!("../../shipped/anomaly.x0m");

pub fn load(path: &Path, device: &Device) -> Result<ModelFile> {
    // Read once, into memory: a Burnpack file store reads its tensors lazily, from disk,
    // so a file replaced or removed after loading would take the running model with it.
    let bytes = std::fs::read(path).map_err(anyhow::Error::from);
    bytes
        .and_then(|b| from_bytes(b, device))
        .with_context(|| format!("model {}", path.display()))
}

/// A model file's contents (as `load` reads them).
pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<ModelFile> {
    match bytes.strip_prefix(FOREST_MAGIC) {
        Some(rest) => load_forest(rest),
        None => load_sage(bytes, device),
    }
}

fn load_forest(bytes: &[u8]) -> Result<ModelFile> {
    let file: ForestFile<Forest> =
        postcard::from_bytes(bytes).map_err(|e| anyhow::anyhow!("not a whole forest: {e}"))?;
    check_version(&file.features_version.to_string())?;
    let hold = file.hold as usize;
    check_rule(file.threshold, hold)?;
    Ok(ModelFile {
        model: Model::Forest(file.forest),
        threshold: file.threshold,
        hold,
        quantized: false,
    })
}

fn check_version(version: &str) -> Result<()> {
    if version != features::VERSION.to_string() {
        bail!(
            "made for feature set {version}, this brain has {}",
            features::VERSION
        );
    }
    Ok(())
}

fn check_rule(threshold: f32, hold: usize) -> Result<()> {
    if !(0.0..=1.0).contains(&threshold) || !(1..=10).contains(&hold) {
        bail!("threshold {threshold} or hold {hold} out of range");
    }
    Ok(())
}

fn load_sage(bytes: Vec<u8>, device: &Device) -> Result<ModelFile> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone()))
        .map_err(|e| anyhow::anyhow!("not a Burnpack file: {e}"))?;
    let meta = reader.metadata();
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if get("x0.kind") != KIND {
        bail!("not an x0 model (kind {:?})", get("x0.kind"));
    }
    check_version(get("x0.features_version"))?;
    let hidden: usize = get("x0.hidden").parse().context("x0.hidden")?;
    let threshold: f32 = get("x0.threshold").parse().context("x0.threshold")?;
    let hold: usize = get("x0.hold").parse().context("x0.hold")?;
    let quantized: bool = get("x0.quantized").parse().context("x0.quantized")?;
    check_rule(threshold, hold)?;
    if !(1..=1024).contains(&hidden) {
        bail!("hidden size {hidden} out of range");
    }
    let mut model = GraphSage::new(hidden, device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let applied = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("weights: {e}"))?;
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        bail!(
            "weights do not fit: {} errors, {} missing",
            applied.errors.len(),
            applied.missing.len()
        );
    }
    Ok(ModelFile {
        model: Model::Sage(Box::new(model)),
        threshold,
        hold,
        quantized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::train::{TrainConfig, quantize, tests::tiny, train};

    fn trained() -> (ModelFile, Vec<crate::models::train::Example>) {
        let data = tiny(40, 3);
        let cfg = TrainConfig {
            epochs: 8,
            batch: 8,
            ..Default::default()
        };
        let t = train(&data, &cfg);
        (
            ModelFile {
                model: Model::Sage(Box::new(t.model)),
                threshold: 0.5,
                hold: 2,
                quantized: false,
            },
            data,
        )
    }

    fn sage(m: &ModelFile) -> &GraphSage {
        match &m.model {
            Model::Sage(s) => s,
            Model::Forest(_) => panic!("a forest"),
        }
    }

    #[test]
    fn the_shipped_model_loads_and_scores_every_router() {
        let device = Device::flex();
        let m = from_bytes(SHIPPED.to_vec(), &device).unwrap();
        let data = tiny(4, 1);
        let s = m.model.scores(&data[0].graph, &device);
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|x| (0.0..=1.0).contains(x)), "{s:?}");
        assert!(m.threshold > 0.0 && m.hold >= 1);
    }

    #[test]
    fn a_forest_reloads_scoring_the_same_and_a_cut_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let data = tiny(40, 4);
        let m = ModelFile {
            model: Model::Forest(Forest::fit(&data, 1).unwrap()),
            threshold: 0.4,
            hold: 3,
            quantized: false,
        };
        let path = dir.path().join("forest.x0m");
        save(&path, &m).unwrap();
        let back = load(&path, &device).unwrap();
        assert_eq!((back.threshold, back.hold), (0.4, 3));
        let g = &data[1].graph;
        assert_eq!(back.model.scores(g, &device), m.model.scores(g, &device));
        assert_eq!(back.model.kind(), "forest");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = format!("{:#}", load(&path, &device).unwrap_err());
        assert!(
            e.contains("forest.x0m") && e.contains("not a whole forest"),
            "{e}"
        );
    }

    #[test]
    fn a_saved_model_reloads_bit_identical_and_int8_reloads_close_and_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let (m, data) = trained();
        let g = &data[0].graph;
        let (f32_path, int8_path) = (dir.path().join("m.bpk"), dir.path().join("q.bpk"));
        save(&f32_path, &m).unwrap();
        let back = load(&f32_path, &device).unwrap();
        // The loaded model keeps nothing of the file (the brain's may be replaced under it).
        let f32_size = std::fs::metadata(&f32_path).unwrap().len();
        std::fs::write(&f32_path, b"replaced").unwrap();
        assert_eq!(back.model.scores(g, &device), m.model.scores(g, &device));
        assert_eq!(
            (back.threshold, back.hold, back.quantized),
            (m.threshold, 2, false)
        );

        let q = ModelFile {
            model: Model::Sage(Box::new(quantize(sage(&m).clone()))),
            threshold: m.threshold,
            hold: m.hold,
            quantized: true,
        };
        save(&int8_path, &q).unwrap();
        let qback = load(&int8_path, &device).unwrap();
        assert!(qback.quantized);
        assert_eq!(qback.model.scores(g, &device), q.model.scores(g, &device));
        for (a, b) in qback
            .model
            .scores(g, &device)
            .iter()
            .zip(m.model.scores(g, &device))
        {
            assert!((a - b).abs() < 0.05, "int8 {a} vs f32 {b}");
        }
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(
            size(&int8_path) < f32_size,
            "{} vs {f32_size}",
            size(&int8_path)
        );
    }

    #[test]
    fn truncated_foreign_and_mismatched_files_are_refused_in_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let (m, _) = trained();
        let path = dir.path().join("m.bpk");
        save(&path, &m).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.bpk");
        for len in [0, 10, bytes.len() / 2, bytes.len() - 8] {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let e = load(&cut, &device).unwrap_err();
            assert!(format!("{e:#}").contains("cut.bpk"), "{e:#}");
        }
        let other = dir.path().join("other.bpk");
        std::fs::write(
            &other,
            b"not a model at all, just some text of a fair length here",
        )
        .unwrap();
        assert!(load(&other, &device).is_err());
        // The same weights claiming another feature set.
        let wrong = dir.path().join("wrong.bpk");
        let mut store = BurnpackStore::from_file(&wrong)
            .auto_extension(false)
            .metadata("x0.kind", KIND)
            .metadata("x0.features_version", "999");
        sage(&m).save_into(&mut store).unwrap();
        let e = format!("{:#}", load(&wrong, &device).unwrap_err());
        assert!(e.contains("feature set 999"), "{e}");
    }
}
