//! Forwarding rate through one router namespace (the line lab: h1 - r1 - h2), 64-byte
//! UDP frames from `x0-bench generate` (AF_PACKET, qdisc bypassed, sendmmsg; see
//! generator.rs) in h1, counted as they arrive on h2's interface; one flow and 1,000
//! flows (source ports).
//!
//! Three ways through the same ingress, each in a fresh lab: x0tta6bl4's XDP forwarding;
//! the kernel's own IP forwarding (dataplane stopped and detached, ip_forward=1, the same
//! NAPI path: GRO on the ingress veth); and XDP_DROP (`x0_drop` swapped into the ingress),
//! the ceiling of what the ingress can take at all, counted at the ingress.
//!
//! Cores: the generator is pinned to CPU 0; the router's ingress runs threaded NAPI pinned
//! to CPU 1 (its XDP, the kernel's forwarding, and the delivery into h2's veth all run
//! there): one receive core, away from the generator. A figure within 5% of what the
//! generator sent says "generator-limited": the router kept up, and the figure is a floor.

use std::{
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use x0_lab::{Lab, Topology, faults, lab::default_dataplane_bin, netns, traffic};

use crate::report::{Row, Table};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Kernel,
    X0,
    Drop,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "Linux IP forwarding (XDP detached)",
            Mode::X0 => "x0tta6bl4 XDP forwarding",
            Mode::Drop => "XDP_DROP on the same ingress (ceiling)",
        }
    }
}

/// One measurement: packets/s the generator sent, and that arrived (or, for the drop
/// ceiling, that the ingress took).
struct Sample {
    sent: f64,
    got: f64,
}

