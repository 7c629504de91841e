//! `x0-bench chaos [--quick]`: a random geometric mesh with discovery (40 routers; 12
//! with --quick), a UDP stream between its two hosts all along, and random events from a
//! seed: carrier loss, black-hole, a router killed (dataplane and brain, kill -9), a
//! brain killed, and the repairs (the killed router rejoining). After every event a
//! checker proves both hosts reach each other in both families and records how long
//! that took. Reported: events survived, restore time by kind, stream loss, daemons that
//! died unasked, RSS growth of every daemon, Flood RPCs per router per second, and the
//! largest burst of control packets on one link (tcpdump on the busiest routers).

mod capture;

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use x0_brain::config::Mode;
use x0_lab::{
    Lab, faults,
    faults::Failure,
    lab::{BRAIN_METRICS, default_dataplane_bin},
    prometheus, random_mesh, traffic,
};

use crate::report::{Row, Table};

/// BFD on 40 routers' links, two cores: 50 ms x 3. At 20 ms x 3 (the 12-router meshes'
/// setting) a daemon descheduled for 60 ms, which 80 daemons on two cores do, reads as a
/// dead link.
const BFD_MS: u32 = 50;
const STREAM_PPS: u64 = 200;
const RESTORE_WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq)]
enum Event {
    Link(usize, usize, Failure),
    RouterKill(usize),
    BrainKill(usize),
    Repair(Box<Event>),
}

impl Event {
    fn kind(&self) -> String {
        match self {
            Event::Link(_, _, Failure::Carrier) => "carrier loss".into(),
            Event::Link(_, _, Failure::Blackhole) => "black-hole".into(),
            Event::RouterKill(_) => "router kill -9".into(),
            Event::BrainKill(_) => "brain kill -9".into(),
            Event::Repair(e) => match **e {
                Event::RouterKill(_) => "router rejoins".into(),
                _ => format!("repair: {}", e.kind()),
            },
        }
    }
}

fn name(i: usize) -> String {
    format!("r{}", i + 1)
}

/// The event with its routers, for the log.
fn describe(e: &Event) -> String {
    match e {
        Event::Link(a, b, _) => format!("{} {}-{}", e.kind(), name(*a), name(*b)),
        Event::RouterKill(r) | Event::BrainKill(r) => format!("{} {}", e.kind(), name(*r)),
        Event::Repair(inner) => format!("repair: {}", describe(inner)),
    }
}

/// The soak's state: what is broken now, and the mesh's links.
struct Soak {
    lab: Lab,
    links: Vec<(usize, usize)>,
    routers: usize,
    /// The routers the hosts hang off (never killed: their host would be cut off).
    edges: [usize; 2],
    open: Vec<Event>,
}

impl Soak {
    /// Whether the mesh stays connected with `extra` broken too.
    fn survivable(&self, extra: &Event) -> bool {
        let broken: Vec<&Event> = self.open.iter().chain(std::iter::once(extra)).collect();
        let dead: HashSet<usize> = broken
            .iter()
            .filter_map(|e| match e {
                Event::RouterKill(r) | Event::BrainKill(r) => Some(*r),
                _ => None,
            })
            .collect();
        let cut: HashSet<(usize, usize)> = broken
            .iter()
            .filter_map(|e| match e {
                Event::Link(a, b, _) => Some((*a, *b)),
                _ => None,
            })
            .collect();
        let alive: Vec<(usize, usize)> = self
            .links
            .iter()
            .copied()
            .filter(|l| !cut.contains(l) && !dead.contains(&l.0) && !dead.contains(&l.1))
            .collect();
        reachable(self.routers, &alive, self.edges[0], &dead).contains(&self.edges[1])
    }

