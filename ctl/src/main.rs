//! x0ctl: the operator CLI over x0tta6bl4's gRPC API, and the lab CA.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio_stream::StreamExt;
use x0_identity::{FileSource, IdPattern, PqMode, ca};
use x0_proto::dataplane::v1 as pb;
use x0ctl::{
    client::{Connection, Target, connect, rpc_error},
    incidents, routes,
};

#[derive(Parser)]
#[command(
    name = "x0ctl",
    version,
    about = "Operate x0tta6bl4 dataplanes over their gRPC API"
)]
struct Cli {
    /// unix:///run/x0tta6bl4/dataplane.sock or https://host:port (mutual TLS).
    #[arg(
        long,
        env = "X0CTL_ADDR",
        default_value = "unix:///run/x0tta6bl4/dataplane.sock",
        global = true
    )]
    addr: String,
    /// Our SVID (PEM chain), its key, and the trust bundle, for https://.
    #[arg(long, env = "X0CTL_CERT", global = true)]
    cert: Option<PathBuf>,
    #[arg(long, env = "X0CTL_KEY", global = true)]
    key: Option<PathBuf>,
    #[arg(long, env = "X0CTL_BUNDLE", global = true)]
    bundle: Option<PathBuf>,
    /// X25519MLKEM768: required, preferred or off.
    #[arg(long, env = "X0CTL_PQ", default_value = "required", global = true)]
    pq: PqMode,
    /// Accept only a server with this SPIFFE ID (pattern; default: our trust domain).
    #[arg(long, env = "X0CTL_SERVER_ID", global = true)]
    server_id: Option<IdPattern>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Routes: add, replace, del, list, batch.
    Route {
        #[command(subcommand)]
        what: RouteCmd,
    },
    /// Next hops with liveness and counters.
    Nexthop {
        #[command(subcommand)]
        what: ListCmd,
    },
    /// BFD sessions; BFD to a neighbour before any route uses it.
    Bfd {
        #[command(subcommand)]
        what: x0ctl::bfd::BfdCmd,
    },
    /// The zero-trust policy: get, or set from a TOML file.
    Policy {
        #[command(subcommand)]
        what: PolicyCmd,
    },
    /// Changes made with --confirm-within: list, confirm, roll back.
    Commit {
        #[command(subcommand)]
        what: x0ctl::commits::CommitCmd,
    },
    /// Counters (with --watch: every interval).
    Stats {
        #[arg(long, value_name = "MS")]
        watch: Option<u32>,
        /// Stop after this many (with --watch).
        #[arg(long, default_value_t = 0)]
        count: u32,
        #[arg(long)]
        all: bool,
    },
    /// Link, next-hop, BFD and failover events as they happen.
    Events {
        #[arg(long)]
        history: bool,
        /// Stop after this many (0: never).
        #[arg(long, default_value_t = 0)]
        count: u32,
    },
    /// What the fast path would do with a packet.
    Explain {
        #[arg(long = "in")]
        ingress: String,
        #[arg(long)]
        src: String,
        #[arg(long)]
        dst: String,
        #[arg(long, default_value = "udp")]
        proto: String,
        #[arg(long, default_value_t = 40000)]
        sport: u32,
        #[arg(long, default_value_t = 5000)]
        dport: u32,
    },
    /// Sampled drops as they happen.
    Drops {
        #[arg(long, default_value_t = 0)]
        count: u32,
    },
    /// grpc.health.v1 status, the peer's identity and the TLS key exchange.
    Health,
    /// Version, interfaces, table sizes.
    Info,
    /// A brain's view (--addr https://<brain>:7444): topology, paths per prefix, link-state counters.
    Brain {
        #[command(subcommand)]
        what: BrainCmd,
    },
    /// A lab trust domain: CA, SVIDs, revocation.
    Ca {
        #[command(subcommand)]
        what: CaCmd,
    },
}

