//! Telemetry features: what a brain measures of its router and its links each interval,
//! normalised to about [0, 1] (a few signed, in [-1, 1]) so that one model fits routers of
//! any size. The names, units and scaling are in docs/DESIGN.md ("Telemetry features");
//! a change here is a new `VERSION`, since models and datasets carry it.

use serde::{Deserialize, Serialize};

/// The feature set's version, written into datasets and model files. Version 2 is
/// version 1's measured features followed by their deviations (`Deviation`), so a version
/// 1 dataset converts exactly (`Deviation::extend` over each router's lines in order).
pub const VERSION: u32 = 2;
/// The measured features (all of version 1).
pub const MEASURED: usize = 17;
/// Each measured feature, then each one less its slow baseline.
pub const FEATURES: usize = 2 * MEASURED;
pub type Measured = [f32; MEASURED];
pub type Features = [f32; FEATURES];

/// The features' names, in order (datasets and the status print them); a deviation is
/// its feature's name with `d_` in front.
pub const NAMES: [&str; FEATURES] = [
    "rx_pps_log",
    "rx_pps_vs_baseline",
    "passed_frac",
    "dropped_frac",
    "util_max",
    "util_mean",
    "bfd_loss_max",
    "bfd_loss_mean",
    "bfd_down_frac",
    "rtt_max_log",
    "rtt_vs_baseline",
    "carrier_flaps",
    "brains_silent_frac",
    "run_delay_frac",
    "cpu_busy_frac",
    "softirq_frac",
    "loop_late_frac",
    "d_rx_pps_log",
    "d_rx_pps_vs_baseline",
    "d_passed_frac",
    "d_dropped_frac",
    "d_util_max",
    "d_util_mean",
    "d_bfd_loss_max",
    "d_bfd_loss_mean",
    "d_bfd_down_frac",
    "d_rtt_max_log",
    "d_rtt_vs_baseline",
    "d_carrier_flaps",
    "d_brains_silent_frac",
    "d_run_delay_frac",
    "d_cpu_busy_frac",
    "d_softirq_frac",
    "d_loop_late_frac",
];

/// One link's measurements over one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkSample {
    pub neighbor: String,
    pub bfd_up: bool,
    /// BFD packets the peer's interval promised, and those that came (0 and 0: no session).
    pub bfd_expected: f64,
    pub bfd_received: f64,
    /// The brain-to-brain round trip, if a probe came back this interval.
    pub rtt_ms: Option<f64>,
    /// Bytes sent against the link's configured capacity.
    pub utilisation: f64,
    pub carrier_downs: u32,
    /// The neighbour's brain took our records or answered a probe.
    pub brain_answered: bool,
    /// The link's cost as configured here (before any measured or drained cost): one end
    /// configured unlike the other is a misconfiguration root-cause analysis looks for.
    #[serde(default)]
    pub cost: u32,
}

/// One router's measurements over one interval (counters as deltas).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterSample {
    pub interval_s: f64,
    pub rx_packets: f64,
    pub passed_packets: f64,
    pub dropped_packets: f64,
    pub links: Vec<LinkSample>,
    /// Time the brain's threads waited for a CPU (from /proc/self/task/*/schedstat).
    pub run_delay_s: f64,
    /// The machine's CPU time busy, and in softirq (from /proc/stat), fractions.
    pub cpu_busy: f64,
    pub softirq: f64,
    /// How late the brain's own tick came.
    pub late_s: f64,
}

/// Turns samples into features; keeps the slow baselines some features compare against.
#[derive(Clone, Debug, Default)]
pub struct Normaliser {
    pps: Option<f64>,
    rtt: Option<f64>,
    deviation: Deviation,
}

/// Baselines follow slowly (a time constant of about 30 intervals).
const BASELINE_ALPHA: f64 = 1.0 / 30.0;

impl Normaliser {
    pub fn features(&mut self, s: &RouterSample) -> Features {
        let measured = self.measured(s);
        self.deviation.extend(&measured)
    }

    fn measured(&mut self, s: &RouterSample) -> Measured {
        let dt = s.interval_s.max(1e-3);
        let pps = s.rx_packets / dt;
        let pps_base = ewma(&mut self.pps, pps);
        let rtt_max = s.links.iter().filter_map(|l| l.rtt_ms).fold(None, max_opt);
        let rtt_base = rtt_max.map(|r| ewma(&mut self.rtt, r));
        let (loss_max, loss_mean) = max_mean(s.links.iter().filter_map(bfd_loss));
        let (util_max, util_mean) = max_mean(s.links.iter().map(|l| l.utilisation));
        let n = s.links.len().max(1) as f64;
        let rx = s.rx_packets.max(1.0);
        [
            (1.0 + pps).log10() / 6.0,
            ((1.0 + pps) / (1.0 + pps_base)).ln().clamp(-3.0, 3.0) / 3.0,
            s.passed_packets / rx,
            s.dropped_packets / rx,
            util_max,
            util_mean,
            loss_max,
            loss_mean,
            s.links
                .iter()
                .filter(|l| l.bfd_expected > 0.0 && !l.bfd_up)
                .count() as f64
                / n,
            rtt_max.map_or(0.0, |r| (1.0 + r).log10() / 3.0),
            match (rtt_max, rtt_base) {
                (Some(r), Some(b)) => ((1.0 + r) / (1.0 + b)).ln().clamp(0.0, 3.0) / 3.0,
                _ => 0.0,
            },
            f64::from(s.links.iter().map(|l| l.carrier_downs).sum::<u32>().min(3)) / 3.0,
            s.links.iter().filter(|l| !l.brain_answered).count() as f64 / n,
            s.run_delay_s / dt,
            s.cpu_busy,
            s.softirq,
            s.late_s / dt,
        ]
        .map(|v| v.clamp(-1.0, 1.0) as f32)
    }
}

