//! `x0-bench`: benchmarks that measure x0tta6bl4 beside a baseline measured in the same run.

mod control_plane;
mod failover;
mod policy_cost;
mod test_run_cost;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "x0-bench", about = "x0tta6bl4 benchmarks (need root)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-packet cost of the forwarding program (BPF_PROG_TEST_RUN) with 10, 10k and 1M
    /// IPv4 routes, beside a trivial XDP_PASS program.
    TestRunCost {
        /// Fewer batches and at most 10k routes: a smoke run.
        #[arg(long)]
        quick: bool,
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
    /// Failover outage on the diamond lab, per failure type, with p50/p99/max.
    Failover {
        /// Repetitions per failure type.
        #[arg(long, default_value_t = 20)]
        reps: u32,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::TestRunCost { quick } => test_run_cost::run(quick),
        Command::Failover { reps } => failover::run(reps),
        Command::PolicyCost { quick } => policy_cost::run(quick),
        Command::ControlPlane { quick } => control_plane::run(quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x0-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
