//! From paths to what the dataplane installs: for every destination router, the first hops
//! of its disjoint paths in preference order, keeping a backup only if it is loop-free
//! (the packet is forwarded hop by hop from there, by the neighbour's own tables).

use std::collections::BTreeMap;

use crate::{
    disjoint::{CostGraph, Network},
    lfa::LfaTable,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHops {
    /// Neighbours (router indices) in preference order; the first is the shortest path's.
    pub via: Vec<usize>,
    /// Backups the disjoint paths proposed but the LFA check refused (they could loop).
    pub refused: Vec<usize>,
    /// Links and routers every path shares: single points of failure for this destination.
    pub shared_links: Vec<(usize, usize)>,
    pub shared_nodes: Vec<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// By destination router.
    pub next_hops: BTreeMap<usize, NextHops>,
    /// Destinations with a primary but no safe backup.
    pub unprotected: Vec<usize>,
}

/// The plan of router `source` with up to `k` paths per destination.
pub fn plan(g: &CostGraph, source: usize, k: usize) -> Plan {
    let mut net = Network::new(g, source, k);
    let lfa = LfaTable::new(g, source);
    let mut out = Plan::default();
    for dest in 0..g.n {
        let Some(set) = net.paths_to(dest) else {
            continue;
        };
        let mut via = Vec::new();
        let mut refused = Vec::new();
        for (i, p) in set.paths.iter().enumerate() {
            let hop = p.nodes[1];
            if via.contains(&hop) || refused.contains(&hop) {
                continue;
            }
            if i == 0 || hop == dest || lfa.is_loop_free(hop, dest) {
                via.push(hop);
            } else {
                refused.push(hop);
            }
        }
        if via.len() < 2 {
            out.unprotected.push(dest);
        }
        out.next_hops.insert(
            dest,
            NextHops {
                via,
                refused,
                shared_links: set.shared_links,
                shared_nodes: set.shared_nodes,
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
}
