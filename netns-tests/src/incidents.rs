//! `x0-lab incidents`: labelled incidents from the real lab, for training and judging the
//! brain's anomaly models. A mesh (a topology file, or a random one from the seed) runs with
//! a brain per router and streams between its hosts; faults are injected one at a time,
//! each with its ground truth (kind, element, start, end), with fault-free gaps between
//! them and some legitimate load surges (false alarms are counted there). Every brain logs
//! its telemetry each interval; the dataset is those logs with the labels (format:
//! docs/DATASET.md). The same seed gives the same schedule.

use std::{
    io::Write,
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng, rngs::StdRng, seq::SliceRandom};
use x0_brain::{
    config::Mode,
    linkstate::state::unix_ns,
    models::{
        dataset::{FORMAT, FORMAT_VERSION, Kind, Label, Meta},
        features::LinkSample,
    },
};

use crate::{Lab, Topology, faults, netns};

#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub episodes: usize,
    pub fault: Duration,
    pub gap: Duration,
    pub warmup: Duration,
    /// One surge every this many episodes.
    pub surge_every: usize,
    /// Congestion among the fault kinds (added after the first datasets: opt-in keeps
    /// their seeds' schedules).
    pub congestion: bool,
    /// Every this many faults, a second one at the same time elsewhere (0: never).
    pub double_every: usize,
}

/// A congested link's rate, each way: 10 Mbit/s.
const CONGESTION_BYTES_PER_S: u64 = 1_250_000;

/// The fault kinds, each once a round.
const FAULTS: [Kind; 7] = [
    Kind::Loss,
    Kind::OneWayLoss,
    Kind::Blackhole,
    Kind::Flap,
    Kind::CpuStarvation,
    Kind::BrainCrash,
    Kind::CostMisconfig,
];

fn on_link(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Loss
            | Kind::OneWayLoss
            | Kind::Blackhole
            | Kind::Flap
            | Kind::CostMisconfig
            | Kind::Congestion
    )
}

/// The schedule: each fault kind in turn (shuffled by the seed), surges between.
pub fn schedule(plan: &Plan, topo: &Topology) -> Vec<(Kind, String, u32)> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let links = router_links(topo);
    let routers: Vec<String> = topo.routers.iter().map(|r| r.name.clone()).collect();
    let mut kinds = Vec::new();
    while kinds.len() < plan.episodes {
        let mut round = FAULTS.to_vec();
        if plan.congestion {
            round.push(Kind::Congestion);
        }
        round.shuffle(&mut rng);
        kinds.extend(round);
    }
    kinds.truncate(plan.episodes);
    kinds
        .into_iter()
        .enumerate()
        .flat_map(|(i, kind)| {
            let surge = (plan.surge_every > 0 && i % plan.surge_every == plan.surge_every - 1)
                .then(|| (Kind::Surge, String::new(), 0));
            let (element, loss) = draw(&mut rng, kind, &links, &routers);
            std::iter::once((kind, element, loss)).chain(surge)
        })
        .collect()
}

/// An element for a fault of `kind` (a link, named from either end, or a router) and its
/// loss rate, drawn in the order the committed datasets' schedules drew them.
fn draw(
    rng: &mut StdRng,
    kind: Kind,
    links: &[(String, String)],
    routers: &[String],
) -> (String, u32) {
    let element = if on_link(kind) {
        let (a, b) = &links[rng.random_range(0..links.len())];
        if rng.random() {
            format!("{a}-{b}")
        } else {
            format!("{b}-{a}")
        }
    } else {
        routers[rng.random_range(0..routers.len())].clone()
    };
    let loss = match kind {
        Kind::Loss => rng.random_range(10_000..=300_000),
        Kind::OneWayLoss => rng.random_range(50_000..=300_000),
        _ => 0,
    };
    (element, loss)
}

