//! Up to k paths from one router to every other that share no link, and no node where
//! that is possible, with the least total cost (Suurballe / Bhandari: successive shortest
//! paths on a node-split graph).
//!
//! The flow network, built once per source: every router v becomes `in(v) -> out(v)`
//! (capacity 1: node-disjoint), every up link u-v becomes `out(u) -> in(v)` and back
//! (capacity 1: link-disjoint). Where k disjoint paths do not exist, the next paths may
//! reuse elements through parallel "penalty" arcs whose costs dwarf any real path: sharing
//! a link costs more than sharing a node, which costs more than any path, so the flow
//! shares as few links as possible, then as few nodes, then is as cheap as possible.
//!
//! Work shared across destinations: one Dijkstra from the source gives every destination's
//! first path and the potentials that keep reduced costs non-negative; each later path is
//! a Dijkstra on the residual graph that stops as soon as the destination is settled, and
//! only the arcs and potentials it touched are reset for the next destination.

use crate::paths::blocks::BlockTree;

/// An undirected graph with costs, in compressed rows: the input of the computation.
#[derive(Clone, Debug, Default)]
pub struct CostGraph {
    pub n: usize,
    /// (a, b, cost >= 1) per link.
    pub links: Vec<(usize, usize, u32)>,
}

impl CostGraph {
    /// Links in one order, whatever order they were learnt in: where several sets of paths
    /// are equally good, the computation's choice follows the order of the links, so every
    /// brain, and a check computed from a topology file, must see them in the same one.
    pub fn canonical(&mut self) {
        for l in &mut self.links {
            *l = (l.0.min(l.1), l.0.max(l.1), l.2);
        }
        self.links.sort_unstable();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Routers from the source to the destination, both included.
    pub nodes: Vec<usize>,
    pub cost: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSet {
    /// Cheapest first.
    pub paths: Vec<Path>,
    /// Links (a < b) that more than one path uses: single points of failure for this pair.
    pub shared_links: Vec<(usize, usize)>,
    /// Routers other than the ends that more than one path uses.
    pub shared_nodes: Vec<usize>,
}

struct Arc {
    to: u32,
    cost: i64,
    /// The link's own cost (0 for router arcs): what the path really costs.
    real: u32,
}

/// The flow network for one source, reused for every destination.
pub struct Network {
    k: usize,
    source: usize,
    arcs: Vec<Arc>,
    cap0: Vec<u32>,
    cap: Vec<u32>,
    /// Arcs out of each split node: `adj[off[v]..off[v + 1]]`.
    off: Vec<u32>,
    adj: Vec<u32>,
    /// Potentials from the source's shortest-path tree, and the tree (parent arc).
    pi: Vec<i64>,
    tree: Vec<u32>,
    // Scratch, reset through `touched` lists so that a destination costs what it uses.
    /// The potentials for the current destination: `pi` plus its own changes, which are
    /// undone through `pot_touched` (one array to read in the inner loop, not two).
    pot: Vec<i64>,
    pot_touched: Vec<u32>,
    cap_touched: Vec<u32>,
    dist: Vec<i64>,
    stamp: Vec<u32>,
    done: Vec<u32>,
    parent: Vec<u32>,
    generation: u32,
    heap: RadixHeap,
    /// The nodes the last search settled.
    settled: Vec<u32>,
}

/// A radix heap (Ahuja, Mehlhorn, Orlin, Tarjan 1990): Dijkstra only ever asks for keys at
/// or above the last one it took, so items sit in buckets by the highest bit in which they
/// differ from it and are sorted lazily. Measured against std's BinaryHeap on the 1000-router
/// benchmark: see docs/PERFORMANCE-NOTES.md.
struct RadixHeap {
    last: i64,
    buckets: [Vec<(i64, u32)>; 65],
    len: usize,
}

impl Default for RadixHeap {
    fn default() -> Self {
        RadixHeap {
            last: 0,
            buckets: std::array::from_fn(|_| Vec::new()),
            len: 0,
        }
    }
}

impl RadixHeap {
    fn bucket(&self, key: i64) -> usize {
        64 - (key ^ self.last).leading_zeros() as usize
    }

    fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.last = 0;
        self.len = 0;
    }

    fn push(&mut self, key: i64, item: u32) {
        debug_assert!(key >= self.last, "keys only grow");
        let b = self.bucket(key);
        self.buckets[b].push((key, item));
        self.len += 1;
    }

    fn pop(&mut self) -> Option<(i64, u32)> {
        if self.len == 0 {
            return None;
        }
        if self.buckets[0].is_empty() {
            let i = (1..65)
                .find(|&i| !self.buckets[i].is_empty())
                .expect("len > 0");
            let items = std::mem::take(&mut self.buckets[i]);
            self.last = items.iter().map(|x| x.0).min().expect("not empty");
            for &(key, item) in &items {
                let b = self.bucket(key);
                self.buckets[b].push((key, item));
            }
            // keep the allocation for next time
            self.buckets[i] = items;
            self.buckets[i].clear();
        }
        self.len -= 1;
        self.buckets[0].pop()
    }
}

const NONE: u32 = u32::MAX;
const INF: i64 = i64::MAX / 4;

fn node_in(v: usize) -> usize {
    2 * v
}
fn node_out(v: usize) -> usize {
    2 * v + 1
}

impl Network {
    /// Builds the network of `g` for paths from `source`, at most `k` per destination.
    pub fn new(g: &CostGraph, source: usize, k: usize) -> Self {
        assert!(source < g.n && k >= 1);
        let total: i64 = g.links.iter().map(|l| i64::from(l.2)).sum::<i64>() + 1;
        let p_node = total * k as i64;
        let p_link = p_node * (g.n as i64 + 1);
        let mut tails: Vec<u32> = Vec::new();
        let mut arcs: Vec<Arc> = Vec::new();
        let mut cap0: Vec<u32> = Vec::new();
        let mut add = |u: usize, v: usize, cap: u32, cost: i64, real: u32| {
            tails.push(u as u32);
            arcs.push(Arc {
                to: v as u32,
                cost,
                real,
            });
            cap0.push(cap);
            tails.push(v as u32);
            arcs.push(Arc {
                to: u as u32,
                cost: -cost,
                real,
            });
            cap0.push(0);
        };
        let extra = (k - 1) as u32;
        for v in 0..g.n {
            add(node_in(v), node_out(v), 1, 0, 0);
            if extra > 0 {
                add(node_in(v), node_out(v), extra, p_node, 0);
            }
        }
        for &(a, b, c) in &g.links {
            for (u, v) in [(a, b), (b, a)] {
                add(node_out(u), node_in(v), 1, i64::from(c), c);
                if extra > 0 {
                    add(node_out(u), node_in(v), extra, i64::from(c) + p_link, c);
                }
            }
        }
        let nodes = 2 * g.n;
        let mut off = vec![0u32; nodes + 1];
        for &t in &tails {
            off[t as usize + 1] += 1;
        }
        for i in 0..nodes {
            off[i + 1] += off[i];
        }
        let mut fill = off.clone();
        let mut adj = vec![0u32; tails.len()];
        for (a, &t) in tails.iter().enumerate() {
            adj[fill[t as usize] as usize] = a as u32;
            fill[t as usize] += 1;
        }
        let mut net = Network {
            k,
            source,
            cap: cap0.clone(),
            cap0,
            arcs,
            off,
            adj,
            pi: vec![0; nodes],
            tree: vec![NONE; nodes],
            pot: vec![0; nodes],
            pot_touched: Vec::new(),
            cap_touched: Vec::new(),
            dist: vec![INF; nodes],
            stamp: vec![0; nodes],
            done: vec![0; nodes],
            parent: vec![NONE; nodes],
            generation: 0,
            heap: RadixHeap::default(),
            settled: Vec::new(),
        };
        // The shared shortest-path tree: potentials, and every first path.
        net.dijkstra(None);
        for v in 0..nodes {
            let d = net.distance(v);
            net.pi[v] = if d >= INF { INF } else { d };
            net.pot[v] = net.pi[v];
            net.tree[v] = if net.stamp[v] == net.generation {
                net.parent[v]
            } else {
                NONE
            };
        }
        net
    }

