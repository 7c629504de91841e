//! Our root-cause analysis (DESIGN.md "Root-cause analysis"): every element of the mesh
//! gets a score per fault it could have, from what the brains at its ends measured of it,
//! against what they measured before the incident: how far it stayed above its normal
//! level through the whole window (a persistent rise: one late sample is no fault), or, for
//! BFD going down and carrier losses, which are never noise, how often they happened. Each link is measured from
//! both ends (BFD from the other end, carrier, configured cost); each router by its own
//! brain (is it logging, is its loop late) and by its neighbours (does its brain answer,
//! do its BFD packets come). The topology explains away: when every link of a router is
//! bad, the router is the cause and its links are not (tomography's parsimony; a lossy link
//! spoils one link, a starved router all of its links).

use std::collections::HashMap;

use super::{
    Case, Cause, Element, Fault, Method,
    evidence::{Measure, Series, mean, robust, series},
    one_per_element, sort_best_first,
};

/// Feature indices of the router's own lateness (its brain's threads waiting for a CPU,
/// its loop's tick coming late).
const RUN_DELAY: usize = 13;
const LOOP_LATE: usize = 16;
/// A persistent rise in loss this large scores one half.
const LOSS_HALF: f64 = 0.015;
/// Standard deviations of a series' own noise that a rise must clear to count (a link's
/// BFD count varies by about 2 % from one second to the next).
const NOISE: f64 = 1.0;
/// An excess lateness this large scores one half.
const LATE_HALF: f64 = 0.05;

pub struct Topology;

impl Method for Topology {
    fn name(&self) -> &'static str {
        "topology"
    }

    fn rank(&self, case: &Case) -> Vec<Cause> {
        let all = series(case);
        let ix = Index::new(&all);
        let mut causes: Vec<Cause> = Vec::new();
        for (a, b) in case.links {
            causes.extend(link_causes(&ix, case, a, b));
        }
        for r in case.routers {
            causes.extend(router_causes(&ix, case, r));
        }
        sort_best_first(&mut causes);
        let mut ranked = one_per_element(causes);
        for c in &mut ranked {
            c.evidence = evidence(&all, &c.element);
        }
        ranked
    }
}

/// The series by (measuring router, other end, measure).
struct Index<'a>(HashMap<(&'a str, Option<&'a str>, Measure), &'a Series>);

impl<'a> Index<'a> {
    fn new(all: &'a [Series]) -> Self {
        Index(
            all.iter()
                .map(|s| ((s.router.as_str(), s.peer.as_deref(), s.measure), s))
                .collect(),
        )
    }

    fn get(&self, router: &str, peer: Option<&str>, m: Measure) -> Option<&'a Series> {
        self.0.get(&(router, peer, m)).copied()
    }

    /// How far what `router` measured of its link to `peer` rose and stayed (0 when
    /// unmeasured); BFD down as the rise of its mean (a session going down is no noise).
    fn excess(&self, router: &str, peer: &str, m: Measure) -> f64 {
        self.get(router, Some(peer), m).map_or(0.0, |s| match m {
            Measure::BfdDown => s.excess().max(0.0),
            _ => s.persistent_rise(NOISE),
        })
    }

    /// The worse direction of a link.
    fn both_ways(&self, a: &str, b: &str, m: Measure) -> f64 {
        self.excess(a, b, m).max(self.excess(b, a, m))
    }

    /// How bad the link is (loss or down, the worse direction), for explaining away.
    fn bad(&self, a: &str, b: &str) -> f64 {
        self.both_ways(a, b, Measure::BfdLoss)
            .max(self.both_ways(a, b, Measure::BfdDown))
    }
}

/// x / (x + half): 0 at 0, one half at `half`, towards 1 above.
fn saturate(x: f64, half: f64) -> f64 {
    let x = x.max(0.0);
    x / (x + half)
}

fn neighbours<'a>(case: &'a Case, r: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    case.links.iter().filter_map(move |(a, b)| {
        if a == r {
            Some(b.as_str())
        } else if b == r {
            Some(a.as_str())
        } else {
            None
        }
    })
}

/// How much of a router's trouble shows on every one of its links (0 with fewer than two:
/// one bad link alone says nothing of its end).
fn all_links_bad(ix: &Index, case: &Case, r: &str) -> f64 {
    let bad: Vec<f64> = neighbours(case, r).map(|n| ix.bad(r, n)).collect();
    if bad.len() < 2 {
        return 0.0;
    }
    saturate(bad.iter().copied().fold(f64::INFINITY, f64::min), LOSS_HALF)
}

fn cause(element: Element, fault: Fault, confidence: f64) -> Cause {
    Cause {
        element,
        fault,
        confidence: confidence.clamp(0.0, 1.0),
        evidence: Vec::new(),
    }
}

