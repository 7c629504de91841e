//! Judging a detector on a labelled dataset the honest way (Kim et al., AAAI'22): an
//! incident counts once, detected if any router is flagged in an interval that meets its
//! window (no point adjustment); every run of flagged intervals of a router that begins
//! outside all fault windows is one false alarm; AUPRC over router-intervals; the delay
//! from the fault's start to the end of its first flagged interval, in intervals. A router
//! is flagged when its score has been at or above the threshold for `hold` intervals in a
//! row (a rule each detector calibrates; the brain applies the same). Absent routers score
//! NaN: never flagged, left out of AUPRC.

use std::collections::BTreeMap;

use crate::mapek::analyze::{Calibrated, Model as _};

use super::{
    dataset::{Dataset, Kind},
    metrics,
};

/// A detector's scores: per scored interval (its start), one per router.
pub type Scores = Vec<(u64, Vec<f32>)>;

/// When a score raises an alarm: at or above `threshold` for `hold` intervals in a row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub threshold: f32,
    pub hold: usize,
}

impl Rule {
    /// Per scored interval and router, whether the rule flags it: MAPE-K's analysis of a
    /// score, as the brain runs it.
    pub fn flags(&self, scores: &Scores) -> Vec<Vec<bool>> {
        let routers = scores.first().map_or(0, |(_, s)| s.len());
        let mut rules: Vec<Calibrated> = (0..routers).map(|_| self.analysis()).collect();
        scores
            .iter()
            .map(|(t, s)| {
                s.iter()
                    .zip(rules.iter_mut())
                    .map(|(x, r)| r.observe(*t, f64::from(*x)).is_some())
                    .collect()
            })
            .collect()
    }

