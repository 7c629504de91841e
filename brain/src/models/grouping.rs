//! One fault, one incident: a fault's alarms show on several routers at once (a lossy link
//! on both its ends, a starved router on its neighbours) and come and go while it lasts.
//! Alarms are runs of flagged intervals of one router; two alarms belong to the same
//! incident when their routers are the same or within two hops (a link's ends and their
//! neighbours) and their times overlap, or are at most `gap_ns` apart. The first step of
//! root-cause analysis (issue 17), measured here on the detectors' flags.

use std::collections::BTreeSet;

/// A run of flagged intervals of one router.
#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    pub router: usize,
    pub start: u64,
    /// Start of its last flagged interval.
    pub end: u64,
}

/// Alarms grouped: the routers they touch and the span they cover.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub routers: BTreeSet<usize>,
    pub start: u64,
    pub end: u64,
}

/// Each router's runs of flags (`flags[i][r]` for the interval starting at `times[i]`).
pub fn alarms(times: &[u64], flags: &[Vec<bool>]) -> Vec<Alarm> {
    let routers = flags.first().map_or(0, Vec::len);
    let mut out = Vec::new();
    for r in 0..routers {
        let mut open: Option<Alarm> = None;
        for (t, f) in times.iter().zip(flags) {
            match (&mut open, f[r]) {
                (Some(a), true) => a.end = *t,
                (None, true) => {
                    open = Some(Alarm {
                        router: r,
                        start: *t,
                        end: *t,
                    })
                }
                (Some(_), false) => out.extend(open.take()),
                (None, false) => {}
            }
        }
        out.extend(open);
    }
    out
}

/// Groups `alarms` into incidents over the mesh of `neighbours` (by router index).
pub fn group(alarms: &[Alarm], neighbours: &[Vec<usize>], gap_ns: u64) -> Vec<Incident> {
    let mut parent: Vec<usize> = (0..alarms.len()).collect();
    for i in 0..alarms.len() {
        for j in i + 1..alarms.len() {
            if related(&alarms[i], &alarms[j], neighbours, gap_ns) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    let mut incidents: Vec<(usize, Incident)> = Vec::new();
    for (i, a) in alarms.iter().enumerate() {
        let r = root(&mut parent, i);
        match incidents.iter_mut().find(|(k, _)| *k == r) {
            Some((_, inc)) => {
                inc.routers.insert(a.router);
                inc.start = inc.start.min(a.start);
                inc.end = inc.end.max(a.end);
            }
            None => incidents.push((
                r,
                Incident {
                    routers: BTreeSet::from([a.router]),
                    start: a.start,
                    end: a.end,
                },
            )),
        }
    }
    let mut out: Vec<Incident> = incidents.into_iter().map(|(_, i)| i).collect();
    out.sort_by_key(|i| i.start);
    out
}

fn related(a: &Alarm, b: &Alarm, neighbours: &[Vec<usize>], gap_ns: u64) -> bool {
    let near_in_time = a.start <= b.end + gap_ns && b.start <= a.end + gap_ns;
    near_in_time && within_two_hops(a.router, b.router, neighbours)
}

fn within_two_hops(a: usize, b: usize, neighbours: &[Vec<usize>]) -> bool {
    let ns = |v: usize| neighbours.get(v).map_or(&[][..], Vec::as_slice);
    a == b || ns(a).contains(&b) || ns(a).iter().any(|&m| ns(m).contains(&b))
}

fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of six routers: 0 - 1 - 2 - 3 - 4 - 5.
    fn line() -> Vec<Vec<usize>> {
        (0..6)
            .map(|v: usize| {
                [v.checked_sub(1), Some(v + 1).filter(|&u| u < 6)]
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_faults_alarms_on_nearby_routers_are_one_incident_and_far_ones_another() {
        // t = 0..10; routers 1 and 2 flag 2-4 (a link's two ends) with a blip of 1 at 6;
        // router 5 flags 3 (three hops from 2: another incident); router 0 flags 9
        // (next to 1, but 3 intervals after its last flag, more than the gap: another).
        let times: Vec<u64> = (0..10).collect();
        let flags: Vec<Vec<bool>> = times
            .iter()
            .map(|&t| {
                vec![
                    t == 9,
                    (2..=4).contains(&t) || t == 6,
                    (2..=4).contains(&t),
                    false,
                    false,
                    t == 3,
                ]
            })
            .collect();
        let a = alarms(&times, &flags);
        assert_eq!(a.len(), 5, "{a:?}");
        let incidents = group(&a, &line(), 2);
        assert_eq!(incidents.len(), 3, "{incidents:?}");
        assert_eq!(incidents[0].routers, BTreeSet::from([1, 2]));
        assert_eq!((incidents[0].start, incidents[0].end), (2, 6));
        assert_eq!(incidents[1].routers, BTreeSet::from([5]));
        assert_eq!(incidents[2].routers, BTreeSet::from([0]));
    }
}
