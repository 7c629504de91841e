//! Labelled incident datasets (`x0-lab incidents`; format in docs/DATASET.md): what every
//! brain saw each interval, and the ground truth of the faults injected. The types are
//! here, once, for the lab that writes them and the trainer and benchmark that read them.

use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    features::{self, Deviation, FEATURES, Features, LinkSample, MEASURED, Measured},
    graphsage::Graph,
    train::Example,
};

/// The format's version; a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT: &str = "x0-incidents";
/// An interval this long after a fault ends still belongs to it (features lag by their
/// baselines; the mesh reconverges).
pub const GRACE_NS: u64 = 5_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Both ends of a link lose 1-30 % of what they receive.
    Loss,
    /// One end of a link loses 5-30 % of what it receives.
    OneWayLoss,
    /// Both ends stay up and lose everything.
    Blackhole,
    /// The link loses carrier for 1 s every 3 s.
    Flap,
    /// A router's dataplane and brain get 3 % of a CPU.
    CpuStarvation,
    /// A router's brain is killed (and restarted at the end).
    BrainCrash,
    /// One end advertises a link at ten times its cost.
    CostMisconfig,
    /// No fault: a TCP load between the hosts (must not be flagged).
    Surge,
    /// Both ends of a link limited to 10 Mbit/s (policers) and filled by a TCP load across
    /// it. Opt-in (`x0-lab incidents --congestion`): not in the committed datasets yet.
    Congestion,
}

impl Kind {
    pub fn is_fault(self) -> bool {
        self != Kind::Surge
    }
}

/// One injected episode and its ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub kind: Kind,
    /// The faulty link ("r2-r4", the end that suffers first) or router ("r3"); empty for a surge.
    pub element: String,
    /// The routers the fault touches directly (a link's ends, or the router).
    pub routers: Vec<String>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// Loss per million for the loss kinds.
    #[serde(default)]
    pub loss_per_million: u32,
}

impl Label {
    /// Whether the interval starting at `t` (of `step` ns) meets the fault's window (with
    /// the grace after it). A brain logs each interval's line at its end, measuring the
    /// step before, so the interval a line falls in may hold the fault's first moments
    /// even when it starts before them.
    pub fn covers(&self, t: u64, step: u64) -> bool {
        self.meets(t, t, step)
    }

    /// Whether the intervals starting from `first` to `last` (of `step` ns each) meet the
    /// fault's window (with its grace): `covers` for a span.
    pub fn meets(&self, first: u64, last: u64, step: u64) -> bool {
        last + step > self.start_unix_ns && first <= self.end_unix_ns + GRACE_NS
    }
}

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub version: u32,
    pub features_version: u32,
    pub seed: u64,
    pub topology: String,
    pub routers: Vec<String>,
    pub links: Vec<(String, String)>,
    pub interval_ms: u64,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

impl Meta {
    /// The telemetry interval, in ns.
    pub fn step(&self) -> u64 {
        self.interval_ms.max(1) * 1_000_000
    }
}

/// One line of a brain's telemetry log (the fields the models read).
#[derive(Deserialize)]
struct LogLine {
    unix_ns: u64,
    features: Vec<f32>,
    /// The router's links' measurements (datasets from before root-cause analysis lack them).
    #[serde(default)]
    links: Option<Vec<LinkSample>>,
}

/// A dataset in memory: per interval, each router's features (None: it logged nothing).
pub struct Dataset {
    pub meta: Meta,
    pub labels: Vec<Label>,
    pub neighbours: Vec<Vec<usize>>,
    /// Start of each interval, and the routers' features in it (in `meta.routers` order).
    pub intervals: Vec<(u64, Vec<Option<Features>>)>,
    /// Per interval (as `intervals`), each router's links' measurements, where logged.
    pub links: Vec<Vec<Option<Vec<LinkSample>>>>,
}

