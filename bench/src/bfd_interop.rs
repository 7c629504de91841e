//! BFD against the two standard implementations users run beside us, FRR's bfdd and BIRD 2:
//! how long x0-dataplane takes to declare the peer down after the link under the session
//! is cut (everything r1 receives on the link dropped), 20 cuts each.

use std::{path::Path, time::Duration};

use anyhow::{Result, ensure};
use x0_dataplane::config::{BfdDefaults, BfdPeerConfig};
use x0_lab::{Lab, Topology, bird_bfd, frr::Bfdd, lab::default_dataplane_bin};

use crate::report::{Row, Table};

const CUTS: usize = 20;
/// multiplier x interval + 10 ms.
const GOAL_MS: f64 = 3.0 * 10.0 + 10.0;

/// The line lab with r1 running BFD at 10 ms x 3 to h2.
fn lab(tag: &str) -> Result<Lab> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let mut topo = Topology::from_file(&path)?;
    let r1 = &mut topo.routers[0];
    r1.bfd = Some(BfdDefaults::default());
    r1.bfd_peers = vec![BfdPeerConfig {
        address: "198.18.2.2".parse()?,
        settings: Default::default(),
    }];
    Lab::up(
        &format!("x0b{tag}{}", std::process::id() % 10_000),
        topo,
        default_dataplane_bin()?,
    )
}

fn cuts(lab: &Lab) -> Result<Vec<f64>> {
    let up = bird_bfd::wait_log(
        lab,
        "r1",
        &["peer=198.18.2.2", "to=Up"],
        std::time::SystemTime::UNIX_EPOCH,
        Duration::from_secs(15),
    );
    ensure!(up.is_some(), "the session never came up");
    std::thread::sleep(Duration::from_millis(500));
    (0..CUTS)
        .map(|_| {
            bird_bfd::kill_and_detect(lab, "r1", "eth2", "198.18.2.2")
                .map(|d| d.as_secs_f64() * 1000.0)
        })
        .collect()
}

pub fn run() -> Result<Table> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    eprintln!("  bfd-interop: FRR bfdd in h2, {CUTS} cuts");
    let frr = {
        let lab = lab("f")?;
        let _bfdd = Bfdd::start(&lab, "h2", &[("198.18.2.1", "198.18.2.2")], 10)?;
        cuts(&lab)?
    };
    eprintln!("  bfd-interop: BIRD 2 in h2, {CUTS} cuts");
    let bird = {
        let lab = lab("b")?;
        let _bird = bird_bfd::BirdBfd::start(&lab, "h2", "eth0", "198.18.2.1", 10)?;
        cuts(&lab)?
    };
    let worst = frr.iter().chain(&bird).copied().fold(0.0, f64::max);
    Ok(Table {
        id: "bfd-interop".into(),
        title: "BFD with FRR bfdd and BIRD 2: time to declare the peer down after a cut".into(),
        command:
            "cargo build --release --workspace --bins && ./target/release/x0-bench bfd-interop"
                .into(),
        about: format!(
            "r1 of the line lab runs BFD at 10 ms x 3 to h2, where FRR 8's bfdd (then, in a \
             fresh lab, BIRD 2.0's BFD protocol) runs the other end at the same timers. Each \
             of {CUTS} cuts swaps an XDP program that drops everything into r1's port \
             (the peer's packets stop arriving) and times, from the swap to the log line \
             of r1's dataplane, how long until it declares the session Down; then the link \
             is restored and the session comes Up before the next cut. The RFC's bound is \
             the detection time, 30 ms, after the last packet received."
        ),
        unit: "ms".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("x0-dataplane with FRR bfdd", frr),
            Row::new("x0-dataplane with BIRD 2", bird),
        ],
        goal: format!("every cut detected within multiplier x interval + 10 ms = {GOAL_MS:.0} ms"),
        verdict: format!(
            "worst of {}: {worst:.1} ms ({})",
            2 * CUTS,
            if worst <= GOAL_MS { "met" } else { "not met" }
        ),
        notes: vec![],
    })
}
