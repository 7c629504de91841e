//! Reading the per-CPU counters (from a live dataplane or from the pins) and printing them.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use anyhow::Result;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use serde::Serialize;
use x0_common::{Counter, IfCounters, Reason, map_names};

use crate::bpffs::open_pinned;

/// Counters summed over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Per reason, in `Reason::ALL` order.
    pub reasons: Vec<ReasonCount>,
    /// Per interface, by ifindex.
    pub interfaces: BTreeMap<u32, IfCount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IfCount {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded_packets: u64,
    pub passed_packets: u64,
    pub dropped_packets: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl Counters {
    pub fn get(&self, reason: Reason) -> u64 {
        self.reasons[reason as usize].packets
    }
}

pub struct CounterMaps {
    pub stats: PerCpuArray<MapData, Counter>,
    pub if_stats: PerCpuArray<MapData, IfCounters>,
    pub if_stats_high: PerCpuHashMap<MapData, u32, IfCounters>,
}

impl CounterMaps {
    /// Opens the pinned counter maps of a running (or detached) dataplane.
    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Ok(Self {
            stats: open_pinned(pin_root, map_names::STATS)?,
            if_stats: open_pinned(pin_root, map_names::IF_STATS)?,
            if_stats_high: open_pinned(pin_root, map_names::IF_STATS_HIGH)?,
        })
    }

    /// The per-reason counters alone (in `Reason::ALL` order): a few dozen reads, where
    /// `read` walks every interface slot too. A reason beyond the pinned map is zero: a
    /// hitless restart into a build with new reasons keeps the older, shorter map (aya
    /// reuses a pin whatever its size) until the maps are made anew.
    pub fn reasons(&self) -> Result<Vec<ReasonCount>> {
        Reason::ALL
            .iter()
            .map(|&reason| {
                let (packets, bytes) = match self.stats.get(&(reason as u32), 0) {
                    Ok(per_cpu) => per_cpu
                        .iter()
                        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)),
                    Err(
                        aya::maps::MapError::OutOfBounds { .. } | aya::maps::MapError::KeyNotFound,
                    ) => (0, 0),
                    Err(e) => return Err(e.into()),
                };
                Ok(ReasonCount {
                    reason: reason.name(),
                    packets,
                    bytes,
                })
            })
            .collect()
    }

    pub fn read(&self) -> Result<Counters> {
        let mut out = Counters {
            reasons: self.reasons()?,
            ..Default::default()
        };
        let low = self
            .if_stats
            .iter()
            .enumerate()
            .map(|(i, v)| v.map(|v| (i as u32, v)));
        for item in low.chain(self.if_stats_high.iter()) {
            let (ifindex, per_cpu) = item?;
            if per_cpu
                .iter()
                .all(|v| v.rx.packets == 0 && v.tx.packets == 0)
            {
                continue;
            }
            let mut c = IfCount::default();
            for v in per_cpu.iter() {
                c.rx_packets += v.rx.packets;
                c.rx_bytes += v.rx.bytes;
                c.forwarded_packets += v.forwarded.packets;
                c.passed_packets += v.passed.packets;
                c.dropped_packets += v.dropped.packets;
                c.tx_packets += v.tx.packets;
                c.tx_bytes += v.tx.bytes;
            }
            out.interfaces.insert(ifindex, c);
        }
        Ok(out)
    }
}

/// The counters as an operator reads them. `names` maps ifindex to interface name.
pub fn render(c: &Counters, names: &BTreeMap<u32, String>, all: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>12} {:>14}  meaning",
        "reason", "packets", "bytes"
    );
    for (r, &reason) in c.reasons.iter().zip(Reason::ALL) {
        if r.packets == 0 && !all {
            continue;
        }
        let _ = writeln!(
            s,
            "{:<24} {:>12} {:>14}  {}",
            r.reason,
            r.packets,
            r.bytes,
            reason.help()
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<12} {:>7} {:>12} {:>12} {:>12} {:>10} {:>10} {:>12} {:>14}",
        "interface",
        "ifindex",
        "rx_pkts",
        "rx_bytes",
        "forwarded",
        "passed",
        "dropped",
        "tx_pkts",
        "tx_bytes"
    );
    for (ifindex, i) in &c.interfaces {
        let name = names.get(ifindex).map(String::as_str).unwrap_or("?");
        let _ = writeln!(
            s,
            "{:<12} {:>7} {:>12} {:>12} {:>12} {:>10} {:>10} {:>12} {:>14}",
            name,
            ifindex,
            i.rx_packets,
            i.rx_bytes,
            i.forwarded_packets,
            i.passed_packets,
            i.dropped_packets,
            i.tx_packets,
            i.tx_bytes
        );
    }
    s
}

