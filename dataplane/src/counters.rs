//! Reading the per-CPU counters (from a live dataplane or from the pins) and printing them.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use serde::Serialize;
use x0_common::{Counter, IfCounters, Reason, map_names};

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
        let open = |name: &str| -> Result<Map> {
            let p = pin_root.join(name);
            let data = MapData::from_pin(&p).with_context(|| format!("opening {}", p.display()))?;
            Map::from_map_data(data).with_context(|| format!("reading {}", p.display()))
        };
        Ok(Self {
            stats: open(map_names::STATS)?.try_into()?,
            if_stats: open(map_names::IF_STATS)?.try_into()?,
            if_stats_high: open(map_names::IF_STATS_HIGH)?.try_into()?,
        })
    }

    pub fn read(&self) -> Result<Counters> {
        let mut out = Counters::default();
        for &reason in Reason::ALL {
            let per_cpu = self.stats.get(&(reason as u32), 0)?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            out.reasons.push(ReasonCount {
                reason: reason.name(),
                packets,
                bytes,
            });
        }
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