    /// The next event: a repair of an open one (half the time, or when three are open),
    /// else a new failure the mesh survives.
    fn next(&mut self, rng: &mut StdRng) -> Event {
        if !self.open.is_empty() && (self.open.len() >= 3 || rng.random_bool(0.5)) {
            let e = self.open.remove(rng.random_range(0..self.open.len()));
            return Event::Repair(Box::new(e));
        }
        loop {
            let e = match rng.random_range(0..4) {
                0 | 1 => {
                    let (a, b) = self.links[rng.random_range(0..self.links.len())];
                    let kind = if rng.random_bool(0.5) {
                        Failure::Carrier
                    } else {
                        Failure::Blackhole
                    };
                    Event::Link(a, b, kind)
                }
                2 => Event::RouterKill(rng.random_range(0..self.routers)),
                _ => Event::BrainKill(rng.random_range(0..self.routers)),
            };
            let touches_open = self.open.iter().any(|o| overlaps(o, &e));
            let edge =
                matches!(e, Event::RouterKill(r) | Event::BrainKill(r) if self.edges.contains(&r));
            if !touches_open && !edge && self.survivable(&e) {
                self.open.push(e.clone());
                return e;
            }
        }
    }

    fn apply(&self, e: &Event) -> Result<()> {
        let lab = &self.lab;
        match e {
            Event::Link(a, b, kind) => faults::fail(lab, &name(*a), &name(*b), *kind).map(|_| ()),
            Event::RouterKill(r) => {
                lab.stop_brain(&name(*r), true)?;
                lab.kill_dataplane(&name(*r))
            }
            Event::BrainKill(r) => lab.stop_brain(&name(*r), true),
            Event::Repair(inner) => match &**inner {
                Event::Link(a, b, kind) => faults::repair(lab, &name(*a), &name(*b), *kind),
                Event::RouterKill(r) => {
                    lab.start_dataplane(&name(*r))?;
                    lab.wait_ready(&name(*r), Duration::from_secs(20))?;
                    lab.start_brain(&name(*r), Mode::Enforce)
                }
                Event::BrainKill(r) => lab.start_brain(&name(*r), Mode::Enforce),
                Event::Repair(_) => Ok(()),
            },
        }
    }
}

/// Two events touch the same router or link.
fn overlaps(a: &Event, b: &Event) -> bool {
    let nodes = |e: &Event| -> Vec<usize> {
        match e {
            Event::Link(x, y, _) => vec![*x, *y],
            Event::RouterKill(r) | Event::BrainKill(r) => vec![*r],
            Event::Repair(_) => Vec::new(),
        }
    };
    nodes(a).iter().any(|n| nodes(b).contains(n))
}

fn reachable(
    n: usize,
    links: &[(usize, usize)],
    from: usize,
    dead: &HashSet<usize>,
) -> HashSet<usize> {
    let mut seen = HashSet::from([from]);
    let mut stack = vec![from];
    while let Some(v) = stack.pop() {
        for &(a, b) in links {
            let other = if a == v {
                b
            } else if b == v {
                a
            } else {
                continue;
            };
            if other < n && !dead.contains(&other) && seen.insert(other) {
                stack.push(other);
            }
        }
    }
    seen
}

/// Both hosts reach each other in both families: how long it took (None: not within
/// RESTORE_WITHIN).
fn check(lab: &Lab) -> Option<Duration> {
    let start = Instant::now();
    for v6 in [false, true] {
        for (from, to) in [("h1", "h2"), ("h2", "h1")] {
            let dst = lab.topo.addr_of(to, v6)?;
            let left = RESTORE_WITHIN.checked_sub(start.elapsed())?;
            traffic::wait_reply(lab, from, dst, left).ok()?;
        }
    }
    Some(start.elapsed())
}

/// The pid and VmRSS (kB) of every daemon running now, by pid file stem ("r3",
/// "brain-r3").
fn rss(lab: &Lab, routers: usize) -> BTreeMap<String, (u32, u64)> {
    let mut out = BTreeMap::new();
    for i in 0..routers {
        for stem in [name(i), format!("brain-{}", name(i))] {
            let pid = std::fs::read_to_string(lab.file(&stem, "pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
            let kb = status.and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            });
            if let Some(kb) = kb {
                out.insert(stem, (pid, kb));
            }
        }
    }
    out
}

