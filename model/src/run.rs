//! The differential run: the real program (BPF_PROG_TEST_RUN on this kernel) against the
//! model, frame by frame, each batch of frames on freshly drawn tables.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, bail};
use rand::{SeedableRng, rngs::StdRng};
use x0_common::Reason;
use x0_dataplane::{
    Dataplane,
    netlink::Link,
    tables::{NextHopSpec, RouteTarget},
};

use crate::{
    frames,
    model::{self, Verdict},
    tables::{PORT, PORT_MAC, PORT_MTU, Tables, Target},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// Frames per table.
pub const BATCH: usize = 1000;
/// Routes per table.
pub const ROUTES: usize = 200;

/// What a run saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub cases: usize,
    pub mismatches: Vec<String>,
    /// Frames per reason the program counted them under.
    pub by_reason: Vec<(Reason, usize)>,
    /// Frames too short for BPF_PROG_TEST_RUN (under 14 bytes), not run.
    pub too_short: usize,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The program loaded in its own pin directory with `t` installed, FIB fallback off.
fn load(t: &Tables) -> Result<(Dataplane, PathBuf)> {
    let pin_root = PathBuf::from(format!(
        "/sys/fs/bpf/x0-model-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut dp = Dataplane::load(&pin_root).context("load the XDP object")?;
    dp.set_fib_fallback(false)?;
    dp.add_port(&Link {
        ifindex: PORT,
        name: "lo".into(),
        mac: PORT_MAC,
        mtu: PORT_MTU,
        up: true,
    })?;
    let tables = dp.tables();
    for r in &t.routes {
        let target = match &r.target {
            Target::Local => RouteTarget::Local,
            Target::Via(gws) => RouteTarget::NextHops(
                gws.iter()
                    .map(|g| NextHopSpec {
                        gateway: *g,
                        ifindex: PORT,
                    })
                    .collect(),
            ),
        };
        tables.upsert(r.prefix, target)?;
    }
    for (gw, mac) in &t.neighbours {
        tables.set_neighbour(PORT, *gw, Some(*mac))?;
    }
    Ok((dp, pin_root))
}

/// The frame as hex and a scapy line that rebuilds it.
pub fn describe(frame: &[u8]) -> String {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    format!("frame {hex}\n  scapy: Ether(bytes.fromhex('{hex}'))")
}

/// Runs one frame through the program and compares; Err: the mismatch, described.
fn compare(dp: &Dataplane, frame: &[u8], want: &Verdict) -> Result<Reason, String> {
    let before = dp.reason_counters().map_err(|e| e.to_string())?;
    let (action, out) = dp.test_run(frame).map_err(|e| format!("{e:#}"))?;
    let after = dp.reason_counters().map_err(|e| e.to_string())?;
    let moved: Vec<(Reason, u64, u64)> = Reason::ALL
        .iter()
        .map(|&r| {
            let (a, b) = (&after[r as usize], &before[r as usize]);
            (r, a.packets - b.packets, a.bytes - b.bytes)
        })
        .filter(|(_, p, _)| *p > 0)
        .collect();
    let seen = match moved.as_slice() {
        [(r, 1, bytes)] if *bytes == frame.len() as u64 => *r,
        other => return Err(format!("counted under {other:?}, not one reason once")),
    };
    let (want_action, want_reason, want_frame) = match want {
        Verdict::Pass(r) => (XDP_PASS, *r, frame),
        Verdict::Drop(r) => (XDP_DROP, *r, frame),
        Verdict::Redirect { reason, frame, .. } => (XDP_REDIRECT, *reason, frame.as_slice()),
    };
    if (action, seen) != (want_action, want_reason) || out != want_frame {
        return Err(format!(
            "program: action {action} reason {} / model: action {want_action} reason {}{}",
            seen.name(),
            want_reason.name(),
            if out != want_frame {
                format!("\n  out: {}", describe(&out))
            } else {
                String::new()
            }
        ));
    }
    Ok(seen)
}

/// `cases` frames from `seed`, a fresh table every BATCH frames. Needs root.
pub fn run(cases: usize, seed: u64, mut progress: impl FnMut(usize)) -> Result<Summary> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("BPF_PROG_TEST_RUN needs root (CAP_BPF and CAP_NET_ADMIN)");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = Summary::default();
    let mut counts = std::collections::BTreeMap::new();
    while s.cases < cases {
        let t = Tables::random(&mut rng, ROUTES);
        let (dp, _pin) = load(&t)?;
        for _ in 0..BATCH.min(cases - s.cases) {
            let frame = frames::frame(&mut rng, &t);
            s.cases += 1;
            if frame.len() < 14 {
                s.too_short += 1;
                continue;
            }
            let want = model::forward(&frame, &t);
            match compare(&dp, &frame, &want) {
                Ok(r) => *counts.entry(r as u32).or_insert(0usize) += 1,
                Err(e) if s.mismatches.len() < 20 => {
                    s.mismatches.push(format!("{e}\n  {}", describe(&frame)))
                }
                Err(_) => s.mismatches.push(String::new()),
            }
        }
        dp.shutdown(true)?;
        progress(s.cases);
    }
    s.by_reason = counts
        .into_iter()
        .filter_map(|(r, n)| Some((Reason::from_u32(r)?, n)))
        .collect();
    Ok(s)
}
