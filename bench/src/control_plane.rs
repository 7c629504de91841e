//! Route programming over the gRPC API on a real dataplane (line lab): 10,000 routes in one
//! BatchRoutes stream, then single ReplaceRoute round trips (p50/p99 with hdrhistogram),
//! over the Unix socket and over mutual TLS; beside the kernel's own route programming of
//! the same 10,000 routes (`ip -batch`, netlink) in the same namespace, in the same run.
//! Goals (issue 7): >= 100,000 route updates/s in a batch, p99 single update <= 1 ms.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hdrhistogram::Histogram;
use x0_lab::{Lab, Topology, lab::default_dataplane_bin, netns};
use x0_proto::dataplane::v1::{self as pb, route_operation::Op};
use x0ctl::client::{Target, connect};

use crate::report::{Row, Table};

const ROUTES: u32 = 10_000;

fn prefix(i: u32) -> String {
    format!("10.{}.{}.0/24", 64 + (i >> 8), i & 255)
}

fn route(i: u32, flip: bool) -> pb::Route {
    let via = if flip {
        ["198.18.1.2@eth1".to_string(), "198.18.2.2@eth2".to_string()]
    } else {
        ["198.18.2.2@eth2".to_string(), "198.18.1.2@eth1".to_string()]
    };
    x0ctl::routes::route(&prefix(i), &via).expect("GATEWAY@INTERFACE")
}

struct Figures {
    batch: Duration,
    single: Histogram<u64>,
}

/// One batch of ROUTES adds, then `singles` replace round trips, then the routes removed.
async fn measure(target: Target, singles: u32) -> Result<Figures> {
    let conn = connect(&target).await?;
    let mut dp = conn.dataplane(64 << 20);
    let ops: Vec<pb::RouteOperation> = (0..ROUTES)
        .map(|i| pb::RouteOperation {
            op: Some(Op::Add(route(i, false))),
        })
        .collect();
    let started = Instant::now();
    let r = dp.batch_routes(tokio_stream::iter(ops)).await?.into_inner();
    let batch = started.elapsed();
    ensure!(r.added == u64::from(ROUTES), "batch added {}", r.added);
    let mut single = Histogram::<u64>::new(3)?;
    for n in 0..singles {
        let started = Instant::now();
        dp.replace_route(pb::ReplaceRouteRequest {
            route: Some(route(n % ROUTES, n % 2 == 0)),
        })
        .await?;
        single.record(started.elapsed().as_micros() as u64)?;
    }
    let ops: Vec<pb::RouteOperation> = (0..ROUTES)
        .map(|i| pb::RouteOperation {
            op: Some(Op::Delete(prefix(i))),
        })
        .collect();
    dp.batch_routes(tokio_stream::iter(ops)).await?;
    Ok(Figures { batch, single })
}

fn in_router(lab: &Lab, target: Target, singles: u32) -> Result<Figures> {
    netns::in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(measure(target, singles))
    })
}

/// The kernel programming the same routes through netlink, one `ip -batch`.
fn kernel_batch(lab: &Lab) -> Result<Duration> {
    let file = lab.dir.join("kernel-routes.batch");
    let add: String = (0..ROUTES)
        .map(|i| format!("route add {} via 198.18.2.2\n", prefix(i)))
        .collect();
    std::fs::write(&file, add)?;
    let started = Instant::now();
    netns::exec_ok(
        &lab.ns("r1"),
        &["ip", "-batch", file.to_str().expect("utf-8")],
    )?;
    let took = started.elapsed();
    let del: String = (0..ROUTES)
        .map(|i| format!("route del {}\n", prefix(i)))
        .collect();
    std::fs::write(&file, del)?;
    netns::exec_ok(
        &lab.ns("r1"),
        &["ip", "-batch", file.to_str().expect("utf-8")],
    )?;
    Ok(took)
}

