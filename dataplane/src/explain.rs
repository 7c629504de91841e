//! `x0-dataplane explain` and `monitor drops`: the fast path's own account of a packet,
//! and its sampled drops.
//!
//! `explain` builds the packet, runs the loaded `x0_forward` (pinned by the daemon) on it
//! through BPF_PROG_TEST_RUN against the live maps, with EXPLAIN_MAGIC as XDP metadata so
//! that the program records its decision in `X0_TRACE` and changes nothing. The verdict is
//! the program's; user space only names what it reports.

use std::{fmt::Write as _, net::IpAddr, os::fd::AsRawFd, path::Path, time::Duration};

use crate::bpffs::open_pinned;
use anyhow::{Context, Result, bail};
use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use aya_obj::programs::XdpAttachType;
use etherparse::PacketBuilder;
use x0_common::{
    NextHop, PortState, Reason, map_names,
    policy::{
        DropEvent, EXPLAIN_MAGIC, TRACE_F_CONNTRACK_HIT, TRACE_F_DEFAULT_ACTION,
        TRACE_F_POLICY_CHECKED, Trace,
    },
};

/// Where the running daemon pins `x0_forward`, for `explain`.
pub const PROGRAM_PIN: &str = "prog_x0_forward";

/// The packet to explain.
#[derive(Clone, Debug)]
pub struct Probe {
    pub ingress: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// "tcp" (a SYN), "udp" or "icmp" (an echo request).
    pub proto: String,
    pub sport: u16,
    pub dport: u16,
}

/// What the program said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub action: u32,
    pub trace: Trace,
    pub nexthop_gateway: Option<IpAddr>,
}

impl Explanation {
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_u32(self.trace.reason)
    }
}

fn frame(p: &Probe, dst_mac: [u8; 6]) -> Result<Vec<u8>> {
    let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0xee, 0x01], dst_mac);
    let mut out = Vec::new();
    match (p.src, p.dst, p.proto.as_str()) {
        (IpAddr::V4(s), IpAddr::V4(d), "udp") => eth
            .ipv4(s.octets(), d.octets(), 64)
            .udp(p.sport, p.dport)
            .write(&mut out, b"x0 explain")?,
        (IpAddr::V4(s), IpAddr::V4(d), "tcp") => eth
            .ipv4(s.octets(), d.octets(), 64)
            .tcp(p.sport, p.dport, 1, 64240)
            .syn()
            .write(&mut out, &[])?,
        (IpAddr::V4(s), IpAddr::V4(d), "icmp") => eth
            .ipv4(s.octets(), d.octets(), 64)
            .icmpv4_echo_request(p.sport, 1)
            .write(&mut out, b"x0")?,
        (IpAddr::V6(s), IpAddr::V6(d), "udp") => eth
            .ipv6(s.octets(), d.octets(), 64)
            .udp(p.sport, p.dport)
            .write(&mut out, b"x0 explain")?,
        (IpAddr::V6(s), IpAddr::V6(d), "tcp") => eth
            .ipv6(s.octets(), d.octets(), 64)
            .tcp(p.sport, p.dport, 1, 64240)
            .syn()
            .write(&mut out, &[])?,
        (IpAddr::V6(s), IpAddr::V6(d), "icmp") => eth
            .ipv6(s.octets(), d.octets(), 64)
            .icmpv6_echo_request(p.sport, 1)
            .write(&mut out, b"x0")?,
        (s, d, proto) if s.is_ipv4() != d.is_ipv4() => {
            bail!("--src {s} and --dst {d} are of different families (proto {proto})")
        }
        (_, _, proto) => bail!("--proto: {proto:?} is not tcp, udp or icmp"),
    }
    Ok(out)
}

/// Runs the live program on the probe packet.
pub fn explain(pin_root: &Path, p: &Probe) -> Result<Explanation> {
    let ifindex = nix::net::if_::if_nametoindex(p.ingress.as_str())
        .map_err(|_| anyhow::anyhow!("--in: no interface named {:?} here", p.ingress))?;
    let ports: Array<MapData, PortState> = open_pinned(pin_root, map_names::PORTS)?;
    let own = ports.get(&ifindex, 0).map(|s| s.own_mac).unwrap_or(0);
    if own == 0 {
        bail!("--in: {} is not an x0tta6bl4 port", p.ingress);
    }
    let mac: [u8; 6] = own.to_le_bytes()[..6].try_into().expect("6 bytes");
    let packet = frame(p, mac)?;
    let mut data = EXPLAIN_MAGIC.to_ne_bytes().to_vec();
    data.extend_from_slice(&packet);
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: Vec<u8> = [8u32, data.len() as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();

    // Every CPU's trace gets a sentinel the program overwrites on the CPU that runs it.
    let mut traces: PerCpuArray<MapData, Trace> = open_pinned(pin_root, map_names::TRACE)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let sentinel = Trace {
        reason: u32::MAX,
        ..Default::default()
    };
    traces.set(0, PerCpuValues::try_from(vec![sentinel; cpus])?, 0)?;

    let prog = pinned_forward(pin_root)?;
    let mut out = vec![0u8; data.len() + 64];
    let mut ctx_out = vec![0u8; ctx.len()];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&data),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ctx_out: Some(&mut ctx_out),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    let trace = traces
        .get(&0, 0)?
        .iter()
        .copied()
        .find(|t| t.reason != u32::MAX)
        .context("the program left no trace")?;
    let nexthop_gateway = (trace.nexthop != 0)
        .then(|| -> Result<IpAddr> {
            let nhs: Array<MapData, NextHop> = open_pinned(pin_root, map_names::NEXTHOPS)?;
            let nh = nhs.get(&trace.nexthop, 0)?;
            Ok(nh.gateway_ip())
        })
        .transpose()?;
    Ok(Explanation {
        action: r.return_value,
        trace,
        nexthop_gateway,
    })
}

