//! Ours as a running brain: every interval of a dataset analysed in turn (`Online`), each
//! alarm on the best cause's element; alarms on the same element, or on elements sharing a
//! router, at most `GAP` intervals apart are one incident. Counted against the labels'
//! windows, as `x0-bench detect` counts grouped alarms.

use std::collections::BTreeSet;

use x0_brain::{
    mapek::remedy::{BASELINE, WINDOW},
    models::{
        dataset::Dataset,
        rca::{
            Element, cases,
            online::{Hold, Online},
            topology::Topology,
        },
    },
};

use super::Options;

const GAP: usize = 3;

struct Incident {
    routers: BTreeSet<String>,
    first: usize,
    last: usize,
    /// The first alarm's cause, in words.
    what: String,
}

/// Incidents that met a fault per fault met, and the incidents that met none.
pub fn per_fault(test: &[Dataset], o: &Options) -> (f64, usize) {
    let (mut reported, mut met, mut false_incidents) = (0, 0, 0);
    for ds in test {
        let incidents = group(&alarms(ds, o));
        let step = ds.step();
        let t = |i: usize| ds.intervals[i].0;
        let faults: Vec<_> = ds.labels.iter().filter(|l| l.kind.is_fault()).collect();
        for inc in &incidents {
            if faults
                .iter()
                .any(|l| l.meets(t(inc.first), t(inc.last), step))
            {
                reported += 1;
            } else {
                false_incidents += 1;
                if o.cases {
                    println!(
                        "{} | false incident, intervals {}-{}: {}",
                        ds.meta.topology, inc.first, inc.last, inc.what
                    );
                }
            }
        }
        met += faults
            .iter()
            .filter(|l| {
                incidents
                    .iter()
                    .any(|i| l.meets(t(i.first), t(i.last), step))
            })
            .count();
    }
    (reported as f64 / met.max(1) as f64, false_incidents)
}

/// The element of every cause at the threshold, interval by interval.
fn alarms(ds: &Dataset, o: &Options) -> Vec<(Element, String, usize)> {
    // A brain's own window, baseline and threshold (mapek::remedy): what it would act on.
    let mut online = Online::new(WINDOW, BASELINE, o.threshold);
    let mut hold = Hold::default();
    let mut out = Vec::new();
    for (i, interval) in cases::intervals(ds).into_iter().enumerate() {
        let ranked = online
            .step(interval, &ds.meta.routers, &ds.meta.links, &Topology)
            .unwrap_or_default();
        // Every cause held at the threshold (two faults at once are two alarms).
        for c in hold.update(&ranked, o.threshold) {
            let what = format!(
                "{} {:?} {:.2} {:?}",
                c.element, c.fault, c.confidence, c.evidence
            );
            out.push((c.element.clone(), what, i));
        }
    }
    out
}

fn group(alarms: &[(Element, String, usize)]) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    for (element, what, i) in alarms {
        let routers: BTreeSet<String> = element.routers().into_iter().map(String::from).collect();
        let open = out
            .iter_mut()
            .find(|inc| inc.last + GAP >= *i && !inc.routers.is_disjoint(&routers));
        match open {
            Some(inc) => {
                inc.last = *i;
                inc.routers.extend(routers);
            }
            None => out.push(Incident {
                routers,
                first: *i,
                last: *i,
                what: what.clone(),
            }),
        }
    }
    out
}
