//! `x0-bench generate`: the forwarding benchmark's traffic generator. 64-byte UDP frames
//! (60 + FCS) out of one interface for a given time; prints how many it offered.
//!
//! It runs `x0_gen` through BPF_PROG_TEST_RUN in live-frames mode (what xdp-tools'
//! xdp-trafficgen does): the kernel builds the frames in a page pool and the program sends
//! them out of the interface (XDP_TX), so there is no socket, no system call per batch and
//! no skb on the sending core, and the veth hands them to its peer's receive ring as XDP
//! frames, as a NIC's driver would. One core offers several times what one receive core
//! can take, so the router, not the generator, sets the figures. Frames the peer's ring
//! has no room for are dropped by the veth (its `xdp_xmit_err` counters), as a NIC drops
//! on a full ring.
//!
//! It paces itself by waiting before each frame (`next_gap`), never by dropping frames it
//! built: a dropped frame goes back to the run's page pool through the locked ring the
//! router's core returns the forwarded frames to. Paced that way (until 2026-11-22) the
//! two cores spent a third of their time on that lock. Each call's gap and counts go to
//! stderr (`X0_BENCH_TRACE=1 x0-bench forwarding` shows them).
//!
//! Earlier versions sent through AF_PACKET (and before that trafgen): the skb each frame
//! needed capped them near 1.2M frames/s, below what the router forwards.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
use etherparse::PacketBuilder;
use x0_common::{
    gen_frame::{
        CHECK_COPY, FLOWS, GAP, IP_CHECK, LEN, MACS, MACS_COPY, MAX_GAP, SPORT, TEMPLATE_TTL, TTL,
        UDP_CHECK,
    },
    program_names,
};

use crate::standalone::Standalone;

pub struct Spec {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Distinct UDP source ports, chosen at random per frame by `x0_gen`.
    pub flows: u16,
    pub duration: Duration,
    /// The gap to start at (`gen_frame::GAP`): 0, or where the last run of the same way
    /// ended.
    pub gap: u16,
    /// Whether the gap follows what the peer refuses (`next_gap`) or stays as given.
    pub paced: bool,
    /// The router's receive core, whose idle time the pacing watches.
    pub router_cpu: Option<u32>,
}

/// What a run did: frames offered to the interface, and the gap it ended at.
pub struct Sent {
    pub offered: u64,
    pub gap: u16,
}

/// Frames per BPF_PROG_TEST_RUN call (~0.3 s of traffic). Between calls the generator is
/// silent for 20-40 ms: each call swaps the program into the interface's XDP dispatcher
/// and back, waiting for RCU both times. At 2^18 frames (~50 ms) per call that silence
/// was a third of the time: the router's core idled ~40% and every figure of the
/// forwarding benchmark came out that much low (x0tta6bl4 2.4M -> 3.5M/s, the kernel 0.67M
/// -> 0.76M/s with 2^21). The last call may run past the deadline, after the counting.
const FRAMES_PER_CALL: u32 = 1 << 21;
/// Frames the kernel builds and sends per batch (its maximum is 256).
const BATCH: u32 = 64;

/// The 60-byte template: UDP checksum 0 (none) so that `x0_gen` can change the source port
/// alone; the flow count and the header copy in the payload (see x0_gen).
fn template(s: &Spec) -> Vec<u8> {
    let mut v = Vec::with_capacity(LEN);
    PacketBuilder::ethernet2(s.src_mac, s.dst_mac)
        .ipv4(s.src.octets(), s.dst.octets(), TEMPLATE_TTL)
        .udp(10_000, 9)
        .write(&mut v, &[0u8; 18]) // 14 + 20 + 8 + 18 = 60
        .expect("a valid frame");
    v[UDP_CHECK..UDP_CHECK + 2].copy_from_slice(&[0, 0]);
    v[FLOWS..FLOWS + 2].copy_from_slice(&s.flows.to_be_bytes());
    v.copy_within(MACS..MACS + 12, MACS_COPY);
    v[GAP..GAP + 2].copy_from_slice(&s.gap.to_be_bytes());
    v.copy_within(IP_CHECK..IP_CHECK + 2, CHECK_COPY);
    debug_assert_eq!(v[SPORT..SPORT + 2], 10_000u16.to_be_bytes());
    debug_assert_eq!(v[TTL], TEMPLATE_TTL);
    v
}

