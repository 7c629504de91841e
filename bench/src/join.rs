//! `x0-bench join`: a router joining and a router dying on the diamond lab (h1 - r1 -
//! {r2, r3} - r4 - h2), for x0tta6bl4 with discovery (minimal configs: no routes, no
//! neighbours; hellos every 1 s, BFD 10 ms x 3) and for the kernel driven by babeld, in
//! the same run. Join: r4's routing daemon starts last, while streams run both ways
//! between the hosts (1,000 packets/s); the time is from its start until both streams
//! arrive. Death: the router the h1 -> h2 stream crosses stops answering on every link and
//! its daemons are killed; the outage is lost packets x interval. A fresh lab per
//! repetition.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use x0_brain::config::Mode;
use x0_lab::{Lab, Topology, faults, lab::default_dataplane_bin, netns, routing, tools, traffic};

use crate::report::{Row, Table};

const RATE: u64 = 1000;
const JOIN_STREAM_S: u64 = 5;
const DEATH_STREAM_S: u64 = 10;
const BRAIN: &str = "https://127.0.0.1:7444";

#[derive(Clone, Copy)]
enum Stack {
    X0,
    Babel { hello_s: f64 },
}

impl Stack {
    fn name(self) -> String {
        match self {
            Stack::X0 => "x0tta6bl4 (hellos 1 s, BFD 10 ms x 3)".into(),
            Stack::Babel { hello_s } => format!("kernel + babeld 1.12 (hello {hello_s} s)"),
        }
    }

    /// Starts the stack's routing daemon on `router`.
    fn start(self, lab: &Lab, router: &str) -> Result<()> {
        match self {
            Stack::X0 => lab.start_brain(router, Mode::Enforce),
            Stack::Babel { hello_s } => {
                routing::start_babeld_on(lab, router, hello_s, &|_: &str, _: &str| 96)
            }
        }
    }
}

fn lab(stack: Stack, bin: &std::path::Path) -> Result<Lab> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netns-tests/topologies/diamond.toml");
    let lab = Lab::up(
        &format!("x0j{}", std::process::id() % 100_000),
        Topology::from_file(&path)?.discovering(),
        bin.to_path_buf(),
    )?;
    if let Stack::Babel { .. } = stack {
        routing::kernel_forwarding(&lab)?;
    }
    Ok(lab)
}

/// r1, r2 and r3 run their daemons and know each other.
fn three_routers(stack: Stack, lab: &Lab) -> Result<()> {
    for r in ["r1", "r2", "r3"] {
        stack.start(lab, r)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !three_known(stack, lab) {
        if Instant::now() > deadline {
            bail!("{}: r1, r2 and r3 did not converge in 30 s", stack.name());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

fn three_known(stack: Stack, lab: &Lab) -> bool {
    match stack {
        Stack::X0 => lab
            .x0ctl_at("r1", BRAIN, &["--json", "brain", "status"])
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["routers"].as_array().map(|a| a.len() == 3))
            .unwrap_or(false),
        // babeld announces the host subnets only (none on r2, r3) and has no status to
        // ask: its neighbours are up after a few hellos.
        Stack::Babel { hello_s } => {
            std::thread::sleep(Duration::from_secs_f64((4.0 * hello_s).max(3.0)));
            true
        }
    }
}

/// A UDP stream `from` -> `to` at RATE for `secs` in a thread.
fn stream<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    lab: &'s Lab,
    from: &'static str,
    to: &'static str,
    port: u16,
    secs: u64,
) -> std::thread::ScopedJoinHandle<'s, Result<traffic::StreamReport>> {
    let dst = lab.topo.addr_of(to, false).expect("host address");
    s.spawn(move || traffic::udp_stream(lab, from, to, dst, port, RATE * secs, RATE))
}

/// The first packet that arrived, as ms after the stream's start.
fn first_arrival_ms(r: &traffic::StreamReport) -> Option<f64> {
    let missing: std::collections::HashSet<u64> = r.missing.iter().copied().collect();
    (0..r.sent)
        .find(|seq| !missing.contains(seq))
        .map(|seq| seq as f64 * 1e3 / RATE as f64)
}

/// r4's daemon starts 300 ms into streams both ways: ms until both arrive.
fn join_ms(stack: Stack, lab: &Lab) -> Result<f64> {
    let (ab, ba, offset) = std::thread::scope(|s| -> Result<_> {
        let start = Instant::now();
        let ab = stream(s, lab, "h1", "h2", 9301, JOIN_STREAM_S);
        let ba = stream(s, lab, "h2", "h1", 9302, JOIN_STREAM_S);
        std::thread::sleep(Duration::from_millis(300));
        let offset = start.elapsed().as_secs_f64() * 1e3;
        stack.start(lab, "r4")?;
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<traffic::StreamReport>>| {
            h.join().map_err(|_| anyhow!("stream panicked"))?
        };
        Ok((join(ab)?, join(ba)?, offset))
    })?;
    let first = |r: &traffic::StreamReport, way: &str| {
        first_arrival_ms(r).ok_or_else(|| anyhow!("{}: nothing arrived {way}", stack.name()))
    };
    Ok(first(&ab, "h1 -> h2")?.max(first(&ba, "h2 -> h1")?) - offset)
}

/// The router after r1 on the h1 -> h2 path.
fn crossed(lab: &Lab) -> Result<&'static str> {
    let h2 = lab.topo.addr_of("h2", false).expect("h2 address");
    let hops = tools::traceroute(lab, "h1", h2, 6)?;
    match hops.get(1).copied().flatten().map(|a| a.to_string()) {
        Some(a) if a == "198.18.12.2" => Ok("r2"),
        Some(a) if a == "198.18.13.3" => Ok("r3"),
        other => bail!("h1 -> h2 crosses {other:?}, not r2 or r3: {hops:?}"),
    }
}

