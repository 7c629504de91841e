//! Counters of a lab's routers, as tables for people; the times in a daemon's log.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

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

/// The wall-clock time of the first log line after `after` containing all of `needles`.
pub fn log_time(log: &str, needles: &[&str], after: SystemTime) -> Option<SystemTime> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(line_time)
        .find(|t| *t >= after)
}

pub fn line_time(line: &str) -> Option<SystemTime> {
    let ts = line.split_whitespace().next()?; // 2026-11-22T04:47:58.049292Z
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, s) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days since the epoch (civil calendar, Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146097 + doe - 719468) as u64;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs_f64((days * 86400 + h * 3600 + min * 60) as f64 + s),
    )
}