/// The explanation for people. `ident` and `rule` name identities and rules.
pub fn render(
    p: &Probe,
    e: &Explanation,
    ident: &dyn Fn(u32) -> String,
    rule: &dyn Fn(u32) -> String,
    ifname: &dyn Fn(u32) -> String,
) -> String {
    let mut s = String::new();
    let verdict = match e.action {
        1 => "DROP",
        2 => "PASS to the kernel",
        4 => "FORWARD (XDP_REDIRECT)",
        _ => "?",
    };
    let _ = writeln!(
        s,
        "packet   {} {}:{} -> {}:{} arriving on {}",
        p.proto, p.src, p.sport, p.dst, p.dport, p.ingress
    );
    let _ = writeln!(s, "verdict  {verdict}");
    match e.reason() {
        Some(r) => {
            let _ = writeln!(s, "reason   {} ({})", r.name(), r.help());
        }
        None => {
            let _ = writeln!(s, "reason   {}", e.trace.reason);
        }
    }
    if let Some(gw) = e.nexthop_gateway {
        let _ = writeln!(
            s,
            "route    next hop #{} via {gw} out of {}",
            e.trace.nexthop,
            ifname(e.trace.egress_ifindex)
        );
    } else if e.trace.egress_ifindex != 0 {
        let _ = writeln!(
            s,
            "route    kernel FIB, out of {}",
            ifname(e.trace.egress_ifindex)
        );
    }
    if e.trace.flags & TRACE_F_POLICY_CHECKED != 0 {
        let _ = writeln!(
            s,
            "identity {} -> {}",
            ident(e.trace.src_identity),
            ident(e.trace.dst_identity)
        );
        let how = if e.trace.flags & TRACE_F_CONNTRACK_HIT != 0 {
            format!("an existing flow, allowed by {}", rule(e.trace.rule_id))
        } else if e.trace.flags & TRACE_F_DEFAULT_ACTION != 0 {
            "no rule: the interface's default".to_string()
        } else {
            rule(e.trace.rule_id)
        };
        let _ = writeln!(s, "policy   {how}");
    }
    s
}

/// One sampled drop, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropRecord {
    pub reason: &'static str,
    pub ifindex: u32,
    pub proto: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub rule_id: u32,
}

impl DropRecord {
    fn decode(item: &[u8]) -> Option<Self> {
        if item.len() < size_of::<DropEvent>() {
            return None;
        }
        // SAFETY: the program writes whole DropEvents; length checked above.
        let e: DropEvent = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const DropEvent) };
        let addr = |b: [u8; 16]| -> IpAddr {
            if e.family == 4 {
                IpAddr::from(<[u8; 4]>::try_from(&b[..4]).expect("4"))
            } else {
                IpAddr::from(b)
            }
        };
        Some(Self {
            reason: Reason::from_u32(e.reason).map_or("?", |r| r.name()),
            ifindex: e.ifindex,
            proto: e.proto,
            src: addr(e.src),
            sport: e.sport,
            dst: addr(e.dst),
            dport: e.dport,
            rule_id: e.rule_id,
        })
    }
}

/// The drop ring's one consumer (a ring buffer has one reader: the daemon runs one and
/// fans out to its API subscribers).
pub struct DropReader {
    ring: RingBuf<MapData>,
}

impl DropReader {
    pub fn open(pin_root: &Path) -> Result<Self> {
        Ok(Self {
            ring: open_pinned(pin_root, map_names::DROPS)?,
        })
    }

    /// Calls `f` for each drop until it returns false; waits up to `wait` for the first.
    pub fn poll(&mut self, wait: Duration, f: &mut dyn FnMut(DropRecord) -> bool) -> Result<bool> {
        for attempt in 0..2 {
            let mut any = false;
            while let Some(item) = self.ring.next() {
                any = true;
                if let Some(r) = DropRecord::decode(&item)
                    && !f(r)
                {
                    return Ok(false);
                }
            }
            if any || attempt == 1 {
                break;
            }
            crate::bfd::transport::wait_readable(&[self.ring.as_raw_fd()], wait)?;
        }
        Ok(true)
    }
}

/// Prints sampled drop events as they come, `count` of them (0: until interrupted).
pub fn monitor_drops(pin_root: &Path, count: usize, out: &mut dyn std::io::Write) -> Result<()> {
    let mut reader = DropReader::open(pin_root)?;
    let mut seen = 0;
    loop {
        let mut result = Ok(());
        let go_on = reader.poll(Duration::from_millis(500), &mut |e| {
            result = writeln!(
                out,
                "drop {} rule={} ifindex={} proto={} {}:{} -> {}:{}",
                e.reason, e.rule_id, e.ifindex, e.proto, e.src, e.sport, e.dst, e.dport
            )
            .and_then(|_| out.flush());
            seen += 1;
            result.is_ok() && (count == 0 || seen < count)
        })?;
        result?;
        if !go_on {
            return Ok(());
        }
    }
}

/// The running daemon's `x0_forward`, pinned under `pin_root` (explain runs it; the lab
/// swaps it back into a port it had faulted).
pub fn pinned_forward(pin_root: &Path) -> Result<Xdp> {
    Xdp::from_pin(pin_root.join(PROGRAM_PIN), XdpAttachType::Interface)
        .context("opening the pinned x0_forward (is x0-dataplane running?)")
}
