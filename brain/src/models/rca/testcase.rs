//! Small meshes for the tests: a square r1-r2-r3-r4-r1, every router logging and
//! measuring its links, with faults applied to chosen intervals.

use super::Interval;
use crate::models::features::{FEATURES, Features, LinkSample};

fn features_zero() -> Features {
    [0.0; FEATURES]
}

pub fn routers() -> Vec<String> {
    (1..=4).map(|i| format!("r{i}")).collect()
}

pub fn links() -> Vec<(String, String)> {
    [("r1", "r2"), ("r2", "r3"), ("r3", "r4"), ("r1", "r4")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// What a fault does to one interval.
#[derive(Clone, Copy)]
pub enum Fault<'a> {
    None,
    /// `receiver` loses this share of what comes from `sender`.
    Loss {
        receiver: &'a str,
        sender: &'a str,
        share: f64,
    },
    /// The router's brain logs nothing and answers no one.
    BrainGone(&'a str),
    /// Its loop runs late and its BFD packets are late at every neighbour.
    Starved(&'a str),
    /// The router's end of its link to the other has ten times the cost.
    Cost(&'a str, &'a str),
    /// Legitimate load: more packets everywhere, links half full.
    Surge,
}

pub fn interval(fault: Fault) -> Interval {
    let routers = routers();
    let links = links();
    let features = routers
        .iter()
        .map(|r| match fault {
            Fault::BrainGone(g) if g == r => None,
            Fault::Starved(s) if s == r => {
                let mut f = features_zero();
                f[13] = 0.4;
                f[16] = 0.3;
                Some(f)
            }
            Fault::Surge => {
                let mut f = features_zero();
                f[0] = 0.6;
                f[1] = 0.5;
                f[4] = 0.5;
                Some(f)
            }
            _ => Some(features_zero()),
        })
        .collect();
    let samples = routers
        .iter()
        .map(|r| {
            if matches!(fault, Fault::BrainGone(g) if g == r) {
                return None;
            }
            let ends = links.iter().filter_map(|(a, b)| match (a == r, b == r) {
                (true, _) => Some(b.as_str()),
                (_, true) => Some(a.as_str()),
                _ => None,
            });
            Some(ends.map(|n| sample(r, n, fault)).collect())
        })
        .collect();
    Interval {
        features,
        links: samples,
    }
}

fn sample(r: &str, n: &str, fault: Fault) -> LinkSample {
    let received = match fault {
        Fault::Loss {
            receiver,
            sender,
            share,
        } if receiver == r && sender == n => 114.0 * (1.0 - share),
        Fault::Starved(s) if s == n => 80.0,
        _ => 114.0,
    };
    LinkSample {
        neighbor: n.into(),
        bfd_up: true,
        bfd_expected: 100.0,
        bfd_received: received,
        rtt_ms: Some(0.3),
        utilisation: if matches!(fault, Fault::Surge) {
            0.5
        } else {
            0.01
        },
        carrier_downs: 0,
        brain_answered: !matches!(fault, Fault::BrainGone(g) if g == n),
        cost: if matches!(fault, Fault::Cost(a, b) if a == r && b == n) {
            100
        } else {
            10
        },
    }
}

/// What router `me`'s brain sees of an interval: itself, then its neighbours (features
/// only), and its own links.
pub fn local(all: &Interval, me: &str) -> (Interval, Vec<String>, Vec<(String, String)>) {
    let names = routers();
    let at = |r: &str| {
        names
            .iter()
            .position(|x| x == r)
            .expect("a router of the square")
    };
    let neighbours: Vec<String> = links()
        .iter()
        .filter_map(|(a, b)| match (a == me, b == me) {
            (true, _) => Some(b.clone()),
            (_, true) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let view: Vec<String> = std::iter::once(me.to_string())
        .chain(neighbours.iter().cloned())
        .collect();
    let interval = Interval {
        features: view.iter().map(|r| all.features[at(r)]).collect(),
        links: view
            .iter()
            .map(|r| {
                if r == me {
                    all.links[at(r)].clone()
                } else {
                    None
                }
            })
            .collect(),
    };
    let links = neighbours
        .iter()
        .map(|n| (me.to_string(), n.clone()))
        .collect();
    (interval, view, links)
}
