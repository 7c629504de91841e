//! Everything the dataplane's endpoint shows that is read at scrape time: the per-CPU
//! counters summed over CPUs, next hops, BFD sessions, table use and map memory. Label
//! values come from bounded sets: reasons, interfaces, next hops and sessions up to the
//! configured limit (never flows or prefixes).

use std::fmt;

use x0_common::{MAX_NEXTHOPS, Reason, policy::MAX_RULES};
use x0_ops::{Collector, DescriptorEncoder, Labels, Scrape, Unit, unix_seconds};

use crate::{
    bfd::packet::BfdState,
    control::{BfdView, Control, NextHopView, StatsView},
};

pub struct DataplaneCollector {
    pub control: Control,
    /// Next hops and BFD sessions with series of their own; the rest only in the totals.
    pub max_nexthops: usize,
}

impl fmt::Debug for DataplaneCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataplaneCollector")
    }
}

impl Collector for DataplaneCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut s = Scrape::new(encoder);
        // A failed read leaves its families out of this scrape; the others still show.
        match self.control.stats() {
            Ok(stats) => {
                reasons(&mut s, &stats)?;
                interfaces(&mut s, &stats)?;
                nexthops(&mut s, &stats.nexthops, self.max_nexthops)?;
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counters not read"),
        }
        if let (Ok(bfd), Ok(names)) = (self.control.bfd(), self.control.port_names()) {
            bfd_sessions(&mut s, &bfd, &names, self.max_nexthops)?;
        }
        tables(&mut s, &self.control)?;
        s.gauges(
            "x0_dataplane_map_memory",
            "Kernel memory charged to each BPF map (memlock)",
            Some(Unit::Bytes),
            super::maps::map_memory()
                .into_iter()
                .map(|(map, bytes)| (vec![("map", map)], bytes as f64)),
        )
    }
}

fn reasons(s: &mut Scrape, stats: &StatsView) -> fmt::Result {
    let labelled = |r: &crate::counters::ReasonCount, reason: &Reason| -> Labels {
        let verdict = format!("{:?}", reason.verdict()).to_lowercase();
        vec![("reason", r.reason.to_string()), ("verdict", verdict)]
    };
    let rows = || stats.counters.reasons.iter().zip(Reason::ALL);
    s.counters(
        "x0_dataplane_packets",
        "Packets the fast path handled, by reason (and the verdict it implies)",
        None,
        rows().map(|(r, reason)| (labelled(r, reason), r.packets)),
    )?;
    s.counters(
        "x0_dataplane",
        "Bytes the fast path handled, by reason",
        Some(Unit::Bytes),
        rows().map(|(r, reason)| (labelled(r, reason), r.bytes)),
    )
}