/// The generator's own work per frame in ns, as `next_gap` models it: the time per frame
/// is OWN_WORK + gap. An estimate (at no gap it sends 7-11M frames/s); off, it only makes
/// the gap take a call or two more to settle.
const OWN_WORK: f64 = 100.0;

/// The gap for the next call, from what the peer's ring refused of the last and how much
/// of the last call the router's core spent idle (0 when not known): a veth under heavy
/// overload costs the receiving core contended page-pool locks (the refused frames go back
/// to the generator's pool from this core while the forwarded ones go back from the
/// router's) that a NIC, dropping its overflow in hardware, would not. So the generator
/// offers a little more than the receiver takes: between 1% and 5% refused (RFC 2544's
/// throughput, give or take that loss), aiming at 3%. But refusals while the router's
/// core still idles are not a full core: veth's ring holds 256 frames, and it fills while
/// an idle NAPI thread is woken across vCPUs (measured: 1-5% refused with the core 6-20%
/// idle). Then the generator offers more, up to a quarter refused.
pub fn next_gap(gap: u16, sent: u64, refused: u64, router_idle: f64) -> u16 {
    let offered = sent + refused;
    if offered == 0 {
        return gap;
    }
    let refused_share = refused as f64 / offered as f64;
    // How much faster (> 1) or slower (< 1) to offer.
    let speed = if refused_share > 0.25 || (refused_share > 0.05 && router_idle < 0.03) {
        (1.0 - refused_share) * 1.03
    } else if router_idle >= 0.03 {
        // What the idle share says the core could take more, a tenth at most per call.
        (1.0 / (1.0 - router_idle)).min(1.1)
    } else if refused_share < 0.01 {
        1.1
    } else {
        return gap;
    };
    let next = (f64::from(gap) + OWN_WORK) / speed - OWN_WORK;
    next.round().clamp(0.0, f64::from(MAX_GAP)) as u16
}

/// A veth's own counter (`rx_queue_N_<name>` / `tx_queue_N_<name>` in `ethtool -S`),
/// summed over its queues.
pub fn veth_counter(ethtool_s: &str, name: &str) -> u64 {
    let suffix = format!("_{name}");
    ethtool_s
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            k.ends_with(&suffix).then(|| v.trim().parse::<u64>().ok())?
        })
        .sum()
}

/// (sent, refused) so far by `iface`: XDP frames handed to the peer, and those its full
/// ring refused.
fn sent_refused(iface: &str) -> Result<(u64, u64)> {
    let out = std::process::Command::new("ethtool")
        .args(["-S", iface])
        .output()
        .context("ethtool -S")?;
    anyhow::ensure!(out.status.success(), "ethtool -S {iface}: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((
        veth_counter(&text, "xdp_xmit"),
        veth_counter(&text, "xdp_xmit_errors"),
    ))
}

/// Time one CPU has spent idle so far, from its cpuidle states (us; None without a
/// cpuidle driver).
fn idle_time(cpu: u32) -> Option<Duration> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle")).ok()?;
    let mut us = 0u64;
    for state in dir.flatten() {
        us += std::fs::read_to_string(state.path().join("time"))
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
    }
    Some(Duration::from_micros(us))
}

/// The share of the sending time the router's core idled: its idle time over a call less
/// the call's silent part (each call swaps the program into the interface's XDP
/// dispatcher and back, tens of ms with nothing sent, and ethtool runs between calls),
/// over the time the kernel spent sending.
fn idle_while_sending(idle: Duration, wall: Duration, sending: Duration) -> f64 {
    if sending.is_zero() {
        return 0.0;
    }
    let silent = wall.saturating_sub(sending);
    idle.saturating_sub(silent).as_secs_f64() / sending.as_secs_f64()
}