    fn distance(&self, v: usize) -> i64 {
        if self.stamp[v] == self.generation {
            self.dist[v]
        } else {
            INF
        }
    }

    /// Whether arc `a` leads where a cheaper arc beside it also leads, so the search can
    /// skip it: a penalty arc while its plain twin has room, or undoing plain flow while
    /// penalty flow on the same link can be undone instead. (Arcs come in groups of four
    /// when there are penalty arcs: plain, its reverse, penalty, its reverse.)
    fn dominated(&self, a: usize) -> bool {
        self.k > 1
            && match a & 3 {
                2 => self.cap[a - 2] > 0,
                1 => self.cap[a + 2] > 0,
                _ => false,
            }
    }

    fn potential(&self, v: usize) -> i64 {
        self.pot[v]
    }

    /// Dijkstra from out(source) on the residual graph with reduced costs; stops once
    /// `target` is settled. Leaves dist/parent/done stamped with the new generation.
    fn dijkstra(&mut self, target: Option<usize>) -> bool {
        self.generation += 1;
        let g = self.generation;
        let s = node_out(self.source);
        self.heap.clear();
        self.dist[s] = 0;
        self.stamp[s] = g;
        self.parent[s] = NONE;
        self.heap.push(0, s as u32);
        self.settled.clear();
        while let Some((d, u)) = self.heap.pop() {
            let u = u as usize;
            if self.done[u] == g || d > self.dist[u] {
                continue;
            }
            self.done[u] = g;
            self.settled.push(u as u32);
            if Some(u) == target {
                return true;
            }
            let pu = self.potential(u);
            for i in self.off[u]..self.off[u + 1] {
                let a = self.adj[i as usize] as usize;
                if self.cap[a] == 0 || self.dominated(a) {
                    continue;
                }
                let v = self.arcs[a].to as usize;
                if self.done[v] == g {
                    continue;
                }
                let pv = self.potential(v);
                if pv >= INF {
                    continue; // never reachable from the source
                }
                let nd = d + self.arcs[a].cost + pu - pv;
                if self.stamp[v] != g || nd < self.dist[v] {
                    self.stamp[v] = g;
                    self.dist[v] = nd;
                    self.parent[v] = a as u32;
                    self.heap.push(nd, v as u32);
                }
            }
        }
        target.is_none()
    }

