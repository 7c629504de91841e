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
//! Earlier versions sent through AF_PACKET (and before that trafgen): the skb each frame
//! needed capped them near 1.2M frames/s, below what the router forwards.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};
use etherparse::PacketBuilder;
use x0_common::{
    gen_frame::{
        CHECK_COPY, FLOWS, IP_CHECK, LEN, MACS, MACS_COPY, PACE, SPORT, TTL, TTL_COPY, UDP_CHECK,
    },
    program_names,
};

pub struct Spec {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Distinct UDP source ports, chosen at random per frame by `x0_gen`.
    pub flows: u16,
    pub duration: Duration,
    /// The pace to start at (`gen_frame::PACE`): 255, or where the last run of the same
    /// way ended.
    pub pace: u8,
}

/// What a run did: frames offered to the interface, and the pace it ended at.
pub struct Sent {
    pub offered: u64,
    pub pace: u8,
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
        .ipv4(s.src.octets(), s.dst.octets(), 64)
        .udp(10_000, 9)
        .write(&mut v, &[0u8; 18]) // 14 + 20 + 8 + 18 = 60
        .expect("a valid frame");
    v[UDP_CHECK..UDP_CHECK + 2].copy_from_slice(&[0, 0]);
    v[FLOWS..FLOWS + 2].copy_from_slice(&s.flows.to_be_bytes());
    v.copy_within(MACS..MACS + 12, MACS_COPY);
    v[TTL_COPY] = v[TTL];
    v[PACE] = s.pace;
    v.copy_within(IP_CHECK..IP_CHECK + 2, CHECK_COPY);
    debug_assert_eq!(v[SPORT..SPORT + 2], 10_000u16.to_be_bytes());
    v
}

/// The pace for the next call, from what the peer's ring refused of the last: a veth under
/// heavy overload costs the receiving core contended page-pool locks (the refused frames
/// go back to the generator's pool from this core while the forwarded ones go back from
/// the router's) that a NIC, dropping its overflow in hardware, would not. So the
/// generator offers a little more than the receiver takes: between 1% and 5% refused
/// (RFC 2544's throughput, give or take that loss), aiming at 3%.
pub fn next_pace(pace: u8, sent: u64, refused: u64) -> u8 {
    let offered = sent + refused;
    if offered == 0 {
        return pace;
    }
    let refused_share = refused as f64 / offered as f64;
    let per_256 = f64::from(pace) + 1.0;
    let next = if refused_share > 0.05 {
        per_256 * (1.0 - refused_share) * 1.03
    } else if refused_share < 0.01 {
        per_256 * 1.1 + 1.0
    } else {
        per_256
    };
    (next.round() - 1.0).clamp(0.0, 255.0) as u8
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

/// Sends until the time is up, paced (`next_pace`) after every call.
pub fn run(s: &Spec) -> Result<Sent> {
    let ifindex = nix::net::if_::if_nametoindex(s.iface.as_str())
        .with_context(|| format!("interface {}", s.iface))?;
    // The object's maps are pinned by name; give them a directory of their own (inside
    // `ip netns exec` that is a private bpffs, gone with the process).
    let pins = PathBuf::from(format!("/sys/fs/bpf/x0-gen-{}", std::process::id()));
    x0_dataplane::bpffs::prepare(&pins)?;
    let result = (|| -> Result<Sent> {
        let mut ebpf = x0_lab::faults::small_loader(&pins)
            .load(x0_dataplane::XDP_OBJECT)
            .context("loading the XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(program_names::GEN)
            .context("x0_gen missing from the XDP object")?
            .try_into()?;
        prog.load().context("verifying x0_gen")?;
        let mut frame = template(s);
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The ingress is where XDP_TX sends.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let end = Instant::now() + s.duration;
        let mut offered = 0u64;
        let mut pace = s.pace;
        let mut before = sent_refused(&s.iface)?;
        while Instant::now() < end {
            frame[PACE] = pace;
            // In live mode the kernel returns no verdict; the veth's counters tell what went out.
            prog.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: FRAMES_PER_CALL,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN (live frames)")?;
            let now = sent_refused(&s.iface)?;
            let (sent, refused) = (now.0 - before.0, now.1 - before.1);
            offered += sent + refused;
            pace = next_pace(pace, sent, refused);
            before = now;
        }
        Ok(Sent { offered, pace })
    })();
    let _ = std::fs::remove_dir_all(&pins);
    result
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
            pace: 200,
        };
        let f = template(&s);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[FLOWS..FLOWS + 2], &1000u16.to_be_bytes());
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(&f[MACS_COPY..MACS_COPY + 12], &f[..12]);
        assert_eq!((f[TTL_COPY], &f[CHECK_COPY..]), (64, &f[24..26]));
        assert_eq!(f[PACE], 200);
        assert_eq!(&f[30..34], &[198, 18, 2, 2]);
        assert!(parse_mac("02:00:00").is_err());
    }

    #[test]
    fn the_pace_settles_where_the_ring_refuses_a_few_percent() {
        // A receiver that takes 1M of whatever is offered, out of 8M frames built per
        // second: the pace must come down from "all" to just above 1M and stay there.
        let built = 8_000_000.0;
        let mut pace = u8::MAX;
        let mut refused_share = 1.0;
        for _ in 0..10 {
            let offered = built * (f64::from(pace) + 1.0) / 256.0;
            let sent = offered.min(1_000_000.0);
            let refused = offered - sent;
            refused_share = refused / offered;
            pace = next_pace(pace, sent as u64, refused as u64);
        }
        assert!(
            (0.0..=0.05).contains(&refused_share),
            "refused {refused_share:.3}"
        );
        assert!(pace < 40, "pace {pace}");
        // A receiver that takes everything: back up to sending all.
        for _ in 0..40 {
            pace = next_pace(pace, 1000, 0);
        }
        assert_eq!(pace, u8::MAX);
        assert_eq!(next_pace(17, 0, 0), 17, "nothing sent: no change");
    }
}
