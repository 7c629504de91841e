//! `x0-lab`: build a topology of namespaces and run x0-dataplane in its routers.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use x0_lab::{Lab, Topology, lab::default_dataplane_bin, traffic};

#[derive(Parser)]
#[command(name = "x0-lab", about = "x0tta6bl4 network-namespace lab")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the topology and start every router's x0-dataplane; leaves it running.
    Up {
        /// A topology file ...
        #[arg(required_unless_present = "routers")]
        topology: Option<PathBuf>,
        /// ... or a random geometric mesh of this many routers (3 to 200), from the seed.
        #[arg(long, conflicts_with = "topology")]
        routers: Option<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Lab name: namespaces are called NAME-NODE.
        #[arg(long, default_value = "x0lab")]
        name: String,
        #[arg(long)]
        dataplane_bin: Option<PathBuf>,
        /// Also start a brain beside every router (enforce mode) and wait until they agree.
        #[arg(long)]
        brains: bool,
        /// Drop the topology's routes and give the brains minimal configs: they find their
        /// neighbours by hellos (implies --brains).
        #[arg(long)]
        discover: bool,
    },
    /// Record a labelled incidents dataset (docs/DATASET.md): a mesh with brains, streams
    /// between its hosts, faults injected one at a time with their ground truth.
    Incidents(IncidentsArgs),
    /// Stop the daemons and remove everything the lab created.
    Down {
        #[arg(long, default_value = "x0lab")]
        name: String,
    },
    /// Print every router's counters (or one router's in full).
    Stats {
        router: Option<String>,
        #[arg(long, default_value = "x0lab")]
        name: String,
    },
    /// Send a UDP stream with sequence numbers between two nodes and report what arrived.
    Traffic {
        #[arg(long, default_value = "x0lab")]
        name: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Packets per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long)]
        ipv6: bool,
        /// Fail the link between two routers (\"r1-r2\") while the stream runs.
        #[arg(long)]
        fail: Option<String>,
        #[arg(long, value_enum, default_value = "carrier")]
        failure: x0_lab::faults::Failure,
        /// When to fail it, after the stream starts.
        #[arg(long, default_value_t = 500)]
        fail_after_ms: u64,
    },
    /// Repair a link failed by `traffic --fail`.
    Repair {
        #[arg(long, default_value = "x0lab")]
        name: String,
        /// The link, \"r1-r2\".
        link: String,
        #[arg(long, value_enum, default_value = "carrier")]
        failure: x0_lab::faults::Failure,
    },
    /// Ping between two nodes.
    Ping {
        #[arg(long, default_value = "x0lab")]
        name: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[arg(long)]
        ipv6: bool,
    },
    /// Run x0ctl against a router's API over mutual TLS, as the lab's operator
    /// (spiffe://lab.x0tta6bl4/orchestrator/lab): `x0-lab ctl r1 -- route list`.
    Ctl {
        #[arg(long, default_value = "x0lab")]
        name: String,
        router: String,
        /// Talk to the router's brain instead of its dataplane.
        #[arg(long)]
        brain: bool,
        /// x0ctl's arguments.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct IncidentsArgs {
    /// The mesh: a topology file ...
    #[arg(long, conflicts_with = "routers")]
    topology: Option<PathBuf>,
    /// ... or a random mesh of this many routers, from the seed.
    #[arg(long)]
    routers: Option<usize>,
    /// Decides the random mesh and the schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 14)]
    episodes: usize,
    /// Seconds each fault lasts, and the fault-free seconds after it.
    #[arg(long, default_value_t = 20)]
    fault_s: u64,
    #[arg(long, default_value_t = 20)]
    gap_s: u64,
    /// Where the dataset goes (a directory).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "x0inc")]
    name: String,
    #[arg(long)]
    dataplane_bin: Option<PathBuf>,
    /// Congestion among the fault kinds too (a new kind: without it, a seed gives the
    /// schedule it gave before, so the committed datasets stay reproducible).
    #[arg(long)]
    congestion: bool,
    /// Every this many faults, a second one at the same time on other routers (0: never).
    #[arg(long, default_value_t = 0)]
    double_every: usize,
}