fn link_causes(ix: &Index, case: &Case, a: &str, b: &str) -> Vec<Cause> {
    let explained = all_links_bad(ix, case, a).max(all_links_bad(ix, case, b));
    // What the link loses beyond its ends' other links (a late sample is no loss).
    let loss = saturate(ix.both_ways(a, b, Measure::BfdLossBeyondOthers), LOSS_HALF);
    let down = (2.0 * ix.both_ways(a, b, Measure::BfdDown)).min(1.0);
    let carrier = [(a, b), (b, a)].iter().any(|(x, y)| {
        ix.get(x, Some(y), Measure::CarrierDowns)
            .is_some_and(|s| mean(&s.anomalous) > 0.0)
    });
    let down = if carrier { 1.0 } else { down };
    let element = Element::link(a, b);
    vec![
        cause(element.clone(), Fault::Lossy, loss * (1.0 - explained)),
        cause(element.clone(), Fault::Down, down * (1.0 - explained)),
        cause(element, Fault::CostMismatch, cost_mismatch(ix, a, b)),
    ]
}

/// 1 when the two ends' configured costs differ now and did not before.
fn cost_mismatch(ix: &Index, a: &str, b: &str) -> f64 {
    let (Some(x), Some(y)) = (
        ix.get(a, Some(b), Measure::Cost),
        ix.get(b, Some(a), Measure::Cost),
    ) else {
        return 0.0;
    };
    // Both ends must have said (a silent end says nothing of its cost).
    let differ = |p: &[f64], q: &[f64]| {
        !p.is_empty() && !q.is_empty() && {
            let (p, q) = (mean(p), mean(q));
            (p - q).abs() > 0.5 * p.max(q)
        }
    };
    let before = differ(&x.normal, &y.normal);
    f64::from(u8::from(differ(&x.anomalous, &y.anomalous) && !before))
}

fn router_causes(ix: &Index, case: &Case, r: &str) -> Vec<Cause> {
    let silent = ix
        .get(r, None, Measure::Logged)
        .map_or(0.0, |s| s.persistent_drop(NOISE))
        .max(0.0);
    let unanswered: Vec<f64> = neighbours(case, r)
        .map(|n| ix.excess(n, r, Measure::BrainSilent))
        .collect();
    let unanswered = mean(&unanswered);
    // What its neighbours miss of its BFD: its dataplane runs late too.
    let missed: Vec<f64> = neighbours(case, r)
        .map(|n| {
            ix.excess(n, r, Measure::BfdLoss)
                .max(ix.excess(n, r, Measure::BfdDown))
        })
        .collect();
    let missed = saturate(mean(&missed), LOSS_HALF);
    let late = late_beyond_peers(ix, case, r);
    let brain_gone = silent.max(unanswered);
    let starved = saturate(late, LATE_HALF)
        .max(all_links_bad(ix, case, r))
        .max(brain_gone.min(missed));
    let element = Element::Router(r.into());
    vec![
        cause(
            element.clone(),
            Fault::BrainDown,
            brain_gone * (1.0 - missed),
        ),
        cause(element, Fault::Starved, starved),
    ]
}

/// How far the router's lateness rose and stayed (None: it reported none).
fn lateness(ix: &Index, r: &str) -> Option<f64> {
    [RUN_DELAY, LOOP_LATE]
        .iter()
        .filter_map(|&f| ix.get(r, None, Measure::Feature(f)))
        .map(|s| s.persistent_rise(NOISE))
        .reduce(f64::max)
}

/// The router's lateness beyond the median of the other routers': what all of them share
/// (the host of a lab, a mesh-wide burst of work) starves no one router. Found in CI: two
/// labs on two cores made every brain late, and r2 was blamed for r2-r4's loss.
fn late_beyond_peers(ix: &Index, case: &Case, r: &str) -> f64 {
    let Some(own) = lateness(ix, r) else {
        return 0.0;
    };
    let others: Vec<f64> = case
        .routers
        .iter()
        .filter(|o| o.as_str() != r)
        .filter_map(|o| lateness(ix, o))
        .collect();
    let (common, _) = robust(&others);
    (own - common).max(0.0)
}

/// The three series that moved most towards the element, in words.
pub fn evidence(all: &[Series], element: &Element) -> Vec<String> {
    let about = |s: &&Series| match element {
        Element::Link(..) => &s.element == element,
        Element::Router(r) => &s.router == r || s.peer.as_ref() == Some(r),
    };
    let mut moved: Vec<(&Series, f64)> = all
        .iter()
        .filter(about)
        .map(|s| (s, s.excess().abs() / scale(s)))
        .filter(|(_, x)| *x > 0.0)
        .collect();
    moved.sort_by(|a, b| b.1.total_cmp(&a.1));
    moved
        .iter()
        .take(3)
        .map(|(s, _)| {
            format!(
                "{} {} (was {})",
                s.name(),
                value(s, mean(&s.anomalous)),
                value(s, mean(&s.normal))
            )
        })
        .collect()
}

