//! The telemetry of a case as series, each belonging to one element: a router's features
//! and whether it logged at all; per link end, what that end measured of the link (BFD
//! loss and state from the other end, carrier losses, whether the other brain answered,
//! round trip, utilisation, configured cost). Each series has its normal and anomalous
//! values; a router absent in an interval adds nothing to its series.

use std::collections::BTreeMap;

use super::{Case, Element};
use crate::{
    mapek::monitor::JITTER_MEAN,
    models::features::{LinkSample, MEASURED, NAMES},
};

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// One of the router's measured features (by index).
    Feature(usize),
    /// 1 when the router's brain logged the interval, 0 when not.
    Logged,
    /// The share of BFD packets from the other end that did not come.
    BfdLoss,
    /// `BfdLoss` less the lowest of the router's other links' in the same interval (a
    /// sample read late or early moves all of a router's links at once: what one link
    /// loses beyond the others is its own).
    BfdLossBeyondOthers,
    /// 1 while the BFD session to the other end is not up.
    BfdDown,
    CarrierDowns,
    /// 1 when the other end's brain neither took our records nor answered a probe.
    BrainSilent,
    RttMs,
    Utilisation,
    /// The cost this end has configured for the link.
    Cost,
}

/// One series of a case.
#[derive(Clone, Debug)]
pub struct Series {
    pub element: Element,
    /// The router that measured it.
    pub router: String,
    /// For a link end's series, the other end.
    pub peer: Option<String>,
    pub measure: Measure,
    pub normal: Vec<f64>,
    pub anomalous: Vec<f64>,
}

impl Series {
    /// What it is, for the evidence: "r2 from r4: BFD loss".
    pub fn name(&self) -> String {
        let what = match self.measure {
            Measure::Feature(f) => NAMES[f],
            Measure::Logged => "brain logging",
            Measure::BfdLoss => "BFD loss",
            Measure::BfdLossBeyondOthers => "BFD loss beyond its other links",
            Measure::BfdDown => "BFD down",
            Measure::CarrierDowns => "carrier losses",
            Measure::BrainSilent => "brain silent",
            Measure::RttMs => "round trip (ms)",
            Measure::Utilisation => "utilisation",
            Measure::Cost => "configured cost",
        };
        match &self.peer {
            Some(p) => format!("{} from {p}: {what}", self.router),
            None => format!("{}: {what}", self.router),
        }
    }

    /// Mean of the anomalous values less the mean of the normal ones (0 for none).
    pub fn excess(&self) -> f64 {
        mean(&self.anomalous) - mean(&self.normal)
    }

    /// How far every anomalous value stayed above the normal level, less `k` of the
    /// normal values' spread: a fault holds through the window, a blip of one interval (a
    /// late sample moves every link of a router at once) does not. The level is the
    /// median and the spread 1.4826 median absolute deviations (a standard deviation for
    /// Gaussian noise), so that the odd spike among the normal values (BARO's point) moves
    /// neither. 0 when not.
    pub fn persistent_rise(&self, k: f64) -> f64 {
        let low = self.anomalous.iter().copied().fold(f64::INFINITY, f64::min);
        if !low.is_finite() {
            return 0.0;
        }
        let (level, spread) = robust(&self.normal);
        (low - level - k * spread).max(0.0)
    }

    /// `persistent_rise` downwards: how far every anomalous value stayed below.
    pub fn persistent_drop(&self, k: f64) -> f64 {
        let high = self
            .anomalous
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if !high.is_finite() {
            return 0.0;
        }
        let (level, spread) = robust(&self.normal);
        (level - high - k * spread).max(0.0)
    }
}

/// The median of `v` and 1.4826 times its median absolute deviation (0, 0 for none).
pub fn robust(v: &[f64]) -> (f64, f64) {
    let median = |mut x: Vec<f64>| {
        if x.is_empty() {
            return 0.0;
        }
        x.sort_by(f64::total_cmp);
        let n = x.len();
        if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        }
    };
    let m = median(v.to_vec());
    let mad = median(v.iter().map(|x| (x - m).abs()).collect());
    (m, 1.4826 * mad)
}

