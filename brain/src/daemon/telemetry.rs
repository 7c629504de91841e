//! Telemetry: each stats sample of the dataplane (every telemetry interval), with the BFD
//! counters that follow it, becomes one `RouterSample` of counter deltas; its features go
//! to the neighbours' brains (Exchange) and, with a model, through GraphSAGE: our
//! first-layer embedding from our features and theirs, our score from our embedding and
//! theirs (two hops, no central collector). A silent neighbour is left out of the means.

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    sync::Mutex,
    time::SystemTime,
};

use burn::tensor::Device;
use x0_proto::{brain::v1 as pb, dataplane::v1 as dpb};

use super::procfs::Cpu;
use crate::{
    config::BrainConfig,
    linkstate::state::{HEARD_FRESH, Shared, unix_ns},
    mapek::analyze::{Calibrated, Model as _},
    models::{
        evaluate::Rule,
        features::{self, Features, LinkSample, Normaliser, RouterSample},
        store::{self, Model, ModelFile},
    },
};

/// Cumulative counters at one stats sample.
#[derive(Default)]
struct Counters {
    unix_ns: u64,
    rx: u64,
    passed: u64,
    dropped: u64,
    tx_bytes: HashMap<String, u64>,
    bfd_rx: HashMap<String, u64>,
    /// When the BFD counters were read.
    bfd_unix_ns: u64,
}

pub struct Telemetry {
    normaliser: Normaliser,
    pending: Option<dpb::Stats>,
    last: Option<Counters>,
    flaps: HashMap<String, u32>,
    rtts: HashMap<String, f64>,
    answered: HashSet<String>,
    late_s: f64,
    cpu: Cpu,
    model: Option<ModelFile>,
    device: Device,
    log: Option<std::io::LineWriter<std::fs::File>>,
    /// MAPE-K's analysis of our score: the model's calibrated rule.
    analysis: Option<Calibrated>,
    /// Whether the model flagged us last interval.
    flagged: bool,
}

impl Telemetry {
    /// Loads the model and opens the log; either failing is logged, and the brain runs on
    /// without it (no scores, or no log). Returns what the status says of the model.
    pub fn new(config: &BrainConfig) -> (Self, String) {
        let device = Device::flex();
        let (model, said) = load_model(config.model.as_deref(), &device);
        let log = config.telemetry_log.as_ref().and_then(|p| open_log(p));
        let analysis = model.as_ref().map(|m| {
            let rule = Rule {
                threshold: m.threshold,
                hold: m.hold,
            };
            rule.analysis()
        });
        let t = Telemetry {
            normaliser: Normaliser::default(),
            pending: None,
            last: None,
            flaps: HashMap::new(),
            rtts: HashMap::new(),
            answered: HashSet::new(),
            late_s: 0.0,
            cpu: Cpu::default(),
            model,
            device,
            log,
            analysis,
            flagged: false,
        };
        (t, said)
    }

    pub fn on_stats(&mut self, s: &dpb::Stats) {
        self.pending = Some(s.clone());
    }

    pub fn on_carrier_loss(&mut self, router: &str) {
        *self.flaps.entry(router.to_string()).or_default() += 1;
    }

    pub fn on_rtt(&mut self, router: &str, rtt_ms: f64) {
        let r = self.rtts.entry(router.to_string()).or_insert(rtt_ms);
        *r = r.min(rtt_ms);
    }

    pub fn on_answer(&mut self, router: &str) {
        self.answered.insert(router.to_string());
    }

    pub fn on_late(&mut self, late_s: f64) {
        self.late_s = self.late_s.max(late_s);
    }

    /// The BFD sessions that follow a stats sample complete it: one interval's sample (none
    /// for the first, which only sets the counters).
    pub fn on_bfd(
        &mut self,
        sessions: &[dpb::BfdSession],
        read_at: u64,
        config: &BrainConfig,
    ) -> Option<RouterSample> {
        let stats = self.pending.take()?;
        let mut now = counters(&stats, sessions, config);
        now.bfd_unix_ns = read_at;
        let prev = self.last.take();
        let sample = prev.map(|prev| self.sample(&prev, &now, sessions, config));
        self.last = Some(now);
        sample
    }