pub fn run(quick: bool) -> Result<Vec<Table>> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let topo = Topology::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../netns-tests/topologies/line.toml"),
    )?;
    let lab = Lab::up("x0bench-cp", topo, default_dataplane_bin()?)?;
    // This measures the API, not its per-caller rate limit (1,000 requests/s by default,
    // which the single updates outrun): r1 runs with the limit out of the way.
    let mut api = lab.api_config("r1")?;
    api.requests_per_sec = 1_000_000;
    api.request_burst = 1_000_000;
    lab.set_api_config("r1", &api)?;
    lab.stop_dataplane("r1")?;
    lab.start_dataplane("r1")?;
    lab.wait_ready("r1", std::time::Duration::from_secs(20))?;
    let singles = if quick { 200 } else { 2_000 };
    let reps = if quick { 1 } else { 3 };
    let unix = Target {
        addr: format!("unix://{}", lab.api_socket("r1").display()),
        svid: None,
        pq: x0_identity::PqMode::Required,
        server_id: None,
    };
    let tls = lab.api_target(x0_lab::pki::OPERATOR);
    let mut kernel = Vec::new();
    let mut batch: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut single: Vec<(&str, Histogram<u64>)> = Vec::new();
    for rep in 0..reps {
        eprintln!("  control plane: run {}/{reps}", rep + 1);
        kernel.push(f64::from(ROUTES) / kernel_batch(&lab)?.as_secs_f64());
        for (name, target) in [
            ("gRPC, Unix socket", unix.clone()),
            ("gRPC, mutual TLS (X25519MLKEM768)", tls.clone()),
        ] {
            let f = in_router(&lab, target, singles)?;
            let rate = f64::from(ROUTES) / f.batch.as_secs_f64();
            match batch.iter_mut().find(|r| r.0 == name) {
                Some(row) => row.1.push(rate),
                None => batch.push((name, vec![rate])),
            }
            match single.iter_mut().find(|r| r.0 == name) {
                Some(row) => row.1.add(&f.single)?,
                None => single.push((name, f.single)),
            }
        }
    }
    drop(lab);
    let command = format!(
        "cargo build --release --workspace --bins && ./target/release/x0-bench control-plane{}",
        if quick { " --quick" } else { "" }
    );
    let mut rows = vec![Row::new("kernel FIB, `ip -batch` (netlink)", kernel).baseline()];
    rows.extend(
        batch
            .iter()
            .map(|(n, v)| Row::new(format!("{n}, one BatchRoutes stream"), v.clone())),
    );
    let best = batch
        .iter()
        .map(|(_, v)| Row::new("", v.clone()).median())
        .fold(f64::INFINITY, f64::min);
    let mut tables = vec![Table {
        id: "control-plane-batch".into(),
        title: "Route programming over the gRPC API: one batch".into(),
        command: command.clone(),
        about: format!(
            "r1 of the line lab; {ROUTES} routes (two next hops each) in one `BatchRoutes` \
             stream, over the Unix socket and over mutual TLS; baseline: the kernel programming \
             the same {ROUTES} routes into its FIB with `ip -batch` (netlink) in the same \
             namespace. {reps} runs."
        ),
        unit: "routes/s".into(),
        higher_is_better: true,
        rows,
        goal: ">= 100,000 route updates/s in a batch".into(),
        verdict: format!(
            "{best:.0}/s on the slower transport: {}",
            if best >= 100_000.0 { "met" } else { "not met" }
        ),
        notes: vec![],
    }];
    let mut notes = Vec::new();
    let mut worst_p99 = 0;
    let rows = single
        .iter()
        .map(|(n, h)| {
            let p99 = h.value_at_quantile(0.99);
            worst_p99 = worst_p99.max(p99);
            notes.push(format!(
                "{n}: p99 {p99} us (hdrhistogram over {} round trips)",
                h.len()
            ));
            // min / median / max straight from the histogram
            Row::new(
                format!("{n}, ReplaceRoute round trip"),
                vec![
                    h.min() as f64,
                    h.value_at_quantile(0.5) as f64,
                    h.max() as f64,
                ],
            )
        })
        .collect();
    tables.push(Table {
        id: "control-plane-single".into(),
        title: "Route programming over the gRPC API: single updates".into(),
        command,
        about: format!(
            "{singles} `ReplaceRoute` round trips per run after the batch ({reps} runs), \
             alternating two next-hop orders so that every call changes the route. The \
             three samples of each row are the histogram's min, median and max."
        ),
        unit: "us per update".into(),
        higher_is_better: false,
        rows,
        goal: "p99 single update <= 1 ms on loopback".into(),
        verdict: format!(
            "worst p99 {worst_p99} us: {}",
            if worst_p99 <= 1_000 { "met" } else { "not met" }
        ),
        notes,
    });
    Ok(tables)
}