impl Dataset {
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_inner(dir).with_context(|| format!("dataset {}", dir.display()))
    }

    fn load_inner(dir: &Path) -> Result<Self> {
        let meta: Meta = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)
            .context("meta.json")?;
        if meta.format != FORMAT || meta.version != FORMAT_VERSION {
            bail!(
                "{} version {}: this reads {FORMAT} version {FORMAT_VERSION}",
                meta.format,
                meta.version
            );
        }
        if !(1..=features::VERSION).contains(&meta.features_version) {
            bail!(
                "feature set {}: this reads 1 to {}",
                meta.features_version,
                features::VERSION
            );
        }
        let labels = read_lines::<Label>(&dir.join("labels.jsonl"))?;
        let index: HashMap<&str, usize> = meta
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let mut neighbours = vec![Vec::new(); meta.routers.len()];
        for (a, b) in &meta.links {
            let (Some(&a), Some(&b)) = (index.get(a.as_str()), index.get(b.as_str())) else {
                bail!("meta.json: link {a}-{b} names an unknown router");
            };
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        let (intervals, links) = read_intervals(dir, &meta)?;
        Ok(Dataset {
            meta,
            labels,
            neighbours,
            intervals,
            links,
        })
    }

    /// Each interval in which any router logged, as the brains that did saw it: those
    /// routers, the links among them (a silent brain is left out of its neighbours' means,
    /// as in the distributed run), and each one's label (positive when a fault touching it
    /// covers the interval).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.intervals
            .iter()
            .filter(|(_, fs)| fs.iter().any(Option::is_some))
            .map(|(t, fs)| self.snapshot(*t, fs))
            .collect()
    }

    fn snapshot(&self, t: u64, fs: &[Option<Features>]) -> Snapshot {
        let present: Vec<usize> = (0..fs.len()).filter(|&r| fs[r].is_some()).collect();
        let mut at = vec![usize::MAX; fs.len()];
        for (i, &r) in present.iter().enumerate() {
            at[r] = i;
        }
        let neighbours = present
            .iter()
            .map(|&r| {
                let ns = self.neighbours[r].iter().map(|&u| at[u]);
                ns.filter(|&u| u != usize::MAX).collect()
            })
            .collect();
        let features = present.iter().filter_map(|&r| fs[r]).collect();
        let labels = present
            .iter()
            .map(|&r| self.faulty(&self.meta.routers[r], t))
            .collect();
        Snapshot {
            t,
            present,
            example: Example {
                graph: Graph {
                    features,
                    neighbours,
                },
                labels,
            },
        }
    }

    /// Training examples: every snapshot's graph and labels.
    pub fn examples(&self) -> Vec<Example> {
        self.snapshots().into_iter().map(|s| s.example).collect()
    }

    /// The telemetry interval, in ns.
    pub fn step(&self) -> u64 {
        self.meta.step()
    }

    /// Whether a fault touching `router` covers the interval starting at `t`.
    pub fn faulty(&self, router: &str, t: u64) -> bool {
        self.labels.iter().any(|l| {
            l.kind.is_fault() && l.covers(t, self.step()) && l.routers.iter().any(|r| r == router)
        })
    }
}

/// One interval of a dataset: the routers that logged (indices into `meta.routers`) and
/// their mesh among themselves.
pub struct Snapshot {
    pub t: u64,
    pub present: Vec<usize>,
    pub example: Example,
}

impl Snapshot {
    /// Scores of the present routers spread over all `routers`: NaN for the absent (never
    /// at or above a threshold, left out of AUPRC).
    pub fn spread(&self, routers: usize, scores: &[f32]) -> Vec<f32> {
        let mut out = vec![f32::NAN; routers];
        for (&r, &s) in self.present.iter().zip(scores) {
            out[r] = s;
        }
        out
    }
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

/// Every router's log lines bucketed into the dataset's intervals, and their links.
type Intervals = (
    Vec<(u64, Vec<Option<Features>>)>,
    Vec<Vec<Option<Vec<LinkSample>>>>,
);

/// Buckets every router's log lines into the dataset's intervals.
fn read_intervals(dir: &Path, meta: &Meta) -> Result<Intervals> {
    let step = meta.step();
    let count = (meta.end_unix_ns.saturating_sub(meta.start_unix_ns) / step) as usize;
    let mut intervals: Vec<(u64, Vec<Option<Features>>)> = (0..count)
        .map(|i| {
            (
                meta.start_unix_ns + i as u64 * step,
                vec![None; meta.routers.len()],
            )
        })
        .collect();
    let mut links = vec![vec![None; meta.routers.len()]; count];
    for (r, router) in meta.routers.iter().enumerate() {
        let lines = read_lines::<LogLine>(&dir.join("telemetry").join(format!("{router}.jsonl")))?;
        let mut deviation = Deviation::default();
        for line in lines {
            let features = full_features(&line.features, &mut deviation)
                .with_context(|| format!("{router}: a line of {} features", line.features.len()))?;
            let slot = line
                .unix_ns
                .checked_sub(meta.start_unix_ns)
                .map(|d| (d / step) as usize)
                .filter(|&s| s < count);
            if let Some(s) = slot {
                intervals[s].1[r] = Some(features);
                links[s][r] = line.links;
            }
        }
    }
    Ok((intervals, links))
}

/// A logged line's features in the current set: version 2 as it is, version 1 (measured
/// only) extended by the router's deviations, in the order its brain logged them.
fn full_features(values: &[f32], deviation: &mut Deviation) -> Result<Features> {
    if let Ok(f) = Features::try_from(values) {
        return Ok(f);
    }
    match Measured::try_from(values) {
        Ok(m) => Ok(deviation.extend(&m)),
        Err(_) => bail!("neither {MEASURED} (version 1) nor {FEATURES} (version 2)"),
    }
}