    fn sample(
        &mut self,
        prev: &Counters,
        now: &Counters,
        sessions: &[dpb::BfdSession],
        config: &BrainConfig,
    ) -> RouterSample {
        let dt = (now.unix_ns.saturating_sub(prev.unix_ns) as f64 / 1e9).max(1e-3);
        let links = config
            .neighbors
            .iter()
            .map(|n| self.link(n, prev, now, sessions, dt))
            .collect();
        let (cpu_busy, softirq, run_delay_s) = self.cpu.sample();
        let sample = RouterSample {
            interval_s: dt,
            rx_packets: now.rx.saturating_sub(prev.rx) as f64,
            passed_packets: now.passed.saturating_sub(prev.passed) as f64,
            dropped_packets: now.dropped.saturating_sub(prev.dropped) as f64,
            links,
            run_delay_s,
            cpu_busy,
            softirq,
            late_s: self.late_s,
        };
        self.flaps.clear();
        self.rtts.clear();
        self.answered.clear();
        self.late_s = 0.0;
        sample
    }

    fn link(
        &self,
        n: &crate::config::NeighborConfig,
        prev: &Counters,
        now: &Counters,
        sessions: &[dpb::BfdSession],
        dt: f64,
    ) -> LinkSample {
        let session = n.session(sessions);
        let delta = |m: &HashMap<String, u64>, p: &HashMap<String, u64>, k: &str| {
            m.get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(p.get(k).copied().unwrap_or(0)) as f64
        };
        // Over the time between the two reads of the BFD counters (not the stats').
        let bfd_dt = match (prev.bfd_unix_ns, now.bfd_unix_ns) {
            (p, n) if p > 0 && n > p => (n - p) as f64 / 1e9,
            _ => dt,
        };
        let bfd_expected = session
            .filter(|s| s.rx_interval_us > 0)
            .map_or(0.0, |s| bfd_dt * 1e6 / s.rx_interval_us as f64);
        LinkSample {
            neighbor: n.router.clone(),
            bfd_up: session.is_some_and(|s| s.state == "Up"),
            bfd_expected,
            bfd_received: delta(&now.bfd_rx, &prev.bfd_rx, &n.router),
            rtt_ms: self.rtts.get(&n.router).copied(),
            utilisation: delta(&now.tx_bytes, &prev.tx_bytes, &n.interface) * 8.0
                / (dt * n.capacity_mbps as f64 * 1e6),
            carrier_downs: self.flaps.get(&n.router).copied().unwrap_or(0),
            brain_answered: self.answered.contains(&n.router),
            cost: n.cost,
        }
    }

    /// Features, embedding and score for one sample; the status gets them, the log a line,
    /// and what the neighbours' brains are sent comes back.
    pub fn publish(
        &mut self,
        sample: &RouterSample,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
    ) -> pb::ExchangeRequest {
        let features = self.normaliser.features(sample);
        let mut s = shared.lock().expect("brain lock");
        let fresh: Vec<(&String, &crate::linkstate::state::Heard)> = config
            .neighbors
            .iter()
            .filter_map(|n| s.heard.get_key_value(&n.router))
            .filter(|(_, h)| h.at.elapsed() < HEARD_FRESH)
            .collect();
        let (embedding, score) = self.infer(&features, &fresh);
        let own = pb::Telemetry {
            router: config.router.clone(),
            features: features.to_vec(),
            age_ms: 0,
            score,
            anomalous: self.held(score),
        };
        self.write_log(&own, &fresh, sample);
        self.analyse(&own, config);
        let request = pb::ExchangeRequest {
            router: config.router.clone(),
            features_version: features::VERSION,
            features: features.to_vec(),
            embedding,
            unix_ns: unix_ns(SystemTime::now()),
            score: own.score,
            anomalous: own.anomalous,
        };
        s.own_telemetry = Some(own);
        request
    }

    /// What root-cause analysis reads of this interval: our features and our links'
    /// measurements, and each neighbour's features when fresh (in `config.neighbors` order,
    /// after ours).
    pub fn interval(
        &self,
        sample: &RouterSample,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
    ) -> crate::models::rca::Interval {
        let s = shared.lock().expect("brain lock");
        let own = s
            .own_telemetry
            .as_ref()
            .and_then(|t| Features::try_from(t.features.as_slice()).ok());
        let theirs = config.neighbors.iter().map(|n| {
            s.heard
                .get(&n.router)
                .filter(|h| h.at.elapsed() < HEARD_FRESH)
                .and_then(|h| Features::try_from(h.features.as_slice()).ok())
        });
        crate::models::rca::Interval {
            features: std::iter::once(own).chain(theirs).collect(),
            links: std::iter::once(Some(sample.links.clone()))
                .chain(config.neighbors.iter().map(|_| None))
                .collect(),
        }
    }

    /// Whether the model's rule flags this score: at or above its threshold for its hold
    /// of intervals in a row (as calibrated; one interval's blip is not an anomaly).
    fn held(&mut self, score: Option<f32>) -> bool {
        let (Some(a), Some(s)) = (&mut self.analysis, score) else {
            return false;
        };
        a.observe(unix_ns(SystemTime::now()), f64::from(s))
            .is_some()
    }

