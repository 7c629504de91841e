//! The model file: burn-store's Burnpack (it keeps quantised tensors, SafeTensors does not)
//! with our metadata beside the weights: the model kind, the feature set's version, the
//! hidden size, the calibrated alarm rule (threshold and hold) and whether the weights are INT8. A file that
//! does not parse, belongs to another feature set or does not fit the model is refused
//! with one sentence, and the caller keeps what it had.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::{
    store::{BurnpackStore, ModuleSnapshot, burn_pack::Reader},
    tensor::{Bytes, Device},
};

use super::{features, graphsage::GraphSage};

const KIND: &str = "x0-graphsage";

/// A loaded model and what it needs to be used.
#[derive(Debug)]
pub struct ModelFile {
    pub model: GraphSage,
    pub threshold: f32,
    /// Intervals in a row at or above the threshold before the brain calls it an anomaly.
    pub hold: usize,
    pub quantized: bool,
}

pub fn save(path: &Path, m: &ModelFile) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true)
        .metadata("x0.kind", KIND)
        .metadata("x0.features_version", features::VERSION.to_string())
        .metadata("x0.features", features::NAMES.join(","))
        .metadata("x0.hidden", m.model.hidden().to_string())
        .metadata("x0.threshold", m.threshold.to_string())
        .metadata("x0.hold", m.hold.to_string())
        .metadata("x0.quantized", m.quantized.to_string());
    m.model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("model {}: not saved", path.display()))
}

pub fn load(path: &Path, device: &Device) -> Result<ModelFile> {
    load_inner(path, device).with_context(|| format!("model {}", path.display()))
}

fn load_inner(path: &Path, device: &Device) -> Result<ModelFile> {
    // Read once, into memory: a Burnpack file store reads its tensors lazily, from disk,
    // so a file replaced or removed after loading would take the running model with it.
    let bytes = std::fs::read(path)?;
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone()))
        .map_err(|e| anyhow::anyhow!("not a Burnpack file: {e}"))?;
    let meta = reader.metadata();
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if get("x0.kind") != KIND {
        bail!("not an x0 GraphSAGE model (kind {:?})", get("x0.kind"));
    }
    let version = features::VERSION.to_string();
    if get("x0.features_version") != version {
        bail!(
            "made for feature set {}, this brain has {version}",
            get("x0.features_version")
        );
    }
    let hidden: usize = get("x0.hidden").parse().context("x0.hidden")?;
    let threshold: f32 = get("x0.threshold").parse().context("x0.threshold")?;
    let hold: usize = get("x0.hold").parse().context("x0.hold")?;
    let quantized: bool = get("x0.quantized").parse().context("x0.quantized")?;
    if !(1..=1024).contains(&hidden)
        || !(0.0..=1.0).contains(&threshold)
        || !(1..=10).contains(&hold)
    {
        bail!("hidden size {hidden}, threshold {threshold} or hold {hold} out of range");
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
        model,
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
                model: t.model,
                threshold: 0.5,
                hold: 2,
                quantized: false,
            },
            data,
        )
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
            model: quantize(m.model.clone()),
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
        m.model.save_into(&mut store).unwrap();
        let e = format!("{:#}", load(&wrong, &device).unwrap_err());
        assert!(e.contains("feature set 999"), "{e}");
    }
}
