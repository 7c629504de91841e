//! Counters of a lab's routers, as tables for people.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use x0_common::{Reason, reason::Verdict};
use x0_dataplane::counters::render;

use crate::Lab;

/// One line per router: forwarded by route / by FIB, passed to the kernel, dropped.
pub fn summary(lab: &Lab) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:>16} {:>16} {:>14} {:>10}  top pass reason",
        "router", "forwarded_route", "forwarded_fib", "to_kernel", "dropped"
    );
    for r in &lab.topo.routers {
        let c = lab.counters(&r.name)?;
        let total = |v: Verdict| {
            Reason::ALL
                .iter()
                .filter(|x| x.verdict() == v)
                .map(|&x| c.get(x))
                .sum::<u64>()
        };
        let top = Reason::ALL
            .iter()
            .filter(|x| x.verdict() == Verdict::Passed && c.get(**x) > 0)
            .max_by_key(|x| c.get(**x))
            .map(|x| format!("{} ({})", x.name(), c.get(*x)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<8} {:>16} {:>16} {:>14} {:>10}  {top}",
            r.name,
            c.get(Reason::ForwardedRoute),
            c.get(Reason::ForwardedFib),
            total(Verdict::Passed),
            total(Verdict::Dropped)
        );
    }
    Ok(s)
}

/// One router's counters in full, with its interface names.
pub fn router_counters(lab: &Lab, router: &str) -> Result<String> {
    let c = lab.counters(router)?;
    let mut names = BTreeMap::new();
    for end in lab.topo.ifaces_of(router) {
        names.insert(lab.ifindex(router, &end.iface)?, end.iface.clone());
    }
    let nhs = x0_dataplane::counters::read_nexthops(&lab.pin_root(router))?;
    Ok(format!(
        "{}\n{}",
        render(&c, &names, false),
        x0_dataplane::counters::render_nexthops(&nhs, &names)
    ))
}