/// The crossed router dies 500 ms into a stream: the outage in ms.
fn death_ms(stack: Stack, lab: &Lab) -> Result<f64> {
    let victim = crossed(lab)?;
    let report = std::thread::scope(|s| -> Result<traffic::StreamReport> {
        let h = stream(s, lab, "h1", "h2", 9303, DEATH_STREAM_S);
        std::thread::sleep(Duration::from_millis(500));
        faults::drop_ingress_all(lab, &[(victim, "eth0"), (victim, "eth1")])?;
        match stack {
            Stack::X0 => {
                lab.stop_brain(victim, true)?;
                lab.kill_dataplane(victim)?;
            }
            Stack::Babel { .. } => {
                let pid = lab.dir.join(format!("babeld-{victim}/babeld.pid"));
                let pid = std::fs::read_to_string(pid)?;
                netns::exec_ok(&lab.ns(victim), &["kill", "-9", pid.trim()])?;
            }
        }
        h.join().map_err(|_| anyhow!("stream panicked"))?
    })?;
    Ok(report.outage().as_secs_f64() * 1e3)
}

pub fn run(reps: u32) -> Result<Vec<Table>> {
    let bin = default_dataplane_bin()?;
    let stacks = [
        Stack::X0,
        Stack::Babel { hello_s: 1.0 },
        Stack::Babel { hello_s: 0.1 },
    ];
    let (mut joins, mut deaths) = (Vec::new(), Vec::new());
    for stack in stacks {
        let (mut j, mut d) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let lab = lab(stack, &bin)?;
            three_routers(stack, &lab)?;
            j.push(join_ms(stack, &lab)?);
            std::thread::sleep(Duration::from_secs(2));
            d.push(death_ms(stack, &lab)?);
            eprintln!(
                "  {} rep {}: join {:.0} ms, death outage {:.0} ms",
                stack.name(),
                rep + 1,
                j[j.len() - 1],
                d[d.len() - 1]
            );
        }
        joins.push(Row::new(stack.name(), j));
        deaths.push(Row::new(stack.name(), d));
    }
    Ok(vec![join_table(joins), death_table(deaths)])
}

fn command(reps: u32) -> String {
    format!(
        "cargo build --release --workspace --bins && ./target/release/x0-bench join --reps {reps}"
    )
}

fn join_table(mut rows: Vec<Row>) -> Table {
    rows[1] = rows[1].clone().baseline();
    let x0 = rows[0].clone();
    let p99 = percentile(&x0.samples, 0.99);
    Table {
        id: "join".into(),
        title: "A router joins the diamond: time until both hosts reach each other".into(),
        command: command(x0.samples.len() as u32),
        about: "r1, r2 and r3 run their routing daemons and know each other; r4's starts 300 ms into UDP streams both ways between h1 and h2 (1,000 packets/s); the time is from its start until both streams arrive (the later of the two first arrivals). x0tta6bl4 runs with discovery: no routes in any dataplane config, no neighbours or prefixes in the brains'; babeld drives the kernel with the same hello interval (1 s) and with 100 ms. A fresh lab per repetition.".into(),
        unit: "ms".into(),
        higher_is_better: false,
        goal: "x0tta6bl4: reachable from every host within 2 s of the joining router's first hello (p99)".into(),
        verdict: format!(
            "p50 {:.0} ms, p99 {p99:.0} ms: {}",
            x0.median(),
            if p99 <= 2000.0 { "met" } else { "not met" }
        ),
        rows,
        notes: Vec::new(),
    }
}

fn death_table(mut rows: Vec<Row>) -> Table {
    rows[1] = rows[1].clone().baseline();
    Table {
        id: "router-dies".into(),
        title: "A router on the path dies: outage of a 1,000 packets/s stream".into(),
        command: command(rows[0].samples.len() as u32),
        about: "The router the h1 -> h2 stream crosses (r2 or r3) stops answering on both links (ingress dropped) and its daemons are killed (kill -9), 500 ms into the stream; outage = lost packets x 1 ms. Same labs as the join table, 2 s after the join.".into(),
        unit: "ms".into(),
        higher_is_better: false,
        goal: String::new(),
        verdict: String::new(),
        rows,
        notes: Vec::new(),
    }
}

fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * q).ceil() as usize;
    s.get(i).copied().unwrap_or(f64::NAN)
}