/// What a unit of the series is worth next to the others' (so shares and costs compare).
fn scale(s: &Series) -> f64 {
    match s.measure {
        Measure::RttMs => 10.0,
        Measure::Cost => mean(&s.normal).max(1.0),
        Measure::CarrierDowns => 1.0,
        _ => 0.1,
    }
}

fn value(s: &Series, v: f64) -> String {
    match s.measure {
        Measure::RttMs => format!("{v:.2} ms"),
        Measure::Cost | Measure::CarrierDowns => format!("{v:.1}"),
        Measure::Feature(_) | Measure::Utilisation => format!("{v:.3}"),
        _ => format!("{:.1} %", 100.0 * v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::rca::{
        Interval,
        testcase::{self, Fault as F},
    };

    /// 20 calm intervals, then 3 with the fault; our ranking.
    fn rank(fault: F) -> Vec<Cause> {
        let mut intervals: Vec<Interval> = (0..20).map(|_| testcase::interval(F::None)).collect();
        intervals.extend((0..3).map(|_| testcase::interval(fault)));
        let (routers, links) = (testcase::routers(), testcase::links());
        let case = Case {
            routers: &routers,
            links: &links,
            intervals: &intervals,
            normal: (0..20).collect(),
            anomalous: 20..23,
        };
        Topology.rank(&case)
    }

    fn top(fault: F) -> (String, Fault, f64) {
        let c = rank(fault).into_iter().next().unwrap();
        (c.element.to_string(), c.fault, c.confidence)
    }

    #[test]
    fn a_link_that_loses_one_way_is_the_cause_not_its_ends() {
        let (e, f, conf) = top(F::Loss {
            receiver: "r3",
            sender: "r2",
            share: 0.05,
        });
        assert_eq!((e.as_str(), f), ("r2-r3", Fault::Lossy));
        assert!(conf > 0.5, "{conf}");
    }

    #[test]
    fn a_starved_router_explains_the_loss_on_all_its_links() {
        let ranked = rank(F::Starved("r2"));
        assert_eq!(ranked[0].element, Element::Router("r2".into()));
        assert_eq!(ranked[0].fault, Fault::Starved);
        // Its links are not blamed above the threshold.
        let r1r2 = ranked
            .iter()
            .find(|c| c.element == Element::link("r1", "r2"))
            .unwrap();
        assert!(r1r2.confidence < 0.5, "{r1r2:?}");
    }

    #[test]
    fn lateness_every_router_shares_starves_none_of_them() {
        let loss = F::Loss {
            receiver: "r3",
            sender: "r2",
            share: 0.05,
        };
        let mut intervals: Vec<Interval> = (0..20).map(|_| testcase::interval(F::None)).collect();
        intervals.extend((0..3).map(|_| testcase::interval(loss)));
        // The host is busy: every brain's threads wait for a CPU, r2's a little more.
        for (i, interval) in intervals[20..].iter_mut().enumerate() {
            for (r, f) in interval.features.iter_mut().flatten().enumerate() {
                f[RUN_DELAY] = 0.3 + 0.02 * (r + i) as f32;
            }
        }
        let (routers, links) = (testcase::routers(), testcase::links());
        let case = Case {
            routers: &routers,
            links: &links,
            intervals: &intervals,
            normal: (0..20).collect(),
            anomalous: 20..23,
        };
        let ranked = Topology.rank(&case);
        assert_eq!(ranked[0].element, Element::link("r2", "r3"), "{ranked:?}");
        assert!(
            ranked
                .iter()
                .filter(|c| c.fault == Fault::Starved)
                .all(|c| c.confidence < 0.5),
            "{ranked:?}"
        );
    }

    #[test]
    fn a_silent_brain_whose_router_forwards_is_a_brain_down() {
        assert_eq!(top(F::BrainGone("r4")).0, "r4");
        assert_eq!(top(F::BrainGone("r4")).1, Fault::BrainDown);
    }

    #[test]
    fn unlike_costs_at_the_two_ends_are_a_misconfiguration_with_evidence() {
        let ranked = rank(F::Cost("r1", "r4"));
        assert_eq!(ranked[0].element, Element::link("r1", "r4"));
        assert_eq!(ranked[0].fault, Fault::CostMismatch);
        assert!(
            ranked[0]
                .evidence
                .iter()
                .any(|e| e.contains("configured cost")),
            "{:?}",
            ranked[0].evidence
        );
    }

    #[test]
    fn nothing_wrong_nothing_above_the_threshold() {
        let ranked = rank(F::None);
        assert!(ranked.iter().all(|c| c.confidence < 0.1), "{:?}", ranked[0]);
    }
}