/// A router's brain, from inside its namespace.
const BRAIN_ADDR: &str = "https://127.0.0.1:7444";

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x0-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            topology,
            routers,
            seed,
            name,
            dataplane_bin,
            brains,
            discover,
        } => {
            let mut topo = match (topology, routers) {
                (Some(t), _) => Topology::from_file(&t)?,
                (None, Some(n)) => x0_lab::random_mesh::random_mesh(n, seed)?,
                (None, None) => bail!("give a topology file or --routers N"),
            };
            if discover {
                topo = topo.discovering();
            }
            let brains = brains || discover;
            let bin = match dataplane_bin {
                Some(b) => b,
                None => default_dataplane_bin()?,
            };
            let lab = Lab::up(&name, topo, bin)?;
            for r in &lab.topo.routers {
                println!(
                    "{}: x0-dataplane running in netns {} (log {}/{}.log)",
                    r.name,
                    lab.ns(&r.name),
                    lab.dir.display(),
                    r.name
                );
            }
            for h in &lab.topo.hosts {
                println!("{}: netns {}", h.name, lab.ns(&h.name));
            }
            if brains {
                for r in &lab.topo.routers {
                    lab.start_brain(&r.name, x0_brain::config::Mode::Enforce)?;
                }
                let started = std::time::Instant::now();
                let first = lab.topo.routers[0].name.clone();
                loop {
                    let status = lab.x0ctl_at(&first, BRAIN_ADDR, &["--json", "brain", "status"]);
                    let known = status
                        .ok()
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                        .and_then(|v| v["routers"].as_array().map(|a| a.len()))
                        .unwrap_or(0);
                    if known == lab.topo.routers.len() {
                        break;
                    }
                    if started.elapsed() > std::time::Duration::from_secs(20) {
                        bail!(
                            "the brains did not learn the whole mesh in 20 s (logs: {}/brain-*.log)",
                            lab.dir.display()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                println!(
                    "brains: one per router, the whole mesh learned in {:.1?} (logs {}/brain-<router>.log)",
                    started.elapsed(),
                    lab.dir.display()
                );
            }
            lab.keep();
            Ok(())
        }
        Command::Down { name } => Lab::down_by_name(&name),
        Command::Incidents(args) => incidents(args),
        Command::Ctl {
            name,
            router,
            brain,
            args,
        } => {
            let lab = Lab::open(&name)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if brain {
                print!("{}", lab.x0ctl_at(&router, BRAIN_ADDR, &args)?);
            } else {
                print!("{}", lab.x0ctl(&router, &args)?);
            }
            Ok(())
        }
        Command::Stats { router, name } => {
            let lab = Lab::open(&name)?;
            match router {
                Some(r) => print!("{}", x0_lab::report::router_counters(&lab, &r)?),
                None => print!("{}", x0_lab::report::summary(&lab)?),
            }
            Ok(())
        }
        Command::Traffic {
            name,
            from,
            to,
            count,
            rate,
            ipv6,
            fail,
            failure,
            fail_after_ms,
        } => {
            let (lab, dst) = open_with_target(&name, &to, ipv6)?;
            println!("UDP {from} -> {to} ({dst}): {count} packets at {rate}/s");
            let r = std::thread::scope(|s| -> Result<traffic::StreamReport> {
                let stream =
                    s.spawn(|| traffic::udp_stream(&lab, &from, &to, dst, 9999, count, rate));
                if let Some(link) = &fail {
                    let (a, b) = link
                        .split_once('-')
                        .context("--fail wants a link like r1-r2")?;
                    std::thread::sleep(std::time::Duration::from_millis(fail_after_ms));
                    let at = x0_lab::faults::fail(&lab, a, b, failure)?;
                    let at = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    println!(
                        "  {failure:?} on {link} after {fail_after_ms} ms (at unix {}.{:06})",
                        at.as_secs(),
                        at.subsec_micros()
                    );
                }
                stream
                    .join()
                    .map_err(|_| anyhow::anyhow!("stream panicked"))?
            })?;
            println!(
                "  sent {}  received {}  lost {}  outage (lost x interval) {:.1?}  largest gap {:.1?}",
                r.sent,
                r.received,
                r.lost,
                r.outage(),
                r.max_gap
            );
            Ok(())
        }
        Command::Repair {
            name,
            link,
            failure,
        } => {
            let lab = Lab::open(&name)?;
            let (a, b) = link.split_once('-').context("a link like r1-r2")?;
            x0_lab::faults::repair(&lab, a, b, failure)
        }
        Command::Ping {
            name,
            from,
            to,
            count,
            ipv6,
        } => {
            let (lab, dst) = open_with_target(&name, &to, ipv6)?;
            let got = traffic::ping(&lab, &from, dst, count)?;
            println!("ping {from} -> {to} ({dst}): {got}/{count} replies");
            anyhow::ensure!(got == count, "{} pings lost", count - got);
            Ok(())
        }
    }
}

/// The running lab `name` and the address of node `to` in the chosen family.
fn open_with_target(name: &str, to: &str, ipv6: bool) -> Result<(Lab, std::net::IpAddr)> {
    let lab = Lab::open(name)?;
    let dst = lab
        .topo
        .addr_of(to, ipv6)
        .with_context(|| format!("{to} has no address of that family"))?;
    Ok((lab, dst))
}

/// `x0-lab incidents`: the mesh up, the schedule run, the dataset written.
fn incidents(a: IncidentsArgs) -> Result<()> {
    let (topo, label) = match (a.topology, a.routers) {
        (Some(t), _) => (Topology::from_file(&t)?, t.display().to_string()),
        (None, Some(n)) => (
            x0_lab::random_mesh::random_mesh(n, a.seed)?,
            format!("random:{n}:{}", a.seed),
        ),
        (None, None) => bail!("give --topology FILE or --routers N"),
    };
    let bin = match a.dataplane_bin {
        Some(b) => b,
        None => default_dataplane_bin()?,
    };
    let plan = x0_lab::incidents::Plan {
        seed: a.seed,
        episodes: a.episodes,
        fault: std::time::Duration::from_secs(a.fault_s),
        gap: std::time::Duration::from_secs(a.gap_s),
        warmup: std::time::Duration::from_secs(20),
        surge_every: 3,
        congestion: a.congestion,
        double_every: a.double_every,
    };
    let lab = Lab::up(&a.name, topo, bin)?;
    let labels = x0_lab::incidents::record(&lab, &label, &plan, &a.out)?;
    println!("{} episodes recorded in {}", labels.len(), a.out.display());
    Ok(())
}