pub fn run(quick: bool) -> Result<Vec<Table>> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let (reps, secs) = if quick { (2, 2) } else { (5, 4) };
    let mut tables = Vec::new();
    for flows in [1u32, 1000] {
        let mut rows = Vec::new();
        let mut sent_by_mode: Vec<Vec<f64>> = Vec::new();
        let mut ratio_to_kernel = 0.0;
        let mut kernel_median = 0.0;
        let mut drop_median = 0.0;
        for mode in [Mode::Kernel, Mode::X0, Mode::Drop] {
            eprintln!("  forwarding: {} flow(s), {}", flows, mode.name());
            let lab = line_lab(mode)?;
            let mut got = Vec::new();
            let mut sent = Vec::new();
            for _ in 0..reps {
                let s = measure(&lab, mode, flows, Duration::from_secs(secs))?;
                got.push(s.got);
                sent.push(s.sent);
            }
            drop(lab);
            let row = Row::new(mode.name(), got.clone());
            let row = if mode == Mode::Kernel {
                row.baseline()
            } else {
                row
            };
            match mode {
                Mode::Kernel => kernel_median = row.median(),
                Mode::X0 => ratio_to_kernel = row.median(),
                Mode::Drop => drop_median = row.median(),
            }
            rows.push(row);
            sent_by_mode.push(sent);
        }
        // veth pushes back, so the generator sends what the router takes: a figure is
        // the generator's only if the generator ran at the most it ever reached (into
        // the drop program, which takes anything) and everything arrived.
        let sent_all = sent_by_mode.concat();
        let capacity = sent_all.iter().copied().fold(0.0, f64::max);
        for (row, sent) in rows.iter_mut().zip(sent_by_mode.iter()) {
            let limited = row
                .samples
                .iter()
                .zip(sent)
                .all(|(g, s)| *g >= 0.95 * *s && *s >= 0.95 * capacity);
            if limited {
                row.note = "generator-limited".into();
            }
        }
        rows.push(Row::new(
            "generator alone (what it sent, all runs)",
            sent_all,
        ));
        let x0 = ratio_to_kernel;
        let vs_kernel = x0 / kernel_median;
        let x0_limited = rows[1].note == "generator-limited";
        let mut notes = Vec::new();
        if drop_median < x0 {
            // The drop program drains the ring at once, so the generator's core wakes the
            // receive thread for nearly every batch and sends less: not the ingress's limit.
            rows[2].note = "generator-limited".into();
            notes.push(
                "XDP_DROP came out below forwarding: a receiver that drains the veth ring at \
                 once makes the generator's core wake it for nearly every batch (an IPI each), \
                 so the generator sends less. It is the generator's figure here, not the \
                 ingress's ceiling; the per-packet costs (BPF_PROG_TEST_RUN, below) compare \
                 forwarding with a trivial program without this effect."
                    .to_string(),
            );
        }
        if x0_limited {
            notes.push(format!(
                "x0tta6bl4 ran at the most this generator reached on its one core, so {vs_kernel:.2}x \
                 the kernel is a lower bound (veth pushes back: the sender sends what the router \
                 takes, and nothing was lost)."
            ));
        }
        let verdict = format!(
            "{:.2}x the kernel{} ({}); XDP_DROP ceiling: {}",
            vs_kernel,
            if x0_limited { " or more" } else { "" },
            if vs_kernel >= 3.0 {
                "met"
            } else if x0_limited {
                "not shown: the generator is the limit"
            } else {
                "not met"
            },
            if drop_median < x0 {
                "not measurable with this generator".to_string()
            } else {
                format!(
                    "{:.0}% of it ({})",
                    x0 / drop_median * 100.0,
                    if x0 >= 0.5 * drop_median {
                        "met"
                    } else {
                        "not met"
                    }
                )
            }
        );
        tables.push(Table {
            id: format!("forwarding-{flows}-flow{}", if flows > 1 { "s" } else { "" }),
            title: format!("Forwarding rate, {flows} flow{}", if flows > 1 { "s" } else { "" }),
            command: format!(
                "cargo build --release --workspace --bins && ./target/release/x0-bench forwarding{}",
                if quick { " --quick" } else { "" }
            ),
            about: format!(
                "The line lab (h1 - r1 - h2, veth pairs), 64-byte UDP frames from `x0-bench \
                 generate` (AF_PACKET, qdisc bypassed, sendmmsg) in h1 \
                 (pinned to CPU 0), {flows} flow{} (UDP source ports), counted on h2's interface \
                 over {secs} s after 0.5 s of warm-up, {reps} runs per way, each way in a fresh lab. \
                 r1's ingress runs threaded NAPI pinned to CPU 1 (one receive core for the router \
                 and the delivery to h2, which counts and drops in XDP). The kernel baseline is the same namespaces with the \
                 dataplane stopped and detached and ip_forward=1 (GRO on, so the same NAPI \
                 path); XDP_DROP is `x0_drop` in r1's ingress, counted there. Rows flagged \
                 generator-limited ran at the most the generator reached. veth is not a NIC: absolute rates are far below line rate \
                 on real hardware and bounded by the veth transmit path, which all three share.",
                if flows > 1 { "s" } else { "" }
            ),
            unit: "packets/s".into(),
            higher_is_better: true,
            rows,
            goal: "x0tta6bl4 >= 3x the kernel's packets/s, and >= half the XDP_DROP ceiling".into(),
            verdict,
            notes,
        });
    }
    Ok(tables)
}

/// A fresh line lab set up for `mode`, with neighbours resolved.
fn line_lab(mode: Mode) -> Result<Lab> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let lab = Lab::up(
        &format!("x0f{}", std::process::id() % 100_000),
        Topology::from_file(&path)?,
        default_dataplane_bin()?,
    )?;
    let h2 = lab.topo.addr_of("h2", false).context("h2's address")?;
    ensure!(
        traffic::ping(&lab, "h1", h2, 3)? > 0,
        "h1 cannot reach h2 before the benchmark"
    );
    let r1 = lab.ns("r1");
    match mode {
        Mode::X0 => {}
        Mode::Drop => {
            faults::drop_ingress(&lab, "r1", "eth1")?;
        }
        Mode::Kernel => {
            lab.stop_dataplane("r1")?;
            lab.detach_dataplane("r1")?;
            netns::exec_ok(&r1, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            // the same NAPI receive path XDP gets (veth takes NAPI with GRO or XDP)
            netns::exec_ok(&r1, &["ethtool", "-K", "eth1", "gro", "on"])?;
            ensure!(
                traffic::ping(&lab, "h1", h2, 3)? > 0,
                "the kernel does not forward h1 -> h2"
            );
        }
    }
    if mode != Mode::Drop {
        // The receiver counts and drops in XDP: its own stack would cost more than the
        // router and share the router's core (veth delivers on the sending core).
        faults::drop_ingress(&lab, "h2", "eth0")?;
    }
    pin_ingress_napi(&lab)?;
    Ok(lab)
}

