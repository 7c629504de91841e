//! The methods ours is judged against, on the same cases and series. NSigma and BARO as
//! RCAEval (ASE'24) describes them: every series scored by how far its anomalous values
//! stray from its normal ones (mean and standard deviation; BARO: median and
//! inter-quartile range, which a few outliers do not move), elements ranked by their best
//! series. Dummy picks at random. The vote is 007's (NSDI'18) over the paths the brains
//! measure: each direction of a link that looks bad (loss, down, silent brain) is a failing
//! path of three elements (the sender, the link, the receiver) and gives each a third of a
//! vote.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{
    Case, Cause, Element, Fault, Method,
    evidence::{Measure, Series, mean, series, std_dev},
    one_per_element, sort_best_first,
};

/// A random order of the candidates (seeded by the case, so a run repeats).
pub struct Dummy {
    pub seed: u64,
}

impl Method for Dummy {
    fn name(&self) -> &'static str {
        "dummy"
    }

    fn rank(&self, case: &Case) -> Vec<Cause> {
        let mut elements = case.candidates();
        let seed = self.seed ^ (case.anomalous.start as u64).wrapping_mul(0x9e37_79b9);
        elements.shuffle(&mut StdRng::seed_from_u64(seed));
        let n = elements.len().max(1) as f64;
        elements
            .into_iter()
            .enumerate()
            .map(|(i, element)| unknown(element, 1.0 - i as f64 / n))
            .collect()
    }
}

fn unknown(element: Element, confidence: f64) -> Cause {
    Cause {
        element,
        fault: Fault::Unknown,
        confidence,
        evidence: Vec::new(),
    }
}

/// NSigma: |x - mean| / standard deviation of the normal values.
pub struct NSigma;

/// BARO: |x - median| / inter-quartile range of the normal values.
pub struct Baro;

impl Method for NSigma {
    fn name(&self) -> &'static str {
        "nsigma"
    }

    fn rank(&self, case: &Case) -> Vec<Cause> {
        by_series(case, |s| (mean(&s.normal), std_dev(&s.normal)))
    }
}

impl Method for Baro {
    fn name(&self) -> &'static str {
        "baro"
    }

    fn rank(&self, case: &Case) -> Vec<Cause> {
        by_series(case, |s| {
            let mut v = s.normal.clone();
            v.sort_by(f64::total_cmp);
            (quantile(&v, 0.5), quantile(&v, 0.75) - quantile(&v, 0.25))
        })
    }
}

/// Sorted values' quantile (0 for none), by linear interpolation.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// Elements by their series' best score, `centre_scale` giving each series' normal centre
/// and spread (a spread of 0 counts as 1, as scikit-learn's scalers do).
fn by_series(case: &Case, centre_scale: impl Fn(&Series) -> (f64, f64)) -> Vec<Cause> {
    let mut causes: Vec<Cause> = series(case)
        .iter()
        .filter(|s| !s.anomalous.is_empty())
        .map(|s| {
            let (centre, spread) = centre_scale(s);
            let spread = if spread > 0.0 { spread } else { 1.0 };
            let score = s
                .anomalous
                .iter()
                .map(|x| (x - centre).abs() / spread)
                .fold(0.0, f64::max);
            unknown(s.element.clone(), score)
        })
        .collect();
    sort_best_first(&mut causes);
    with_every_candidate(case, one_per_element(causes))
}

/// The ranking followed by the candidates it left out (no series), so every method ranks
/// every element.
fn with_every_candidate(case: &Case, mut ranked: Vec<Cause>) -> Vec<Cause> {
    for element in case.candidates() {
        if !ranked.iter().any(|c| c.element == element) {
            ranked.push(unknown(element, 0.0));
        }
    }
    ranked
}

/// 007's vote over the measured one-hop paths.
pub struct PathVote;

/// A direction looks bad from this much excess loss, downtime or silence.
const BAD: f64 = 0.01;

impl Method for PathVote {
    fn name(&self) -> &'static str {
        "path-vote"
    }

    fn rank(&self, case: &Case) -> Vec<Cause> {
        let all = series(case);
        let failing = |m: Measure| {
            all.iter()
                .filter(move |s| s.measure == m && s.excess() > BAD)
                .filter_map(|s| Some((s.router.clone(), s.peer.clone()?)))
        };
        let mut paths: Vec<(String, String)> = failing(Measure::BfdLoss)
            .chain(failing(Measure::BfdDown))
            .chain(failing(Measure::BrainSilent))
            .collect();
        paths.sort();
        paths.dedup();
        let mut votes: std::collections::HashMap<Element, f64> = Default::default();
        for (receiver, sender) in &paths {
            for e in [
                Element::Router(sender.clone()),
                Element::link(receiver, sender),
                Element::Router(receiver.clone()),
            ] {
                *votes.entry(e).or_default() += 1.0 / 3.0;
            }
        }
        let mut causes: Vec<Cause> = votes.into_iter().map(|(e, v)| unknown(e, v)).collect();
        sort_best_first(&mut causes);
        with_every_candidate(case, causes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), 2.0);
    }
}
