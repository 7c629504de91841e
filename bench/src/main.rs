//! `x0-bench`: benchmarks that measure x0tta6bl4 beside a baseline measured in the same run.
//! `x0-bench all [--quick]` runs them all, prints a table per benchmark, and writes
//! docs/performance.json and docs/PERFORMANCE.md from the results.

mod api_abuse;
mod bfd_interop;
mod chaos;
mod control_plane;
mod detect;
mod differential;
mod failover;
mod flooding;
mod forwarding;
mod generator;
mod gray;
mod join;
mod memory;
mod memory_idle;
mod memory_profile;
mod paths;
mod placement;
mod policy_cost;
mod rca;
mod report;
mod standalone;
mod test_run_cost;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::report::{Report, Table};

#[derive(Parser)]
#[command(name = "x0-bench", about = "x0tta6bl4 benchmarks (need root)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every benchmark below in one run; writes DIR/performance.json and DIR/PERFORMANCE.md.
    All {
        /// Fewer repetitions and smaller tables (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Where the JSON and the Markdown go.
        #[arg(long, default_value = "docs")]
        out_dir: PathBuf,
    },
    /// Regenerates DIR/PERFORMANCE.md from DIR/performance.json.
    Render {
        #[arg(long, default_value = "docs")]
        out_dir: PathBuf,
    },
    /// Forwarding rate through one router: x0tta6bl4 vs the kernel vs XDP_DROP (XDP live-frames generator).
    Forwarding {
        #[arg(long)]
        quick: bool,
    },
    /// Per-packet cost of the forwarding program (BPF_PROG_TEST_RUN) with 10, 10k and 1M
    /// IPv4 routes (and 1M with policy), beside a trivial XDP_PASS program.
    TestRunCost {
        /// Fewer batches and at most 10k routes: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Also put the table into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Per-packet cost of policy (0, 100, 10,000 rules; 1,000 identities) beside
    /// forwarding without policy.
    PolicyCost {
        #[arg(long)]
        quick: bool,
    },
    /// Route programming over the gRPC API (batch rate, single-update round trips) beside
    /// the kernel's own route programming.
    ControlPlane {
        #[arg(long)]
        quick: bool,
    },
    /// Failover outage on the diamond lab, per failure type: x0tta6bl4, FRR (OSPF + BFD)
    /// and babeld.
    Failover {
        /// Repetitions per failure type.
        #[arg(long, default_value_t = 20)]
        reps: u32,
    },
    /// Peak memory of the dataplane (1M routes, 10k rules) and the brain (1,000 routers).
    Memory {
        #[arg(long)]
        quick: bool,
        /// Also put the tables into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// A chaos soak: a random mesh with discovery (40 routers; 12 with --quick), random
    /// events from the seed, every host pair checked after each.
    Chaos {
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also put the table into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// A router joining and one dying on the diamond: x0tta6bl4 with discovery beside
    /// babeld (hello 1 s and 100 ms).
    Join {
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// Also put the tables into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Link-state flooding in one process (the brain's real database and flooding rule,
    /// in-memory transport, simulated time): random geometric meshes of each size, one
    /// link failure and a partition healing.
    Flooding {
        #[arg(long, value_delimiter = ',', default_values_t = [200usize, 1000])]
        routers: Vec<usize>,
        /// One mesh per seed.
        #[arg(long, value_delimiter = ',', default_values_t = [1u64, 2, 3])]
        seeds: Vec<u64>,
        /// One-way delay of every link, in milliseconds.
        #[arg(long, default_value_t = 1.0)]
        link_ms: f64,
        /// Also put the tables into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// The API under HTTP/2 and TLS abuse: a healthy client's p99 and the dataplane's
    /// memory during each attack, beside the client alone.
    ApiAbuse {
        /// Also put the tables into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// BFD with FRR bfdd and BIRD 2: time to declare the peer down after 20 link cuts each.
    BfdInterop {
        /// Also put the table into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// The fast path against its reference model (x0-model) on generated frames.
    Differential {
        #[arg(long, default_value_t = 1_000_000)]
        cases: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also put the table into DIR/performance.json and regenerate DIR/PERFORMANCE.md.
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// The brain's disjoint paths on 1,000 routers beside the naive computation.
    Paths {
        #[arg(long)]
        quick: bool,
    },
    /// Runs `x0_forward` through BPF_PROG_TEST_RUN for SECS seconds on one table, for a
    /// profiler to watch (`perf record -e cpu-clock -a -- x0-bench test-run-loop ...`).
    TestRunLoop {
        #[arg(long, default_value_t = 1_000_000)]
        routes: u32,
        /// Only /24 prefixes instead of every length from /16 to /32.
        #[arg(long)]
        slash24: bool,
        /// 10,000 rules in force, on an established flow.
        #[arg(long)]
        policy: bool,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
    /// The brain's anomaly detectors on held-out lab incidents (`x0-lab incidents`):
    /// GraphSAGE f32 / INT8 beside the MAPE-K thresholds and a z-score.
    Detect {
        /// Datasets to train and calibrate on.
        #[arg(long, default_values = ["bench/data/incidents/six-seed1", "bench/data/incidents/mesh12-seed3"])]
        train: Vec<PathBuf>,
        /// Held-out datasets (another seed and topology) to judge on.
        #[arg(long, default_values = ["bench/data/incidents/mesh12-seed2", "bench/data/incidents/mesh14-seed4", "bench/data/incidents/mesh10-seed5"])]
        test: Vec<PathBuf>,
        /// Fewer training epochs (under 3 minutes in all).
        #[arg(long)]
        quick: bool,
        /// GraphSAGE's training epochs (default 40; 10 with --quick).
        #[arg(long)]
        epochs: Option<usize>,
        /// GraphSAGE's hidden size.
        #[arg(long, default_value_t = 16)]
        hidden: usize,
        /// GraphSAGE's training seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One JSON object per model.
        #[arg(long)]
        json: bool,
        /// Also write the results as Markdown (docs/DETECTION.md).
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Gray failures (partial loss, one-way loss, a starved router) on the six-router lab:
    /// time until a stream's loss is back under 0.1 %, beside babeld and FRR.
    Gray {
        /// One repetition per case, 20 s faults.
        #[arg(long)]
        quick: bool,
        /// Also put the tables into DIR/performance.json and regenerate DIR/PERFORMANCE.md
        /// (docs: the run is too long for scripts/bench.sh).
        #[arg(long)]
        into: Option<PathBuf>,
        /// Only these stacks (x0, babeld, frr; default all).
        #[arg(long)]
        stack: Vec<String>,
    },
    /// Root-cause analysis on held-out lab incidents: ours beside NSigma, BARO, a path vote
    /// and a random pick (AC@1, AC@3, Avg@5; two simultaneous faults; incidents per fault).
    Rca(rca::Options),
    /// The forwarding benchmark's traffic generator (run inside the sending namespace).
    Generate {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        src_mac: String,
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src: std::net::Ipv4Addr,
        #[arg(long)]
        dst: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 1)]
        flows: u16,
        #[arg(long)]
        secs: f64,
        /// The wait before each frame to start at, in ns (0: none); paced after.
        #[arg(long, default_value_t = 0,
              value_parser = clap::value_parser!(u16).range(..=i64::from(x0_common::gen_frame::MAX_GAP)))]
        gap: u16,
        /// Keep the gap as given instead of pacing.
        #[arg(long)]
        unpaced: bool,
        /// The router's receive core: the pacing offers more while it idles.
        #[arg(long)]
        router_cpu: Option<u32>,
    },
}

type Step = (&'static str, Box<dyn Fn() -> Result<Vec<Table>>>);

fn steps(quick: bool) -> Vec<Step> {
    vec![
        ("forwarding rate", Box::new(move || forwarding::run(quick))),
        (
            "per-packet cost",
            Box::new(move || Ok(vec![test_run_cost::run(quick)?])),
        ),
        (
            "policy cost",
            Box::new(move || Ok(vec![policy_cost::run(quick)?])),
        ),
        (
            "failover",
            Box::new(move || failover::run(if quick { 2 } else { 20 })),
        ),
        ("control plane", Box::new(move || control_plane::run(quick))),
        ("memory", Box::new(move || memory::run(quick))),
        (
            "brain paths",
            Box::new(move || Ok(vec![paths::run(quick)?])),
        ),
    ]
}

fn all(quick: bool, out_dir: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    let steps = steps(quick);
    let mut tables = Vec::new();
    for (i, (name, step)) in steps.iter().enumerate() {
        eprintln!(
            "[{}/{}] {name} ({:.0} s so far)",
            i + 1,
            steps.len(),
            started.elapsed().as_secs_f64()
        );
        for t in step()? {
            t.print();
            tables.push(t);
        }
    }
    let report = Report {
        date: report::now_utc(),
        machine: report::machine(),
        kernel: report::kernel(),
        command: format!("./scripts/bench.sh{}", if quick { " --quick" } else { "" }),
        quick,
        tables,
    };
    std::fs::create_dir_all(out_dir)?;
    report.save_json(&out_dir.join("performance.json"))?;
    std::fs::write(out_dir.join("PERFORMANCE.md"), report.markdown())?;
    eprintln!(
        "done in {:.0} s: {} and {}",
        started.elapsed().as_secs_f64(),
        out_dir.join("performance.json").display(),
        out_dir.join("PERFORMANCE.md").display()
    );
    Ok(())
}

fn print(tables: Result<Vec<Table>>) -> Result<()> {
    for t in tables? {
        t.print();
    }
    Ok(())
}

/// Prints the tables and, with `into`, merges them into that directory's report.
fn print_into(tables: Result<Vec<Table>>, into: Option<PathBuf>) -> Result<()> {
    let tables = tables?;
    for t in &tables {
        t.print();
    }
    match into {
        Some(dir) => Report::merge_into(&dir, &tables),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::All { quick, out_dir } => all(quick, &out_dir),
        Command::Render { out_dir } => Report::load_json(&out_dir.join("performance.json"))
            .and_then(|r| {
                Ok(std::fs::write(
                    out_dir.join("PERFORMANCE.md"),
                    r.markdown(),
                )?)
            }),
        Command::Forwarding { quick } => print(forwarding::run(quick)),
        Command::TestRunCost { quick, into } => {
            print_into(test_run_cost::run(quick).map(|t| vec![t]), into)
        }
        Command::TestRunLoop {
            routes,
            slash24,
            policy,
            secs,
        } => test_run_cost::run_loop(routes, slash24, policy, secs),
        Command::Failover { reps } => print(failover::run(reps)),
        Command::PolicyCost { quick } => print(policy_cost::run(quick).map(|t| vec![t])),
        Command::ControlPlane { quick } => print(control_plane::run(quick)),
        Command::Memory { quick, into } => print_into(memory::run(quick), into),
        Command::BfdInterop { into } => print_into(bfd_interop::run().map(|t| vec![t]), into),
        Command::Differential { cases, seed, into } => {
            print_into(differential::run(cases, seed).map(|t| vec![t]), into)
        }
        Command::ApiAbuse { into } => print_into(api_abuse::run(), into),
        Command::Paths { quick } => print(paths::run(quick).map(|t| vec![t])),
        Command::Chaos { quick, seed, into } => print_into(chaos::run(quick, seed), into),
        Command::Join { reps, into } => print_into(join::run(reps), into),
        Command::Flooding {
            routers,
            seeds,
            link_ms,
            into,
        } => print_into(flooding::tables(&routers, &seeds, link_ms), into),
        Command::Detect {
            train,
            test,
            quick,
            epochs,
            hidden,
            seed,
            json,
            markdown,
        } => {
            let options = detect::Options {
                train,
                test,
                epochs: epochs.unwrap_or(if quick {
                    10
                } else {
                    x0_brain::models::train::TrainConfig::default().epochs
                }),
                hidden,
                seed,
                json,
                markdown,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            detect::run(&options)
        }
        Command::Gray { quick, into, stack } => gray::run(quick, &stack).and_then(|tables| {
            for t in &tables {
                t.print();
            }
            match into {
                Some(dir) if stack.is_empty() => Report::merge_into(&dir, &tables),
                Some(dir) => Report::merge_rows_into(&dir, &tables),
                None => Ok(()),
            }
        }),
        Command::Rca(mut o) => {
            o.command = std::env::args().collect::<Vec<_>>().join(" ");
            rca::run(&o)
        }
        Command::Generate {
            iface,
            src_mac,
            dst_mac,
            src,
            dst,
            flows,
            secs,
            gap,
            unpaced,
            router_cpu,
        } => (|| {
            let spec = generator::Spec {
                iface,
                src_mac: generator::parse_mac(&src_mac)?,
                dst_mac: generator::parse_mac(&dst_mac)?,
                src,
                dst,
                flows: flows.max(1),
                duration: std::time::Duration::from_secs_f64(secs),
                gap,
                paced: !unpaced,
                router_cpu,
            };
            let sent = generator::run(&spec)?;
            println!("offered {} gap {}", sent.offered, sent.gap);
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x0-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
