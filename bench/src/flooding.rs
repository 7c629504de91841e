//! `x0-bench flooding`: link-state flooding at sizes two cores cannot host as processes.
//! Every router is the brain's real database (`Lsdb`, with its verification of both
//! signatures and the SVID chain) with its own SVID; messages travel over an in-memory
//! transport in simulated time (a fixed delay per link, plus the real CPU time each router
//! spent on what it received). The rule is the daemon's (`daemon/peers.rs`): a router
//! passes on what it accepted to every neighbour but the one it came from, all of it in
//! one Flood per neighbour. Measured per event: simulated time until every database holds
//! the same records, Flood messages, and floods per router (rounds of passing on).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashSet},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Result, bail};
use x0_brain::linkstate::{
    lsdb::Lsdb,
    lsp::{Signer, verify},
};
use x0_identity::{Identity, Trust};
use x0_proto::brain::v1::{self as pb, SignedRecord};

use crate::report::{Row, Table};

/// One router: its database, its key, its links that are up.
struct Node {
    name: String,
    db: Lsdb,
    signer: Signer,
    sequence: u64,
    up: Vec<usize>,
    /// Simulated time (µs) its CPU is busy until.
    busy_until: u64,
    /// Rounds of passing on in the current event.
    floods: u32,
}

/// A Flood in flight, ordered by arrival (then by sending order).
struct Msg {
    at_us: u64,
    seq: u64,
    to: usize,
    from: usize,
    records: Vec<SignedRecord>,
}

impl Msg {
    fn key(&self) -> (u64, u64) {
        (self.at_us, self.seq)
    }
}

