//! The long differential run of the fast path against its reference model (x0-model):
//! `cases` generated frames through BPF_PROG_TEST_RUN, each compared with the model.

use anyhow::Result;

use crate::report::{Row, Table};

pub fn run(cases: usize, seed: u64) -> Result<Table> {
    let started = std::time::Instant::now();
    let s = x0_model::run::run(cases, seed, |done| {
        if done % 100_000 == 0 {
            eprintln!("  differential: {done} frames");
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut notes: Vec<String> = s.mismatches.iter().take(5).cloned().collect();
    notes.push(format!(
        "{} frames under 14 bytes not run (BPF_PROG_TEST_RUN refuses them)",
        s.too_short
    ));
    Ok(Table {
        id: "differential".into(),
        title: "The fast path against its reference model: frames by the reason counted".into(),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench differential --cases {cases} --seed {seed}"
        ),
        about: format!(
            "x0-model generates frames by structure (VLAN tags, ARP, IPv4 with options, \
             fragments, bad checksums and lengths, TTL 0-3; IPv6 with extension headers; \
             TCP/UDP/ICMP/NDP; martian, multicast, link-local and local addresses; frames \
             past the MTU; cut frames; random bytes) on random tables (200 routes of both \
             families, 1-3 next hops each, ~70 % of neighbours resolved, a fresh table \
             every 1,000 frames), runs each through x0_forward with BPF_PROG_TEST_RUN and \
             through the model (docs/DESIGN.md and the RFCs), and compares the action, the \
             one reason counter that moved (by one packet and the frame's bytes) and the \
             frame out. Policy and the FIB fallback are off. {:.0} s for the run.",
            secs
        ),
        unit: "frames".into(),
        higher_is_better: true,
        rows: s
            .by_reason
            .iter()
            .map(|(r, n)| Row::new(r.name(), vec![*n as f64]))
            .collect(),
        goal: "0 mismatches; every frame counted under exactly one reason; 0 XDP_ABORTED".into(),
        verdict: format!(
            "{} mismatches in {} frames ({})",
            s.mismatches.len(),
            s.cases,
            if s.mismatches.is_empty() {
                "met"
            } else {
                "not met"
            }
        ),
        notes,
    })
}