#[derive(Subcommand)]
enum RouteCmd {
    Add {
        prefix: String,
        /// GATEWAY@INTERFACE, in preference order.
        #[arg(long, required = true)]
        via: Vec<String>,
    },
    Replace {
        prefix: String,
        #[arg(long, required = true)]
        via: Vec<String>,
    },
    Del {
        prefix: String,
    },
    List {
        /// config, api or local.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Applies a file of "add|replace PREFIX GW@IF...", "del PREFIX" lines all-or-nothing
    /// ("-": standard input).
    Batch {
        file: PathBuf,
        /// Undone by the dataplane unless `x0ctl commit confirm` within this many seconds.
        #[arg(long, value_name = "SECONDS")]
        confirm_within: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ListCmd {
    List,
}

#[derive(Subcommand)]
enum PolicyCmd {
    Get,
    /// TOML with [[identity]] (name, id, prefixes), [[rule]] (from, to, proto, ports,
    /// action, rate = { pps, burst }) and [[default]] (interface, action).
    Set {
        file: PathBuf,
        /// The policy before comes back unless `x0ctl commit confirm` within this many
        /// seconds.
        #[arg(long, value_name = "SECONDS")]
        confirm_within: Option<u32>,
    },
}

#[derive(Subcommand)]
enum BrainCmd {
    Status,
    /// The knowledge base's incidents (the last 100), one line each.
    Incidents,
    /// One incident: its causes, evidence, decision and outcome.
    Incident {
        id: u64,
    },
    /// Static mode: plan from this topology file instead of link state ("--clear": back).
    SetTopology {
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Creates a CA for a trust domain in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        trust_domain: String,
        #[arg(long, default_value = "3650d")]
        validity: humantime::Duration,
    },
    /// Issues an SVID: spiffe://<trust domain><PATH> into OUT/NAME.pem and NAME.key.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// e.g. /router/r1, /brain/r1, /orchestrator/o1
        #[arg(long)]
        path: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "30d")]
        validity: humantime::Duration,
        /// A DNS name beside the SPIFFE ID (repeatable), for clients that check a host name
        /// rather than a SPIFFE ID: grpcio's `grpc.ssl_target_name_override`, curl.
        #[arg(long = "dns")]
        dns_names: Vec<String>,
    },
    /// Revokes by serial or certificate file and re-signs the CRL.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, conflicts_with = "cert")]
        serial: Option<String>,
        #[arg(long)]
        cert: Option<PathBuf>,
    },
}

const MAX_MESSAGE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("x0ctl: {e:#}");
        std::process::exit(1);
    }
}