fn interfaces(s: &mut Scrape, stats: &StatsView) -> fmt::Result {
    let name = |ifindex: &u32| {
        stats
            .interface_names
            .get(ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex{ifindex}"))
    };
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    for (ifindex, c) in &stats.counters.interfaces {
        let iface = name(ifindex);
        for (what, v) in [
            ("received", c.rx_packets),
            ("forwarded", c.forwarded_packets),
            ("passed", c.passed_packets),
            ("dropped", c.dropped_packets),
            ("transmitted", c.tx_packets),
        ] {
            packets.push((vec![("interface", iface.clone()), ("what", what.into())], v));
        }
        for (what, v) in [("received", c.rx_bytes), ("transmitted", c.tx_bytes)] {
            bytes.push((vec![("interface", iface.clone()), ("what", what.into())], v));
        }
    }
    s.counters(
        "x0_dataplane_interface_packets",
        "Packets per interface: received, forwarded out of it by XDP, passed to the kernel, dropped, transmitted",
        None,
        packets,
    )?;
    s.counters(
        "x0_dataplane_interface",
        "Bytes per interface, received and transmitted by the fast path",
        Some(Unit::Bytes),
        bytes,
    )
}

fn nexthop_labels(n: &NextHopView) -> Labels {
    vec![
        ("nexthop", n.report.gateway.to_string()),
        ("interface", n.interface.clone()),
    ]
}

fn nexthops(s: &mut Scrape, all: &[NextHopView], limit: usize) -> fmt::Result {
    let shown = &all[..all.len().min(limit)];
    s.gauges(
        "x0_dataplane_nexthop_up",
        "1 if the next hop carries traffic (live and not held down), else 0",
        None,
        shown.iter().map(|n| {
            let up = n.report.live && n.report.state == "up";
            (nexthop_labels(n), if up { 1.0 } else { 0.0 })
        }),
    )?;
    s.counters(
        "x0_dataplane_nexthop_packets",
        "Packets forwarded through the next hop",
        None,
        shown.iter().map(|n| (nexthop_labels(n), n.report.packets)),
    )?;
    s.counters(
        "x0_dataplane_nexthop_switches",
        "Failovers away from the next hop (a switch to its backup)",
        None,
        shown
            .iter()
            .map(|n| (nexthop_labels(n), n.report.switches_from)),
    )?;
    s.gauges(
        "x0_dataplane_nexthop_last_switch_timestamp",
        "When traffic last switched to or from the next hop (0: never)",
        Some(Unit::Seconds),
        shown.iter().map(|n| {
            (
                nexthop_labels(n),
                unix_seconds(n.report.last_switch_unix_ns),
            )
        }),
    )?;
    totals(s, all)
}

/// Over every next hop, whether or not it has series of its own.
fn totals(s: &mut Scrape, all: &[NextHopView]) -> fmt::Result {
    let mut by_state =
        std::collections::BTreeMap::from([("up", 0.0), ("down", 0.0), ("hold-down", 0.0)]);
    for n in all {
        *by_state.entry(n.report.state).or_insert(0.0) += 1.0;
    }
    s.gauges(
        "x0_dataplane_nexthops",
        "Next hops by health state",
        None,
        by_state
            .into_iter()
            .map(|(state, n)| (vec![("state", state.to_string())], n)),
    )?;
    s.counter(
        "x0_dataplane_failover_switches",
        "Failovers (a next hop's traffic switched to its backup)",
        None,
        all.iter().map(|n| n.report.switches_from).sum(),
    )?;
    let last = all.iter().map(|n| n.report.last_switch_unix_ns).max();
    s.gauge(
        "x0_dataplane_failover_last_switch_timestamp",
        "When the last switch to or from any next hop happened (0: never)",
        Some(Unit::Seconds),
        unix_seconds(last.unwrap_or(0)),
    )
}

fn bfd_sessions(
    s: &mut Scrape,
    bfd: &BfdView,
    names: &std::collections::BTreeMap<u32, String>,
    limit: usize,
) -> fmt::Result {
    let states = [
        BfdState::AdminDown,
        BfdState::Down,
        BfdState::Init,
        BfdState::Up,
    ];
    s.gauges(
        "x0_dataplane_bfd_sessions",
        "BFD sessions by state",
        None,
        states.iter().map(|st| {
            let n = bfd.sessions.iter().filter(|x| x.state == *st).count();
            (vec![("state", format!("{st:?}"))], n as f64)
        }),
    )?;
    let shown = &bfd.sessions[..bfd.sessions.len().min(limit)];
    let labels = |x: &crate::bfd::manager::SessionInfo| -> Labels {
        let iface = names.get(&x.nexthop.ifindex).cloned().unwrap_or_default();
        vec![
            ("peer", x.nexthop.gateway.to_string()),
            ("interface", iface),
        ]
    };
    s.gauges(
        "x0_dataplane_bfd_session_up",
        "1 if the session is Up, else 0",
        None,
        shown
            .iter()
            .map(|x| (labels(x), f64::from(u8::from(x.state == BfdState::Up)))),
    )?;
    s.gauges(
        "x0_dataplane_bfd_detection_time",
        "A session's detection time (remote multiplier x agreed interval)",
        Some(Unit::Seconds),
        shown
            .iter()
            .map(|x| (labels(x), x.detection_time.as_secs_f64())),
    )?;
    let st = &bfd.stats;
    let malformed: u64 = st.rx_malformed.values().sum();
    s.counters(
        "x0_dataplane_bfd_received_packets",
        "BFD packets received: valid, malformed, with a TTL other than 255, for no session",
        None,
        [
            ("valid", st.rx_valid),
            ("malformed", malformed),
            ("bad_ttl", st.rx_bad_ttl),
            ("no_session", st.rx_no_session),
        ]
        .map(|(k, v)| (vec![("outcome", k.to_string())], v)),
    )?;
    s.counters(
        "x0_dataplane_bfd_sent_packets",
        "BFD packets sent, and send errors",
        None,
        [("sent", st.tx), ("error", st.tx_errors)]
            .map(|(k, v)| (vec![("outcome", k.to_string())], v)),
    )
}

fn tables(s: &mut Scrape, control: &Control) -> fmt::Result {
    let Ok(u) = control.usage() else {
        return Ok(());
    };
    let rows = [
        ("routes_ipv4", u.routes_v4, u.capacity_v4),
        ("routes_ipv6", u.routes_v6, u.capacity_v6),
        ("nexthops", u.nexthops, u64::from(MAX_NEXTHOPS)),
        ("policy_rules", u.rules, u64::from(MAX_RULES)),
    ];
    let table = |name: &str| vec![("table", name.to_string())];
    s.gauges(
        "x0_dataplane_table_entries",
        "Entries in each table",
        None,
        rows.iter()
            .map(|(name, used, _)| (table(name), *used as f64)),
    )?;
    s.gauges(
        "x0_dataplane_table_capacity",
        "Entries each table can hold",
        None,
        rows.iter().map(|(name, _, cap)| (table(name), *cap as f64)),
    )
}