/// For every `plan.double_every`-th fault of the schedule, a second fault at the same time
/// on routers the first does not touch (two simultaneous faults); drawn from a stream of
/// its own, so the schedule itself is the one the seed always gave.
pub fn doubles(
    plan: &Plan,
    topo: &Topology,
    schedule: &[(Kind, String, u32)],
) -> Vec<Option<(Kind, String, u32)>> {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x00d0_0b1e);
    let links = router_links(topo);
    let routers: Vec<String> = topo.routers.iter().map(|r| r.name.clone()).collect();
    let mut faults = 0;
    schedule
        .iter()
        .map(|(kind, element, _)| {
            if !kind.is_fault() {
                return None;
            }
            faults += 1;
            if plan.double_every == 0 || faults % plan.double_every != 0 {
                return None;
            }
            let taken: Vec<&str> = element.split('-').collect();
            (0..100).find_map(|_| {
                let second = FAULTS[rng.random_range(0..FAULTS.len())];
                let (e, loss) = draw(&mut rng, second, &links, &routers);
                let apart = e.split('-').all(|r| !taken.contains(&r));
                apart.then_some((second, e, loss))
            })
        })
        .collect()
}

pub fn router_links(topo: &Topology) -> Vec<(String, String)> {
    topo.links
        .iter()
        .filter(|l| topo.is_router(&l.a.node) && topo.is_router(&l.b.node))
        .map(|l| (l.a.node.clone(), l.b.node.clone()))
        .collect()
}

/// Runs the whole schedule on `lab` (brains started here) and writes the dataset to `out`.
pub fn record(lab: &Lab, topology: &str, plan: &Plan, out: &Path) -> Result<Vec<Label>> {
    std::fs::create_dir_all(out.join("telemetry"))?;
    for r in &lab.topo.routers {
        lab.start_brain(&r.name, Mode::Enforce)?;
    }
    wait_reachable(lab)?;
    let start = unix_ns(SystemTime::now());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let labels = std::thread::scope(|s| -> Result<Vec<Label>> {
        s.spawn(|| background(lab, &stop));
        std::thread::sleep(plan.warmup);
        let labels = episodes(lab, plan);
        // The streams stop whether or not every episode went through.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        labels
    })?;
    write_dataset(lab, topology, plan, out, &labels, start)?;
    Ok(labels)
}

/// Every scheduled episode in turn (with its simultaneous second fault, if any), each
/// followed by the fault-free gap.
fn episodes(lab: &Lab, plan: &Plan) -> Result<Vec<Label>> {
    let schedule = schedule(plan, &lab.topo);
    let doubles = doubles(plan, &lab.topo, &schedule);
    let mut labels = Vec::new();
    for (i, (first, second)) in schedule.into_iter().zip(doubles).enumerate() {
        for (kind, element, loss) in std::iter::once(&first).chain(&second) {
            eprintln!(
                "episode {}: {kind:?} {element} (loss {loss} per million)",
                i + 1
            );
        }
        std::thread::scope(|s| {
            let both = second
                .as_ref()
                .map(|(k, e, l)| s.spawn(move || episode(lab, *k, e, *l, plan.fault)));
            labels.push(episode(lab, first.0, &first.1, first.2, plan.fault));
            labels.extend(both.map(|h| h.join().expect("episode thread")));
        });
        std::thread::sleep(plan.gap);
    }
    Ok(labels)
}

