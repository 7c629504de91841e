//! MAPE-K, analyse: adaptive thresholds per metric over bounded time series. Three
//! strategies, chosen per metric: EWMA with a sigma band (smooth metrics: latency), a
//! high percentile of the recent window (spiky ones: loss), and Tukey's IQR fences (ones
//! that move both ways: throughput). A learnt model's score (GraphSAGE, the forest) plugs
//! in behind the same trait with the rule calibrated beside it (`Calibrated`).

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// Flag values more than `k_sigma` standard deviations from the moving mean.
    Ewma { alpha: f64, k_sigma: f64 },
    /// Flag values above the `p` quantile of the window, times (1 + margin).
    Percentile { p: f64, margin: f64 },
    /// Flag values outside [Q1 - k IQR, Q3 + k IQR].
    Iqr { k: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub metric: String,
    pub at_unix_ns: u64,
    pub value: f64,
    /// The bound it crossed.
    pub threshold: f64,
    pub high: bool,
}

/// Anything that flags anomalies in a stream of samples of one metric.
pub trait Model: Send {
    fn observe(&mut self, at_unix_ns: u64, value: f64) -> Option<Anomaly>;
}

/// A learnt model's anomaly score (0..1) against the rule calibrated with it on training
/// data (`models::baselines::calibrate`): at or above the threshold for `hold` samples in
/// a row. The benchmark judges detectors by the same code (`models::evaluate::Rule`).
pub struct Calibrated {
    metric: String,
    threshold: f64,
    hold: usize,
    run: usize,
}

impl Calibrated {
    pub fn new(metric: &str, threshold: f64, hold: usize) -> Self {
        Calibrated {
            metric: metric.into(),
            threshold,
            hold: hold.max(1),
            run: 0,
        }
    }
}

impl Model for Calibrated {
    fn observe(&mut self, at_unix_ns: u64, value: f64) -> Option<Anomaly> {
        // NaN (no score) is not at or above anything: it ends a run.
        self.run = if value >= self.threshold {
            self.run + 1
        } else {
            0
        };
        (self.run >= self.hold).then(|| Anomaly {
            metric: self.metric.clone(),
            at_unix_ns,
            value,
            threshold: self.threshold,
            high: true,
        })
    }
}

/// A bounded series and the state of its strategy.
pub struct Detector {
    metric: String,
    strategy: Strategy,
    window: VecDeque<f64>,
    capacity: usize,
    /// Samples before any verdict (the thresholds need data).
    warmup: usize,
    mean: f64,
    var: f64,
    seen: usize,
}

impl Detector {
    pub fn new(metric: &str, strategy: Strategy, capacity: usize, warmup: usize) -> Self {
        assert!(capacity >= 4 && warmup >= 2);
        Self {
            metric: metric.into(),
            strategy,
            window: VecDeque::with_capacity(capacity),
            capacity,
            warmup,
            mean: 0.0,
            var: 0.0,
            seen: 0,
        }
    }

    /// What the metric normally is: the EWMA's mean, or the window's mean.
    pub fn baseline(&self) -> f64 {
        match self.strategy {
            Strategy::Ewma { .. } => self.mean,
            _ if self.window.is_empty() => 0.0,
            _ => self.window.iter().sum::<f64>() / self.window.len() as f64,
        }
    }

    /// The quantile `q` (0..=1) of the window, by linear interpolation.
    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let pos = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    }

    fn verdict(&self, value: f64) -> Option<(f64, bool)> {
        match self.strategy {
            Strategy::Ewma { k_sigma, .. } => {
                let sigma = self.var.sqrt().max(1e-9);
                if value > self.mean + k_sigma * sigma {
                    Some((self.mean + k_sigma * sigma, true))
                } else if value < self.mean - k_sigma * sigma {
                    Some((self.mean - k_sigma * sigma, false))
                } else {
                    None
                }
            }
            Strategy::Percentile { p, margin } => {
                let mut s: Vec<f64> = self.window.iter().copied().collect();
                s.sort_by(f64::total_cmp);
                let t = Self::quantile(&s, p) * (1.0 + margin);
                (value > t).then_some((t, true))
            }
            Strategy::Iqr { k } => {
                let mut s: Vec<f64> = self.window.iter().copied().collect();
                s.sort_by(f64::total_cmp);
                let (q1, q3) = (Self::quantile(&s, 0.25), Self::quantile(&s, 0.75));
                let iqr = q3 - q1;
                if value > q3 + k * iqr {
                    Some((q3 + k * iqr, true))
                } else if value < q1 - k * iqr {
                    Some((q1 - k * iqr, false))
                } else {
                    None
                }
            }
        }
    }
}

