//! The brains' telemetry in the six-router lab: every brain samples its router each
//! interval and sends its features to its neighbours' brains over mutual TLS; a brain that
//! dies becomes a missing (silent) neighbour, not an error; a model file is loaded and
//! scores the router, and a corrupt one is refused while the brain routes on.

mod common;

use std::time::{Duration, Instant};

use burn::tensor::Device;
use common::six::{ROUTERS, converge, expected, six_with_brains};
use serde_json::Value;
use x0_brain::{
    config::Mode,
    models::{
        features::{FEATURES, NAMES},
        graphsage::GraphSage,
        store::{self, Model, ModelFile},
    },
};
use x0_lab::Lab;

fn status(lab: &Lab, router: &str) -> Value {
    let out = lab
        .x0ctl_at(
            router,
            "https://127.0.0.1:7444",
            &["--json", "brain", "status"],
        )
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// Polls `router`'s status until `ok` holds (or panics with the last status).
fn wait_for(lab: &Lab, router: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(lab, router);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{router}: {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The anomaly score `x0ctl brain status --json` gives the link to `neighbor`.
fn link_score(s: &Value, neighbor: &str) -> Option<f64> {
    s["link_quality"]
        .as_array()?
        .iter()
        .find(|l| l["neighbor"] == neighbor)?["anomaly_score"]
        .as_f64()
}

fn telemetry_of<'a>(s: &'a Value, router: &str) -> Option<&'a Value> {
    s["telemetry"]
        .as_array()?
        .iter()
        .find(|t| t["router"] == router)
}

fn feature(t: &Value, name: &str) -> f64 {
    let i = NAMES.iter().position(|n| *n == name).unwrap();
    t["features"][i].as_f64().unwrap()
}

#[test]
fn neighbours_exchange_features_and_a_dead_brain_becomes_a_silent_neighbour() {
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    // r4's neighbours are r2, r5 and r6: it holds their features, fresh, and its own.
    let s = wait_for(&lab, "r4", "features from r2, r5, r6", |s| {
        ["r4", "r2", "r5", "r6"]
            .iter()
            .all(|r| telemetry_of(s, r).is_some_and(|t| t["age_ms"].as_u64().unwrap() < 3000))
    });
    for t in s["telemetry"].as_array().unwrap() {
        let f = t["features"].as_array().unwrap();
        assert_eq!(f.len(), FEATURES, "{t}");
        assert!(
            f.iter()
                .all(|v| (-1.0..=1.0).contains(&v.as_f64().unwrap())),
            "{t}"
        );
    }
    assert!(
        telemetry_of(&s, "r1").is_none(),
        "r1 is two hops from r4: {s:#}"
    );
    let own = telemetry_of(&s, "r4").unwrap();
    assert_eq!(feature(own, "brains_silent_frac"), 0.0, "{own}");
    // Out of the box (no model named), the model shipped inside the brain scores it.
    assert!(s["model"].as_str().unwrap().ends_with(", shipped"), "{s:#}");
    assert!(own["score"].is_number(), "{own}");

    lab.stop_brain("r6", true).unwrap();
    // r6's features age out of r4's view, and r4 counts r6's brain silent.
    let s = wait_for(&lab, "r4", "r6 gone and counted silent", |s| {
        telemetry_of(s, "r6").is_none()
            && telemetry_of(s, "r4").is_some_and(|t| feature(t, "brains_silent_frac") > 0.3)
    });
    assert!(
        telemetry_of(&s, "r2").is_some() && telemetry_of(&s, "r5").is_some(),
        "{s:#}"
    );
    // The link to r6 has no score without r6's; the one to r2 has one.
    assert_eq!(link_score(&s, "r6"), None, "{s:#}");
    assert!(link_score(&s, "r2").is_some(), "{s:#}");
    // r4 goes on sampling: its log grows an interval at a time.
    let log = lab.dir.join("brain-state/r4/telemetry.jsonl");
    let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
    let before = lines();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(lines() >= before + 2, "{before} -> {}", lines());
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["router"], "r4");
    assert!(last["neighbours"].get("r6").is_none(), "{last}");
}

#[test]
fn a_model_scores_the_router_and_a_corrupt_one_is_refused_while_routing_goes_on() {
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    let device = Device::flex();
    device.seed(3);
    let good = lab.dir.join("model.bpk");
    let m = ModelFile {
        model: Model::Sage(Box::new(GraphSage::new(16, &device))),
        threshold: 0.5,
        hold: 1,
        quantized: false,
    };
    store::save(&good, &m).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = lab.dir.join("corrupt.bpk");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();

    for (router, path) in [("r1", &good), ("r2", &good), ("r3", &good), ("r4", &bad)] {
        lab.stop_brain(router, false).unwrap();
        let path = path.clone();
        lab.start_brain_with(router, Mode::Enforce, |c| c.model = Some(path))
            .unwrap();
    }
    // r1 scores itself from its neighbours' (r2, r3) features and embeddings, and shows
    // the scores their own brains sent.
    let s = wait_for(&lab, "r1", "its score and r2's, r3's", |s| {
        ["r1", "r2", "r3"]
            .iter()
            .all(|r| telemetry_of(s, r).is_some_and(|t| t["score"].is_number()))
    });
    assert!(
        s["model"]
            .as_str()
            .unwrap()
            .starts_with("graphsage f32, threshold 0.500"),
        "{s:#}"
    );
    let score = telemetry_of(&s, "r1").unwrap()["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");
    // Each of r1's links scores the lower of its two ends.
    for n in ["r2", "r3"] {
        let theirs = telemetry_of(&s, n).unwrap()["score"].as_f64().unwrap();
        let link = link_score(&s, n).expect("a link score");
        assert!((link - score.min(theirs)).abs() < 1e-6, "{n}: {s:#}");
    }
    // r4 refused its file, in words naming it, and routes on.
    let s = status(&lab, "r4");
    let said = s["model"].as_str().unwrap();
    assert!(
        said.starts_with("refused: model") && said.contains("corrupt.bpk"),
        "{said}"
    );
    assert!(
        telemetry_of(&s, "r4").is_some_and(|t| t["score"].is_null()),
        "{s:#}"
    );
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    assert_eq!(ROUTERS.len(), 6);
}
