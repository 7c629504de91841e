//! x0-brain: computes this router's next-hop sets from the mesh and programs them into
//! its dataplane over the gRPC API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use x0_brain::{config::Mode, linkstate::mesh::Mesh, paths::plan::plan, paths::push};
use x0_identity::{FileSource, PqMode};
use x0ctl::client::{Target, connect};

#[derive(Parser)]
#[command(name = "x0-brain", version, about = "x0tta6bl4's brain")]
struct Cli {
    #[command(flatten)]
    logs: x0_ops::logs::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the brain beside its router: link state with the neighbours' brains, the plan
    /// pushed to the dataplane.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Checks a config file and exits.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// The next-hop plan of one router for a whole topology (static mode).
    Plan {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        router: String,
        /// Paths per destination.
        #[arg(long, default_value_t = 3)]
        k: usize,
        #[arg(long)]
        json: bool,
    },
    /// Computes the plan and pushes the difference to the router's dataplane.
    Push {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        router: String,
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// unix:///run/x0tta6bl4/dataplane.sock or https://host:port.
        #[arg(long, default_value = "unix:///run/x0tta6bl4/dataplane.sock")]
        dataplane: String,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "observe")]
        mode: Mode,
    },
    /// Trains an anomaly model on labelled incident datasets (`x0-lab incidents`),
    /// calibrates its alarm rule on them, and saves it.
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    #[arg(long = "dataset", required = true)]
    datasets: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Which model: the forest is the default (it beats GraphSAGE on held-out incidents:
    /// docs/DETECTION.md).
    #[arg(long, value_enum, default_value_t = ModelKind::Forest)]
    kind: ModelKind,
    /// GraphSAGE: quantise the weights to INT8 (about a quarter of the size).
    #[arg(long)]
    int8: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// GraphSAGE's training epochs.
    #[arg(long)]
    epochs: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModelKind {
    Forest,
    Graphsage,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    x0_ops::logs::init(cli.logs.log_format);
    if let Err(e) = run(cli).await {
        eprintln!("x0-brain: {e:#}");
        std::process::exit(1);
    }
}

fn read_config(path: &PathBuf) -> Result<x0_brain::config::BrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    x0_brain::config::BrainConfig::parse(&text)
        .with_context(|| format!("config {}", path.display()))
}

fn load(path: &PathBuf) -> Result<Mesh> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Mesh::parse(&text).with_context(|| format!("topology {}", path.display()))
}

/// `x0-brain train`: every dataset's intervals, one model, the alarm rule (threshold,
/// hold) with the best event-F1 on them, its file.
fn train(a: TrainArgs) -> Result<()> {
    use x0_brain::models::{baselines, dataset::Dataset, store};
    let datasets: Vec<Dataset> = a
        .datasets
        .iter()
        .map(|d| Dataset::load(d))
        .collect::<Result<_>>()?;
    let examples: Vec<_> = datasets.iter().flat_map(|d| d.examples()).collect();
    let positives = examples
        .iter()
        .flat_map(|e| &e.labels)
        .filter(|l| **l)
        .count();
    if examples.is_empty() || positives == 0 {
        anyhow::bail!(
            "the datasets hold {} intervals and {positives} faulty router-intervals: nothing to learn",
            examples.len()
        );
    }
    let (model, said) = fit(&a, &examples)?;
    // Calibration reads only the scores; the rule it returns is the model's.
    let trained = baselines::Trained {
        name: String::new(),
        model,
        rule: None,
        bytes: 0,
    };
    let rule = baselines::calibrate(&trained, &datasets);
    let file = store::ModelFile {
        model: trained.model,
        threshold: rule.threshold.min(1.0),
        hold: rule.hold,
        quantized: a.int8,
    };
    store::save(&a.out, &file)?;
    println!(
        "{} intervals, {positives} faulty router-intervals; {said}; threshold {:.3}, hold {}; {} ({} bytes)",
        examples.len(),
        file.threshold,
        file.hold,
        a.out.display(),
        std::fs::metadata(&a.out)?.len()
    );
    Ok(())
}

