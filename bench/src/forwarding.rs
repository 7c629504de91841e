//! Forwarding rate through one router namespace (the line lab: h1 - r1 - h2), 64-byte
//! UDP frames from `x0-bench generate` (XDP live frames; see generator.rs) in h1, counted
//! as they arrive on h2's interface; one flow and 1,000 flows (source ports).
//!
//! Four ways through the same ingress: x0tta6bl4's XDP forwarding; the kernel's own IP
//! forwarding (dataplane stopped and detached, ip_forward=1, the same NAPI path: GRO on
//! the ingress veth); XDP_REDIRECT alone (`x0_redirect` swapped into the ingress of
//! x0tta6bl4's lab after its run), what the rig forwards with no forwarding work at all;
//! and XDP_DROP (`x0_drop` swapped into the ingress), the ceiling of what the ingress can
//! take at all, counted at the ingress. Each but the redirect in a fresh lab.
//!
//! Cores: the generator is pinned to CPU 0; the router's ingress runs threaded NAPI pinned
//! to CPU 1 (its XDP, the kernel's forwarding, and the delivery into h2's veth all run
//! there): one receive core, away from the generator. For the forwarding ways the
//! generator paces itself, waiting before each frame, to offer a little more than the way
//! takes (r1's ring refusing 1-5% once r1's core is busy; see `generator::next_gap` for
//! why not far more, and why not less while the core idles); the XDP_DROP ceiling is
//! offered all it can send. A cache line's round trip between the two cores is read around
//! every run (placement.rs): the host moves the vCPUs, and x0tta6bl4's rate follows.
//! A figure within 5% of what the generator
//! offered while it did not wait at all says "generator-limited": a floor.

use std::{
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use x0_lab::{Lab, Topology, faults, lab::default_dataplane_bin, netns, traffic};

use crate::{
    placement::{self, Placement},
    report::{Row, Table},
    standalone::Standalone,
};

/// The generator's core (also the receiver's), and the router's receive core.
const GENERATOR_CPU: u32 = 0;
const ROUTER_CPU: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Kernel,
    X0,
    /// `x0_redirect` in x0tta6bl4's lab: the rig's forwarding ceiling.
    Redirect,
    Drop,
}

impl Mode {
    /// Tells the labs of the ways apart.
    fn letter(self) -> char {
        match self {
            Mode::Kernel => 'k',
            Mode::X0 => 'x',
            Mode::Redirect => 'r',
            Mode::Drop => 'd',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "Linux IP forwarding (XDP detached)",
            Mode::X0 => "x0tta6bl4 XDP forwarding",
            Mode::Redirect => "XDP_REDIRECT to h2, nothing read (redirect ceiling)",
            Mode::Drop => "XDP_DROP on the same ingress (ceiling)",
        }
    }
}