    /// The rule as a MAPE-K analyser of one router's score.
    pub fn analysis(&self) -> Calibrated {
        Calibrated::new("anomaly_score", f64::from(self.threshold), self.hold)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub faults: usize,
    pub detected: usize,
    pub false_alarms: usize,
    pub event_f1: f64,
    pub auprc: f64,
    pub median_delay_intervals: Option<f64>,
    /// Each detected incident's delay, in intervals (to pool several datasets').
    pub delays: Vec<f64>,
    pub false_alarms_per_router_hour: f64,
    /// Per fault kind: (detected, injected).
    pub per_kind: BTreeMap<String, (usize, usize)>,
}

pub fn evaluate(ds: &Dataset, scores: &Scores, rule: Rule) -> Report {
    let flags = rule.flags(scores);
    let step = ds.step();
    let in_fault = |t: u64| {
        ds.labels
            .iter()
            .any(|l| l.kind.is_fault() && l.covers(t, step))
    };
    let (mut detected, mut delays, mut per_kind) = (0, Vec::new(), BTreeMap::new());
    let faults: Vec<_> = ds.labels.iter().filter(|l| l.kind.is_fault()).collect();
    for l in &faults {
        let first = scores
            .iter()
            .zip(&flags)
            .find(|((t, _), f)| l.covers(*t, step) && f.iter().any(|x| *x))
            .map(|((t, _), _)| *t);
        let entry = per_kind.entry(kind_name(l.kind)).or_insert((0, 0));
        entry.1 += 1;
        if let Some(t) = first {
            detected += 1;
            entry.0 += 1;
            // To the end of the first flagged interval (when its line was logged, at the
            // latest).
            delays.push((t + step).saturating_sub(l.start_unix_ns) as f64 / step as f64);
        }
    }
    let routers = ds.meta.routers.len();
    let mut false_alarms = 0;
    for r in 0..routers {
        let mut flagged_before = false;
        for ((t, _), f) in scores.iter().zip(&flags) {
            // A run of flags that begins outside every fault window (one that began in a
            // fault and outlasts its grace is that fault's alarm, still raised).
            let alarm = f[r] && !flagged_before && !in_fault(*t);
            false_alarms += usize::from(alarm);
            flagged_before = f[r];
        }
    }
    let calm_intervals = scores.iter().filter(|(t, _)| !in_fault(*t)).count();
    let router_hours = (calm_intervals * routers) as f64 * ds.meta.interval_ms as f64 / 3.6e6;
    Report {
        faults: faults.len(),
        detected,
        false_alarms,
        event_f1: event_f1(detected, faults.len(), false_alarms),
        auprc: auprc(ds, scores),
        median_delay_intervals: median(&mut delays),
        delays,
        false_alarms_per_router_hour: if router_hours > 0.0 {
            false_alarms as f64 / router_hours
        } else {
            0.0
        },
        per_kind,
    }
}

pub fn kind_name(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Recall = detected / faults; precision = detected / (detected + false alarms).
pub fn event_f1(detected: usize, faults: usize, false_alarms: usize) -> f64 {
    if detected == 0 {
        return 0.0;
    }
    let recall = detected as f64 / faults as f64;
    let precision = detected as f64 / (detected + false_alarms) as f64;
    2.0 * precision * recall / (precision + recall)
}

fn auprc(ds: &Dataset, scores: &Scores) -> f64 {
    let mut scored: Vec<(f32, bool)> = scores
        .iter()
        .flat_map(|(t, s)| {
            s.iter()
                .enumerate()
                .filter(|(_, x)| !x.is_nan())
                .map(move |(r, x)| (*x, ds.faulty(&ds.meta.routers[r], *t)))
        })
        .collect();
    metrics::auprc(&mut scored).unwrap_or(0.0)
}

pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::dataset::{Label, Meta};

    fn dataset() -> Dataset {
        let s = 1_000_000_000u64;
        let label = |kind, start: u64, end: u64| Label {
            kind,
            element: "r1-r2".into(),
            routers: vec!["r1".into(), "r2".into()],
            start_unix_ns: start * s,
            end_unix_ns: end * s,
            loss_per_million: 0,
        };
        Dataset {
            meta: Meta {
                format: "x0-incidents".into(),
                version: 1,
                features_version: 1,
                seed: 0,
                topology: "t".into(),
                routers: vec!["r1".into(), "r2".into(), "r3".into()],
                links: vec![],
                interval_ms: 1000,
                start_unix_ns: 0,
                end_unix_ns: 100 * s,
            },
            // Two faults (10-20 s, 50-60 s; each with 5 s of grace) and a surge.
            labels: vec![
                label(Kind::Loss, 10, 20),
                label(Kind::Flap, 50, 60),
                label(Kind::Surge, 80, 90),
            ],
            neighbours: vec![vec![]; 3],
            intervals: vec![],
            links: vec![],
        }
    }

    #[test]
    fn an_incident_counts_once_and_a_flag_outside_every_window_is_a_false_alarm() {
        let ds = dataset();
        let s = 1_000_000_000u64;
        // Flags: r1 at 12-14 s (the loss, flagged at the end of its third interval), r2
        // from 18 s in the loss to 30 s (past its grace: still the loss's alarm, not a
        // false one), r3 at 85-86 s (during the surge: a false alarm, one run), nothing
        // in the flap.
        let scores: Scores = (0..100u64)
            .map(|t| {
                let r1 = if (12..=14).contains(&t) { 0.9 } else { 0.1 };
                let r2 = if (18..=30).contains(&t) { 0.9 } else { 0.1 };
                let r3 = if (85..=86).contains(&t) { 0.8 } else { 0.0 };
                (t * s, vec![r1, r2, r3])
            })
            .collect();
        let r = evaluate(
            &ds,
            &scores,
            Rule {
                threshold: 0.5,
                hold: 1,
            },
        );
        assert_eq!((r.faults, r.detected, r.false_alarms), (2, 1, 1));
        assert_eq!(r.median_delay_intervals, Some(3.0));
        // recall 1/2, precision 1/2.
        assert!((r.event_f1 - 0.5).abs() < 1e-12);
        assert_eq!(r.per_kind["loss"], (1, 1));
        assert_eq!(r.per_kind["flap"], (0, 1));
        // Calm: 100 intervals less the two windows of 16 (with grace), times 3 routers.
        let hours = (100 - 32) as f64 * 3.0 / 3600.0;
        assert!((r.false_alarms_per_router_hour - 1.0 / hours).abs() < 1e-9);
    }

    #[test]
    fn a_hold_of_two_ignores_one_interval_blips_and_absent_routers_never_flag() {
        let ds = dataset();
        let s = 1_000_000_000u64;
        // r1: 12-14 s in the loss; r2: a one-interval blip at 70 s; r3: absent (NaN).
        let scores: Scores = (0..100u64)
            .map(|t| {
                let r1 = if (12..=14).contains(&t) { 0.9 } else { 0.1 };
                let r2 = if t == 70 { 0.9 } else { 0.1 };
                (t * s, vec![r1, r2, f32::NAN])
            })
            .collect();
        let rule = |hold| Rule {
            threshold: 0.5,
            hold,
        };
        let once = evaluate(&ds, &scores, rule(1));
        assert_eq!((once.detected, once.false_alarms), (1, 1));
        let twice = evaluate(&ds, &scores, rule(2));
        assert_eq!((twice.detected, twice.false_alarms), (1, 0));
        // Flagged at 13 s, one interval later than without the hold.
        assert_eq!(once.median_delay_intervals, Some(3.0));
        assert_eq!(twice.median_delay_intervals, Some(4.0));
        assert!(twice.auprc > 0.0 && twice.auprc.is_finite());
    }
}
