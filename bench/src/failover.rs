//! Failover outage on the diamond lab: a 10,000 packets/s UDP stream from h1 to h2, a
//! failure of r1-r2 in the middle, outage = lost packets x send interval. Each repetition
//! builds a fresh lab, so hold-down and flap dampening of one run cannot touch the next.

use std::time::Duration;

use anyhow::{Result, ensure};
use hdrhistogram::Histogram;
use x0_lab::{Lab, Topology, faults, lab::default_dataplane_bin, netns, traffic};

const RATE: u64 = 10_000;

#[derive(Clone, Copy)]
enum Failure {
    Carrier,
    BlackHole,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::Carrier => "carrier loss (ip link set down)",
            Failure::BlackHole => "silent black-hole (BFD 10 ms x 3)",
        }
    }
    fn goal_ms(self) -> f64 {
        match self {
            Failure::Carrier => 5.0,
            Failure::BlackHole => 35.0,
        }
    }
}

pub fn run(reps: u32) -> Result<()> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let topo_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netns-tests/topologies/diamond.toml");
    let bin = default_dataplane_bin()?;
    println!(
        "x0-bench failover: diamond lab, UDP {RATE} packets/s h1 -> h2, {reps} repetitions per failure"
    );
    println!(
        "outage = lost packets x {} us; gap = largest time between two arrivals at h2",
        1_000_000 / RATE
    );
    println!();
    let mut rows = Vec::new();
    for failure in [Failure::Carrier, Failure::BlackHole] {
        let mut outage = Histogram::<u64>::new(3)?;
        let mut gap = Histogram::<u64>::new(3)?;
        for rep in 0..reps {
            let topo = Topology::from_file(&topo_path)?;
            let lab = Lab::up(
                &format!("x0b{}", std::process::id() % 100_000),
                topo,
                bin.clone(),
            )?;
            wait_bfd_up(&lab)?;
            let dst = lab.topo.addr_of("h2", false).expect("h2 address");
            let report = std::thread::scope(|s| -> Result<traffic::StreamReport> {
                let stream = s
                    .spawn(|| traffic::udp_stream(&lab, "h1", "h2", dst, 9200, RATE * 3 / 2, RATE));
                std::thread::sleep(Duration::from_millis(500));
                match failure {
                    Failure::Carrier => {
                        netns::exec_ok(&lab.ns("r2"), &["ip", "link", "set", "eth0", "down"])?;
                    }
                    Failure::BlackHole => {
                        faults::drop_ingress_all(&lab, &[("r2", "eth0"), ("r1", "eth1")])?;
                    }
                }
                stream
                    .join()
                    .map_err(|_| anyhow::anyhow!("stream panicked"))?
            })?;
            outage.record(report.outage().as_micros() as u64)?;
            gap.record(report.max_gap.as_micros() as u64)?;
            eprintln!(
                "  {} {}/{reps}: lost {} -> outage {:.1} ms, largest gap {:.1} ms",
                failure.name(),
                rep + 1,
                report.lost,
                report.outage().as_secs_f64() * 1e3,
                report.max_gap.as_secs_f64() * 1e3
            );
        }
        rows.push((failure, outage, gap));
    }
    println!();
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  goal",
        "failure", "p50 ms", "p99 ms", "max ms", "gap p50", "gap p99", "gap max"
    );
    for (failure, o, g) in rows {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<36} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  <= {} ms: {}",
            failure.name(),
            ms(&o, 0.5),
            ms(&o, 0.99),
            o.max() as f64 / 1000.0,
            ms(&g, 0.5),
            ms(&g, 0.99),
            g.max() as f64 / 1000.0,
            failure.goal_ms(),
            if ms(&o, 0.5) <= failure.goal_ms() {
                "met (p50)"
            } else {
                "missed (p50)"
            }
        );
    }
    Ok(())
}

fn wait_bfd_up(lab: &Lab) -> Result<()> {
    let start = std::time::Instant::now();
    while !lab
        .dataplane_log("r1")
        .contains("peer=198.18.12.2 iface=eth1 from=")
        || !lab.dataplane_log("r1").contains("to=Up")
    {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "BFD did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The Poll/Final that brings the timers down to 10 ms.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}