    fn push(&mut self, a: usize) {
        self.cap[a] -= 1;
        self.cap[a ^ 1] += 1;
        self.cap_touched.push(a as u32);
    }

    fn tail(&self, a: usize) -> usize {
        self.arcs[a ^ 1].to as usize
    }

    /// The k paths to `dest` (None: unreachable, or the source itself).
    pub fn paths_to(&mut self, dest: usize) -> Option<PathSet> {
        let t = node_in(dest);
        if dest == self.source || self.tree[t] == NONE {
            return None;
        }
        // First path: the shared tree.
        let mut v = t;
        while v != node_out(self.source) {
            let a = self.tree[v] as usize;
            self.push(a);
            v = self.tail(a);
        }
        for _ in 1..self.k {
            if !self.dijkstra(Some(t)) {
                break;
            }
            // Potentials: +dist for settled nodes, shifted by -dist(t) for everyone (which
            // changes no reduced cost), so only the settled ones move.
            let dt = self.dist[t];
            for &u in &self.settled {
                let u = u as usize;
                if self.dist[u] != dt {
                    self.pot_touched.push(u as u32);
                    self.pot[u] += self.dist[u] - dt;
                }
            }
            let mut v = t;
            while v != node_out(self.source) {
                let a = self.parent[v] as usize;
                self.push(a);
                v = self.tail(a);
            }
        }
        let set = self.decompose(dest);
        for a in self.cap_touched.drain(..) {
            let a = a as usize;
            self.cap[a] = self.cap0[a];
            self.cap[a ^ 1] = self.cap0[a ^ 1];
        }
        for u in self.pot_touched.drain(..) {
            self.pot[u as usize] = self.pi[u as usize];
        }
        Some(set)
    }

