//! The small-router map profile beside the default: every BPF map's kernel charge
//! (memlock) with 10,000 routes and 1,000 rules loaded through the API, in the same run.

use std::path::Path;

use anyhow::{Context, Result};
use x0_dataplane::map_sizes::{MapsConfig, Profile};
use x0_lab::{Lab, Topology, lab::default_dataplane_bin, netns};
use x0ctl::client::Target;

use crate::{
    memory::{load_dataplane, maps_memlock_mib},
    report::{Row, Table},
};

const ROUTES: u32 = 10_000;
const RULES: usize = 1_000;

/// r1 of the line lab with `maps`, loaded: its maps' memlock, MiB.
fn loaded_memlock(maps: MapsConfig) -> Result<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let mut topo = Topology::from_file(&path)?;
    topo.routers[0].maps = maps;
    let lab = Lab::up(
        &format!("x0p{}", std::process::id() % 100_000),
        topo,
        default_dataplane_bin()?,
    )?;
    let pid = lab.pid("r1").context("r1's dataplane pid")?.as_raw();
    let target = Target {
        addr: format!("unix://{}", lab.api_socket("r1").display()),
        svid: None,
        pq: x0_identity::PqMode::Required,
        server_id: None,
    };
    netns::in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(load_dataplane(target, ROUTES, RULES))
    })?;
    maps_memlock_mib(pid)
}

pub fn run(quick: bool) -> Result<Table> {
    let reps = if quick { 1 } else { 2 };
    let (mut default, mut small) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        eprintln!("  memory: map profiles, run {}/{reps}", rep + 1);
        default.push(loaded_memlock(MapsConfig::default())?);
        small.push(loaded_memlock(MapsConfig {
            profile: Profile::Small,
            ..Default::default()
        })?);
    }
    let median = Row::new("", small.clone()).median();
    Ok(Table {
        id: "memory-map-profiles".into(),
        title: format!("Memory: the maps with {ROUTES} routes and {RULES} rules, by profile"),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench memory{}",
            if quick { " --quick" } else { "" }
        ),
        about: format!(
            "Every BPF map's charge as the kernel accounts it (fdinfo memlock, each map once, \
             preallocated ones included) of r1's x0-dataplane in the line lab after {ROUTES} \
             IPv4 /24 routes and a policy of {RULES} rules among 1,000 identities went in \
             through the API: the default maps (an Internet table: 2M IPv4 and 1M IPv6 \
             routes, 262,144 flows per family, the 64 MiB IPv4 direct table) beside \
             `[maps] profile = \"small\"` (16,384 IPv4 and 8,192 IPv6 routes, 16,384 flows, \
             no direct table). The per-packet cost of the small profile's lookups is in the \
             per-packet table (`x0_forward, 10000 routes (mixed), small profile`)."
        ),
        unit: "MiB".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("default maps (baseline)", default).baseline(),
            Row::new("small-router profile", small),
        ],
        goal: "small profile <= 48 MiB".into(),
        verdict: format!(
            "{median:.1} MiB: {}",
            if median <= 48.0 { "met" } else { "not met" }
        ),
        notes: vec![],
    })
}