impl Model for Detector {
    fn observe(&mut self, at_unix_ns: u64, value: f64) -> Option<Anomaly> {
        let verdict = (self.seen >= self.warmup)
            .then(|| self.verdict(value))
            .flatten();
        // Anomalies do not teach the baseline (a long outage would become "normal").
        if verdict.is_none() {
            if let Strategy::Ewma { alpha, .. } = self.strategy {
                if self.seen == 0 {
                    self.mean = value;
                } else {
                    let d = value - self.mean;
                    self.mean += alpha * d;
                    self.var = (1.0 - alpha) * (self.var + alpha * d * d);
                }
            }
            if self.window.len() == self.capacity {
                self.window.pop_front();
            }
            self.window.push_back(value);
            self.seen += 1;
        }
        verdict.map(|(threshold, high)| Anomaly {
            metric: self.metric.clone(),
            at_unix_ns,
            value,
            threshold,
            high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibrated_score_flags_after_its_hold_and_a_missing_score_ends_the_run() {
        let mut c = Calibrated::new("anomaly_score", 0.5, 2);
        let seen: Vec<bool> = [0.9, 0.9, 0.9, f64::NAN, 0.9, 0.2, 0.6, 0.7]
            .iter()
            .enumerate()
            .map(|(i, v)| c.observe(i as u64, *v).is_some())
            .collect();
        assert_eq!(seen, [false, true, true, false, false, false, false, true]);
    }

    /// A noisy but steady signal, deterministic.
    fn steady(i: u64, base: f64, noise: f64) -> f64 {
        base + noise * (((i * 7919) % 13) as f64 / 13.0 - 0.5)
    }

    #[test]
    fn each_strategy_flags_a_spike_and_not_the_noise() {
        for strategy in [
            Strategy::Ewma {
                alpha: 0.1,
                k_sigma: 4.0,
            },
            Strategy::Percentile {
                p: 0.99,
                margin: 0.2,
            },
            Strategy::Iqr { k: 3.0 },
        ] {
            let mut d = Detector::new("latency_us", strategy, 200, 30);
            for i in 0..300 {
                assert_eq!(
                    d.observe(i, steady(i, 100.0, 10.0)),
                    None,
                    "{strategy:?} at {i}"
                );
            }
            let a = d
                .observe(300, 400.0)
                .unwrap_or_else(|| panic!("{strategy:?} missed the spike"));
            assert!(
                a.high && a.threshold < 400.0 && a.threshold > 100.0,
                "{a:?}"
            );
            // The spike did not move the baseline: normal values pass again.
            assert_eq!(
                d.observe(301, steady(301, 100.0, 10.0)),
                None,
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn no_verdict_before_the_warm_up() {
        let mut d = Detector::new(
            "loss",
            Strategy::Percentile {
                p: 0.95,
                margin: 0.0,
            },
            50,
            10,
        );
        for i in 0..9 {
            assert_eq!(d.observe(i, if i == 5 { 1e6 } else { 1.0 }), None);
        }
    }

    #[test]
    fn low_values_are_flagged_where_the_strategy_has_a_lower_bound() {
        let mut d = Detector::new("throughput", Strategy::Iqr { k: 1.5 }, 100, 20);
        for i in 0..100 {
            d.observe(i, steady(i, 1000.0, 50.0));
        }
        let a = d.observe(100, 10.0).expect("a collapse");
        assert!(!a.high);
    }
}