/// One measurement: packets/s the generator offered to its interface, and that arrived
/// (or, for the drop ceiling, that the ingress took).
struct Sample {
    offered: f64,
    got: f64,
    /// Where the generator's gap ended (0: it sent as fast as it could).
    gap: u16,
    /// A cache line's round trip between the generator's and the router's cores, just
    /// before and just after the run.
    round_trips: [Duration; 2],
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
        let mut offered_by_mode: Vec<Vec<f64>> = Vec::new();
        // A fresh lab per run, the ways taken in turn: the host moves the vCPUs every few
        // tens of seconds (placement.rs), and runs spread in time share its placements
        // fairly between the ways.
        // The redirect ceiling runs in x0tta6bl4's lab, right after it: the pair most
        // likely shares a placement, so their ratio is the forwarding work's cost alone.
        let modes = [Mode::Kernel, Mode::X0, Mode::Redirect, Mode::Drop];
        let at = |m: Mode| modes.iter().position(|x| *x == m).expect("every way runs");
        let mut got = vec![Vec::new(); modes.len()];
        let mut offered = vec![Vec::new(); modes.len()];
        let mut gaps: Vec<Vec<u16>> = vec![Vec::new(); modes.len()];
        let mut round_trips: Vec<Vec<[Duration; 2]>> = vec![Vec::new(); modes.len()];
        for rep in 1..=reps {
            let mut x0_lab = None;
            for (i, mode) in modes.iter().enumerate() {
                eprintln!(
                    "  forwarding: {} flow(s), run {rep}/{reps}, {}",
                    flows,
                    mode.name()
                );
                let lab = match mode {
                    Mode::Redirect => {
                        let lab: Lab = x0_lab.take().context("x0tta6bl4's lab")?;
                        redirect_ingress(&lab)?;
                        lab
                    }
                    _ => line_lab(*mode)?,
                };
                // Each way's run starts at the gap its last one settled at.
                let gap = gaps[i].last().copied().unwrap_or(0);
                let s = measure(&lab, *mode, flows, Duration::from_secs(secs), gap)?;
                got[i].push(s.got);
                offered[i].push(s.offered);
                gaps[i].push(s.gap);
                round_trips[i].push(s.round_trips);
                if *mode == Mode::X0 {
                    x0_lab = Some(lab);
                }
            }
        }
        for ((mode, got), offered) in modes.into_iter().zip(got).zip(offered) {
            let row = Row::new(mode.name(), got);
            let row = if mode == Mode::Kernel {
                row.baseline()
            } else {
                row
            };
            rows.push(row);
            offered_by_mode.push(offered);
        }
        // A figure is the generator's, not the router's, when (nearly) all it offered
        // arrived while it sent every frame it built: the router might have taken more.
        for ((row, offered), gaps) in rows.iter_mut().zip(&offered_by_mode).zip(&gaps) {
            let limited = row
                .samples
                .iter()
                .zip(offered)
                .zip(gaps)
                .any(|((got, o), gap)| *got >= 0.95 * *o && *gap == 0);
            if limited {
                row.note = "generator-limited".into();
            }
        }
        rows.push(Row::new(
            "offered to r1 (all runs)",
            offered_by_mode.concat(),
        ));
        let median = |m: Mode| rows[at(m)].median();
        let x0 = median(Mode::X0);
        let vs_kernel = x0 / median(Mode::Kernel);
        let x0_limited = rows[at(Mode::X0)].note == "generator-limited";
        let mut notes = Vec::new();
        // The generator waited after every frame (a gap above 0) in every run of the
        // forwarding ways: it could have offered more, so the routers set their figures.
        let forwarding: Vec<u16> = [Mode::Kernel, Mode::X0, Mode::Redirect]
            .iter()
            .flat_map(|m| gaps[at(*m)].iter().copied())
            .collect();
        if forwarding.iter().all(|g| *g > 0) {
            notes.push(format!(
                "The generator paced itself to offer a little more than each way took (r1's \
                 ring refusing 1-5%) by waiting before every frame ({}-{} ns at the end of \
                 the forwarding runs), so it could have offered more: the router, not the \
                 generator, set those figures.",
                forwarding.iter().min().unwrap_or(&0),
                forwarding.iter().max().unwrap_or(&0)
            ));
        }
        if x0_limited {
            notes.push(format!(
                "x0tta6bl4 forwarded all the generator offered, so {vs_kernel:.2}x the kernel is \
                 a lower bound."
            ));
        }
        // A generator-limited ceiling is a floor: the true share is at most this.
        let drop_limited = rows[at(Mode::Drop)].note == "generator-limited";
        let share = x0 / median(Mode::Drop);
        let redirect = median(Mode::Redirect);
        notes.push(format!(
            "XDP_REDIRECT with no forwarding work at all (`x0_redirect`, in x0tta6bl4's lab \
             right after it) reached {:.0}% of the XDP_DROP ceiling{}: what the rig leaves for \
             any forwarder once the frames are delivered. x0tta6bl4 forwarded {:.0}% of that \
             redirect ceiling.",
            redirect / median(Mode::Drop) * 100.0,
            if drop_limited { " or less" } else { "" },
            x0 / redirect * 100.0
        ));
        let pairs = by_placement(&rows, &round_trips, at(Mode::Kernel), at(Mode::X0));
        notes.push(placement_note(&round_trips, &pairs));
        notes.push(
            "On two cores the receiver (h2's XDP, which counts and drops) runs on the router's \
             core: the forwarding rows carry its cost, the XDP_DROP row does not. Pinned to the \
             generator's core instead, it must be woken across cores per batch and both ways \
             measured slower."
                .to_string(),
        );
        let by_placement = pairs
            .iter()
            .map(|(p, x0, kernel)| {
                let ratio = x0.median() / kernel.median();
                format!(
                    "{} {ratio:.2}x ({})",
                    placement_name(*p),
                    if ratio >= 3.0 { "met" } else { "not met" }
                )
            })
            .collect::<Vec<_>>();
        let verdict = format!(
            "{:.2}x the kernel{} ({}{}); {:.0}% of the XDP_DROP ceiling{} ({})",
            vs_kernel,
            if x0_limited { " or more" } else { "" },
            if vs_kernel >= 3.0 {
                "met"
            } else if x0_limited {
                "not shown: the generator is the limit"
            } else {
                "not met"
            },
            if by_placement.is_empty() {
                String::new()
            } else {
                format!("; with the vCPUs placed {}", by_placement.join(", "))
            },
            share * 100.0,
            if drop_limited {
                " or less (the ceiling took all the generator offered)"
            } else {
                ""
            },
            if share < 0.5 {
                "not met"
            } else if drop_limited {
                "not shown: the ceiling may be higher"
            } else {
                "met"
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
                 generate` (BPF_PROG_TEST_RUN with live frames: XDP_TX out of h1's veth, no \
                 skb on the sender) in h1 \
                 (pinned to CPU 0), {flows} flow{} (UDP source ports), counted on h2's interface \
                 over {secs} s after 1 s of warm-up, {reps} runs per way, each in a fresh lab, the ways \
                 taken in turn. \
                 r1's ingress runs threaded NAPI pinned to CPU 1 (one receive core for the router \
                 and the delivery to h2, which counts and drops in XDP). The kernel baseline is the same namespaces with the \
                 dataplane stopped and detached and ip_forward=1 (GRO on, so the same NAPI \
                 path); the redirect ceiling is `x0_redirect` swapped into r1's ingress in \
                 x0tta6bl4's lab right after its run (every frame out to h2 through the same \
                 port map, nothing read or rewritten); XDP_DROP is `x0_drop` in r1's ingress, \
                 counted there. For the forwarding ways the generator \
                 paces itself, waiting before each frame, to offer a little more than each way \
                 takes: r1's ring refuses 1-5% (RFC 2544's throughput, give or take that loss; \
                 far more overload costs a veth receiver contended page-pool locks a NIC would \
                 not); the XDP_DROP ceiling is offered all the generator can send. Rows flagged \
                 generator-limited received nearly all that was offered. A cache line's round trip \
                 between the generator's and the router's cores is read before and after every \
                 run: the host moves this VM's vCPUs, and far apart (different dies) every frame's \
                 first touch on the router's core costs a crossing, which the XDP ways feel most \
                 (the verdict gives the ratio in each placement seen). veth is not a NIC: absolute rates are far below line rate \
                 on real hardware and bounded by the veth transmit path, which all four share.",
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

/// x0tta6bl4's and the kernel's runs in each placement (near, far) that both had runs in:
/// (placement, x0tta6bl4's, the kernel's).
fn by_placement(
    rows: &[Row],
    round_trips: &[Vec<[Duration; 2]>],
    kernel: usize,
    x0: usize,
) -> Vec<(Placement, Row, Row)> {
    [Placement::Near, Placement::Far]
        .into_iter()
        .map(|p| {
            (
                p,
                placed(&rows[x0], &round_trips[x0], p),
                placed(&rows[kernel], &round_trips[kernel], p),
            )
        })
        .filter(|(_, x, k)| !x.samples.is_empty() && !k.samples.is_empty())
        .collect()
}

fn runs_of(row: &Row) -> String {
    match row.samples.len() {
        1 => "1 run".into(),
        n => format!("{n} runs"),
    }
}

/// The runs of `row` made with the vCPUs placed `p` (see placement.rs).
fn placed(row: &Row, round_trips: &[[Duration; 2]], p: Placement) -> Row {
    let samples = row
        .samples
        .iter()
        .zip(round_trips)
        .filter(|(_, [before, after])| Placement::of(*before, *after) == p)
        .map(|(got, _)| *got)
        .collect();
    Row::new(&row.name, samples)
}

fn placement_name(p: Placement) -> &'static str {
    match p {
        Placement::Near => "near",
        Placement::Far => "far",
        Placement::Moved => "moved",
    }
}

/// Where the host had put the generator's and the router's vCPUs during the runs, and what
/// x0tta6bl4 and the kernel forwarded in each placement (`pairs`, from `by_placement`).
fn placement_note(round_trips: &[Vec<[Duration; 2]>], pairs: &[(Placement, Row, Row)]) -> String {
    let all: Vec<Duration> = round_trips.iter().flatten().flatten().copied().collect();
    let ns = |d: Option<&Duration>| d.map_or(0, |d| d.as_nanos());
    let runs = |p: Placement| {
        round_trips
            .iter()
            .flatten()
            .filter(|[b, a]| Placement::of(*b, *a) == p)
            .count()
    };
    let mut note = format!(
        "The host moves this VM's vCPUs: a cache line's round trip between the generator's \
         and the router's cores, read before and after every run, was {}-{} ns. Runs with \
         both readings under {} ns (near, one shared cache): {}; both above (far, frames \
         cross between dies): {}; moved mid-run: {}.",
        ns(all.iter().min()),
        ns(all.iter().max()),
        placement::FAR.as_nanos(),
        runs(Placement::Near),
        runs(Placement::Far),
        runs(Placement::Moved),
    );
    for (p, x, k) in pairs {
        note += &format!(
            " {}: x0tta6bl4 {:.2}M/s ({}), the kernel {:.2}M/s ({}), {:.2}x.",
            if *p == Placement::Near { "Near" } else { "Far" },
            x.median() / 1e6,
            runs_of(x),
            k.median() / 1e6,
            runs_of(k),
            x.median() / k.median()
        );
    }
    note
}

/// A fresh line lab set up for `mode`, with neighbours resolved.
fn line_lab(mode: Mode) -> Result<Lab> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let lab = Lab::up(
        &format!("x0f{}{}", std::process::id() % 100_000, mode.letter()),
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
        // The redirect ceiling borrows x0tta6bl4's lab (`redirect_ingress`).
        Mode::X0 | Mode::Redirect => {}
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
    // The receiver's NAPI stays on the router's core: moved to the generator's, it has to
    // be woken across cores for every batch and measured slower for both ways (x0 1.4M vs
    // 2.2M/s, kernel 0.30M vs 0.66M/s), so the router's figures would be the receiver's.
    threaded_napi(&lab, "r1", "eth1", ROUTER_CPU)?;
    Ok(lab)
}

/// Swaps `x0_redirect` into r1's ingress (the dataplane's pinned link, as a restart would),
/// sending every frame out of the port towards h2.
fn redirect_ingress(lab: &Lab) -> Result<()> {
    use aya::programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    };
    use x0_common::program_names;
    let link = lab.pin_root("r1").join("links").join("eth1");
    // In r1's namespace: the kernel resolves the port map's ifindex in the caller's.
    netns::in_netns(&lab.ns("r1"), move || -> Result<()> {
        let egress = nix::net::if_::if_nametoindex("eth2")?;
        let mut object =
            Standalone::load_with_globals("redirect", &[(program_names::REDIRECT_TO, egress)])?;
        object.add_port(egress)?;
        let prog = object.program(program_names::REDIRECT)?;
        let link = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(&link)?))?;
        let id = prog
            .attach_to_link(link)
            .context("swapping in x0_redirect")?;
        let _ = FdLink::try_from(prog.take_link(id)?)?; // the router's pin keeps it
        Ok(())
    })
}

/// Threaded NAPI on `node`'s `iface`, its thread pinned to `cpu`.
fn threaded_napi(lab: &Lab, node: &str, iface: &str, cpu: u32) -> Result<()> {
    let before = napi_threads(iface)?;
    netns::exec_ok(
        &lab.ns(node),
        &[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{iface}/threaded"),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let new: Vec<u32> = napi_threads(iface)?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() {
            for pid in new {
                netns::run(Command::new("taskset").args([
                    "-pc",
                    &cpu.to_string(),
                    &pid.to_string(),
                ]))?;
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no NAPI thread appeared for {node}'s {iface}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn napi_threads(iface: &str) -> Result<Vec<u32>> {
    let prefix = format!("napi/{iface}-");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let e = e?;
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with(&prefix) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// One of veth's own statistics (`rx_queue_N_<name>` / `tx_queue_N_<name>`), summed over
/// its queues.
fn ethtool_sum(lab: &Lab, node: &str, iface: &str, name: &str) -> Result<u64> {
    let text = netns::exec_ok(&lab.ns(node), &["ethtool", "-S", iface])?;
    Ok(crate::generator::veth_counter(&text, name))
}

fn mac(lab: &Lab, node: &str, iface: &str) -> Result<String> {
    let text = netns::exec_ok(
        &lab.ns(node),
        &["cat", &format!("/sys/class/net/{iface}/address")],
    )?;
    Ok(text.trim().to_string())
}

/// `x0-bench generate` in h1, pinned to CPU 0, for `secs`.
fn start_generator(lab: &Lab, flows: u32, secs: f64, gap: u16, paced: bool) -> Result<Child> {
    let ip = |node: &str| -> Result<String> {
        Ok(lab
            .topo
            .addr_of(node, false)
            .context("address")?
            .to_string())
    };
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "taskset", "-c"])
        .arg(GENERATOR_CPU.to_string())
        .arg(std::env::current_exe()?)
        .args(["generate", "--iface", "eth0"])
        .args(["--src-mac", &mac(lab, "h1", "eth0")?])
        .args(["--dst-mac", &mac(lab, "r1", "eth1")?])
        .args(["--src", &ip("h1")?, "--dst", &ip("h2")?])
        .args(["--flows", &flows.to_string(), "--secs", &secs.to_string()])
        .args(["--gap", &gap.to_string()])
        .args((!paced).then_some("--unpaced"))
        .args(["--router-cpu", &ROUTER_CPU.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting the generator")
}

fn measure(lab: &Lab, mode: Mode, flows: u32, window: Duration, gap: u16) -> Result<Sample> {
    // The ceiling takes all the generator can offer: paced, the refusals an idle NAPI
    // thread's wake-up costs (the ring fills while it wakes) would hold it down.
    let paced = mode != Mode::Drop;
    let before = placement::round_trip(GENERATOR_CPU as usize, ROUTER_CPU as usize)?;
    let secs = 1.0 + window.as_secs_f64() + 0.5;
    let mut generator = start_generator(lab, flows, secs, gap, paced)?;
    // Warm-up, in which the generator finds its pace (a few calls).
    std::thread::sleep(Duration::from_millis(1000));
    if let Some(status) = generator.try_wait()? {
        let out = generator.wait_with_output()?;
        bail!(
            "the generator ended early ({status}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let read = || -> Result<(u64, u64)> {
        // Offered: what h1's veth handed to r1's ring, plus what found it full.
        let offered = ethtool_sum(lab, "h1", "eth0", "xdp_xmit")?
            + ethtool_sum(lab, "h1", "eth0", "xdp_xmit_errors")?;
        let got = match mode {
            Mode::Drop => ethtool_sum(lab, "r1", "eth1", "xdp_drops")?,
            _ => ethtool_sum(lab, "h2", "eth0", "xdp_drops")?,
        };
        Ok((offered, got))
    };
    let (s0, g0) = read()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (s1, g1) = read()?;
    let secs = t0.elapsed().as_secs_f64();
    let out = generator.wait_with_output()?;
    ensure!(
        out.status.success() && s1 > s0,
        "the generator failed or sent nothing ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let after = placement::round_trip(GENERATOR_CPU as usize, ROUTER_CPU as usize)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every call's gap and counts, for whoever studies the pacing.
    if std::env::var_os("X0_BENCH_TRACE").is_some() {
        eprintln!(
            "  generator ({}): {}",
            mode.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let gap = stdout
        .split_whitespace()
        .skip_while(|w| *w != "gap")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no gap in the generator's output: {stdout:?}"))?;
    Ok(Sample {
        offered: (s1 - s0) as f64 / secs,
        got: (g1.saturating_sub(g0)) as f64 / secs,
        gap,
        round_trips: [before, after],
    })
}

#[cfg(test)]
mod tests {
    use aya::programs::{TestRun, TestRunOptions};
    use x0_common::program_names;

    use super::*;

    /// BPF_PROG_TEST_RUN's verdicts.
    const XDP_ABORTED: u32 = 0;
    const XDP_REDIRECT: u32 = 4;

    #[test]
    fn runs_are_compared_within_a_placement_and_moved_runs_left_out() {
        let (near, far) = (Duration::from_nanos(90), Duration::from_nanos(380));
        let rows = [
            Row::new("kernel", vec![1.2, 1.0, 1.1, 9.0]),
            Row::new("x0", vec![4.4, 2.5, 3.5, 4.6]),
        ];
        let round_trips = [
            vec![[near, near], [far, far], [near, near], [near, far]],
            vec![[near, near], [far, far], [far, near], [near, near]],
        ];
        let pairs = by_placement(&rows, &round_trips, 0, 1);
        let got: Vec<_> = pairs
            .iter()
            .map(|(p, x, k)| (*p, x.samples.clone(), k.samples.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Placement::Near, vec![4.4, 4.6], vec![1.2, 1.1]),
                (Placement::Far, vec![2.5], vec![1.0]),
            ]
        );
        // A placement only one way was seen in has no ratio.
        let only_x0_far = [vec![[near, near]; 4], round_trips[1].clone()];
        let pairs = by_placement(&rows, &only_x0_far, 0, 1);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, Placement::Near);
    }

    #[test]
    fn the_redirect_ceiling_sends_only_once_its_port_is_in_the_port_map() -> Result<()> {
        let lo = nix::net::if_::if_nametoindex("lo")?;
        let mut object =
            Standalone::load_with_globals("redirect-test", &[(program_names::REDIRECT_TO, lo)])?;
        let frame = [0u8; 60]; // it reads nothing
        let verdict = |object: &mut Standalone| -> Result<u32> {
            let prog = object.program(program_names::REDIRECT)?;
            Ok(prog
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ..Default::default()
                })?
                .return_value)
        };
        // Its port is not in the port map yet: nowhere to send.
        assert_eq!(verdict(&mut object)?, XDP_ABORTED);
        object.add_port(lo)?;
        assert_eq!(verdict(&mut object)?, XDP_REDIRECT);
        Ok(())
    }
}
