//! Failover outage on the diamond lab (h1 - r1 - {r2, r3} - r4 - h2): a 10,000 packets/s
//! UDP stream from h1 to h2, a failure of r1-r2 half a second in, outage = lost packets x
//! send interval; for x0tta6bl4 (BFD 10 ms x 3 in the dataplane), for the kernel's
//! forwarding driven by FRR (OSPF with BFD 10 ms x 3 and 100 ms hellos; Debian's FRR 8.4
//! has no BFD for static routes) and by babeld (100 ms hellos), the same failures on the
//! same topology in the same run. r1 prefers r2 (costs), so every failure needs a switch.
//! x0tta6bl4 and babeld get a fresh lab per repetition (x0tta6bl4's hold-down and flap
//! dampening must not carry over; babeld takes half a minute to move back to a repaired
//! path); FRR one lab, repaired and reconverged between repetitions.

use std::time::Duration;

use anyhow::{Result, ensure};
use hdrhistogram::Histogram;
use x0_lab::{Lab, Topology, faults, lab::default_dataplane_bin, netns, routing, tools, traffic};

use crate::report::{Row, Table};

const RATE: u64 = 10_000;
/// Stream length: time enough for the slowest stack to recover.
const STREAM_S: f64 = 1.5;
const PRIMARY: &str = "198.18.12.2";
const BACKUP: &str = "198.18.13.3";
const H2_NET: &str = "198.18.2.0/24";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Carrier,
    BlackHole,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::Carrier => "carrier loss",
            Failure::BlackHole => "silent black-hole",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    X0,
    Frr,
    Babel,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::X0 => "x0tta6bl4 (XDP, BFD 10 ms x 3)",
            Stack::Frr => "kernel + FRR 8.4 (OSPF, BFD 10 ms x 3)",
            Stack::Babel => "kernel + babeld 1.12 (hello 100 ms)",
        }
    }
}

fn diamond(bin: &std::path::Path) -> Result<Lab> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netns-tests/topologies/diamond.toml");
    Lab::up(
        &format!("x0b{}", std::process::id() % 100_000),
        Topology::from_file(&path)?,
        bin.to_path_buf(),
    )
}

fn fail(lab: &Lab, failure: Failure) -> Result<()> {
    match failure {
        Failure::Carrier => {
            netns::exec_ok(&lab.ns("r2"), &["ip", "link", "set", "eth0", "down"])?;
        }
        Failure::BlackHole => {
            faults::drop_ingress_all(lab, &[("r2", "eth0"), ("r1", "eth1")])?;
        }
    }
    Ok(())
}

fn repair(lab: &Lab, failure: Failure) -> Result<()> {
    match failure {
        Failure::Carrier => {
            netns::exec_ok(&lab.ns("r2"), &["ip", "link", "set", "eth0", "up"])?;
        }
        Failure::BlackHole => {
            faults::restore(lab, "r2", "eth0")?;
            faults::restore(lab, "r1", "eth1")?;
        }
    }
    Ok(())
}