impl PartialEq for Msg {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Msg {}
impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Msg {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

pub struct Sim {
    nodes: Vec<Node>,
    trust: Arc<Trust>,
    queue: BinaryHeap<Reverse<Msg>>,
    link_us: u64,
    sent: u64,
    seq: u64,
    last_accept_us: u64,
}

/// What one event cost.
pub struct Outcome {
    /// Records originated by the event (each router that saw a link change: one).
    pub records: usize,
    pub agree_ms: f64,
    pub messages: u64,
    pub max_floods: u32,
    pub mean_floods: f64,
    pub agreed: bool,
    pub wall: Duration,
}

impl Sim {
    /// `links` between `signers.len()` routers, all databases in agreement to begin with.
    pub fn new(
        signers: Vec<Named>,
        links: &[(usize, usize)],
        trust: Arc<Trust>,
        link_ms: f64,
    ) -> Result<Self> {
        let mut nodes: Vec<Node> = signers
            .into_iter()
            .map(|(name, signer)| Node {
                name,
                db: Lsdb::default(),
                signer,
                sequence: 0,
                up: Vec::new(),
                busy_until: 0,
                floods: 0,
            })
            .collect();
        for &(a, b) in links {
            nodes[a].up.push(b);
            nodes[b].up.push(a);
        }
        let mut sim = Sim {
            nodes,
            trust,
            queue: BinaryHeap::new(),
            link_us: (link_ms * 1000.0) as u64,
            sent: 0,
            seq: 0,
            last_accept_us: 0,
        };
        // Each record signed and verified once, then held by every database.
        for i in 0..sim.nodes.len() {
            let signed = sim.originate(i)?;
            let v = verify(&signed, &sim.trust, SystemTime::now())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for n in &mut sim.nodes {
                n.db.adopt(v.clone());
            }
        }
        Ok(sim)
    }

    /// Router `i`'s next record (its links up now), signed.
    fn originate(&mut self, i: usize) -> Result<SignedRecord> {
        let names: Vec<String> = self.nodes[i]
            .up
            .iter()
            .map(|&j| self.nodes[j].name.clone())
            .collect();
        let n = &mut self.nodes[i];
        n.sequence += 1;
        let record = pb::LinkStateRecord {
            originator: n.name.clone(),
            sequence: n.sequence,
            originated_unix_ns: x0_brain::linkstate::state::unix_ns(SystemTime::now()),
            lifetime_s: 3600,
            adjacencies: names
                .iter()
                .enumerate()
                .map(|(k, neighbor)| pb::Adjacency {
                    neighbor: neighbor.clone(),
                    cost: 10,
                    interface: format!("eth{k}"),
                    neighbor_addrs: vec![format!("10.{}.{}.2", k, i % 250)],
                })
                .collect(),
            prefixes: vec![format!("10.{}.{}.0/24", 100 + i / 250, i % 250)],
        };
        n.signer.sign(&record)
    }

    fn send(&mut self, from: usize, to: usize, at_us: u64, records: Vec<SignedRecord>) {
        self.seq += 1;
        self.sent += 1;
        self.queue.push(Reverse(Msg {
            at_us: at_us + self.link_us,
            seq: self.seq,
            to,
            from,
            records,
        }));
    }

    /// Router `i` learns at time 0 that its links changed: a new record, flooded.
    fn announce(&mut self, i: usize) -> Result<()> {
        let signed = self.originate(i)?;
        let t0 = Instant::now();
        let trust = self.trust.clone();
        self.nodes[i]
            .db
            .offer(&signed, &trust, SystemTime::now())
            .map_err(|e| anyhow::anyhow!("own record: {e}"))?;
        let busy = t0.elapsed().as_micros() as u64;
        self.nodes[i].busy_until = busy;
        self.pass_on(i, None, vec![signed], busy);
        Ok(())
    }

    /// Delivers everything in flight; each router handles its messages one at a time.
    fn run(&mut self) {
        while let Some(Reverse(m)) = self.queue.pop() {
            let start = m.at_us.max(self.nodes[m.to].busy_until);
            let t0 = Instant::now();
            let trust = self.trust.clone();
            let node = &mut self.nodes[m.to];
            let accepted: Vec<SignedRecord> = m
                .records
                .into_iter()
                .filter(|r| node.db.offer(r, &trust, SystemTime::now()).is_ok())
                .collect();
            let done = start + t0.elapsed().as_micros() as u64;
            node.busy_until = done;
            if !accepted.is_empty() {
                self.last_accept_us = self.last_accept_us.max(done);
                self.pass_on(m.to, Some(m.from), accepted, done);
            }
        }
    }

    /// The daemon's rule (`relay` in daemon/peers.rs): what a router accepted (or
    /// originated: `from` None) goes at once, in one round, to every neighbour but the
    /// one it came from.
    fn pass_on(&mut self, i: usize, from: Option<usize>, records: Vec<SignedRecord>, now: u64) {
        self.nodes[i].floods += 1;
        for j in self.nodes[i].up.clone() {
            if Some(j) != from {
                self.send(i, j, now, records.clone());
            }
        }
    }

    /// Whether every database holds the same sequence of every originator.
    fn agreed(&self) -> bool {
        let view = |n: &Node| -> BTreeMap<String, u64> {
            n.db.records()
                .map(|v| (v.record.originator.clone(), v.record.sequence))
                .collect()
        };
        let first = view(&self.nodes[0]);
        self.nodes.iter().all(|n| view(n) == first)
    }

    fn reset(&mut self) {
        (self.sent, self.last_accept_us) = (0, 0);
        for n in &mut self.nodes {
            (n.floods, n.busy_until) = (0, 0);
        }
    }

    fn outcome(&self, started: Instant, records: usize) -> Outcome {
        let floods: Vec<u32> = self.nodes.iter().map(|n| n.floods).collect();
        Outcome {
            records,
            agree_ms: self.last_accept_us as f64 / 1000.0,
            messages: self.sent,
            max_floods: floods.iter().copied().max().unwrap_or(0),
            mean_floods: floods.iter().map(|&f| f64::from(f)).sum::<f64>() / floods.len() as f64,
            agreed: self.agreed(),
            wall: started.elapsed(),
        }
    }

    fn cut(&mut self, a: usize, b: usize) {
        self.nodes[a].up.retain(|&x| x != b);
        self.nodes[b].up.retain(|&x| x != a);
    }

    /// One link fails: both ends announce at once (BFD saw it on both).
    pub fn link_failure(&mut self, a: usize, b: usize) -> Result<Outcome> {
        self.reset();
        let started = Instant::now();
        self.cut(a, b);
        self.announce(a)?;
        self.announce(b)?;
        self.run();
        Ok(self.outcome(started, 2))
    }

    /// The `cut` links fail together (each side converges on its own), then come back:
    /// their ends announce and, as the daemon does with a neighbour it (re)gains, send it
    /// their whole database. Measured from the heal.
    pub fn partition_heals(&mut self, cut: &[(usize, usize)]) -> Result<Outcome> {
        for &(a, b) in cut {
            self.cut(a, b);
        }
        let ends: HashSet<usize> = cut.iter().flat_map(|&(a, b)| [a, b]).collect();
        for &e in &ends {
            self.announce(e)?;
        }
        self.run();
        self.reset();
        let started = Instant::now();
        for &(a, b) in cut {
            self.nodes[a].up.push(b);
            self.nodes[b].up.push(a);
        }
        for &e in &ends {
            self.announce(e)?;
        }
        for &(a, b) in cut {
            for (from, to) in [(a, b), (b, a)] {
                let all: Vec<SignedRecord> = self.nodes[from]
                    .db
                    .records()
                    .map(|v| v.signed.clone())
                    .collect();
                self.send(from, to, self.nodes[from].busy_until, all);
            }
        }
        self.run();
        Ok(self.outcome(started, ends.len()))
    }
}

/// Links whose loss keeps the mesh connected.
fn not_bridges(n: usize, links: &[(usize, usize)]) -> Vec<(usize, usize)> {
    links
        .iter()
        .copied()
        .filter(|&l| connected(n, links.iter().copied().filter(|&x| x != l)))
        .take(8)
        .collect()
}

fn connected(n: usize, links: impl Iterator<Item = (usize, usize)>) -> bool {
    let mut adj = vec![Vec::new(); n];
    for (a, b) in links {
        adj[a].push(b);
        adj[b].push(a);
    }
    let (mut seen, mut stack) = (vec![false; n], vec![0]);
    seen[0] = true;
    while let Some(v) = stack.pop() {
        for &u in &adj[v] {
            if !seen[u] {
                seen[u] = true;
                stack.push(u);
            }
        }
    }
    seen.iter().all(|&s| s)
}

/// A brain's router name and its record signer.
type Named = (String, Signer);

/// SVIDs for `n` brains from a fresh lab CA, and its trust bundle.
fn identities(n: usize, dir: &std::path::Path) -> Result<(Vec<Named>, Arc<Trust>)> {
    let pki = x0_lab::pki::Pki::create(dir)?;
    let day = Duration::from_secs(86_400);
    let mut signers = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("r{i}");
        pki.issue(&format!("/brain/{name}"), &name, day)?;
        signers.push((name.clone(), Signer::from_files(&pki.files(&name))?));
    }
    let trust = Identity::from_files(&pki.files("r0"))?.trust().clone();
    Ok((signers, trust))
}

/// One mesh's two events, and the wire time alone of the link failure (the farthest
/// router's hops from the failed link times the link delay: what no flooding can beat).
pub struct Measured {
    pub failure: Outcome,
    pub heal: Outcome,
    pub wire_ms: f64,
    pub links: usize,
    pub cut: usize,
}

/// Builds the mesh of `routers` from `seed`, then a link failure and a partition healing.
pub fn run(routers: usize, seed: u64, link_ms: f64) -> Result<Measured> {
    if routers < 3 {
        bail!("routers: at least 3");
    }
    let (at, links) = x0_lab::random_mesh::geometric(routers, seed);
    let dir = tempfile::tempdir()?;
    let t0 = Instant::now();
    let (signers, trust) = identities(routers, dir.path())?;
    let mut sim = Sim::new(signers, &links, trust, link_ms)?;
    eprintln!(
        "{routers} routers (seed {seed}), {} links: set up in {:.1?}",
        links.len(),
        t0.elapsed()
    );
    let (a, b) = *not_bridges(routers, &links)
        .first()
        .ok_or_else(|| anyhow::anyhow!("no link to fail"))?;
    let kept: Vec<(usize, usize)> = links.iter().copied().filter(|&l| l != (a, b)).collect();
    let wire_ms = hops_from(routers, &kept, &[a, b]) as f64 * link_ms;
    let failure = sim.link_failure(a, b)?;
    // The partition: every link across the vertical line through the middle.
    let cut: Vec<(usize, usize)> = kept
        .iter()
        .copied()
        .filter(|&(x, y)| (at[x].0 < 0.5) != (at[y].0 < 0.5))
        .collect();
    let heal = sim.partition_heals(&cut)?;
    Ok(Measured {
        failure,
        heal,
        wire_ms,
        links: links.len(),
        cut: cut.len(),
    })
}

/// The most hops any router is from the nearest of `from`.
fn hops_from(n: usize, links: &[(usize, usize)], from: &[usize]) -> usize {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in links {
        adj[a].push(b);
        adj[b].push(a);
    }
    let mut hops = vec![usize::MAX; n];
    let mut queue: std::collections::VecDeque<usize> = from.iter().copied().collect();
    for &f in from {
        hops[f] = 0;
    }
    while let Some(v) = queue.pop_front() {
        for &u in &adj[v] {
            if hops[u] == usize::MAX {
                hops[u] = hops[v] + 1;
                queue.push_back(u);
            }
        }
    }
    hops.into_iter()
        .filter(|&h| h != usize::MAX)
        .max()
        .unwrap_or(0)
}

/// The goal at 1,000 routers (issue 19): every brain agrees within 1 s of simulated time,
/// with at most 3 floods per router per event.
const GOAL_MS: f64 = 1000.0;
const GOAL_FLOODS: u32 = 3;

/// One table per size, each over `seeds` meshes.
pub fn tables(sizes: &[usize], seeds: &[u64], link_ms: f64) -> Result<Vec<Table>> {
    let mut out = Vec::new();
    for &n in sizes {
        let runs: Vec<Measured> = seeds
            .iter()
            .map(|&seed| run(n, seed, link_ms))
            .collect::<Result<_>>()?;
        out.push(table(n, seeds, link_ms, &runs));
    }
    Ok(out)
}

fn table(n: usize, seeds: &[u64], link_ms: f64, runs: &[Measured]) -> Table {
    let col = |f: fn(&Measured) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let rows = vec![
        Row::new(
            "wire time alone: farthest router's hops x link delay",
            col(|m| m.wire_ms),
        )
        .baseline(),
        Row::new("one link fails", col(|m| m.failure.agree_ms)),
        Row::new("a partition heals", col(|m| m.heal.agree_ms)),
    ];
    let outcomes = |pick: fn(&Measured) -> &Outcome| runs.iter().map(pick).collect::<Vec<_>>();
    let mut notes = Vec::new();
    for (event, os) in [
        ("one link fails", outcomes(|m| &m.failure)),
        ("a partition heals", outcomes(|m| &m.heal)),
    ] {
        notes.push(format!(
            "{event}: new records {:?}; Flood messages {:?}; floods per router, max {:?}, mean {:?}; every database the same: {}; wall time {:?}.",
            os.iter().map(|o| o.records).collect::<Vec<_>>(),
            os.iter().map(|o| o.messages).collect::<Vec<_>>(),
            os.iter().map(|o| o.max_floods).collect::<Vec<_>>(),
            os.iter().map(|o| format!("{:.2}", o.mean_floods)).collect::<Vec<_>>(),
            if os.iter().all(|o| o.agreed) { "yes, every run" } else { "NO" },
            os.iter().map(|o| format!("{:.1?}", o.wall)).collect::<Vec<_>>(),
        ));
    }
    notes.push(format!(
        "Meshes: seeds {seeds:?}, {:?} links; the partition cuts {:?} links (all across the middle).",
        runs.iter().map(|m| m.links).collect::<Vec<_>>(),
        runs.iter().map(|m| m.cut).collect::<Vec<_>>()
    ));
    let all = runs.iter().flat_map(|m| [&m.failure, &m.heal]);
    let (worst_ms, worst_floods) = all.fold((0.0f64, 0u32), |(t, f), o| {
        (t.max(o.agree_ms), f.max(o.max_floods))
    });
    let met = worst_ms <= GOAL_MS && worst_floods <= GOAL_FLOODS;
    Table {
        id: format!("flooding-{n}"),
        title: format!("Link-state flooding at {n} routers (one process, simulated time)"),
        command: format!(
            "cargo build --release -p x0-bench && ./target/release/x0-bench flooding --routers {n}"
        ),
        about: format!(
            "Every router is the brain's real link-state database with its own SVID (each record verified: chain, ECDSA and ML-DSA-65); Floods travel an in-memory transport with {link_ms} ms per link, and each router spends the CPU time it really took on what it received. The rule is the daemon's: what a router accepts it passes on at once to every neighbour but the sender. Random geometric meshes; time until every database holds the same records."
        ),
        unit: "ms (simulated)".into(),
        higher_is_better: false,
        rows,
        goal: format!(
            "at 1,000 routers, every brain agrees within {GOAL_MS:.0} ms with at most {GOAL_FLOODS} floods per router per event"
        ),
        verdict: format!(
            "worst {worst_ms:.0} ms, {worst_floods} floods per router: {}",
            if met { "met" } else { "not met" }
        ),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_mesh_agrees_after_a_failure_and_a_heal() {
        let m = run(24, 3, 1.0).unwrap();
        let (failure, heal) = (&m.failure, &m.heal);
        assert!(
            m.links >= 23 && m.cut >= 1,
            "{} links, {} cut",
            m.links,
            m.cut
        );
        for o in [failure, heal] {
            assert!(o.agreed, "every database holds the same records");
            assert!(o.messages > 0 && o.agree_ms > 0.0);
        }
        // Two new records: each router passes each on once (its first arrival).
        assert_eq!((failure.records, failure.max_floods), (2, 2));
        // Flooding cannot beat the wire.
        assert!(
            m.wire_ms >= 1.0 && failure.agree_ms >= m.wire_ms,
            "{} < {}",
            failure.agree_ms,
            m.wire_ms
        );
        assert!(heal.records >= 2);
    }

    #[test]
    fn bridges_are_never_failed() {
        // A path a-b-c plus a triangle c-d-e: only the triangle's links keep it connected.
        let links = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 4)];
        assert_eq!(not_bridges(5, &links), vec![(2, 3), (3, 4), (2, 4)]);
    }
}