/// Threaded NAPI on r1's ingress, its thread on CPU 1.
fn pin_ingress_napi(lab: &Lab) -> Result<()> {
    let r1 = lab.ns("r1");
    let before = napi_threads()?;
    netns::exec_ok(&r1, &["sh", "-c", "echo 1 > /sys/class/net/eth1/threaded"])?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let new: Vec<u32> = napi_threads()?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() {
            for pid in new {
                netns::run(Command::new("taskset").args(["-pc", "1", &pid.to_string()]))?;
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no NAPI thread appeared for r1's eth1");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn napi_threads() -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let e = e?;
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with("napi/eth1-") {
            out.push(pid);
        }
    }
    Ok(out)
}

fn counter(lab: &Lab, node: &str, iface: &str, name: &str) -> Result<u64> {
    let text = netns::exec_ok(
        &lab.ns(node),
        &["cat", &format!("/sys/class/net/{iface}/statistics/{name}")],
    )?;
    text.trim().parse().context("counter")
}

/// What XDP dropped on an interface, from veth's own statistics.
fn xdp_drops(lab: &Lab, node: &str, iface: &str) -> Result<u64> {
    let text = netns::exec_ok(&lab.ns(node), &["ethtool", "-S", iface])?;
    let total = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k.ends_with("xdp_drops")).then(|| v.trim().parse::<u64>().ok())?
        })
        .sum();
    Ok(total)
}

fn mac(lab: &Lab, node: &str, iface: &str) -> Result<String> {
    let text = netns::exec_ok(
        &lab.ns(node),
        &["cat", &format!("/sys/class/net/{iface}/address")],
    )?;
    Ok(text.trim().to_string())
}

/// `x0-bench generate` in h1, pinned to CPU 0, for `secs`.
fn start_generator(lab: &Lab, flows: u32, secs: f64) -> Result<Child> {
    let ip = |node: &str| -> Result<String> {
        Ok(lab
            .topo
            .addr_of(node, false)
            .context("address")?
            .to_string())
    };
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "taskset", "-c", "0"])
        .arg(std::env::current_exe()?)
        .args(["generate", "--iface", "eth0"])
        .args(["--src-mac", &mac(lab, "h1", "eth0")?])
        .args(["--dst-mac", &mac(lab, "r1", "eth1")?])
        .args(["--src", &ip("h1")?, "--dst", &ip("h2")?])
        .args(["--flows", &flows.to_string(), "--secs", &secs.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting the generator")
}

fn measure(lab: &Lab, mode: Mode, flows: u32, window: Duration) -> Result<Sample> {
    let mut generator = start_generator(lab, flows, 0.5 + window.as_secs_f64() + 0.5)?;
    std::thread::sleep(Duration::from_millis(500)); // warm-up
    if let Some(status) = generator.try_wait()? {
        let out = generator.wait_with_output()?;
        bail!(
            "the generator ended early ({status}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let read = || -> Result<(u64, u64)> {
        let sent = counter(lab, "h1", "eth0", "tx_packets")?;
        let got = match mode {
            Mode::Drop => xdp_drops(lab, "r1", "eth1")?,
            _ => xdp_drops(lab, "h2", "eth0")?,
        };
        Ok((sent, got))
    };
    let (s0, g0) = read()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (s1, g1) = read()?;
    let secs = t0.elapsed().as_secs_f64();
    let out = generator.wait_with_output()?;
    ensure!(
        out.status.success() && s1 > s0,
        "the generator failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(Sample {
        sent: (s1 - s0) as f64 / secs,
        got: (g1.saturating_sub(g0)) as f64 / secs,
    })
}