/// Each daemon that ran the whole soak (the same process at its start and end; killed
/// ones restarted fresh): its growth in per cent, and its RSS (kB) at start, halfway and
/// end.
fn rss_growth(seen: &[BTreeMap<String, (u32, u64)>]) -> Vec<(String, f64, [u64; 3])> {
    let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
        return Vec::new();
    };
    let mid = &seen[seen.len() / 2];
    first
        .iter()
        .filter_map(|(k, &(pid, a))| {
            let &(pid_end, b) = last.get(k)?;
            let &(pid_mid, m) = mid.get(k)?;
            (pid == pid_end && pid == pid_mid)
                .then(|| (k.clone(), (b as f64 / a as f64 - 1.0) * 100.0, [a, m, b]))
        })
        .collect()
}

/// Daemons whose pid file names a process that is gone (died unasked).
fn crashed(lab: &Lab, routers: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..routers {
        for stem in [name(i), format!("brain-{}", name(i))] {
            if let Ok(p) = std::fs::read_to_string(lab.file(&stem, "pid")) {
                let alive = std::path::Path::new(&format!("/proc/{}", p.trim())).exists();
                let zombie = std::fs::read_to_string(format!("/proc/{}/stat", p.trim()))
                    .is_ok_and(|s| s.contains(") Z "));
                if !alive || zombie {
                    out.push(stem);
                }
            }
        }
    }
    out
}