/// What is unusual for this router: each measured feature less its own slow baseline
/// (an EWMA of about 60 intervals, before this one), so one model fits busy and quiet
/// routers, large and small meshes. The first interval deviates by nothing.
#[derive(Clone, Debug, Default)]
pub struct Deviation {
    baseline: Option<Measured>,
}

const DEVIATION_ALPHA: f32 = 1.0 / 60.0;

impl Deviation {
    /// The full feature vector: `m`, then `m` less the baseline (clamped to [-1, 1]).
    pub fn extend(&mut self, m: &Measured) -> Features {
        let base = self.baseline.get_or_insert(*m);
        let mut out = [0.0; FEATURES];
        for i in 0..MEASURED {
            out[i] = m[i];
            out[MEASURED + i] = (m[i] - base[i]).clamp(-1.0, 1.0);
            base[i] += DEVIATION_ALPHA * (m[i] - base[i]);
        }
        out
    }
}

/// The link's BFD loss this interval, if it had a session that was up.
fn bfd_loss(l: &LinkSample) -> Option<f64> {
    (l.bfd_up && l.bfd_expected > 0.0)
        .then(|| (1.0 - l.bfd_received / l.bfd_expected).clamp(0.0, 1.0))
}

fn ewma(state: &mut Option<f64>, v: f64) -> f64 {
    let base = state.map_or(v, |b| b + BASELINE_ALPHA * (v - b));
    *state = Some(base);
    base
}

fn max_opt(acc: Option<f64>, v: f64) -> Option<f64> {
    Some(acc.map_or(v, |a| a.max(v)))
}

fn max_mean(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut max, mut sum, mut n) = (0.0f64, 0.0, 0usize);
    for v in values {
        max = max.max(v);
        sum += v;
        n += 1;
    }
    (max, if n == 0 { 0.0 } else { sum / n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(received: f64, rtt: Option<f64>) -> LinkSample {
        LinkSample {
            neighbor: "r2".into(),
            bfd_up: true,
            bfd_expected: 100.0,
            bfd_received: received,
            rtt_ms: rtt,
            utilisation: 0.1,
            carrier_downs: 0,
            brain_answered: true,
            cost: 10,
        }
    }

    fn sample(links: Vec<LinkSample>) -> RouterSample {
        RouterSample {
            interval_s: 1.0,
            rx_packets: 1000.0,
            links,
            ..Default::default()
        }
    }

    #[test]
    fn loss_and_slow_round_trips_show_and_every_feature_stays_in_range() {
        let mut n = Normaliser::default();
        let calm = n.features(&sample(vec![
            link(100.0, Some(1.0)),
            link(100.0, Some(1.0)),
        ]));
        assert_eq!(
            calm[NAMES.iter().position(|x| *x == "bfd_loss_max").unwrap()],
            0.0
        );
        let bad = n.features(&sample(vec![
            link(80.0, Some(50.0)),
            link(100.0, Some(1.0)),
        ]));
        let at = |name: &str| bad[NAMES.iter().position(|x| *x == name).unwrap()];
        assert!((at("bfd_loss_max") - 0.2).abs() < 1e-6);
        assert!((at("bfd_loss_mean") - 0.1).abs() < 1e-6);
        assert!(at("rtt_vs_baseline") > 0.3, "{}", at("rtt_vs_baseline"));
        assert!(
            bad.iter()
                .chain(calm.iter())
                .all(|v| (-1.0..=1.0).contains(v))
        );
    }

    #[test]
    fn a_load_surge_is_measured_against_the_routers_own_baseline() {
        let mut n = Normaliser::default();
        let i = NAMES
            .iter()
            .position(|x| *x == "rx_pps_vs_baseline")
            .unwrap();
        for _ in 0..50 {
            assert!(n.features(&sample(vec![])).get(i).unwrap().abs() < 1e-6);
        }
        let mut surge = sample(vec![]);
        surge.rx_packets = 20_000.0;
        assert!(n.features(&surge)[i] > 0.5);
    }

    #[test]
    fn a_deviation_is_the_change_against_the_routers_own_slow_baseline() {
        let mut d = Deviation::default();
        let steady: Measured = [0.2; MEASURED];
        for _ in 0..100 {
            let f = d.extend(&steady);
            assert_eq!(&f[..MEASURED], &steady[..]);
            assert!(f[MEASURED..].iter().all(|v| v.abs() < 1e-6));
        }
        let mut step = steady;
        step[6] = 0.7;
        let f = d.extend(&step);
        assert!((f[MEASURED + 6] - 0.5).abs() < 1e-6, "{}", f[MEASURED + 6]);
        assert!(f[MEASURED + 5].abs() < 1e-6);
        // Held, the step fades into the baseline (about 60 intervals).
        let later = (0..120).map(|_| d.extend(&step)).last().unwrap();
        assert!(later[MEASURED + 6] < 0.1, "{}", later[MEASURED + 6]);
        assert_eq!(NAMES[MEASURED + 6], "d_bfd_loss_max");
    }
}