/// The model of the asked kind, fitted on `examples`, and a few words on how it went.
fn fit(
    a: &TrainArgs,
    examples: &[x0_brain::models::train::Example],
) -> Result<(x0_brain::models::store::Model, String)> {
    use x0_brain::models::{forest::Forest, store::Model, train};
    match a.kind {
        ModelKind::Forest => {
            let f = Forest::fit(examples, a.seed).context("the forest did not fit")?;
            Ok((Model::Forest(f), "forest".into()))
        }
        ModelKind::Graphsage => {
            let cfg = train::TrainConfig {
                epochs: a.epochs.unwrap_or(train::TrainConfig::default().epochs),
                seed: a.seed,
                ..Default::default()
            };
            let t = train::train(examples, &cfg);
            let said = format!(
                "graphsage, loss {:.4} -> {:.4}",
                t.losses.first().copied().unwrap_or(0.0),
                t.losses.last().copied().unwrap_or(0.0)
            );
            let model = if a.int8 {
                train::quantize(t.model)
            } else {
                t.model
            };
            Ok((Model::Sage(Box::new(model)), said))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(a)?,
        Command::Run { config } => x0_brain::daemon::run(read_config(&config)?).await?,
        Command::Check { config } => {
            let c = read_config(&config)?;
            let discovery = c.discovery.as_ref().map_or("off".to_string(), |d| {
                format!("on {}", d.interfaces.join(", "))
            });
            println!(
                "ok: router {}, {} static neighbours, discovery {discovery}",
                c.router,
                c.neighbors.len()
            );
        }
        Command::Plan {
            topology,
            router,
            k,
            json,
        } => {
            let mesh = load(&topology)?;
            let me = mesh.index(&router)?;
            let p = plan(&mesh.graph, me, k);
            let routes = mesh.routes(me, &p);
            if json {
                let v: Vec<_> = routes
                    .iter()
                    .map(|(prefix, via)| {
                        serde_json::json!({"prefix": prefix.to_string(),
                            "next_hops": via.iter().map(|(g, i)| format!("{g}@{i}")).collect::<Vec<_>>()})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "routes": v,
                        "unprotected": p.unprotected.iter().map(|d| &mesh.names[*d]).collect::<Vec<_>>(),
                        "articulation_points": p.articulation_points.iter().map(|d| &mesh.names[*d]).collect::<Vec<_>>(),
                        "bridges": p.bridges.iter().map(|(a, b)| format!("{}-{}", mesh.names[*a], mesh.names[*b])).collect::<Vec<_>>(),
                    }))?
                );
            } else {
                for (prefix, via) in &routes {
                    let hops: Vec<String> = via.iter().map(|(g, i)| format!("{g}@{i}")).collect();
                    println!("{prefix:<24} {}", hops.join(" "));
                }
                for (dest, hops) in &p.next_hops {
                    if !hops.common_links.is_empty() || !hops.refused.is_empty() {
                        let links: Vec<String> = hops
                            .common_links
                            .iter()
                            .map(|(a, b)| format!("{}-{}", mesh.names[*a], mesh.names[*b]))
                            .collect();
                        let refused: Vec<&str> = hops
                            .refused
                            .iter()
                            .map(|n| mesh.names[*n].as_str())
                            .collect();
                        println!(
                            "to {}: single points of failure {:?}; backups refused as loops: {:?}",
                            mesh.names[*dest], links, refused
                        );
                    }
                }
                let unprotected: Vec<&str> = p
                    .unprotected
                    .iter()
                    .map(|d| mesh.names[*d].as_str())
                    .collect();
                println!("without a safe backup: {unprotected:?}");
                let points: Vec<&str> = p
                    .articulation_points
                    .iter()
                    .map(|d| mesh.names[*d].as_str())
                    .collect();
                let bridges: Vec<String> = p
                    .bridges
                    .iter()
                    .map(|(a, b)| format!("{}-{}", mesh.names[*a], mesh.names[*b]))
                    .collect();
                println!(
                    "mesh-wide single points of failure: routers {points:?}, links {bridges:?}"
                );
            }
        }
        Command::Push {
            topology,
            router,
            k,
            dataplane,
            cert,
            key,
            bundle,
            mode,
        } => {
            let mesh = load(&topology)?;
            let me = mesh.index(&router)?;
            let wanted = mesh.routes(me, &plan(&mesh.graph, me, k));
            let svid = match (cert, key, bundle) {
                (Some(cert), Some(key), Some(bundle)) => Some(FileSource {
                    cert,
                    key,
                    bundle,
                    crls: Vec::new(),
                }),
                (None, None, None) => None,
                _ => anyhow::bail!("--cert, --key and --bundle go together"),
            };
            let conn = connect(&Target {
                addr: dataplane,
                svid,
                pq: PqMode::Required,
                server_id: None,
            })
            .await?;
            let mut dp = conn.dataplane(64 << 20);
            let n = push::sync(&mut dp, &wanted, mode).await?;
            let unchanged = wanted.len() - n;
            match mode {
                Mode::Observe => {
                    println!("observe: {n} to replace, {unchanged} unchanged; nothing changed")
                }
                Mode::Enforce => println!("enforce: {n} replaced, {unchanged} unchanged"),
            }
        }
    }
    Ok(())
}
