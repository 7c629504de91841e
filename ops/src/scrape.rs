//! Writing values read at scrape time: a collector names a family once and gives its
//! samples, each with its labels.

use std::fmt;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

/// A sample's labels: a bounded set of (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A collector's view of one scrape.
pub struct Scrape<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl<'a> Scrape<'a> {
    pub fn new(encoder: DescriptorEncoder<'a>) -> Self {
        Self { encoder }
    }

    /// A family of `kind`, one sample per (labels, metric).
    fn family<M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Labels, M)>,
    ) -> fmt::Result {
        let mut family = (self.encoder).encode_descriptor(name, help, unit.as_ref(), kind)?;
        for (labels, metric) in samples {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A counter family (`_total` is added to `name`, after the unit).
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.family(name, help, unit, MetricType::Counter, samples)
    }

    /// A gauge family.
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.family(name, help, unit, MetricType::Gauge, samples)
    }

    /// One gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, value: f64) -> fmt::Result {
        self.gauges(name, help, unit, [(Labels::new(), value)])
    }

    /// One counter without labels, in fractional units (seconds).
    pub fn counter_f64(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        value: f64,
    ) -> fmt::Result {
        let sample = [(Labels::new(), ConstCounter::new(value))];
        self.family(name, help, unit, MetricType::Counter, sample)
    }

    /// One counter without labels.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        value: u64,
    ) -> fmt::Result {
        self.counters(name, help, unit, [(Labels::new(), value)])
    }
}