fn target(cli: &Cli) -> Result<Target> {
    let svid = match (&cli.cert, &cli.key, &cli.bundle) {
        (Some(cert), Some(key), Some(bundle)) => Some(FileSource {
            cert: cert.clone(),
            key: key.clone(),
            bundle: bundle.clone(),
            crls: Vec::new(),
        }),
        (None, None, None) => None,
        _ => bail!("--cert, --key and --bundle go together"),
    };
    Ok(Target {
        addr: cli.addr.clone(),
        svid,
        pq: cli.pq,
        server_id: cli.server_id.clone(),
    })
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Ca { what } = &cli.command {
        return run_ca(what);
    }
    let conn = connect(&target(&cli)?).await?;
    if let Command::Brain { what } = &cli.command {
        return match what {
            BrainCmd::Status => brain_status(&conn, cli.json).await,
            BrainCmd::Incidents => brain_incidents(&conn, cli.json).await,
            BrainCmd::Incident { id } => brain_incident(&conn, *id, cli.json).await,
            BrainCmd::SetTopology { file, clear } => {
                let topology_toml = match (file, clear) {
                    (Some(f), false) => std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?,
                    (None, true) => String::new(),
                    _ => bail!("give a topology file or --clear"),
                };
                let mut b =
                    x0_proto::brain::v1::brain_client::BrainClient::new(conn.channel.clone());
                let r = b
                    .set_topology(x0_proto::brain::v1::SetTopologyRequest {
                        topology_toml,
                        clear: *clear,
                    })
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                if *clear {
                    println!("back to link state");
                } else {
                    println!(
                        "static topology in force: {} routers, {} links",
                        r.routers, r.links
                    );
                }
                Ok(())
            }
        };
    }
    let mut dp = conn.dataplane(MAX_MESSAGE);
    let json = cli.json;
    match cli.command {
        Command::Route { what } => match what {
            RouteCmd::Add { prefix, via } => {
                let route = Some(routes::route(&prefix, &via)?);
                dp.add_route(pb::AddRouteRequest { route })
                    .await
                    .map_err(|s| rpc_error(&s))?;
                println!("added {prefix}");
            }
            RouteCmd::Replace { prefix, via } => {
                let route = Some(routes::route(&prefix, &via)?);
                let r = dp
                    .replace_route(pb::ReplaceRouteRequest { route })
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                println!("{} {prefix}", if r.created { "added" } else { "replaced" });
            }
            RouteCmd::Del { prefix } => {
                dp.delete_route(pb::DeleteRouteRequest {
                    prefix: prefix.clone(),
                })
                .await
                .map_err(|s| rpc_error(&s))?;
                println!("deleted {prefix}");
            }
            RouteCmd::List { origin } => {
                let origin = match origin.as_deref() {
                    None => pb::RouteOrigin::Unspecified,
                    Some("config") => pb::RouteOrigin::Config,
                    Some("api") => pb::RouteOrigin::Api,
                    Some("local") => pb::RouteOrigin::Local,
                    Some(o) => bail!("--origin {o:?}: config, api or local"),
                };
                let all = x0ctl::client::list_routes(&mut dp, origin)
                    .await
                    .map_err(|s| rpc_error(&s))?;
                if json {
                    let v: Vec<_> = all
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "prefix": r.prefix,
                                "origin": r.origin().as_str_name().trim_start_matches("ROUTE_ORIGIN_").to_lowercase(),
                                "next_hops": r.next_hops.iter().map(|n| serde_json::json!({"gateway": n.gateway, "interface": n.interface})).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    print_json(&v)?;
                } else {
                    println!(
                        "{:<44} {:<7} next hops (preference order)",
                        "prefix", "origin"
                    );
                    for r in &all {
                        let via: Vec<String> = r
                            .next_hops
                            .iter()
                            .map(|n| format!("{}@{}", n.gateway, n.interface))
                            .collect();
                        let origin = r
                            .origin()
                            .as_str_name()
                            .trim_start_matches("ROUTE_ORIGIN_")
                            .to_lowercase();
                        println!(
                            "{:<44} {:<7} {}",
                            r.prefix,
                            origin,
                            if via.is_empty() {
                                "(this router)".into()
                            } else {
                                via.join(" ")
                            }
                        );
                    }
                    println!("{} routes", all.len());
                }
            }
            RouteCmd::Batch {
                file,
                confirm_within,
            } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                let mut ops = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    if let Some(op) = routes::batch_line(line)
                        .with_context(|| format!("{}:{}", file.display(), n + 1))?
                    {
                        ops.push(op);
                    }
                }
                let count = ops.len();
                if let Some(s) = confirm_within {
                    let options = pb::BatchOptions {
                        confirm_within_s: s,
                    };
                    let first = pb::route_operation::Op::Options(options);
                    ops.insert(0, pb::RouteOperation { op: Some(first) });
                }
                let started = std::time::Instant::now();
                let r = dp
                    .batch_routes(tokio_stream::iter(ops))
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                let took = started.elapsed();
                if json {
                    print_json(
                        &serde_json::json!({"operations": count, "added": r.added, "replaced": r.replaced, "deleted": r.deleted, "seconds": took.as_secs_f64(), "commit": r.commit}),
                    )?;
                } else {
                    println!(
                        "applied {count} operations in {took:.2?}: {} added, {} replaced, {} deleted",
                        r.added, r.replaced, r.deleted
                    );
                    if let Some(s) = confirm_within {
                        println!("{}", x0ctl::commits::pending_note(r.commit, s));
                    }
                }
            }
        },
        Command::Nexthop { .. } => {
            let r = dp
                .list_next_hops(pb::ListNextHopsRequest {})
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            if json {
                print_json(&r.next_hops.iter().map(nexthop_json).collect::<Vec<_>>())?;
            } else {
                print_nexthops(&r.next_hops);
            }
        }
        Command::Bfd { what } => x0ctl::bfd::run(&mut dp, &what, json).await?,
        Command::Policy { what } => match what {
            PolicyCmd::Get => {
                let p = dp
                    .get_policy(pb::GetPolicyRequest {})
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                if json {
                    print_json(&policy_json(&p))?;
                } else {
                    println!(
                        "generation {} ({})",
                        p.generation,
                        if p.enabled {
                            "enabled"
                        } else {
                            "no rules or defaults: not enforced"
                        }
                    );
                    for i in &p.identities {
                        println!(
                            "identity {:<16} id {:<6} {}",
                            i.name,
                            i.id,
                            i.prefixes.join(" ")
                        );
                    }
                    for d in &p.defaults {
                        println!("default  {:<16} {}", d.interface, d.action);
                    }
                    for r in &p.rules {
                        let ports = if r.ports.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", r.ports)
                        };
                        let rate = r
                            .rate
                            .map(|r| format!(" rate {}/s burst {}", r.pps, r.burst))
                            .unwrap_or_default();
                        println!(
                            "rule {:<3} {:<5} {} -> {} {}{ports}{rate}   {} packets",
                            r.id, r.action, r.from, r.to, r.proto, r.packets
                        );
                    }
                }
            }
            PolicyCmd::Set {
                file,
                confirm_within,
            } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let policy =
                    policy_from_toml(&text).with_context(|| format!("{}", file.display()))?;
                let r = dp
                    .set_policy(pb::SetPolicyRequest {
                        policy: Some(policy),
                        confirm_within_s: confirm_within.unwrap_or(0),
                    })
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                if json {
                    print_json(
                        &serde_json::json!({"generation": r.generation, "commit": r.commit}),
                    )?;
                } else {
                    println!("policy generation {} in force", r.generation);
                    if let Some(s) = confirm_within {
                        println!("{}", x0ctl::commits::pending_note(r.commit, s));
                    }
                }
            }
        },
        Command::Stats { watch, count, all } => match watch {
            None => {
                let s = dp
                    .get_stats(pb::GetStatsRequest { include_zero: all })
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                print_stats(&s, json)?;
            }
            Some(ms) => {
                let mut stream = dp
                    .watch_stats(pb::WatchStatsRequest {
                        interval_ms: ms,
                        include_zero: all,
                    })
                    .await
                    .map_err(|s| rpc_error(&s))?
                    .into_inner();
                let mut n = 0;
                while let Some(s) = stream.next().await {
                    print_stats(&s.map_err(|s| rpc_error(&s))?, json)?;
                    n += 1;
                    if count != 0 && n >= count {
                        break;
                    }
                }
            }
        },
        Command::Events { history, count } => {
            let mut stream = dp
                .watch_events(pb::WatchEventsRequest {
                    include_history: history,
                })
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            let mut n = 0;
            while let Some(e) = stream.next().await {
                let e = e.map_err(|s| rpc_error(&s))?;
                print_event(&e, json)?;
                n += 1;
                if count != 0 && n >= count {
                    break;
                }
            }
        }
        Command::Explain {
            ingress,
            src,
            dst,
            proto,
            sport,
            dport,
        } => {
            let r = dp
                .explain(pb::ExplainRequest {
                    ingress,
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                })
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            if json {
                print_json(&serde_json::json!({
                    "verdict": r.verdict, "reason": r.reason, "next_hop": r.next_hop,
                    "src_identity": r.src_identity, "dst_identity": r.dst_identity, "rule_id": r.rule_id,
                    "conntrack_hit": r.conntrack_hit, "policy_checked": r.policy_checked}))?;
            } else {
                print!("{}", r.text);
            }
        }
        Command::Drops { count } => {
            let mut stream = dp
                .monitor_drops(pb::MonitorDropsRequest { max_events: count })
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            while let Some(d) = stream.next().await {
                let d = d.map_err(|s| rpc_error(&s))?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"unix_ns": d.unix_ns, "reason": d.reason, "interface": d.interface,
                        "proto": d.proto, "src": d.src, "sport": d.sport, "dst": d.dst, "dport": d.dport, "rule_id": d.rule_id})
                    );
                } else {
                    println!(
                        "drop {} on {} rule={} proto={} {}:{} -> {}:{}",
                        d.reason, d.interface, d.rule_id, d.proto, d.src, d.sport, d.dst, d.dport
                    );
                }
            }
        }
        Command::Health => health(&conn, json).await?,
        Command::Commit { what } => x0ctl::commits::run(&mut dp, &what, json).await?,
        Command::Info => {
            let i = dp
                .get_info(pb::GetInfoRequest {})
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            if json {
                print_json(&serde_json::json!({
                    "version": i.version, "pin_root": i.pin_root, "routes": i.routes, "route_capacity": i.route_capacity,
                    "fib_fallback": i.fib_fallback, "policy_generation": i.policy_generation, "caller": i.caller,
                    "interfaces": i.interfaces.iter().map(|f| serde_json::json!({"name": f.name, "ifindex": f.ifindex, "xdp_mode": f.xdp_mode, "up": f.up, "mac": f.mac, "mtu": f.mtu})).collect::<Vec<_>>()}))?;
            } else {
                println!(
                    "x0-dataplane {} (pins {}), you are {}",
                    i.version, i.pin_root, i.caller
                );
                println!(
                    "routes {} of {}, FIB fallback {}, policy generation {}",
                    i.routes, i.route_capacity, i.fib_fallback, i.policy_generation
                );
                for f in &i.interfaces {
                    println!(
                        "  {:<12} ifindex {:<4} {:<8} {:<4} {} mtu {}",
                        f.name,
                        f.ifindex,
                        f.xdp_mode,
                        if f.up { "up" } else { "down" },
                        f.mac,
                        f.mtu
                    );
                }
            }
        }
        Command::Ca { .. } | Command::Brain { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// The anomaly model and each router's telemetry: a few telling features, and our score.
fn print_telemetry(s: &x0_proto::brain::v1::Status) {
    println!("anomaly model: {}", s.model);
    // bfd_loss_max, rtt_max_log, brains_silent_frac, run_delay_frac (docs/DESIGN.md).
    let pick =
        |t: &x0_proto::brain::v1::Telemetry, i: usize| t.features.get(i).copied().unwrap_or(0.0);
    println!(
        "{:<10} {:>7} {:>9} {:>7} {:>7} {:>7} {:>6}",
        "router", "age ms", "bfd loss", "rtt", "silent", "cpu wait", "score"
    );
    for t in &s.telemetry {
        let score = match t.score {
            Some(x) if t.anomalous => format!("{x:.3} !"),
            Some(x) => format!("{x:.3}"),
            None => "-".into(),
        };
        println!(
            "{:<10} {:>7} {:>9.3} {:>7.3} {:>7.3} {:>7.3} {:>6}",
            t.router,
            t.age_ms,
            pick(t, 6),
            pick(t, 9),
            pick(t, 12),
            pick(t, 13),
            score
        );
    }
}

/// The brain's status (its view, counters and the last 100 incidents).
async fn fetch_brain_status(conn: &Connection) -> Result<x0_proto::brain::v1::Status> {
    let mut b = x0_proto::brain::v1::brain_client::BrainClient::new(conn.channel.clone());
    Ok(b.get_status(x0_proto::brain::v1::GetStatusRequest {})
        .await
        .map_err(|s| rpc_error(&s))?
        .into_inner())
}

async fn brain_status(conn: &Connection, json: bool) -> Result<()> {
    let s = fetch_brain_status(conn).await?;
    if json {
        return print_json(&serde_json::json!({
            "router": s.router, "mode": s.mode, "routers": s.routers, "links": s.links,
            "paths": s.paths.iter().map(|p| serde_json::json!({"prefix": p.prefix, "next_hops": p.next_hops})).collect::<Vec<_>>(),
            "unprotected": s.unprotected, "accepted": s.accepted, "rejected": s.rejected,
            "pushes": s.pushes, "last_push_unix_ns": s.last_push_unix_ns, "mapek": s.mapek, "source": s.source, "duplicates": s.duplicates,
            "incidents": s.incidents.iter().map(incidents::json).collect::<Vec<_>>(),
            "repair_times": s.repair_times.iter().map(|m| serde_json::json!({"kind": m.kind, "count": m.count, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms, "max_ms": m.max_ms})).collect::<Vec<_>>(),
            "link_quality": s.link_quality.iter().map(|l| serde_json::json!({"neighbor": l.neighbor, "rtt_ms": l.rtt_ms, "loss": l.loss,
                "utilisation": l.utilisation, "base_cost": l.base_cost, "cost": l.cost, "anomaly_score": l.anomaly_score})).collect::<Vec<_>>(),
            "model": s.model,
            "telemetry": s.telemetry.iter().map(|t| serde_json::json!({"router": t.router, "features": t.features,
                "age_ms": t.age_ms, "score": t.score, "anomalous": t.anomalous})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "brain of {} ({}, from {}): {} routers, {} links",
        s.router,
        s.mode,
        s.source,
        s.routers.len(),
        s.links.len()
    );
    println!("links: {}", s.links.join(", "));
    println!("{:<24} next hops (preference order)", "prefix");
    for p in &s.paths {
        println!("{:<24} {}", p.prefix, p.next_hops.join(" "));
    }
    println!("without a safe backup: {:?}", s.unprotected);
    println!("MAPE-K: {}", s.mapek);
    println!(
        "{:<10} {:>9} {:>7} {:>7} {:>5} {:>5} {:>6}",
        "neighbour", "rtt ms", "loss", "util", "base", "cost", "score"
    );
    for l in &s.link_quality {
        let score = l.anomaly_score.map_or("-".into(), |x| format!("{x:.3}"));
        println!(
            "{:<10} {:>9.3} {:>6.1}% {:>6.1}% {:>5} {:>5} {:>6}",
            l.neighbor,
            l.rtt_ms,
            l.loss * 100.0,
            l.utilisation * 100.0,
            l.base_cost,
            l.cost,
            score
        );
    }
    print_telemetry(&s);
    let mut rejected: Vec<_> = s.rejected.iter().collect();
    rejected.sort();
    println!(
        "link-state records: {} accepted, {} duplicates, rejected {:?}; {} pushes to the dataplane",
        s.accepted, s.duplicates, rejected, s.pushes
    );
    for i in &s.incidents {
        println!("{}", incidents::line(i));
    }
    for m in &s.repair_times {
        println!(
            "time to repair, {}: {} incidents, p50 {} ms, p99 {} ms, max {} ms",
            m.kind, m.count, m.p50_ms, m.p99_ms, m.max_ms
        );
    }
    Ok(())
}

async fn brain_incidents(conn: &Connection, json: bool) -> Result<()> {
    let s = fetch_brain_status(conn).await?;
    if json {
        let all: Vec<_> = s.incidents.iter().map(incidents::json).collect();
        return print_json(&all);
    }
    for i in &s.incidents {
        println!("{}", incidents::line(i));
    }
    if s.incidents.is_empty() {
        println!("no incidents");
    }
    Ok(())
}

async fn brain_incident(conn: &Connection, id: u64, json: bool) -> Result<()> {
    let mut b = x0_proto::brain::v1::brain_client::BrainClient::new(conn.channel.clone());
    let i = b
        .get_incident(x0_proto::brain::v1::GetIncidentRequest { id })
        .await
        .map_err(|s| rpc_error(&s))?
        .into_inner();
    if json {
        return print_json(&incidents::json(&i));
    }
    for line in incidents::describe(&i) {
        println!("{line}");
    }
    Ok(())
}

async fn health(conn: &Connection, json: bool) -> Result<()> {
    let mut h = tonic_health::pb::health_client::HealthClient::new(conn.channel.clone());
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: x0_proto::DATAPLANE_SERVICE.into(),
        })
        .await
        .map_err(|s| rpc_error(&s))?
        .into_inner();
    let status = tonic_health::pb::health_check_response::ServingStatus::try_from(r.status)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| r.status.to_string());
    let tls = conn.tls.lock().expect("tls info").clone();
    if json {
        print_json(&serde_json::json!({
            "status": status,
            "server_spiffe_id": tls.as_ref().map(|t| t.server_id.clone()),
            "key_exchange": tls.as_ref().map(|t| t.group.clone()),
        }))?;
    } else {
        println!("{}: {status}", x0_proto::DATAPLANE_SERVICE);
        match tls {
            Some(t) => println!(
                "server {} over TLS 1.3, key exchange {}",
                t.server_id, t.group
            ),
            None => println!("over the Unix socket"),
        }
    }
    Ok(())
}

fn run_ca(what: &CaCmd) -> Result<()> {
    match what {
        CaCmd::Init {
            dir,
            trust_domain,
            validity,
        } => {
            ca::init(dir, trust_domain, (*validity).into())?;
            println!(
                "CA for spiffe://{trust_domain} in {} (bundle.pem, crl.pem)",
                dir.display()
            );
        }
        CaCmd::Issue {
            dir,
            path,
            out,
            name,
            validity,
            dns_names,
        } => {
            let mut request = ca::IssueRequest::svid(path, out, name, (*validity).into());
            request.dns_names = dns_names.clone();
            let issued = ca::issue(dir, &request)?;
            println!(
                "{} serial {} -> {} {}",
                issued.spiffe_id.map(|i| i.to_string()).unwrap_or_default(),
                issued.serial,
                issued.cert_path.display(),
                issued.key_path.display()
            );
        }
        CaCmd::Revoke { dir, serial, cert } => {
            let target = match (serial, cert) {
                (Some(s), None) => ca::RevokeTarget::Serial(s.clone()),
                (None, Some(c)) => ca::RevokeTarget::Cert(c.clone()),
                _ => bail!("give --serial or --cert"),
            };
            ca::revoke(dir, &target)?;
            println!("revoked; {} re-signed", dir.join("crl.pem").display());
        }
    }
    Ok(())
}

fn nexthop_json(n: &pb::NextHopState) -> serde_json::Value {
    serde_json::json!({
        "id": n.id, "gateway": n.gateway, "interface": n.interface, "resolved": n.resolved, "mac": n.mac,
        "live": n.live, "state": n.state, "packets": n.packets, "bytes": n.bytes,
        "switches_to": n.switches_to, "switches_from": n.switches_from, "last_switch_unix_ns": n.last_switch_unix_ns})
}

fn print_nexthops(nhs: &[pb::NextHopState]) {
    println!(
        "{:>5} {:<26} {:<12} {:<5} {:<10} {:>12} {:>8} {:>8}",
        "id", "gateway", "interface", "live", "state", "packets", "to", "from"
    );
    for n in nhs {
        println!(
            "{:>5} {:<26} {:<12} {:<5} {:<10} {:>12} {:>8} {:>8}",
            n.id,
            n.gateway,
            n.interface,
            if n.live { "yes" } else { "no" },
            n.state,
            n.packets,
            n.switches_to,
            n.switches_from
        );
    }
}

fn print_stats(s: &pb::Stats, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "unix_ns": s.unix_ns,
            "reasons": s.reasons.iter().map(|r| serde_json::json!({"reason": r.reason, "packets": r.packets, "bytes": r.bytes})).collect::<Vec<_>>(),
            "interfaces": s.interfaces.iter().map(|i| serde_json::json!({"interface": i.interface, "rx_packets": i.rx_packets, "forwarded_packets": i.forwarded_packets, "passed_packets": i.passed_packets, "dropped_packets": i.dropped_packets, "tx_packets": i.tx_packets})).collect::<Vec<_>>(),
            "next_hops": s.next_hops.iter().map(nexthop_json).collect::<Vec<_>>(),
        }));
    }
    println!("{:<28} {:>14} {:>16}", "reason", "packets", "bytes");
    for r in &s.reasons {
        println!("{:<28} {:>14} {:>16}", r.reason, r.packets, r.bytes);
    }
    println!();
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "interface", "rx", "forwarded", "passed", "dropped", "tx"
    );
    for i in &s.interfaces {
        println!(
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            i.interface,
            i.rx_packets,
            i.forwarded_packets,
            i.passed_packets,
            i.dropped_packets,
            i.tx_packets
        );
    }
    println!();
    print_nexthops(&s.next_hops);
    Ok(())
}

