//! Idle memory of x0tta6bl4's daemons on a router, beside the routing daemons users would
//! otherwise run there (babeld; BIRD 2 with its babel protocol), all in the same six-router
//! lab of one run: resident memory (VmRSS) once settled, and the dataplane's start-up peak.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use x0_brain::config::Mode;
use x0_lab::{Lab, Topology, lab::default_dataplane_bin, routing, traffic};

use crate::report::{Row, Table};

/// A field of /proc/<pid>/status (kB), in MiB.
pub(crate) fn status_mib(pid: i32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{field} of process {pid}"))?;
    Ok(kb / 1024.0)
}

fn pid_in(file: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds no pid", file.display()))
}

/// SIGTERM to every router's daemon of `what` (its pid file in the lab's daemon dir).
fn stop_all(lab: &Lab, what: &str) -> Result<()> {
    for r in &lab.topo.routers {
        let pid = pid_in(&lab.dir.join(format!("{what}-{}/{what}.pid", r.name)))?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

/// One run: (dataplane idle, dataplane start-up peak, brain idle, babeld, bird), MiB.
fn one_run(settle: Duration) -> Result<[f64; 5]> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/six.toml");
    let lab = Lab::up(
        &format!("x0i{}", std::process::id() % 100_000),
        Topology::from_file(&path)?,
        default_dataplane_bin()?,
    )?;
    for r in lab.topo.routers.clone() {
        lab.start_brain(&r.name, Mode::Enforce)?;
    }
    let h2 = lab.topo.addr_of("h2", false).context("h2's address")?;
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(30))?;
    std::thread::sleep(settle);
    let dataplane = lab.pid("r1").context("r1's dataplane")?.as_raw();
    let brain = pid_in(&lab.file("brain-r1", "pid"))?;
    let x0 = [
        status_mib(dataplane, "VmRSS")?,
        status_mib(dataplane, "VmHWM")?,
        status_mib(brain, "VmRSS")?,
    ];
    for r in lab.topo.routers.clone() {
        lab.stop_brain(&r.name, false)?;
    }
    routing::kernel_forwarding(&lab)?;
    routing::start_babeld(&lab, 1.0, &|_, _| 96)?;
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(60)).context("babeld's mesh")?;
    std::thread::sleep(settle);
    let babeld = status_mib(pid_in(&lab.dir.join("babeld-r1/babeld.pid"))?, "VmRSS")?;
    stop_all(&lab, "babeld")?;
    routing::start_bird(&lab, 1.0)?;
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(60)).context("BIRD's mesh")?;
    std::thread::sleep(settle);
    let bird = status_mib(pid_in(&lab.dir.join("bird-r1/bird.pid"))?, "VmRSS")?;
    stop_all(&lab, "bird")?;
    Ok([x0[0], x0[1], x0[2], babeld, bird])
}

pub fn run(quick: bool) -> Result<Table> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let reps = if quick { 1 } else { 3 };
    let settle = Duration::from_secs(if quick { 5 } else { 15 });
    let mut columns: [Vec<f64>; 5] = Default::default();
    for rep in 0..reps {
        eprintln!(
            "  memory: idle daemons in the six-router lab, run {}/{reps}",
            rep + 1
        );
        for (c, v) in columns.iter_mut().zip(one_run(settle)?) {
            c.push(v);
        }
    }
    let [dataplane, peak, brain, babeld, bird] = columns;
    let median = |v: &[f64]| Row::new("", v.to_vec()).median();
    let judge = |v: f64, goal: f64| if v <= goal { "met" } else { "not met" };
    let (d, b) = (median(&dataplane), median(&brain));
    let verdict = format!(
        "x0-dataplane {d:.1} MiB ({}), x0-brain {b:.1} MiB ({})",
        judge(d, 24.0),
        judge(b, 16.0)
    );
    Ok(Table {
        id: "memory-idle".into(),
        title: "Memory: each daemon idle on a router of the six-router lab".into(),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench memory{}",
            if quick { " --quick" } else { "" }
        ),
        about: format!(
            "Resident memory (VmRSS) of r1's daemons in the six-router lab (six.toml) once \
             the mesh forwards and {} s have passed: x0-dataplane (BFD at 10 ms x 3 on its \
             links, API and metrics on) and x0-brain (link state with its neighbours' \
             brains, paths pushed); then, on the same routers with the kernel forwarding, \
             babeld and BIRD 2 (its babel protocol), hellos every second, routes into the \
             kernel. Also the dataplane's start-up peak (VmHWM): aya's loader parses the \
             kernel's BTF (/sys/kernel/btf/vmlinux) before loading the programs.",
            settle.as_secs()
        ),
        unit: "MiB".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("babeld 1.12, idle (baseline)", babeld).baseline(),
            Row::new("BIRD 2.0 (babel), idle", bird),
            Row::new("x0-dataplane, idle", dataplane),
            Row::new("x0-dataplane, start-up peak (VmHWM)", peak),
            Row::new("x0-brain, idle", brain),
        ],
        goal: "x0-dataplane idle <= 24 MiB, x0-brain idle <= 16 MiB".into(),
        verdict,
        notes: vec![],
    })
}
