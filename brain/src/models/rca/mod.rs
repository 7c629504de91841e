//! Root-cause analysis: given what the brains saw before an incident and during it, rank
//! the elements of the mesh (links and routers) that could have caused it, each with what
//! is wrong with it, a confidence and the evidence in words. `evidence` turns the telemetry
//! into per-element series; `topology` is our method (DESIGN.md "Root-cause analysis");
//! `baselines` are the methods it is judged against (random pick, NSigma, BARO, a vote over
//! the measured paths). Every method ranks the same `Case`.

pub mod baselines;
pub mod cases;
pub mod evidence;
pub mod online;
#[cfg(test)]
pub mod testcase;
pub mod topology;

use std::{fmt, ops::Range};

use serde::{Deserialize, Serialize};

use super::features::{Features, LinkSample};

/// A link (its ends in name order) or a router.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Element {
    Link(String, String),
    Router(String),
}

impl Element {
    pub fn link(a: &str, b: &str) -> Self {
        if a <= b {
            Element::Link(a.into(), b.into())
        } else {
            Element::Link(b.into(), a.into())
        }
    }

    /// "r2-r4" (either order) is a link, "r3" a router: the labels' and the CLI's names.
    pub fn parse(name: &str) -> Self {
        match name.split_once('-') {
            Some((a, b)) => Element::link(a, b),
            None => Element::Router(name.into()),
        }
    }

    pub fn routers(&self) -> Vec<&str> {
        match self {
            Element::Link(a, b) => vec![a, b],
            Element::Router(r) => vec![r],
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Link(a, b) => write!(f, "{a}-{b}"),
            Element::Router(r) => write!(f, "{r}"),
        }
    }
}

/// What is wrong with an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The link loses part of what crosses it (one way or both; congestion too).
    Lossy,
    /// The link carries nothing while its carrier may be up (black-hole), or flaps.
    Down,
    /// Its two ends are configured with different costs.
    CostMismatch,
    /// The router runs late: its links lose BFD, its loop and threads wait for a CPU.
    Starved,
    /// The router's brain is gone (its dataplane forwards on).
    BrainDown,
    /// A random or generic method names an element without saying what is wrong.
    Unknown,
}

impl Fault {
    /// The words an operator reads after the element's name.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Lossy => "loses packets",
            Fault::Down => "is down or flapping",
            Fault::CostMismatch => "has different costs configured at its two ends",
            Fault::Starved => "is starved of CPU",
            Fault::BrainDown => "has lost its brain",
            Fault::Unknown => "is anomalous",
        }
    }
}

/// One ranked candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub element: Element,
    pub fault: Fault,
    /// In [0, 1]; what remediation compares with its threshold.
    pub confidence: f64,
    /// The series that point at it, in words.
    pub evidence: Vec<String>,
}

/// One interval as the brains saw it: each router's features and its links' measurements
/// (None: the router logged nothing, or this view does not hold it).
#[derive(Clone, Debug, Default)]
pub struct Interval {
    pub features: Vec<Option<Features>>,
    pub links: Vec<Option<Vec<LinkSample>>>,
}

/// What a method ranks: the mesh, its intervals, which of them were normal (before the
/// incident) and which anomalous.
pub struct Case<'a> {
    pub routers: &'a [String],
    pub links: &'a [(String, String)],
    pub intervals: &'a [Interval],
    pub normal: Vec<usize>,
    pub anomalous: Range<usize>,
}

impl Case<'_> {
    /// Every element a method may name: the links, then the routers.
    pub fn candidates(&self) -> Vec<Element> {
        let links = self.links.iter().map(|(a, b)| Element::link(a, b));
        let routers = self.routers.iter().map(|r| Element::Router(r.clone()));
        links.chain(routers).collect()
    }
}

/// A ranking method.
pub trait Method {
    fn name(&self) -> &'static str;
    /// Causes best first, one per element.
    fn rank(&self, case: &Case) -> Vec<Cause>;
}

/// Keeps the first cause of each element (the list sorted best first).
pub fn one_per_element(causes: Vec<Cause>) -> Vec<Cause> {
    let mut seen = std::collections::HashSet::new();
    causes
        .into_iter()
        .filter(|c| seen.insert(c.element.clone()))
        .collect()
}

/// Sorts best first (ties in name order, so a ranking is the same every run).
pub fn sort_best_first(causes: &mut [Cause]) {
    causes.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.element.cmp(&b.element))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_name_links_in_either_order() {
        assert_eq!(Element::parse("r5-r1"), Element::link("r1", "r5"));
        assert_eq!(Element::parse("r5-r1").to_string(), "r1-r5");
        assert_eq!(Element::parse("r3"), Element::Router("r3".into()));
        assert_eq!(Element::parse("r1-r5").routers(), vec!["r1", "r5"]);
    }
}