    /// Splits the flow into paths and names what they share.
    fn decompose(&self, dest: usize) -> PathSet {
        // Sorted vectors and a full sort: the same graph always gives the same paths in the
        // same order (brains compare plans with each other and with what is installed).
        // (tail, arc) for every unit of flow, and whether it was walked yet.
        let mut flow: Vec<(usize, usize, bool)> = Vec::new();
        let mut arcs: Vec<usize> = self.cap_touched.iter().map(|&a| a as usize & !1).collect();
        arcs.sort_unstable();
        arcs.dedup();
        for a in arcs {
            for _ in 0..self.cap0[a].saturating_sub(self.cap[a]) {
                flow.push((self.tail(a), a, false));
            }
        }
        flow.sort_unstable();
        let mut take = |v: usize| -> Option<usize> {
            let end = flow.partition_point(|f| f.0 <= v);
            let unit = flow[..end]
                .iter_mut()
                .rev()
                .take_while(|f| f.0 == v)
                .find(|f| !f.2)?;
            unit.2 = true;
            Some(unit.1)
        };
        let mut paths = Vec::new();
        let t = node_in(dest);
        while let Some(first) = take(node_out(self.source)) {
            let mut nodes = vec![self.source];
            let mut cost = 0u64;
            let mut a = first;
            loop {
                cost += u64::from(self.arcs[a].real);
                let v = self.arcs[a].to as usize;
                if v == t {
                    nodes.push(dest);
                    break;
                }
                if v % 2 == 1 {
                    // out(x): a router passed through
                    nodes.push(v / 2);
                }
                a = take(v).expect("flow is conserved");
            }
            paths.push(Path { nodes, cost });
        }
        paths.sort_by(|a, b| (a.cost, &a.nodes).cmp(&(b.cost, &b.nodes)));
        let mut links: Vec<(usize, usize)> = Vec::new();
        let mut routers: Vec<usize> = Vec::new();
        for p in &paths {
            links.extend(p.nodes.windows(2).map(|w| (w[0].min(w[1]), w[0].max(w[1]))));
            routers.extend(&p.nodes[1..p.nodes.len() - 1]);
        }
        PathSet {
            paths,
            shared_links: repeated(links),
            shared_nodes: repeated(routers),
        }
    }
}

/// The values that occur more than once, sorted.
fn repeated<T: Ord + Copy>(mut all: Vec<T>) -> Vec<T> {
    all.sort_unstable();
    let mut out: Vec<T> = all
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    out.dedup();
    out
}

/// k paths from `source` to every router (index = destination; None: itself or unreachable).
///
/// Searched block by block ([`crate::paths::blocks`]): every path to a router behind a cut router
/// passes through it, so the paths to it are the paths to the cut router joined with the
/// paths from there inside the router's own block. What the flow minimises (links shared,
/// routers shared, cost) adds up over blocks, so the result is as good as one search over
/// the whole mesh, at the cost of searching each block once.
pub fn from_source(g: &CostGraph, source: usize, k: usize) -> Vec<Option<PathSet>> {
    let mut out: Vec<Option<PathSet>> = vec![None; g.n];
    let mut local = vec![usize::MAX; g.n];
    for (entry, block) in BlockTree::new(g.n, &g.links, source).blocks {
        for (i, &r) in block.routers.iter().enumerate() {
            local[r] = i;
        }
        let sub = CostGraph {
            n: block.routers.len(),
            links: block
                .links
                .iter()
                .map(|&e| {
                    let (a, b, c) = g.links[e];
                    (local[a], local[b], c)
                })
                .collect(),
        };
        let mut net = Network::new(&sub, local[entry], k);
        for (i, &r) in block.routers.iter().enumerate() {
            if r == entry {
                continue;
            }
            let Some(mut inside) = net.paths_to(i) else {
                continue;
            };
            for p in &mut inside.paths {
                for x in &mut p.nodes {
                    *x = block.routers[*x];
                }
            }
            for l in &mut inside.shared_links {
                let (a, b) = (block.routers[l.0], block.routers[l.1]);
                *l = (a.min(b), a.max(b));
            }
            for x in &mut inside.shared_nodes {
                *x = block.routers[*x];
            }
            out[r] = Some(match &out[entry] {
                None => inside,
                Some(before) => join(before, inside, entry),
            });
        }
        for &r in &block.routers {
            local[r] = usize::MAX;
        }
    }
    out
}

/// The paths to cut router `via` followed by those from it: cheapest with cheapest (any
/// pairing costs the same in total and shares the same elements).
fn join(before: &PathSet, after: PathSet, via: usize) -> PathSet {
    debug_assert_eq!(
        before.paths.len(),
        after.paths.len(),
        "k units flow everywhere"
    );
    let mut paths: Vec<Path> = before
        .paths
        .iter()
        .zip(after.paths)
        .map(|(a, b)| Path {
            nodes: a.nodes.iter().chain(&b.nodes[1..]).copied().collect(),
            cost: a.cost + b.cost,
        })
        .collect();
    paths.sort_by(|a, b| (a.cost, &a.nodes).cmp(&(b.cost, &b.nodes)));
    let mut shared_links = before.shared_links.clone();
    shared_links.extend(after.shared_links);
    shared_links.sort_unstable();
    let mut shared_nodes = before.shared_nodes.clone();
    if paths.len() > 1 {
        shared_nodes.push(via);
    }
    shared_nodes.extend(after.shared_nodes);
    shared_nodes.sort_unstable();
    PathSet {
        paths,
        shared_links,
        shared_nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, links: &[(usize, usize, u32)]) -> CostGraph {
        CostGraph {
            n,
            links: links.to_vec(),
        }
    }

    #[test]
    fn the_trap_topology_needs_the_flow_not_greedy_removal() {
        // Suurballe's classic: the shortest path s-a-b-t blocks both disjoint ones
        // (s-a-t, s-b-t); removing it leaves none.
        //   s=0 a=1 b=2 t=3
        let g = graph(4, &[(0, 1, 1), (1, 2, 1), (2, 3, 1), (0, 2, 3), (1, 3, 3)]);
        let set = from_source(&g, 0, 2)[3].clone().unwrap();
        let mut nodes: Vec<Vec<usize>> = set.paths.iter().map(|p| p.nodes.clone()).collect();
        nodes.sort();
        assert_eq!(nodes, vec![vec![0, 1, 3], vec![0, 2, 3]]);
        assert_eq!(set.paths.iter().map(|p| p.cost).sum::<u64>(), 8);
        assert!(set.shared_links.is_empty() && set.shared_nodes.is_empty());
    }

    #[test]
    fn node_disjoint_preferred_when_it_exists() {
        // Two link-disjoint routes through the middle router 1, and a longer one avoiding it.
        let g = graph(
            5,
            &[
                (0, 1, 1),
                (1, 4, 1),
                (0, 2, 1),
                (2, 1, 1),
                (1, 3, 1),
                (3, 4, 1),
                (0, 4, 10),
            ],
        );
        let set = from_source(&g, 0, 2)[4].clone().unwrap();
        assert!(set.shared_nodes.is_empty(), "{set:?}");
        assert_eq!(set.paths[0].nodes, vec![0, 1, 4]);
        assert_eq!(set.paths[1].nodes, vec![0, 4]);
    }

    #[test]
    fn a_bridge_is_shared_and_named() {
        // 0 - 1 is the only way to the rest: every path shares it.
        let g = graph(4, &[(0, 1, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)]);
        let sets = from_source(&g, 0, 3);
        let set = sets[2].clone().unwrap();
        assert_eq!(set.paths.len(), 3);
        assert!(set.shared_links.contains(&(0, 1)), "{set:?}");
        assert!(set.shared_nodes.contains(&1));
        assert!(sets[0].is_none(), "no paths to itself");
    }

    #[test]
    fn unreachable_destinations_have_none() {
        let g = graph(3, &[(0, 1, 1)]);
        let sets = from_source(&g, 0, 3);
        assert!(sets[2].is_none());
        assert_eq!(sets[1].as_ref().unwrap().paths[0].nodes, vec![0, 1]);
    }

    /// Brute force on small graphs: the cheapest set of k pairwise link- and node-disjoint
    /// simple paths, where one exists, costs what the flow found.
    #[test]
    fn matches_brute_force_on_random_small_graphs() {
        let mut rng = crate::paths::testgraph::SplitMix(7);
        for round in 0..200 {
            let n = 5 + (rng.next_u64() % 4) as usize;
            let mut links = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    if rng.next_u64() % 100 < 45 {
                        links.push((a, b, 1 + (rng.next_u64() % 9) as u32));
                    }
                }
            }
            let g = graph(n, &links);
            for k in [2, 3] {
                let sets = from_source(&g, 0, k);
                for (d, found) in sets.iter().enumerate().skip(1) {
                    let best = brute_force(&g, 0, d, k);
                    match (found, best) {
                        (Some(set), Some(cost)) => {
                            assert!(
                                set.shared_links.is_empty() && set.shared_nodes.is_empty(),
                                "round {round}"
                            );
                            let got: u64 = set.paths.iter().map(|p| p.cost).sum();
                            assert_eq!(got, cost, "round {round} k {k} dest {d}: {set:?}");
                        }
                        (Some(set), None) => assert!(
                            set.paths.len() < k
                                || !set.shared_links.is_empty()
                                || !set.shared_nodes.is_empty(),
                            "round {round}: claims {k} disjoint paths the brute force does not find: {set:?}"
                        ),
                        (None, Some(_)) => panic!("round {round}: missed a reachable destination"),
                        (None, None) => {}
                    }
                }
            }
        }
    }

    /// What the flow minimises, read back from its paths: links used beyond once, then
    /// routers used beyond once, then cost.
    fn objective(set: &PathSet) -> (usize, usize, u64) {
        let mut links: std::collections::HashMap<_, usize> = Default::default();
        let mut nodes: std::collections::HashMap<_, usize> = Default::default();
        for p in &set.paths {
            for w in p.nodes.windows(2) {
                *links.entry((w[0].min(w[1]), w[0].max(w[1]))).or_insert(0) += 1;
            }
            for &n in &p.nodes[1..p.nodes.len() - 1] {
                *nodes.entry(n).or_insert(0) += 1;
            }
        }
        let excess = |counts: Vec<usize>| counts.iter().map(|c| c - 1).sum();
        (
            excess(links.into_values().collect()),
            excess(nodes.into_values().collect()),
            set.paths.iter().map(|p| p.cost).sum(),
        )
    }

    /// Block by block gives path sets as good as one search over the whole mesh, and the
    /// paths are real paths of the mesh from the source to the destination.
    #[test]
    fn blocks_give_what_one_search_over_the_mesh_gives() {
        let mut behind_cuts = 0;
        for seed in 0..6 {
            let g = crate::paths::testgraph::random_geometric(150, 2.5 + seed as f64, seed);
            let linked: std::collections::HashSet<(usize, usize)> = g
                .links
                .iter()
                .flat_map(|&(a, b, _)| [(a, b), (b, a)])
                .collect();
            for source in [0, 33, 99] {
                for k in [1, 2, 3] {
                    let by_blocks = from_source(&g, source, k);
                    let mut net = Network::new(&g, source, k);
                    for (d, got) in by_blocks.iter().enumerate() {
                        let whole = net.paths_to(d);
                        assert_eq!(
                            got.as_ref().map(objective),
                            whole.as_ref().map(objective),
                            "seed {seed} source {source} k {k} dest {d}"
                        );
                        let Some(set) = got else { continue };
                        assert_eq!(set.paths.len(), k);
                        for p in &set.paths {
                            assert_eq!((p.nodes[0], *p.nodes.last().unwrap()), (source, d));
                            assert!(p.nodes.windows(2).all(|w| linked.contains(&(w[0], w[1]))));
                        }
                        let whole = whole.unwrap();
                        // equally good sets may share different elements, never more of them
                        assert_eq!(set.shared_links.len(), whole.shared_links.len());
                        assert_eq!(set.shared_nodes.len(), whole.shared_nodes.len());
                        behind_cuts += usize::from(!set.shared_nodes.is_empty());
                    }
                }
            }
        }
        assert!(
            behind_cuts > 500,
            "the graphs have cut routers: {behind_cuts}"
        );
    }

    fn brute_force(g: &CostGraph, s: usize, t: usize, k: usize) -> Option<u64> {
        let mut adj = vec![Vec::new(); g.n];
        for &(a, b, c) in &g.links {
            adj[a].push((b, c));
            adj[b].push((a, c));
        }
        let mut all = Vec::new();
        fn dfs(
            adj: &[Vec<(usize, u32)>],
            v: usize,
            t: usize,
            seen: &mut Vec<bool>,
            path: &mut Vec<usize>,
            cost: u64,
            out: &mut Vec<(Vec<usize>, u64)>,
        ) {
            if v == t {
                out.push((path.clone(), cost));
                return;
            }
            for &(w, c) in &adj[v] {
                if !seen[w] {
                    seen[w] = true;
                    path.push(w);
                    dfs(adj, w, t, seen, path, cost + u64::from(c), out);
                    path.pop();
                    seen[w] = false;
                }
            }
        }
        let mut seen = vec![false; g.n];
        seen[s] = true;
        dfs(&adj, s, t, &mut seen, &mut vec![s], 0, &mut all);
        let disjoint = |a: &Vec<usize>, b: &Vec<usize>| {
            let inner = |p: &Vec<usize>| p[1..p.len() - 1].to_vec();
            let shares_node = inner(a).iter().any(|x| inner(b).contains(x));
            let direct = |p: &Vec<usize>| p.len() == 2;
            !(shares_node || direct(a) && direct(b))
        };
        let mut best: Option<u64> = None;
        let m = all.len();
        let mut pick = vec![0usize; k];
        fn choose(
            i: usize,
            start: usize,
            m: usize,
            pick: &mut Vec<usize>,
            all: &[(Vec<usize>, u64)],
            ok: &dyn Fn(&Vec<usize>, &Vec<usize>) -> bool,
            best: &mut Option<u64>,
        ) {
            if i == pick.len() {
                let cost = pick.iter().map(|&j| all[j].1).sum();
                if best.is_none_or(|b| cost < b) {
                    *best = Some(cost);
                }
                return;
            }
            for j in start..m {
                if pick[..i].iter().all(|&p| ok(&all[p].0, &all[j].0)) {
                    pick[i] = j;
                    choose(i + 1, j + 1, m, pick, all, ok, best);
                }
            }
        }
        choose(0, 0, m, &mut pick, &all, &disjoint, &mut best);
        best
    }
}
