//! The API under HTTP/2 and TLS abuse (x0_lab::abuse): a healthy client's p99 latency
//! while each attack runs beside its p99 alone in the same lab, and the dataplane's
//! resident memory growth during each attack.

use std::path::Path;

use anyhow::{Result, ensure};
use x0_lab::{Lab, Topology, abuse, lab::default_dataplane_bin};

use crate::report::{Row, Table};

/// (attack, seconds): long enough for the slow readers and stalled handshakes to be closed.
const RUNS: [(&str, f64); 5] = [
    ("rapid-reset", 10.0),
    ("continuation", 10.0),
    ("streams", 5.0),
    ("slow-reader", 12.0),
    ("tls-stall", 12.0),
];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn run() -> Result<Vec<Table>> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let lab = Lab::up(
        &format!("x0a{}", std::process::id() % 100_000),
        Topology::from_file(&path)?,
        default_dataplane_bin()?,
    )?;
    eprintln!("  api-abuse: the healthy client alone, 10 s");
    let base = abuse::baseline(&lab, "r1", 10.0)?;
    ensure!(
        base.failed.is_empty(),
        "baseline calls failed: {:?}",
        base.failed
    );
    let (mut latency, mut memory, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    latency.push(Row::new("no attack (baseline)", vec![ms(base.quantile_us(0.99))]).baseline());
    let mut worst = (0.0f64, 0.0f64, 0usize);
    for (attack, seconds) in RUNS {
        eprintln!("  api-abuse: {attack}, {seconds} s");
        let r = abuse::run(&lab, "r1", attack, seconds)?;
        let p99 = ms(r.healthy.quantile_us(0.99));
        let grown = (r.rss_kb.1 as f64 - r.rss_kb.0 as f64) / 1024.0;
        worst = (
            worst.0.max(p99 / ms(base.quantile_us(0.99))),
            worst.1.max(grown),
            worst.2 + r.healthy.failed.len(),
        );
        latency.push(Row::new(format!("during {attack}"), vec![p99]));
        memory.push(Row::new(format!("during {attack}"), vec![grown]));
        notes.push(format!(
            "{attack}: healthy client {} ok, {} failed; attacker saw {}",
            r.healthy.ok,
            r.healthy.failed.len(),
            r.attack
        ));
    }
    let command = "cargo build --release --workspace --bins && ./target/release/x0-bench api-abuse";
    let about = "r1 of the line lab (its API on a Unix socket and mutual TLS). A healthy \
        client calls GetInfo over the Unix socket about 1,000 times a second, alone for 10 s \
        (the baseline), then while each attack of netns-tests/tests/python/h2_abuse.py runs \
        (Python's h2 and raw frames): Rapid Reset (HEADERS + RST_STREAM, reconnecting), an \
        endless CONTINUATION, 1,000 streams on one connection, 200 WatchStats streams with a \
        1-byte window never read, 200 TCP connections that never send a ClientHello. Both \
        share the VM's two cores with the attacker.";
    let judge = |ok: bool| if ok { "met" } else { "not met" };
    Ok(vec![
        Table {
            id: "api-abuse-latency".into(),
            title: "The API under HTTP/2 and TLS abuse: a healthy client's p99".into(),
            command: command.into(),
            about: about.into(),
            unit: "ms (p99)".into(),
            higher_is_better: false,
            rows: latency,
            goal: "100 % of the healthy client's calls succeed; p99 under 2x the baseline".into(),
            verdict: format!(
                "{} failed calls ({}); worst p99 {:.2}x the baseline ({})",
                worst.2,
                judge(worst.2 == 0),
                worst.0,
                judge(worst.0 < 2.0)
            ),
            notes,
        },
        Table {
            id: "api-abuse-memory".into(),
            title: "The API under HTTP/2 and TLS abuse: the dataplane's RSS growth".into(),
            command: command.into(),
            about: "VmRSS of r1's x0-dataplane after each attack minus before it (same runs \
                as the latency table)."
                .into(),
            unit: "MiB".into(),
            higher_is_better: false,
            rows: memory,
            goal: "under 50 MiB during each attack".into(),
            verdict: format!("at most {:.1} MiB ({})", worst.1, judge(worst.1 < 50.0)),
            notes: vec![],
        },
    ])
}