pub fn std_dev(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

type Key = (String, Option<String>, Measure);

/// Every series of the case, in a fixed order.
pub fn series(case: &Case) -> Vec<Series> {
    let mut out: BTreeMap<Key, Series> = BTreeMap::new();
    let anomalous: Vec<usize> = case.anomalous.clone().collect();
    for (normal, indices) in [(true, &case.normal), (false, &anomalous)] {
        for &i in indices {
            let Some(interval) = case.intervals.get(i) else {
                continue;
            };
            for (r, router) in case.routers.iter().enumerate() {
                let features = interval.features.get(r).copied().flatten();
                let logged = f64::from(u8::from(features.is_some()));
                push(&mut out, router, None, Measure::Logged, normal, logged);
                for (f, v) in features
                    .iter()
                    .flat_map(|f| f[..MEASURED].iter().enumerate())
                {
                    push(
                        &mut out,
                        router,
                        None,
                        Measure::Feature(f),
                        normal,
                        f64::from(*v),
                    );
                }
                let links = interval.links.get(r).and_then(Option::as_ref);
                for l in links.into_iter().flatten() {
                    for (m, v) in link_values(l) {
                        push(&mut out, router, Some(&l.neighbor), m, normal, v);
                    }
                }
                for (peer, v) in beyond_others(links.map_or(&[][..], Vec::as_slice)) {
                    push(
                        &mut out,
                        router,
                        Some(peer),
                        Measure::BfdLossBeyondOthers,
                        normal,
                        v,
                    );
                }
            }
        }
    }
    out.into_values().collect()
}

fn push(
    out: &mut BTreeMap<Key, Series>,
    router: &str,
    peer: Option<&str>,
    measure: Measure,
    normal: bool,
    value: f64,
) {
    let key = (router.to_string(), peer.map(String::from), measure);
    let s = out.entry(key).or_insert_with(|| Series {
        element: match peer {
            Some(p) => Element::link(router, p),
            None => Element::Router(router.into()),
        },
        router: router.into(),
        peer: peer.map(String::from),
        measure,
        normal: Vec::new(),
        anomalous: Vec::new(),
    });
    if normal {
        s.normal.push(value);
    } else {
        s.anomalous.push(value);
    }
}

/// Each link's BFD loss less the lowest of the router's other links' (none for a router
/// with one measured link).
fn beyond_others(links: &[LinkSample]) -> Vec<(&str, f64)> {
    let losses: Vec<(&str, f64)> = links
        .iter()
        .filter_map(|l| Some((l.neighbor.as_str(), bfd_loss(l)?)))
        .collect();
    losses
        .iter()
        .enumerate()
        .filter_map(|(i, (peer, loss))| {
            let others = losses.iter().enumerate().filter(|(j, _)| *j != i);
            let lowest = others.map(|(_, (_, x))| *x).reduce(f64::min)?;
            Some((*peer, loss - lowest.max(0.0).min(*loss)))
        })
        .collect()
}

/// The share of BFD packets from the other end that did not come (None: no session).
fn bfd_loss(l: &LinkSample) -> Option<f64> {
    // `bfd_expected` is what the peer's interval promises before its jitter (RFC 5880
    // 6.8.7: up to 25 % sooner, 12.5 % on average): a clean link brings 1/0.875 of it.
    // Not clamped at 0, so that noise averages out and a few percent lost shows; clamped
    // at -1, for a session that just fell back to BFD's 1 s slow start (it promises one
    // packet while the last 10 ms ones still count).
    (l.bfd_expected >= 0.5)
        .then(|| (1.0 - l.bfd_received * JITTER_MEAN / l.bfd_expected).clamp(-1.0, 1.0))
}

/// What one end measured of a link in one interval (a value left out when unmeasured).
fn link_values(l: &LinkSample) -> Vec<(Measure, f64)> {
    let mut v = vec![
        (Measure::BfdDown, f64::from(u8::from(!l.bfd_up))),
        (Measure::CarrierDowns, f64::from(l.carrier_downs)),
        (Measure::BrainSilent, f64::from(u8::from(!l.brain_answered))),
        (Measure::Utilisation, l.utilisation),
    ];
    if let Some(loss) = bfd_loss(l) {
        v.push((Measure::BfdLoss, loss));
    }
    if let Some(rtt) = l.rtt_ms {
        v.push((Measure::RttMs, rtt));
    }
    if l.cost > 0 {
        v.push((Measure::Cost, f64::from(l.cost)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_among_the_normal_values_moves_neither_level_nor_spread() {
        let (m, s) = robust(&[0.0, 0.01, -0.01, 0.0, 0.5, 0.0, -0.02]);
        assert_eq!(m, 0.0);
        assert!(s < 0.02, "{s}");
        let series = Series {
            element: Element::link("r1", "r2"),
            router: "r1".into(),
            peer: Some("r2".into()),
            measure: Measure::BfdLoss,
            normal: vec![0.0, 0.01, -0.01, 0.0, 0.5, 0.0, -0.02],
            anomalous: vec![0.06, 0.05],
        };
        let rise = series.persistent_rise(1.0);
        assert!((0.03..0.05).contains(&rise), "{rise}");
        // One interval of the window back to normal: no persistent rise.
        let blip = Series {
            anomalous: vec![0.06, 0.0],
            ..series
        };
        assert_eq!(blip.persistent_rise(1.0), 0.0);
    }
}