/// Sends until the time is up, paced (`next_gap`) after every call.
pub fn run(s: &Spec) -> Result<Sent> {
    let ifindex = nix::net::if_::if_nametoindex(s.iface.as_str())
        .with_context(|| format!("interface {}", s.iface))?;
    let mut object = Standalone::load("gen")?;
    let prog = object.program(program_names::GEN)?;
    let mut frame = template(s);
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. The ingress is where XDP_TX sends.
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = Instant::now() + s.duration;
    let mut offered = 0u64;
    let mut gap = s.gap;
    let mut before = sent_refused(&s.iface)?;
    let router_idle_time = || s.router_cpu.and_then(idle_time);
    let mut idle_before = router_idle_time();
    let mut call_start = Instant::now();
    while Instant::now() < end {
        frame[GAP..GAP + 2].copy_from_slice(&gap.to_be_bytes());
        // In live mode the kernel returns no verdict; the veth's counters tell what went out.
        let run = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: FRAMES_PER_CALL,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN (live frames)")?;
        let now = sent_refused(&s.iface)?;
        // The kernel reports the mean time per frame of its sending loop.
        let sending = run.duration * FRAMES_PER_CALL;
        let idle_now = router_idle_time();
        let router_idle = match (idle_before, idle_now) {
            (Some(i0), Some(i1)) => {
                idle_while_sending(i1.saturating_sub(i0), call_start.elapsed(), sending)
            }
            _ => 0.0,
        };
        idle_before = idle_now;
        call_start = Instant::now();
        let (sent, refused) = (now.0 - before.0, now.1 - before.1);
        offered += sent + refused;
        eprintln!(
            "call: gap {gap} ns, sent {sent}, refused {refused}, router idle {:.0}%",
            router_idle * 100.0
        );
        if s.paced {
            gap = next_gap(gap, sent, refused, router_idle);
        }
        before = now;
    }
    Ok(Sent { offered, gap })
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("MAC {s:?}: not 6 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_60_bytes_with_the_flow_count_and_no_udp_checksum() {
        let s = Spec {
            iface: "lo".into(),
            src_mac: parse_mac("02:00:00:00:00:01").unwrap(),
            dst_mac: parse_mac("02:00:00:00:00:02").unwrap(),
            src: "198.18.1.2".parse().unwrap(),
            dst: "198.18.2.2".parse().unwrap(),
            flows: 1000,
            duration: Duration::from_millis(1),
            gap: 300,
            paced: true,
            router_cpu: None,
        };
        let f = template(&s);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[FLOWS..FLOWS + 2], &1000u16.to_be_bytes());
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(&f[MACS_COPY..MACS_COPY + 12], &f[..12]);
        assert_eq!((f[TTL], &f[CHECK_COPY..]), (64, &f[24..26]));
        assert_eq!(&f[GAP..GAP + 2], &300u16.to_be_bytes());
        assert_eq!(&f[30..34], &[198, 18, 2, 2]);
        assert!(parse_mac("02:00:00").is_err());
    }

    /// BPF_PROG_TEST_RUN's verdict for XDP_TX.
    const XDP_TX: u32 = 3;

    #[test]
    fn x0_gen_restores_what_routers_rewrote_and_waits_its_gap() -> Result<()> {
        let mut object = Standalone::load("gen-test")?;
        let prog = object.program(program_names::GEN)?;
        let built = template(&Spec {
            iface: "lo".into(),
            src_mac: parse_mac("02:00:00:00:00:01")?,
            dst_mac: parse_mac("02:00:00:00:00:02")?,
            src: "198.18.1.2".parse()?,
            dst: "198.18.2.2".parse()?,
            flows: 1000,
            duration: Duration::from_millis(1),
            gap: 0,
            paced: true,
            router_cpu: None,
        });
        // A recycled page holds what the last router wrote: its MACs, TTL and checksum.
        let mut recycled = built.clone();
        recycled[MACS..MACS + 12].fill(0xee);
        recycled[TTL] = 63;
        recycled[IP_CHECK..IP_CHECK + 2].copy_from_slice(&[0x12, 0x34]);
        let mut out = [0u8; LEN];
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&recycled),
            data_out: Some(&mut out),
            ..Default::default()
        })?;
        assert_eq!(r.return_value, XDP_TX);
        assert_eq!(out[..SPORT], built[..SPORT], "headers as built");
        assert_eq!(out[SPORT + 2..], built[SPORT + 2..]);
        let sport = u16::from_be_bytes([out[SPORT], out[SPORT + 1]]);
        assert!((10_000..11_000).contains(&sport), "source port {sport}");
        // The gap: every frame waits at least that long (the run's mean per frame).
        let per_frame = |gap: u16| -> Result<Duration> {
            let mut frame = built.clone();
            frame[GAP..GAP + 2].copy_from_slice(&gap.to_be_bytes());
            let r = prog.test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat: 1000,
                ..Default::default()
            })?;
            Ok(r.duration)
        };
        let (none, some) = (per_frame(0)?, per_frame(5_000)?);
        assert!(some >= Duration::from_nanos(5_000), "gap 5000 ns: {some:?}");
        assert!(none < Duration::from_nanos(2_500), "no gap: {none:?}");
        Ok(())
    }

    #[test]
    fn the_gap_settles_where_the_ring_refuses_a_few_percent() {
        // A generator whose own work per frame is 150 ns (not the 100 the controller
        // assumes) and whose clock reads make each wait ~20 ns longer than asked, and a
        // receiver that takes 3.5M of whatever is offered: from no gap, the gap must grow
        // until the ring refuses 1-5% and stay there.
        let offered_at = |gap: u16| {
            let wait = if gap > 0 { f64::from(gap) + 20.0 } else { 0.0 };
            1e9 / (150.0 + wait)
        };
        let mut gap = 0;
        let mut refused_share = 1.0;
        let mut settled_after = None;
        for call in 0..12 {
            let offered = offered_at(gap);
            let sent = offered.min(3_500_000.0);
            let refused = offered - sent;
            refused_share = refused / offered;
            if settled_after.is_none() && (0.01..=0.05).contains(&refused_share) {
                settled_after = Some(call);
            }
            gap = next_gap(gap, sent as u64, refused as u64, 0.0);
        }
        assert!(
            (0.01..=0.05).contains(&refused_share),
            "refused {refused_share:.3}, gap {gap}"
        );
        assert!(settled_after.is_some_and(|c| c <= 8), "{settled_after:?}");
        // A receiver that takes everything: back to no gap at all.
        for _ in 0..40 {
            gap = next_gap(gap, 1000, 0, 0.0);
        }
        assert_eq!(gap, 0);
        assert_eq!(next_gap(17, 0, 0, 0.0), 17, "nothing sent: no change");
        assert_eq!(next_gap(MAX_GAP, 1, 1000, 0.0), MAX_GAP, "at most MAX_GAP");
    }

    #[test]
    fn refusals_while_the_router_idles_do_not_hold_the_offer_down() {
        // A router core that takes up to 4M/s but, below that, loses 3% to its wake-ups
        // (the ring fills while its idle NAPI thread is woken), idling the rest.
        let capacity = 4_000_000.0;
        let offered_at = |gap: u16| 1e9 / (150.0 + f64::from(gap));
        let router = |offered: f64| -> (f64, f64, f64) {
            if offered < capacity {
                (offered * 0.97, offered * 0.03, 1.0 - offered / capacity)
            } else {
                (capacity, offered - capacity, 0.0)
            }
        };
        // Starting slow (the 1-5% band already met), the offer must climb to the core's
        // capacity and settle there with at most a quarter refused.
        let mut gap = 600;
        let mut took = Vec::new();
        for _ in 0..60 {
            let (sent, refused, idle) = router(offered_at(gap));
            took.push((sent, refused / (sent + refused)));
            gap = next_gap(gap, sent as u64, refused as u64, idle);
        }
        for (sent, refused) in &took[40..] {
            assert!(*sent >= 0.93 * capacity, "took {sent:.0}");
            assert!(*refused <= 0.25, "refused {refused:.3}");
        }
        // Without the idle time (not known) the same refusals hold the offer where it is.
        let (sent, refused, _) = router(offered_at(600));
        assert_eq!(next_gap(600, sent as u64, refused as u64, 0.0), 600);
    }
}