fn wait_reachable(lab: &Lab) -> Result<()> {
    let h2 = lab.topo.addr_of("h2", false).context("h2's address")?;
    for _ in 0..30 {
        if crate::traffic::ping(lab, "h1", h2, 1).unwrap_or(0) == 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("h1 does not reach h2 after 30 s: the brains did not converge")
}

/// Streams both ways between the hosts (200 packets/s each) until `stop`.
fn background(lab: &Lab, stop: &std::sync::atomic::AtomicBool) {
    let (Some(h1), Some(h2)) = (lab.topo.addr_of("h1", false), lab.topo.addr_of("h2", false))
    else {
        return;
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::scope(|s| {
            s.spawn(|| crate::traffic::udp_stream(lab, "h1", "h2", h2, 9400, 2_000, 200));
            s.spawn(|| crate::traffic::udp_stream(lab, "h2", "h1", h1, 9401, 2_000, 200));
        });
    }
}

/// Injects one fault (or surge) for `length`, repairs it, and says what happened when. A
/// step that fails is reported and the repair still runs; the label is kept (something
/// may have been injected: its window must not count as calm).
fn episode(lab: &Lab, kind: Kind, element: &str, loss: u32, length: Duration) -> Label {
    let routers: Vec<String> = element
        .split('-')
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect();
    let start = SystemTime::now();
    let injected = match kind {
        Kind::Flap => flap(lab, &routers[0], &routers[1], length),
        Kind::Congestion => congest(lab, &routers[0], &routers[1], length),
        Kind::Surge => surge(lab, length),
        _ => apply(lab, kind, &routers, loss).map(|()| std::thread::sleep(length)),
    };
    if let Err(e) = injected {
        eprintln!("  {kind:?} on {element}: {e:#} (repairing and going on)");
    }
    if let Err(e) = repair(lab, kind, &routers) {
        eprintln!("  repairing {kind:?} on {element}: {e:#}");
    }
    Label {
        kind,
        element: element.to_string(),
        routers,
        start_unix_ns: unix_ns(start),
        end_unix_ns: unix_ns(SystemTime::now()),
        loss_per_million: loss,
    }
}

/// The (router, interface) ends of the link: `a`'s first.
fn ends(lab: &Lab, a: &str, b: &str) -> Result<[(String, String); 2]> {
    let (near, far) = faults::link_ends(lab, a, b)?;
    Ok([near, far])
}

fn apply(lab: &Lab, kind: Kind, routers: &[String], loss: u32) -> Result<()> {
    match kind {
        Kind::Loss | Kind::Blackhole => {
            let per_million = if kind == Kind::Blackhole {
                1_000_000
            } else {
                loss
            };
            for (node, iface) in ends(lab, &routers[0], &routers[1])? {
                faults::lossy_ingress(lab, &node, &iface, per_million)?;
            }
        }
        Kind::OneWayLoss => {
            let [(node, iface), _] = ends(lab, &routers[0], &routers[1])?;
            faults::lossy_ingress(lab, &node, &iface, loss)?;
        }
        Kind::CpuStarvation => starve(lab, &routers[0], true)?,
        Kind::BrainCrash => lab.stop_brain(&routers[0], true)?,
        Kind::CostMisconfig => {
            let (a, b) = (routers[0].clone(), routers[1].clone());
            lab.stop_brain(&a, false)?;
            lab.start_brain_with(&a, Mode::Enforce, |c| {
                c.neighbors
                    .iter_mut()
                    .filter(|n| n.router == b)
                    .for_each(|n| n.cost *= 10)
            })?;
        }
        Kind::Flap | Kind::Surge | Kind::Congestion => {}
    }
    Ok(())
}

fn repair(lab: &Lab, kind: Kind, routers: &[String]) -> Result<()> {
    match kind {
        Kind::Loss | Kind::Blackhole | Kind::OneWayLoss | Kind::Congestion => {
            for (node, iface) in ends(lab, &routers[0], &routers[1])? {
                faults::forward_again(lab, &node, &iface)?;
            }
        }
        Kind::CpuStarvation => starve(lab, &routers[0], false)?,
        Kind::BrainCrash => lab.start_brain(&routers[0], Mode::Enforce)?,
        Kind::CostMisconfig => {
            lab.stop_brain(&routers[0], false)?;
            lab.start_brain(&routers[0], Mode::Enforce)?;
        }
        Kind::Flap | Kind::Surge => {}
    }
    Ok(())
}

/// Carrier off for 1 s in every 3 s, on `b`'s end of the link, for `length`.
fn flap(lab: &Lab, a: &str, b: &str, length: Duration) -> Result<()> {
    let [_, (node, iface)] = ends(lab, a, b)?;
    let until = std::time::Instant::now() + length;
    while std::time::Instant::now() < until {
        netns::exec_ok(&lab.ns(&node), &["ip", "link", "set", &iface, "down"])?;
        std::thread::sleep(Duration::from_secs(1));
        netns::exec_ok(&lab.ns(&node), &["ip", "link", "set", &iface, "up"])?;
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok(())
}

/// Both ends of the link limited to `CONGESTION_BYTES_PER_S` (policers: XDP-redirected
/// frames meet no qdisc for a tbf), and TCP from `a` to `b`'s end of it as fast as it goes
/// for `length`: the load that fills it, and what else crosses it (BFD, the brains, the
/// background streams) loses to the load.
fn congest(lab: &Lab, a: &str, b: &str, length: Duration) -> Result<()> {
    for (node, iface) in ends(lab, a, b)? {
        faults::congested_ingress(lab, &node, &iface, CONGESTION_BYTES_PER_S)?;
    }
    let to = far_address(lab, a, b)?;
    crate::tools::iperf3_tcp(lab, (a, b), to, length.as_secs() as u32, None).map(|_| ())
}

/// `b`'s IPv4 address on its link with `a`.
fn far_address(lab: &Lab, a: &str, b: &str) -> Result<std::net::IpAddr> {
    lab.topo
        .links
        .iter()
        .filter_map(|l| match (&l.a, &l.b) {
            (x, y) if x.node == a && y.node == b => Some(y),
            (y, x) if x.node == a && y.node == b => Some(y),
            _ => None,
        })
        .flat_map(|end| end.addrs.iter().map(|n| n.addr()))
        .find(|ip| ip.is_ipv4())
        .with_context(|| format!("no IPv4 address of {b} on its link with {a}"))
}

/// TCP between the hosts as fast as it goes, for `length`.
fn surge(lab: &Lab, length: Duration) -> Result<()> {
    let h2 = lab.topo.addr_of("h2", false).context("h2's address")?;
    crate::tools::iperf3_tcp(lab, ("h1", "h2"), h2, length.as_secs() as u32, None).map(|_| ())
}

/// Puts a router's dataplane and brain in a CPU cgroup with 3 % of one CPU (or takes them
/// out again).
fn starve(lab: &Lab, router: &str, on: bool) -> Result<()> {
    let pid_files = [
        lab.file(router, "pid"),
        lab.file(&format!("brain-{router}"), "pid"),
    ];
    faults::starve(lab, router, &pid_files, on)
}

/// The raw sample's links, their fractional counts to two decimals.
fn links(raw: &serde_json::Value) -> Result<Vec<LinkSample>> {
    if raw.is_null() {
        return Ok(Vec::new());
    }
    let mut links: Vec<LinkSample> =
        serde_json::from_value(raw.clone()).context("the sample's links")?;
    for l in &mut links {
        l.bfd_expected = (l.bfd_expected * 100.0).round() / 100.0;
        l.utilisation = (l.utilisation * 1e4).round() / 1e4;
        l.rtt_ms = l.rtt_ms.map(|r| (r * 100.0).round() / 100.0);
    }
    Ok(links)
}

fn write_dataset(
    lab: &Lab,
    topology: &str,
    plan: &Plan,
    out: &Path,
    labels: &[Label],
    start: u64,
) -> Result<()> {
    let mut routers = Vec::new();
    for r in &lab.topo.routers {
        let log = lab
            .dir
            .join("brain-state")
            .join(&r.name)
            .join("telemetry.jsonl");
        slim(
            &log,
            &out.join("telemetry").join(format!("{}.jsonl", r.name)),
        )
        .with_context(|| format!("{}", log.display()))?;
        routers.push(r.name.clone());
    }
    let mut f = std::fs::File::create(out.join("labels.jsonl"))?;
    for l in labels {
        writeln!(f, "{}", serde_json::to_string(l)?)?;
    }
    let meta = Meta {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        features_version: x0_brain::models::features::VERSION,
        seed: plan.seed,
        topology: topology.into(),
        routers,
        links: router_links(&lab.topo),
        interval_ms: 1000,
        start_unix_ns: start,
        end_unix_ns: unix_ns(SystemTime::now()),
    };
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(())
}

/// A brain's log as the dataset keeps it: each interval's time, router, features (to four
/// decimals), score, and its links' measurements (root-cause analysis reads them; the
/// neighbours' features are in their own logs, the rest of the raw sample is left out).
fn slim(from: &Path, to: &Path) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    for line in std::fs::read_to_string(from)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        // Four decimals are plenty for features in [-1, 1] and halve the dataset.
        let features: Vec<f64> = v["features"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| (x * 1e4).round() / 1e4)
                    .collect()
            })
            .unwrap_or_default();
        let keep = serde_json::json!({
            "unix_ns": v["unix_ns"], "router": v["router"], "features": features, "score": v["score"],
            "links": links(&v["sample"]["links"])?,
        });
        writeln!(out, "{keep}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, episodes: usize, congestion: bool) -> Plan {
        Plan {
            seed,
            episodes,
            fault: Duration::from_secs(15),
            gap: Duration::from_secs(15),
            warmup: Duration::from_secs(20),
            surge_every: 3,
            congestion,
            double_every: 0,
        }
    }

    fn six() -> Topology {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        Topology::from_file(&dir.join("topologies/six.toml")).unwrap()
    }

    /// The committed six-seed1 dataset's ground truth is what its seed schedules: the
    /// opt-in congestion left the old schedules as they were.
    #[test]
    fn a_seed_gives_the_committed_datasets_schedule() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/data/incidents/six-seed1");
        let text = std::fs::read_to_string(dir.join("labels.jsonl")).unwrap();
        let labels: Vec<Label> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let faults = labels.iter().filter(|l| l.kind.is_fault()).count();
        let scheduled = schedule(&plan(1, faults, false), &six());
        let recorded: Vec<(Kind, String, u32)> = labels
            .iter()
            .map(|l| (l.kind, l.element.clone(), l.loss_per_million))
            .collect();
        assert_eq!(scheduled, recorded);
        assert!(scheduled.iter().all(|(k, _, _)| *k != Kind::Congestion));
    }

    /// Every fourth fault gets a second one on routers the first does not touch, and the
    /// schedule itself stays what the seed gave without doubles.
    #[test]
    fn doubles_fall_on_other_routers_and_leave_the_schedule_alone() {
        let topo = six();
        let mut p = plan(6, 14, true);
        let single = schedule(&p, &topo);
        p.double_every = 4;
        let s = schedule(&p, &topo);
        assert_eq!(s, single);
        let d = doubles(&p, &topo, &s);
        assert_eq!(d.len(), s.len());
        let pairs: Vec<_> = s
            .iter()
            .zip(&d)
            .filter_map(|(a, b)| Some((a, b.as_ref()?)))
            .collect();
        assert_eq!(pairs.len(), 14 / 4, "{d:?}");
        for ((_, first, _), (kind, second, _)) in pairs {
            assert!(kind.is_fault());
            assert!(
                second.split('-').all(|r| !first.split('-').any(|x| x == r)),
                "{first} and {second} share a router"
            );
        }
    }

    #[test]
    fn congestion_is_scheduled_on_real_links_when_asked() {
        let topo = six();
        let links = router_links(&topo);
        let s = schedule(&plan(5, 16, true), &topo);
        let congested: Vec<&String> = s
            .iter()
            .filter(|(k, _, _)| *k == Kind::Congestion)
            .map(|(_, e, _)| e)
            .collect();
        assert_eq!(congested.len(), 2, "{s:?}");
        for e in congested {
            let (a, b) = e.split_once('-').unwrap();
            assert!(
                links
                    .iter()
                    .any(|(x, y)| (x == a && y == b) || (x == b && y == a)),
                "{e}"
            );
        }
    }
}
