//! Root-cause analysis as a running brain does it: interval after interval, the last
//! `window` intervals against the calm ones before them. An interval joins the calm
//! baseline only when it leaves the window with no cause above the threshold, so a fault's
//! own intervals never become its baseline; the baseline is the last `baseline` of them.
//! An alarm that lasts `RELEARN_AFTER` intervals is the mesh's new normal (a change made
//! on purpose, or one nothing will repair): its intervals join the baseline again.

use std::collections::{HashMap, VecDeque};

use super::{Case, Cause, Element, Interval, Method};

pub struct Online {
    pub window: usize,
    pub baseline: usize,
    /// A cause at or above this confidence is an alarm (and what remediation acts on).
    pub threshold: f64,
    recent: VecDeque<Interval>,
    calm: VecDeque<Interval>,
    /// Intervals in a row with an alarm.
    alarmed: usize,
}

/// Analysis starts once this many calm intervals are known.
const MIN_CALM: usize = 5;
pub const RELEARN_AFTER: usize = 300;

impl Online {
    pub fn new(window: usize, baseline: usize, threshold: f64) -> Self {
        Online {
            window: window.max(1),
            baseline: baseline.max(MIN_CALM),
            threshold,
            recent: VecDeque::new(),
            calm: VecDeque::new(),
            alarmed: 0,
        }
    }

    /// Takes the next interval; returns the ranking when its best cause is an alarm.
    pub fn step(
        &mut self,
        interval: Interval,
        routers: &[String],
        links: &[(String, String)],
        method: &dyn Method,
    ) -> Option<Vec<Cause>> {
        self.recent.push_back(interval);
        if self.recent.len() > self.window {
            let old = self.recent.pop_front().expect("longer than the window");
            if self.alarmed == 0 || self.alarmed >= RELEARN_AFTER {
                self.calm.push_back(old);
                if self.calm.len() > self.baseline {
                    self.calm.pop_front();
                }
            }
        }
        if self.calm.len() < MIN_CALM {
            return None;
        }
        let intervals: Vec<Interval> = self.calm.iter().chain(&self.recent).cloned().collect();
        let case = Case {
            routers,
            links,
            intervals: &intervals,
            normal: (0..self.calm.len()).collect(),
            anomalous: self.calm.len()..intervals.len(),
        };
        let ranked = method.rank(&case);
        let alarm = ranked
            .first()
            .is_some_and(|c| c.confidence >= self.threshold);
        self.alarmed = if alarm { self.alarmed + 1 } else { 0 };
        alarm.then_some(ranked)
    }
}

/// Which causes have stayed at the threshold long enough to act on: a link's at once (its
/// evidence is its own: the window already asks it to persist), a router's after
/// `ROUTER_HOLD` analyses in a row (a router's links and loop all move together when the
/// whole machine is busy for a second, which is no fault of it).
#[derive(Default)]
pub struct Hold {
    streak: HashMap<Element, usize>,
}

pub const ROUTER_HOLD: usize = 2;

impl Hold {
    /// The causes of this analysis (`ranked`, possibly empty) that are held.
    pub fn update<'a>(&mut self, ranked: &'a [Cause], threshold: f64) -> Vec<&'a Cause> {
        let above: Vec<&Cause> = ranked
            .iter()
            .filter(|c| c.confidence >= threshold)
            .collect();
        self.streak
            .retain(|e, _| above.iter().any(|c| &c.element == e));
        above
            .into_iter()
            .filter(|c| {
                let n = self.streak.entry(c.element.clone()).or_insert(0);
                *n += 1;
                let need = match c.element {
                    Element::Link(..) => 1,
                    Element::Router(_) => ROUTER_HOLD,
                };
                *n >= need
            })
            .collect()
    }
}