/// One failure under the stream; the outage in ms, and whether traffic came back before
/// the stream ended (if not, the outage is a lower bound).
fn one(lab: &Lab, failure: Failure) -> Result<(f64, bool)> {
    let dst = lab.topo.addr_of("h2", false).expect("h2 address");
    let report = std::thread::scope(|s| -> Result<traffic::StreamReport> {
        let stream = s.spawn(|| {
            traffic::udp_stream(
                lab,
                "h1",
                "h2",
                dst,
                9200,
                (RATE as f64 * STREAM_S) as u64,
                RATE,
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        fail(lab, failure)?;
        stream
            .join()
            .map_err(|_| anyhow::anyhow!("stream panicked"))?
    })?;
    let ms = report.outage().as_secs_f64() * 1e3;
    Ok((ms, ms < (STREAM_S - 0.6) * 1e3))
}

const FAILURES: [Failure; 2] = [Failure::Carrier, Failure::BlackHole];

/// How long after the fast path r1's kernel route followed a failover (us), as r1's
/// x0-dataplane logged it ("the kernel's routes followed the fast path ... after_us=N").
fn kernel_follow_us(lab: &Lab) -> Option<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let log = lab.dataplane_log("r1");
        let line = log.lines().find(|l| l.contains("followed the fast path"));
        if let Some(v) = line.and_then(|l| l.split("after_us=").nth(1)) {
            return v.split_whitespace().next()?.parse().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Per failure type (in FAILURES' order): one stack's outages (ms), how many of them never
/// recovered within the stream, and (x0tta6bl4) how long its kernel route took to follow.
type Samples = Vec<(Vec<f64>, u32, Vec<f64>)>;

fn samples(stack: Stack, reps: u32, bin: &std::path::Path) -> Result<Samples> {
    let mut out: Samples = vec![(Vec::new(), 0, Vec::new()), (Vec::new(), 0, Vec::new())];
    let mut follows: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut record = |i: usize, (ms, recovered): (f64, bool), say: &dyn Fn(&str)| {
        out[i].0.push(ms);
        if !recovered {
            out[i].1 += 1;
        }
        say(&format!(
            "{}: {ms:.1} ms{}",
            FAILURES[i].name(),
            if recovered {
                ""
            } else {
                " (no recovery within the stream)"
            }
        ));
    };
    let t0 = std::time::Instant::now();
    let say = |what: &str| eprintln!("    {:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let kernel_lab = |stack: Stack| -> Result<Lab> {
        let lab = diamond(bin)?;
        routing::kernel_forwarding(&lab)?;
        if stack == Stack::Frr {
            routing::start_frr(&lab, 10, &routing::diamond_prefers_r2(true))?;
        } else {
            routing::start_babeld(&lab, 0.1, &routing::diamond_prefers_r2(false))?;
        }
        routing::wait_route(&lab, "r1", H2_NET, PRIMARY, Duration::from_secs(60))?;
        let h2 = lab.topo.addr_of("h2", false).expect("h2 address");
        traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(30))?;
        // the adjacencies settle (BFD timers down to 10 ms, babel's hello history)
        std::thread::sleep(Duration::from_secs(2));
        Ok(lab)
    };
    match stack {
        // A fresh lab per repetition: x0tta6bl4's hold-down and flap dampening must not
        // carry over; babeld takes half a minute to move back to a repaired path.
        Stack::X0 | Stack::Babel => {
            for (i, failure) in FAILURES.into_iter().enumerate() {
                for _ in 0..reps {
                    let lab = if stack == Stack::X0 {
                        let lab = diamond(bin)?;
                        wait_bfd_up(&lab)?;
                        lab
                    } else {
                        kernel_lab(stack)?
                    };
                    record(i, one(&lab, failure)?, &say);
                    if stack == Stack::X0 {
                        follows[i].extend(kernel_follow_us(&lab));
                    }
                }
            }
        }
        // FRR has neither and is back on the repaired path within a second: one lab.
        Stack::Frr => {
            let lab = kernel_lab(stack)?;
            for (i, failure) in FAILURES.into_iter().enumerate() {
                for rep in 0..reps {
                    if rep > 0 || i > 0 {
                        routing::wait_route(&lab, "r1", H2_NET, PRIMARY, Duration::from_secs(60))?;
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    record(i, one(&lab, failure)?, &say);
                    routing::wait_route(&lab, "r1", H2_NET, BACKUP, Duration::from_secs(2))?;
                    repair(&lab, failure)?;
                }
            }
        }
    }
    for (o, f) in out.iter_mut().zip(follows) {
        o.2 = f;
    }
    Ok(out)
}

pub fn run(reps: u32) -> Result<Vec<Table>> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let bin = default_dataplane_bin()?;
    let stacks = [Stack::Frr, Stack::X0, Stack::Babel];
    let mut all = Vec::new();
    for stack in stacks {
        eprintln!(
            "  failover: {}, {reps} repetitions per failure",
            stack.name()
        );
        all.push(samples(stack, reps, &bin)?);
    }
    let mut tables = Vec::new();
    for (fi, failure) in FAILURES.into_iter().enumerate() {
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        for (si, stack) in stacks.into_iter().enumerate() {
            let (v, unrecovered, follow) = all[si][fi].clone();
            if !follow.is_empty() {
                let mut f = follow.clone();
                f.sort_by(f64::total_cmp);
                notes.push(format!(
                    "{}: r1's kernel route followed the fast path {:.0} us after it (median of \
                     {}; max {:.0} us; the daemon's log): traffic the fast path passes up, and \
                     r1's own, takes the backup too",
                    stack.name(),
                    f[f.len() / 2],
                    f.len(),
                    f[f.len() - 1]
                ));
            }
            if unrecovered > 0 {
                notes.push(format!(
                    "{}: {unrecovered} of {reps} runs had not recovered when the stream ended: \
                     their outage is a lower bound",
                    stack.name()
                ));
            }
            let mut h = Histogram::<u64>::new(3)?;
            for x in &v {
                h.record((x * 1000.0) as u64)?;
            }
            let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
            notes.push(format!(
                "{}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (hdrhistogram)",
                stack.name(),
                q(0.5),
                q(0.99),
                h.max() as f64 / 1000.0
            ));
            let row = Row::new(stack.name(), v);
            rows.push(if stack == Stack::Frr {
                row.baseline()
            } else {
                row
            });
        }
        let med = |i: usize| rows[i].median();
        let (frr, x0, babel) = (med(0), med(1), med(2));
        let (goal, verdict) = match failure {
            Failure::Carrier => (
                "x0tta6bl4 at least 5x faster than FRR and 10x faster than babeld".to_string(),
                format!(
                    "{:.1}x FRR ({}), {:.1}x babeld ({})",
                    frr / x0,
                    if frr >= 5.0 * x0 { "met" } else { "not met" },
                    babel / x0,
                    if babel >= 10.0 * x0 { "met" } else { "not met" }
                ),
            ),
            Failure::BlackHole => (
                "x0tta6bl4 at least as fast as FRR+BFD and 10x faster than babeld".to_string(),
                format!(
                    "{:.1}x FRR ({}), {:.1}x babeld ({})",
                    frr / x0,
                    if x0 <= frr { "met" } else { "not met" },
                    babel / x0,
                    if babel >= 10.0 * x0 { "met" } else { "not met" }
                ),
            ),
        };
        tables.push(Table {
            id: format!("failover-{}", if failure == Failure::Carrier { "carrier" } else { "blackhole" }),
            title: format!("Failover outage: {}", failure.name()),
            command: format!(
                "cargo build --release --workspace --bins && ./target/release/x0-bench failover --reps {reps}"
            ),
            about: format!(
                "The diamond lab (h1 - r1 - {{r2, r3}} - r4 - h2), a {RATE} packets/s UDP stream \
                 from h1 to h2, and 500 ms into it a failure of r1-r2: {}. Outage = lost packets \
                 x {} us. x0tta6bl4: its dataplane on every router (BFD 10 ms x 3), a fresh lab \
                 per repetition. FRR: one lab, repaired and back on r2 between repetitions; the dataplanes stopped and detached, zebra + ospfd + bfdd \
                 on every router (OSPF point-to-point, hellos every 100 ms, dead after 1 s, SPF \
                 without delay, BFD 10 ms x 3 on each adjacency; Debian's FRR 8.4 has no BFD for \
                 static routes: its staticd has none), zebra programming the kernel. babeld: the same with babeld \
                 (wired interfaces, hellos every 100 ms, no metric smoothing), a fresh lab per repetition. r1 prefers r2 (OSPF cost / rxcost). \
                 {reps} repetitions each.",
                match failure {
                    Failure::Carrier => "carrier loss (`ip link set down` on r2's end, so r1 sees its carrier go)",
                    Failure::BlackHole => "a silent black-hole (both ends stay UP and drop everything they receive: `x0_drop` in both ends' XDP hooks)",
                },
                1_000_000 / RATE
            ),
            unit: "ms of outage".into(),
            higher_is_better: false,
            rows,
            goal,
            verdict,
            notes,
        });
    }
    Ok(tables)
}

/// Waits until r1's BFD sessions are Up at their fast timers (detection within 30 ms),
/// as the dataplane's API reports them: past BFD's 1 s slow start.
fn wait_bfd_up(lab: &Lab) -> Result<()> {
    tools::wait_bfd_all_up(
        lab,
        "r1",
        Duration::from_millis(30),
        Duration::from_secs(10),
    )
}