fn print_event(e: &pb::Event, json: bool) -> Result<()> {
    use pb::event::Kind;
    let hop = |h: &Option<pb::NextHop>| {
        h.as_ref().map_or("none".to_string(), |h| {
            format!("{}@{}", h.gateway, h.interface)
        })
    };
    let (kind, detail) = match &e.kind {
        Some(Kind::Link(l)) => (
            "link",
            format!(
                "{} {} mtu {}",
                l.interface,
                if l.up { "up" } else { "down" },
                l.mtu
            ),
        ),
        Some(Kind::NextHop(n)) => (
            "nexthop",
            format!(
                "{}@{} {} -> {} ({})",
                n.gateway, n.interface, n.from, n.to, n.source
            ),
        ),
        Some(Kind::Bfd(b)) => (
            "bfd",
            format!(
                "{}@{} {} -> {} ({})",
                b.peer, b.interface, b.from, b.to, b.diagnostic
            ),
        ),
        Some(Kind::Failover(f)) => (
            "failover",
            format!("{} -> {} ({} sets)", hop(&f.from), hop(&f.to), f.sets),
        ),
        None => ("?", String::new()),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"unix_ns": e.unix_ns, "kind": kind, "detail": detail, "reason": e.reason})
        );
    } else {
        let t = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_nanos(e.unix_ns),
        );
        println!("{t} {kind:<9} {detail}  {}", e.reason);
    }
    Ok(())
}

