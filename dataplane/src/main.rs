//! `x0-dataplane`: run the fast path, read its counters, or remove it.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use x0_dataplane::{
    DEFAULT_PIN_ROOT,
    config::Config,
    counters::{CounterMaps, render},
    daemon::{self, RunOptions},
    netlink::Netlink,
};

#[derive(Parser)]
#[command(name = "x0-dataplane", version, about = "x0tta6bl4 XDP dataplane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load, attach and forward until SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// File to create once every interface is attached.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Detach the programs and remove the pins on exit. Without it the fast path keeps
        /// forwarding from the pinned maps, and the next `run` takes it over hitlessly.
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Check a config file and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the counters from the pinned maps.
    Stats {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also list counters that are zero.
        #[arg(long)]
        all: bool,
    },
    /// Detach the programs and remove every pin (run it with no daemon running).
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x0-dataplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            ready_file,
            detach_on_exit,
        } => {
            let config = Config::from_file(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(RunOptions {
                config,
                ready_file,
                detach_on_exit,
            }))
        }
        Command::Check { config } => {
            let c = Config::from_file(&config)?;
            println!(
                "ok: {} interfaces, {} routes",
                c.interfaces.len(),
                c.routes.len()
            );
            Ok(())
        }
        Command::Stats {
            pin_root,
            json,
            all,
        } => {
            let counters = CounterMaps::from_pins(&pin_root)?.read()?;
            let nexthops = x0_dataplane::counters::read_nexthops(&pin_root)?;
            if json {
                let all = serde_json::json!({ "reasons": counters.reasons, "interfaces": counters.interfaces, "nexthops": nexthops });
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let names: BTreeMap<u32, String> = Netlink::connect()
                    .and_then(|nl| nl.links())
                    .map(|ls| ls.into_iter().map(|l| (l.ifindex, l.name)).collect())
                    .unwrap_or_default();
                print!("{}", render(&counters, &names, all));
                println!();
                print!(
                    "{}",
                    x0_dataplane::counters::render_nexthops(&nexthops, &names)
                );
            }
            Ok(())
        }
        Command::Detach { pin_root } => {
            x0_dataplane::core::remove_all_pins(&pin_root)?;
            println!("detached; removed the pins under {}", pin_root.display());
            Ok(())
        }
    }
}
