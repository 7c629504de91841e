//! `x0-lab`: build a topology of namespaces and run x0-dataplane in its routers.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use x0_lab::{Lab, Topology, lab::default_dataplane_bin};

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
        topology: PathBuf,
        /// Lab name: namespaces are called NAME-NODE.
        #[arg(long, default_value = "x0lab")]
        name: String,
        #[arg(long)]
        dataplane_bin: Option<PathBuf>,
    },
    /// Stop the daemons and remove everything the lab created.
    Down {
        #[arg(long, default_value = "x0lab")]
        name: String,
    },
    /// Print a router's counters.
    Stats {
        router: String,
        #[arg(long, default_value = "x0lab")]
        name: String,
    },
}

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
            name,
            dataplane_bin,
        } => {
            let topo = Topology::from_file(&topology)?;
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
            lab.keep();
            Ok(())
        }
        Command::Down { name } => Lab::down_by_name(&name),
        Command::Stats { router, name } => {
            let pin_root = PathBuf::from(x0_lab::lab::LAB_ROOT)
                .join(&name)
                .join("bpf")
                .join(&router);
            let c = x0_dataplane::counters::CounterMaps::from_pins(&pin_root)?.read()?;
            print!(
                "{}",
                x0_dataplane::counters::render(&c, &Default::default(), false)
            );
            Ok(())
        }
    }
}
