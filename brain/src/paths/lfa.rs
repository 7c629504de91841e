//! Loop-free alternates (RFC 5286): a backup next hop N of router S for destination D is
//! safe when N's own shortest path to D does not come back through S:
//! dist(N, D) < dist(N, S) + dist(S, D)  (inequality 1).

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::paths::disjoint::CostGraph;

/// Shortest distances from `from` to every router (u64::MAX: unreachable).
pub fn distances(g: &CostGraph, from: usize) -> Vec<u64> {
    let mut adj = vec![Vec::new(); g.n];
    for &(a, b, c) in &g.links {
        adj[a].push((b, u64::from(c)));
        adj[b].push((a, u64::from(c)));
    }
    let mut dist = vec![u64::MAX; g.n];
    let mut heap = BinaryHeap::new();
    dist[from] = 0;
    heap.push(Reverse((0u64, from)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if d > dist[u] {
            continue;
        }
        for &(v, c) in &adj[u] {
            if d + c < dist[v] {
                dist[v] = d + c;
                heap.push(Reverse((d + c, v)));
            }
        }
    }
    dist
}

/// Distances from the source and from each of its neighbours, computed once.
pub struct LfaTable {
    source: usize,
    from_source: Vec<u64>,
    /// The cheapest link to each neighbour.
    link_cost: std::collections::HashMap<usize, u64>,
    from_neighbour: std::collections::HashMap<usize, Vec<u64>>,
}

impl LfaTable {
    pub fn new(g: &CostGraph, source: usize) -> Self {
        // The cheapest link to each neighbour; its keys are the neighbours.
        let mut link_cost = std::collections::HashMap::new();
        for &(a, b, c) in &g.links {
            let n = match (a == source, b == source) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            let e = link_cost.entry(n).or_insert(u64::MAX);
            *e = (*e).min(u64::from(c));
        }
        Self {
            source,
            from_source: distances(g, source),
            from_neighbour: link_cost.keys().map(|&n| (n, distances(g, n))).collect(),
            link_cost,
        }
    }

    /// Whether sending traffic for `dest` to neighbour `n` cannot loop back to us.
    pub fn is_loop_free(&self, n: usize, dest: usize) -> bool {
        let Some(dn) = self.from_neighbour.get(&n) else {
            return false; // not a neighbour
        };
        if dn[dest] == u64::MAX {
            return false;
        }
        let back = dn[self.source].saturating_add(self.from_source[dest]);
        dn[dest] < back
    }

    /// The cost of the shortest path to `dest` (u64::MAX: unreachable).
    pub fn distance(&self, dest: usize) -> u64 {
        self.from_source[dest]
    }

    /// Whether neighbour `n` is the first hop of a shortest path to `dest`.
    pub fn is_shortest(&self, n: usize, dest: usize) -> bool {
        let (Some(dn), Some(&c)) = (self.from_neighbour.get(&n), self.link_cost.get(&n)) else {
            return false;
        };
        dn[dest] != u64::MAX && c.saturating_add(dn[dest]) == self.from_source[dest]
    }

    /// The first hop of a shortest path to `dest` (the lowest-numbered where several tie).
    pub fn shortest_next_hop(&self, dest: usize) -> Option<usize> {
        let mut ns: Vec<usize> = self.from_neighbour.keys().copied().collect();
        ns.sort_unstable();
        ns.into_iter().find(|&n| self.is_shortest(n, dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5286_inequality() {
        // S=0 with neighbours 1 and 2; D=3. 1 reaches D directly; 2's best path to D goes
        // through S (2-0-1-3 costs 3, 2-3 costs 10): not loop-free.
        let g = CostGraph {
            n: 4,
            links: vec![(0, 1, 1), (1, 3, 1), (0, 2, 1), (2, 3, 10)],
        };
        let t = LfaTable::new(&g, 0);
        assert!(t.is_loop_free(1, 3));
        assert!(!t.is_loop_free(2, 3));
        assert!(!t.is_loop_free(3, 3), "not a neighbour");
        assert!(t.is_shortest(1, 3) && !t.is_shortest(2, 3));
        assert_eq!((t.shortest_next_hop(3), t.distance(3)), (Some(1), 2));
    }
}
