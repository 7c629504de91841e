//! From paths to what the dataplane installs: for every destination router, the first hops
//! of its disjoint paths in preference order, keeping a backup only if it is loop-free
//! (the packet is forwarded hop by hop from there, by the neighbour's own tables).

use std::collections::BTreeMap;

use crate::{
    paths::disjoint::{CostGraph, PathSet, from_source},
    paths::lfa::LfaTable,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHops {
    /// Neighbours (router indices) in preference order; the first is on a shortest path.
    pub via: Vec<usize>,
    /// The shortest path's cost (to choose the nearest of several routers that originate
    /// one prefix, such as both ends of a link).
    pub cost: u64,
    /// Backups the disjoint paths proposed but the LFA check refused (they could loop).
    pub refused: Vec<usize>,
    /// Links and routers more than one path uses (the disjoint paths ran out).
    pub shared_links: Vec<(usize, usize)>,
    pub shared_nodes: Vec<usize>,
    /// Links and routers every path uses: single points of failure for this destination.
    pub common_links: Vec<(usize, usize)>,
    pub common_nodes: Vec<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// By destination router.
    pub next_hops: BTreeMap<usize, NextHops>,
    /// Destinations with a primary but no safe backup.
    pub unprotected: Vec<usize>,
    /// Routers and links whose loss splits the mesh (petgraph's articulation points and
    /// bridges): no choice of paths protects against them.
    pub articulation_points: Vec<usize>,
    pub bridges: Vec<(usize, usize)>,
}

/// Single points of failure of the whole graph.
pub fn cut_elements(g: &CostGraph) -> (Vec<usize>, Vec<(usize, usize)>) {
    use petgraph::visit::EdgeRef;
    let mut ug = petgraph::graph::UnGraph::<(), ()>::new_undirected();
    let nodes: Vec<_> = (0..g.n).map(|_| ug.add_node(())).collect();
    for &(a, b, _) in &g.links {
        ug.add_edge(nodes[a], nodes[b], ());
    }
    let mut points: Vec<usize> = petgraph::algo::articulation_points::articulation_points(&ug)
        .into_iter()
        .map(|n| n.index())
        .collect();
    points.sort_unstable();
    let mut bridges: Vec<(usize, usize)> = petgraph::algo::bridges::bridges(&ug)
        .map(|e| {
            let (a, b) = (e.source().index(), e.target().index());
            (a.min(b), a.max(b))
        })
        .collect();
    bridges.sort_unstable();
    (points, bridges)
}

/// The first hops of `set`'s paths for `dest`: first the one on a shortest path (the
/// disjoint set minimises the paths' total, so its cheapest may be longer than the
/// shortest, and a primary off every shortest path can loop: neighbours forward on theirs),
/// then the others in order where loop-free (RFC 5286), else refused.
fn next_hops(lfa: &LfaTable, set: &PathSet, dest: usize) -> (Vec<usize>, Vec<usize>) {
    let mut hops: Vec<usize> = Vec::new();
    for p in &set.paths {
        if !hops.contains(&p.nodes[1]) {
            hops.push(p.nodes[1]);
        }
    }
    let primary = hops
        .iter()
        .copied()
        .find(|&h| lfa.is_shortest(h, dest))
        .or_else(|| lfa.shortest_next_hop(dest))
        .unwrap_or(hops[0]);
    let mut via = vec![primary];
    let mut refused = Vec::new();
    for h in hops.into_iter().filter(|&h| h != primary) {
        if h == dest || lfa.is_loop_free(h, dest) {
            via.push(h);
        } else {
            refused.push(h);
        }
    }
    (via, refused)
}

/// The plan of router `source` with up to `k` paths per destination.
pub fn plan(g: &CostGraph, source: usize, k: usize) -> Plan {
    let lfa = LfaTable::new(g, source);
    let mut out = Plan::default();
    (out.articulation_points, out.bridges) = cut_elements(g);
    for (dest, set) in from_source(g, source, k).into_iter().enumerate() {
        let Some(set) = set else {
            continue;
        };
        let (via, refused) = next_hops(&lfa, &set, dest);
        if via.len() < 2 {
            out.unprotected.push(dest);
        }
        let links_of = |p: &crate::paths::disjoint::Path| -> Vec<(usize, usize)> {
            p.nodes
                .windows(2)
                .map(|w| (w[0].min(w[1]), w[0].max(w[1])))
                .collect()
        };
        let first = &set.paths[0];
        let common_links = links_of(first)
            .into_iter()
            .filter(|l| set.paths.iter().all(|p| links_of(p).contains(l)))
            .collect();
        let common_nodes = first.nodes[1..first.nodes.len() - 1]
            .iter()
            .copied()
            .filter(|n| set.paths.iter().all(|p| p.nodes.contains(n)))
            .collect();
        out.next_hops.insert(
            dest,
            NextHops {
                via,
                cost: lfa.distance(dest),
                refused,
                shared_links: set.shared_links,
                shared_nodes: set.shared_nodes,
                common_links,
                common_nodes,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_gives_two_safe_next_hops() {
        // 0-1-2-3-4-5-0, all cost 1: to the opposite router 3 both ways are equal and safe.
        let links = (0..6).map(|i| (i, (i + 1) % 6, 1)).collect();
        let p = plan(&CostGraph { n: 6, links }, 0, 3);
        let to3 = &p.next_hops[&3];
        assert_eq!(to3.via.len(), 2, "{to3:?}");
        assert!(to3.via.contains(&1) && to3.via.contains(&5));
        // The classic ring limit of LFAs: for the nearer routers the other way round
        // costs no less than coming back through us, so only the opposite one is covered.
        assert_eq!(p.unprotected, vec![1, 2, 4, 5]);
    }

    #[test]
    fn the_primary_is_on_a_shortest_path_even_when_the_disjoint_set_is_not() {
        // The six-router lab (r1..r6 = 0..5). From r4 to r3 the three paths sharing least
        // are r4-r5-r3 (19), r4-r2-r1-r3 (33) and one more; the shortest, r4-r2-r3 (18),
        // is not among them. The primary must still be r2: forwarding follows it.
        let g = CostGraph {
            n: 6,
            links: vec![
                (0, 1, 10),
                (0, 2, 12),
                (1, 2, 7),
                (1, 3, 11),
                (2, 4, 13),
                (3, 4, 6),
                (3, 5, 9),
                (4, 5, 14),
                (1, 4, 17),
            ],
        };
        let sets = from_source(&g, 3, 3);
        let cheapest = &sets[2].as_ref().unwrap().paths[0];
        assert_eq!(
            (cheapest.nodes[1], cheapest.cost),
            (4, 19),
            "the set's cheapest"
        );
        let to_r3 = &plan(&g, 3, 3).next_hops[&2];
        assert_eq!((to_r3.via[0], to_r3.cost), (1, 18));
        assert!(to_r3.via.contains(&4), "r5 stays a backup: {to_r3:?}");
    }

    #[test]
    fn a_backup_that_would_loop_is_refused() {
        // See lfa::tests: neighbour 2 would send traffic for 3 back through 0.
        let g = CostGraph {
            n: 4,
            links: vec![(0, 1, 1), (1, 3, 1), (0, 2, 1), (2, 3, 10)],
        };
        let p = plan(&g, 0, 2);
        assert_eq!(p.next_hops[&3].via, vec![1]);
        assert_eq!(p.next_hops[&3].refused, vec![2]);
        assert!(p.unprotected.contains(&3));
    }

    #[test]
    fn single_points_of_failure() {
        // 0 - 1 is a bridge, 1 an articulation point: every path to 2 or 3 uses them.
        let g = CostGraph {
            n: 4,
            links: vec![(0, 1, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)],
        };
        let p = plan(&g, 0, 3);
        assert_eq!(p.articulation_points, vec![1]);
        assert_eq!(p.bridges, vec![(0, 1)]);
        assert_eq!(p.next_hops[&3].common_links, vec![(0, 1)]);
        assert_eq!(p.next_hops[&3].common_nodes, vec![1]);
        // A ring has none.
        let ring = CostGraph {
            n: 5,
            links: (0..5).map(|i| (i, (i + 1) % 5, 1)).collect(),
        };
        let p = plan(&ring, 0, 3);
        assert!(p.articulation_points.is_empty() && p.bridges.is_empty());
        assert!(
            p.next_hops
                .values()
                .all(|h| h.common_links.is_empty() && h.common_nodes.is_empty())
        );
    }
}