/// One next hop as `stats` shows it: where, its liveness, its traffic and its switches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextHopReport {
    pub id: u32,
    pub gateway: std::net::IpAddr,
    pub ifindex: u32,
    pub live: bool,
    /// "up", "down" or "hold-down".
    pub state: &'static str,
    pub packets: u64,
    pub bytes: u64,
    pub switches_to: u64,
    pub switches_from: u64,
    /// Unix time of the last switch to or from it, ns (0: never).
    pub last_switch_unix_ns: u64,
}

/// Every next hop in the pinned maps, with its counters and health.
pub fn read_nexthops(pin_root: &Path) -> Result<Vec<NextHopReport>> {
    read_nexthops_of(pin_root, 1..x0_common::MAX_NEXTHOPS)
}

/// The next hops with these ids (unused ids are skipped): the daemon knows its ids and
/// spares the scan of the whole array.
pub fn read_nexthops_of(
    pin_root: &Path,
    ids: impl IntoIterator<Item = u32>,
) -> Result<Vec<NextHopReport>> {
    use aya::maps::Array;
    use x0_common::{HEALTH_DOWN, HEALTH_HOLD_DOWN, NH_LIVE, NextHop, NextHopHealth};
    let nexthops: Array<MapData, NextHop> = open_pinned(pin_root, map_names::NEXTHOPS)?;
    let live: Array<MapData, u32> = open_pinned(pin_root, map_names::NEXTHOP_LIVE)?;
    let health: Array<MapData, NextHopHealth> = open_pinned(pin_root, map_names::NEXTHOP_HEALTH)?;
    let stats: PerCpuArray<MapData, Counter> = open_pinned(pin_root, map_names::NEXTHOP_STATS)?;
    let mut out = Vec::new();
    for id in ids {
        let nh = nexthops.get(&id, 0)?;
        if nh.ifindex == 0 {
            continue;
        }
        let gateway = nh.gateway_ip();
        let h = health.get(&id, 0)?;
        let (packets, bytes) = stats
            .get(&id, 0)?
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
        out.push(NextHopReport {
            id,
            gateway,
            ifindex: nh.ifindex,
            live: live.get(&id, 0)? & NH_LIVE != 0,
            state: match h.state {
                HEALTH_DOWN => "down",
                HEALTH_HOLD_DOWN => "hold-down",
                _ => "up",
            },
            packets,
            bytes,
            switches_to: h.switches_to,
            switches_from: h.switches_from,
            last_switch_unix_ns: h.last_switch_unix_ns,
        });
    }
    Ok(out)
}

/// The next hops as a table.
pub fn render_nexthops(nhs: &[NextHopReport], names: &BTreeMap<u32, String>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>4} {:<28} {:<10} {:<10} {:>12} {:>14} {:>6} {:>6}  last switch",
        "id", "next hop", "interface", "state", "packets", "bytes", "to", "from"
    );
    for n in nhs {
        let name = names.get(&n.ifindex).map(String::as_str).unwrap_or("?");
        let last = if n.last_switch_unix_ns == 0 {
            "never".to_string()
        } else {
            let ago = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|now| now.as_nanos() as u64)
                .unwrap_or(0)
                .saturating_sub(n.last_switch_unix_ns);
            format!("{:.1?} ago", std::time::Duration::from_nanos(ago))
        };
        let state = if n.live {
            n.state.to_string()
        } else {
            format!("{} (dead)", n.state)
        };
        let _ = writeln!(
            s,
            "{:>4} {:<28} {:<10} {:<10} {:>12} {:>14} {:>6} {:>6}  {last}",
            n.id, n.gateway, name, state, n.packets, n.bytes, n.switches_to, n.switches_from
        );
    }
    s
}

/// Packets allowed by each rule of the policy in force (rule id -> packets), rules with
/// none left out.
pub fn read_rule_hits(pin_root: &Path) -> Result<BTreeMap<u32, u64>> {
    use aya::maps::Array;
    use x0_common::policy::{MAX_RULES, PolicyState, rule_slot};
    let state: Array<MapData, PolicyState> = open_pinned(pin_root, map_names::POLICY)?;
    let generation = state.get(&0, 0)?.generation;
    let stats: PerCpuArray<MapData, Counter> = open_pinned(pin_root, map_names::RULE_STATS)?;
    let mut out = BTreeMap::new();
    for id in 1..=MAX_RULES {
        let packets: u64 = stats
            .get(&rule_slot(generation, id), 0)?
            .iter()
            .map(|c| c.packets)
            .sum();
        if packets > 0 {
            out.insert(id, packets);
        }
    }
    Ok(out)
}
