//! Labelled datasets as root-cause cases, and how a ranking is judged. A case is one
//! injected fault, or faults injected at the same time (their windows overlap): the
//! intervals from its onset (the analysis window) against the fault-free intervals before
//! it. AC@k is the share of true causes in the top k (out of at most k), as the
//! multi-fault RCA literature counts it; Avg@k is the mean of AC@1 to AC@k.

use std::ops::Range;

use super::{Case, Element, Interval, Method};
use crate::models::dataset::{Dataset, Kind, Label};

/// One case of a dataset and its truth.
pub struct Labelled {
    pub truths: Vec<Element>,
    pub kinds: Vec<Kind>,
    pub normal: Vec<usize>,
    pub anomalous: Range<usize>,
}

/// The dataset's intervals as root-cause analysis reads them.
pub fn intervals(ds: &Dataset) -> Vec<Interval> {
    ds.intervals
        .iter()
        .enumerate()
        .map(|(i, (_, features))| Interval {
            features: features.clone(),
            links: ds.links.get(i).cloned().unwrap_or_default(),
        })
        .collect()
}

/// The dataset's cases: `window` intervals from each onset, against up to `baseline`
/// fault-free intervals before it.
pub fn cases(ds: &Dataset, window: usize, baseline: usize) -> Vec<Labelled> {
    let step = ds.step();
    let slot = |t: u64| (t.saturating_sub(ds.meta.start_unix_ns) / step) as usize;
    let mut faults: Vec<&Label> = ds.labels.iter().filter(|l| l.kind.is_fault()).collect();
    faults.sort_by_key(|l| l.start_unix_ns);
    let mut groups: Vec<Vec<&Label>> = Vec::new();
    for l in faults {
        match groups.last_mut() {
            Some(g) if g.iter().any(|x| l.start_unix_ns <= x.end_unix_ns) => g.push(l),
            _ => groups.push(vec![l]),
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let first = slot(g[0].start_unix_ns);
            let calm = |i: &usize| {
                let t = ds.meta.start_unix_ns + *i as u64 * step;
                !ds.labels
                    .iter()
                    .any(|l| l.kind.is_fault() && l.covers(t, step))
            };
            let normal: Vec<usize> = (first.saturating_sub(baseline)..first)
                .filter(calm)
                .collect();
            Labelled {
                truths: g.iter().map(|l| Element::parse(&l.element)).collect(),
                kinds: g.iter().map(|l| l.kind).collect(),
                normal,
                anomalous: first..(first + window).min(ds.intervals.len()),
            }
        })
        .filter(|c| !c.anomalous.is_empty())
        .collect()
}

/// The case a method ranks.
pub fn case<'a>(ds: &'a Dataset, intervals: &'a [Interval], labelled: &Labelled) -> Case<'a> {
    Case {
        routers: &ds.meta.routers,
        links: &ds.meta.links,
        intervals,
        normal: labelled.normal.clone(),
        anomalous: labelled.anomalous.clone(),
    }
}

/// AC@1 to AC@`k` of one ranking: the share of `truths` among the first k elements, out
/// of at most k.
pub fn accuracies(ranked: &[Element], truths: &[Element], k: usize) -> Vec<f64> {
    (1..=k)
        .map(|k| {
            let found = truths
                .iter()
                .filter(|t| ranked.iter().take(k).any(|r| r == *t));
            found.count() as f64 / truths.len().min(k).max(1) as f64
        })
        .collect()
}

/// A method's ranking of a case, timed: the elements best first and the milliseconds.
pub fn rank_timed(method: &dyn Method, case: &Case) -> (Vec<Element>, f64) {
    let t = std::time::Instant::now();
    let ranked = method.rank(case);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (ranked.into_iter().map(|c| c.element).collect(), ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_each_truth_out_of_at_most_k() {
        let e = |s: &str| Element::parse(s);
        let ranked = [e("r1-r2"), e("r3"), e("r4-r5")];
        assert_eq!(accuracies(&ranked, &[e("r3")], 3), vec![0.0, 1.0, 1.0]);
        // Two faults: one of the two in the top 1 is all AC@1 can ask.
        let two = [e("r2-r1"), e("r5-r4")];
        assert_eq!(accuracies(&ranked, &two, 3), vec![1.0, 0.5, 1.0]);
    }
}