    /// MAPE-K's analysis of the score: a router crossing its model's threshold (and coming
    /// back under it) is logged, in observe mode as in enforce; acting on it is the next
    /// step (root-cause analysis).
    fn analyse(&mut self, own: &pb::Telemetry, config: &BrainConfig) {
        if own.anomalous != self.flagged {
            self.flagged = own.anomalous;
            let score = own.score.unwrap_or(0.0);
            if own.anomalous {
                tracing::warn!(router = %config.router, score, mode = ?config.mode, "anomaly: the model flags this router");
            } else {
                tracing::info!(router = %config.router, score, "anomaly cleared");
            }
        }
    }

    /// Our embedding (from our features and the neighbours') and our score (from our
    /// embedding and theirs, the ones a model made: same size as ours).
    fn infer(
        &self,
        own: &Features,
        heard: &[(&String, &crate::linkstate::state::Heard)],
    ) -> (Vec<f32>, Option<f32>) {
        let Some(m) = &self.model else {
            return (Vec::new(), None);
        };
        let theirs: Vec<Features> = heard
            .iter()
            .filter_map(|(_, h)| h.features.as_slice().try_into().ok())
            .collect();
        let sage = match &m.model {
            Model::Sage(s) => s,
            // One hop: the neighbours' features are all it reads.
            Model::Forest(f) => return (Vec::new(), Some(f.score(own, &theirs))),
        };
        let h1 = sage.embed(own, &theirs, &self.device);
        let their_h1: Vec<Vec<f32>> = heard
            .iter()
            .map(|(_, h)| h.embedding.clone())
            .filter(|e| e.len() == h1.len())
            .collect();
        let score = sage.score(&h1, &their_h1, &self.device);
        (h1, Some(score))
    }

    fn write_log(
        &mut self,
        own: &pb::Telemetry,
        heard: &[(&String, &crate::linkstate::state::Heard)],
        sample: &RouterSample,
    ) {
        let Some(log) = &mut self.log else { return };
        let neighbours: serde_json::Map<String, serde_json::Value> = heard
            .iter()
            .map(|(r, h)| (r.to_string(), serde_json::json!({"features": h.features, "age_ms": h.at.elapsed().as_millis() as u64})))
            .collect();
        let line = serde_json::json!({
            "v": features::VERSION,
            "unix_ns": unix_ns(SystemTime::now()),
            "router": own.router,
            "features": own.features,
            "score": own.score,
            "neighbours": neighbours,
            "sample": sample,
        });
        if let Err(e) = writeln!(log, "{line}") {
            tracing::warn!(error = %e, "telemetry log: line not written");
        }
    }
}

/// The model brain.toml names (unset: the shipped one; "none": none), and what the status
/// says of it. A file refused is logged, and the brain runs on without scores.
fn load_model(path: Option<&std::path::Path>, device: &Device) -> (Option<ModelFile>, String) {
    let (loaded, from) = match path {
        None => (
            store::from_bytes(store::SHIPPED.to_vec(), device),
            "shipped".to_string(),
        ),
        Some(p) if p == std::path::Path::new("none") => return (None, "none".into()),
        Some(p) => (store::load(p, device), p.display().to_string()),
    };
    match loaded {
        Ok(m) => {
            let said = format!(
                "{}, threshold {:.3} held {} intervals, {from}",
                m.kind(),
                m.threshold,
                m.hold
            );
            (Some(m), said)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "anomaly model refused; running without scores");
            (None, format!("refused: {e:#}"))
        }
    }
}

fn open_log(path: &std::path::Path) -> Option<std::io::LineWriter<std::fs::File>> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    match file {
        Ok(f) => Some(std::io::LineWriter::new(f)),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "telemetry log not opened; running without it");
            None
        }
    }
}

fn counters(stats: &dpb::Stats, sessions: &[dpb::BfdSession], config: &BrainConfig) -> Counters {
    let sum = |f: fn(&dpb::InterfaceStats) -> u64| stats.interfaces.iter().map(f).sum();
    let bfd_rx = config
        .neighbors
        .iter()
        .filter_map(|n| {
            let s = n.session(sessions)?;
            Some((n.router.clone(), s.rx_packets))
        })
        .collect();
    Counters {
        unix_ns: if stats.unix_ns > 0 {
            stats.unix_ns
        } else {
            unix_ns(SystemTime::now())
        },
        rx: sum(|i| i.rx_packets),
        passed: sum(|i| i.passed_packets),
        dropped: sum(|i| i.dropped_packets),
        tx_bytes: stats
            .interfaces
            .iter()
            .map(|i| (i.interface.clone(), i.tx_bytes))
            .collect(),
        bfd_rx,
        bfd_unix_ns: 0,
    }
}
