//! `x0-dataplane`: run the fast path, read its counters, or remove it.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
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
    #[command(flatten)]
    logs: x0_ops::logs::LogArgs,
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
    /// Run the live fast path on a packet you describe and print what decided its fate.
    Explain {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// The interface the packet arrives on.
        #[arg(long = "in")]
        ingress: String,
        #[arg(long)]
        src: String,
        #[arg(long)]
        dst: String,
        /// tcp (a SYN), udp or icmp (an echo request).
        #[arg(long, default_value = "udp")]
        proto: String,
        #[arg(long, default_value_t = 40000)]
        sport: u16,
        #[arg(long, default_value_t = 0)]
        dport: u16,
        /// The daemon's config, to name identities and rules.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Live streams from the fast path.
    Monitor {
        #[command(subcommand)]
        what: MonitorWhat,
    },
    /// Detach the programs and remove every pin (run it with no daemon running).
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// The protocol number of our routes in the kernel's FIB (`kernel_fib.protocol`).
        #[arg(long, default_value_t = x0_dataplane::kernel_fib::DEFAULT_PROTOCOL)]
        kernel_protocol: u8,
    },
}

#[derive(Subcommand)]
enum MonitorWhat {
    /// Sampled drop events (at most 1000/s per CPU): reason, rule, interface, 5-tuple.
    Drops {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// Stop after this many (0: run until interrupted).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    x0_ops::logs::init(cli.logs.log_format);
    match real_main(cli) {
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
            let config_path = Some(config.clone());
            let config = Config::from_file(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(RunOptions {
                config,
                config_path,
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
            let rules = x0_dataplane::counters::read_rule_hits(&pin_root)?;
            if json {
                let all = serde_json::json!({ "reasons": counters.reasons, "interfaces": counters.interfaces, "nexthops": nexthops, "rules": rules });
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
        Command::Explain {
            pin_root,
            ingress,
            src,
            dst,
            proto,
            sport,
            dport,
            config,
        } => {
            use x0_dataplane::{explain, policy};
            let probe = explain::Probe {
                ingress,
                src: policy::parse_addr(&src, "--src")?,
                dst: policy::parse_addr(&dst, "--dst")?,
                proto,
                sport,
                dport,
            };
            let e = explain::explain(&pin_root, &probe)?;
            let config = config.map(|c| Config::from_file(&c)).transpose()?;
            let compiled = config
                .as_ref()
                .map(|c| c.policy())
                .transpose()?
                .unwrap_or_default();
            let names: BTreeMap<u32, String> = Netlink::connect()
                .and_then(|nl| nl.links())
                .map(|ls| ls.into_iter().map(|l| (l.ifindex, l.name)).collect())
                .unwrap_or_default();
            let rules = config.as_ref().map_or(&[][..], |c| &c.rules[..]);
            let rule = |id: u32| policy::describe_rule(rules, id);
            print!(
                "{}",
                explain::render(
                    &probe,
                    &e,
                    &|id| policy::identity_name(&compiled.names, id),
                    &rule,
                    &|i| names
                        .get(&i)
                        .cloned()
                        .unwrap_or_else(|| format!("ifindex {i}"))
                )
            );
            Ok(())
        }
        Command::Monitor {
            what: MonitorWhat::Drops { pin_root, count },
        } => x0_dataplane::explain::monitor_drops(&pin_root, count, &mut std::io::stdout()),
        Command::Detach {
            pin_root,
            kernel_protocol,
        } => {
            x0_dataplane::core::remove_all_pins(&pin_root)?;
            println!("detached; removed the pins under {}", pin_root.display());
            let nl = x0_dataplane::netlink::Netlink::connect()?;
            let (routes, nexthops) = x0_dataplane::kernel_fib::clear(&nl, kernel_protocol)?;
            println!(
                "removed {routes} route(s) and {nexthops} nexthop(s) of protocol {kernel_protocol} from the kernel"
            );
            Ok(())
        }
    }
}