fn policy_json(p: &pb::Policy) -> serde_json::Value {
    serde_json::json!({
        "generation": p.generation, "enabled": p.enabled,
        "identities": p.identities.iter().map(|i| serde_json::json!({"name": i.name, "id": i.id, "prefixes": i.prefixes})).collect::<Vec<_>>(),
        "defaults": p.defaults.iter().map(|d| serde_json::json!({"interface": d.interface, "action": d.action})).collect::<Vec<_>>(),
        "rules": p.rules.iter().map(|r| serde_json::json!({"id": r.id, "from": r.from, "to": r.to, "proto": r.proto, "ports": r.ports, "action": r.action,
            "rate": r.rate.map(|r| serde_json::json!({"pps": r.pps, "burst": r.burst})), "packets": r.packets})).collect::<Vec<_>>(),
    })
}

/// The policy file: the dataplane config's [[identity]] and [[rule]] tables, plus
/// [[default]] { interface, action }.
fn policy_from_toml(text: &str) -> Result<pb::Policy> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        identity: Vec<Ident>,
        #[serde(default)]
        rule: Vec<Rule>,
        #[serde(default)]
        default: Vec<Default>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ident {
        name: String,
        id: u32,
        prefixes: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        from: String,
        to: String,
        #[serde(default)]
        proto: String,
        #[serde(default)]
        ports: String,
        action: String,
        rate: Option<Rate>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rate {
        pps: u64,
        burst: u64,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Default {
        interface: String,
        action: String,
    }
    let f: File = toml::from_str(text)?;
    Ok(pb::Policy {
        identities: f
            .identity
            .into_iter()
            .map(|i| pb::Identity {
                name: i.name,
                id: i.id,
                prefixes: i.prefixes,
            })
            .collect(),
        rules: f
            .rule
            .into_iter()
            .map(|r| pb::Rule {
                from: r.from,
                to: r.to,
                proto: r.proto,
                ports: r.ports,
                action: r.action,
                rate: r.rate.map(|r| pb::RateLimit {
                    pps: r.pps,
                    burst: r.burst,
                }),
                packets: 0,
                id: 0,
            })
            .collect(),
        defaults: f
            .default
            .into_iter()
            .map(|d| pb::InterfaceDefault {
                interface: d.interface,
                action: d.action,
            })
            .collect(),
        generation: 0,
        enabled: false,
    })
}