/// Flood RPCs and the records in them that all brains sent so far (their metrics).
fn floods(lab: &Lab, routers: usize) -> [f64; 2] {
    let texts: Vec<String> = (0..routers)
        .filter_map(|i| prometheus::scrape(lab, &name(i), BRAIN_METRICS).ok())
        .collect();
    let sum = |metric: &str| -> f64 {
        texts
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    [
        sum("x0_brain_floods_total{"),
        sum("x0_brain_flooded_records_total{"),
    ]
}

/// The lab up with every dataplane running (brains not yet).
fn mesh(routers: usize, seed: u64) -> Result<Soak> {
    let mut topo = random_mesh::random_mesh(routers, seed)?.discovering();
    for r in &mut topo.routers {
        if let Some(b) = &mut r.bfd {
            (b.tx_interval_ms, b.rx_interval_ms) = (BFD_MS, BFD_MS);
        }
        r.maps.profile = x0_dataplane::map_sizes::Profile::Small;
    }
    let (_, links) = random_mesh::geometric(routers, seed);
    let edge = |host: &str| -> Result<usize> {
        let end = topo
            .ifaces_of(host)
            .first()
            .copied()
            .cloned()
            .ok_or_else(|| anyhow!("{host}"))?;
        let peer = topo
            .peer_of(host, &end.iface)
            .ok_or_else(|| anyhow!("{host}'s router"))?;
        Ok(peer.node.trim_start_matches('r').parse::<usize>()? - 1)
    };
    let edges = [edge("h1")?, edge("h2")?];
    let lab = Lab::up(
        &format!("x0c{}", std::process::id() % 100_000),
        topo,
        default_dataplane_bin()?,
    )?;
    Ok(Soak {
        lab,
        links,
        routers,
        edges,
        open: Vec::new(),
    })
}

/// One event's outcome: its kind, how long until the hosts reached each other again
/// (None: not within RESTORE_WITHIN), and the daemons found dead after it.
type Outcome = (String, Option<Duration>, Vec<String>);

/// What the soak measured.
struct Findings {
    results: Vec<Outcome>,
    stream: traffic::StreamReport,
    /// Every daemon's RSS when the soak starts, after each event, and at its end.
    rss: Vec<BTreeMap<String, (u32, u64)>>,
    /// Flood RPCs and records in them, per router per second.
    floods_per_router_s: [f64; 2],
    bursts: Vec<capture::Burst>,
    captured: Vec<String>,
}

/// How many routers' links tcpdump watches (the best connected: the most links, the
/// most floods through them).
const CAPTURED: usize = 4;

/// The best connected routers.
fn busiest(soak: &Soak) -> Vec<String> {
    let mut degree: Vec<(usize, usize)> = (0..soak.routers)
        .map(|r| {
            let d = soak.links.iter().filter(|l| l.0 == r || l.1 == r).count();
            (d, r)
        })
        .collect();
    degree.sort_by(|a, b| b.cmp(a));
    degree
        .iter()
        .take(CAPTURED)
        .map(|(_, r)| name(*r))
        .collect()
}

pub fn run(quick: bool, seed: u64) -> Result<Vec<Table>> {
    let (routers, events) = if quick { (12, 10) } else { (40, 50) };
    let t0 = Instant::now();
    let mut soak = mesh(routers, seed)?;
    // The whole schedule first: each event chosen against what the ones before leave open.
    let mut rng = StdRng::seed_from_u64(seed);
    let schedule: Vec<Event> = (0..events).map(|_| soak.next(&mut rng)).collect();
    // From before the brains start: their first hellos and syncs are the likeliest burst.
    let captured = busiest(&soak);
    let capture = capture::Capture::start(&soak.lab, &captured)?;
    for i in 0..routers {
        soak.lab.start_brain(&name(i), Mode::Enforce)?;
    }
    let lab = &soak.lab;
    let converged =
        check(lab).ok_or_else(|| anyhow!("the mesh did not converge in {RESTORE_WITHIN:?}"))?;
    eprintln!(
        "{routers} routers up in {:.1?}; hosts reach each other after {converged:.1?} more",
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_secs(5));
    let (floods0, soak_start) = (floods(lab, routers), Instant::now());
    let mut rss_seen = vec![rss(lab, routers)];
    let dst = lab.topo.addr_of("h2", false).expect("h2");
    // Long enough for the events (a few seconds each); loss is counted while it runs.
    let stream_s = events as u64 * 6 + 20;
    let (results, report) = std::thread::scope(|s| -> Result<_> {
        let stream = s.spawn(|| {
            traffic::udp_stream(
                lab,
                "h1",
                "h2",
                dst,
                9400,
                STREAM_PPS * stream_s,
                STREAM_PPS,
            )
        });
        let mut results: Vec<Outcome> = Vec::new();
        for (k, e) in schedule.iter().enumerate() {
            soak.apply(e)?;
            let restored = check(lab);
            let dead = crashed(lab, routers);
            eprintln!(
                "  {:>3} {:>6.1} s  {:<36} restored {:?}{}",
                k + 1,
                soak_start.elapsed().as_secs_f64(),
                describe(e),
                restored,
                if dead.is_empty() {
                    String::new()
                } else {
                    format!("  CRASHED: {dead:?}")
                }
            );
            results.push((e.kind(), restored, dead));
            rss_seen.push(rss(lab, routers));
            std::thread::sleep(Duration::from_secs(2));
        }
        let report = stream.join().map_err(|_| anyhow!("stream panicked"))??;
        Ok((results, report))
    })?;
    let seconds = soak_start.elapsed().as_secs_f64();
    let floods1 = floods(lab, routers);
    let per_router_s = |i: usize| (floods1[i] - floods0[i]) / routers as f64 / seconds;
    let floods_per_router_s = [per_router_s(0), per_router_s(1)];
    rss_seen.push(rss(lab, routers));
    let findings = Findings {
        results,
        stream: report,
        rss: rss_seen,
        floods_per_router_s,
        bursts: capture.stop(lab)?,
        captured,
    };
    if std::env::var_os("X0_CHAOS_KEEP").is_some() {
        eprintln!(
            "lab kept: {} (x0-lab down --name {})",
            soak.lab.dir.display(),
            soak.lab.name
        );
        soak.lab.keep();
    }
    Ok(vec![table(quick, seed, routers, &findings)])
}

/// The largest burst per window, in words.
fn bursts_note(bursts: &[capture::Burst], captured: &[String]) -> String {
    let each: Vec<String> = bursts
        .iter()
        .map(|b| {
            format!(
                "{} in {} ms: {} packets on {} ({:?}; that link's mean {:.1} per {} ms)",
                b.of, b.window_ms, b.packets, b.link, b.kinds, b.mean, b.window_ms
            )
        })
        .collect();
    format!(
        "Largest burst of control packets (BFD, hellos, the brains' gRPC) on one link, tcpdump on every link of {} from before the brains started: {}.",
        captured.join(", "),
        each.join("; ")
    )
}

fn table(quick: bool, seed: u64, routers: usize, f: &Findings) -> Table {
    let Findings {
        results,
        stream,
        rss,
        floods_per_router_s,
        bursts,
        captured,
    } = f;
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (kind, restored, _) in results {
        if let Some(d) = restored {
            by_kind.entry(kind).or_default().push(d.as_secs_f64() * 1e3);
        }
    }
    let rows = by_kind
        .iter()
        .map(|(k, v)| Row::new(*k, v.clone()))
        .collect();
    let survived = results.iter().filter(|r| r.1.is_some()).count();
    let crashes: Vec<&String> = results.iter().flat_map(|r| &r.2).collect();
    let growth = rss_growth(rss);
    let worst = growth
        .iter()
        .cloned()
        .fold((String::new(), f64::MIN, [0; 3]), |w, g| {
            if g.1 > w.1 { g } else { w }
        });
    let met = survived == results.len() && crashes.is_empty() && worst.1 < 10.0;
    Table {
        id: if quick {
            "chaos-quick".into()
        } else {
            "chaos".into()
        },
        title: format!(
            "Chaos soak: {routers} routers, {} random events",
            results.len()
        ),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench chaos{} --seed {seed}",
            if quick { " --quick" } else { "" }
        ),
        about: format!(
            "A random geometric mesh of {routers} routers (seed {seed}) with discovery (no routes, minimal brain configs), small map profile, BFD {BFD_MS} ms x 3; a {STREAM_PPS} packets/s UDP stream h1 -> h2 throughout; after each event (carrier loss, black-hole, router kill -9, brain kill -9, their repairs) the time until both hosts reach each other in both families (ping, one at a time). Rows: restore time by event kind."
        ),
        unit: "ms to restore".into(),
        higher_is_better: false,
        rows,
        goal: "every event survived (all pairs restored), no daemon crash, RSS growth under 10 %"
            .into(),
        verdict: format!(
            "{survived} of {} survived; crashes {:?}; largest RSS growth {:.1} % ({}): {}",
            results.len(),
            crashes,
            worst.1,
            worst.0,
            if met { "met" } else { "not met" }
        ),
        notes: vec![
            format!(
                "Stream: {} sent, {} lost ({:.2} %), longest gap {:.0} ms.",
                stream.sent,
                stream.lost,
                stream.lost as f64 * 100.0 / stream.sent.max(1) as f64,
                stream.max_gap.as_secs_f64() * 1e3
            ),
            format!(
                "Control traffic: {:.1} Flood RPCs carrying {:.1} records per router per second (the brains' metrics).",
                floods_per_router_s[0], floods_per_router_s[1]
            ),
            format!(
                "RSS of {} (the largest growth): {} kB at the start, {} kB halfway, {} kB at the end; {} daemons ran the whole soak.",
                worst.0,
                worst.2[0],
                worst.2[1],
                worst.2[2],
                growth.len()
            ),
            bursts_note(bursts, captured),
        ],
    }
}
