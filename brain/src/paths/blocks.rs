//! The mesh cut into its blocks (biconnected components) and, seen from one router, the
//! block-cut tree: which block each router is reached through and by which entry router.
//!
//! Why the disjoint-path search wants this: a cut router (or a bridge) between the source
//! and a destination lies on every path, so the k paths decompose into independent parts,
//! one per block along the way, each searched inside its own block only. Sparse meshes are
//! chains of small blocks; searching the whole mesh for every destination sweeps it again
//! and again for sharing that is forced anyway.

/// One block: its routers (sorted) and its links (indices into the link list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub routers: Vec<usize>,
    pub links: Vec<usize>,
}

/// The blocks of a graph (a bridge is a block of two). Hopcroft-Tarjan on an edge stack,
/// iterative so that long chains cannot overflow the stack.
pub fn blocks(n: usize, links: &[(usize, usize, u32)]) -> Vec<Block> {
    let mut adj: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (e, &(a, b, _)) in links.iter().enumerate() {
        if a != b {
            adj[a].push((b, e));
            adj[b].push((a, e));
        }
    }
    const UNSEEN: usize = usize::MAX;
    let mut disc = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut time = 0;
    let mut edges: Vec<usize> = Vec::new();
    let mut mark = vec![usize::MAX; n];
    let mut out = Vec::new();
    for root in 0..n {
        if disc[root] != UNSEEN {
            continue;
        }
        disc[root] = time;
        low[root] = time;
        time += 1;
        // (router, the link it was reached by, next neighbour to look at)
        let mut stack = vec![(root, usize::MAX, 0usize)];
        while let Some(&mut (v, via, ref mut next)) = stack.last_mut() {
            if let Some(&(w, e)) = adj[v].get(*next) {
                *next += 1;
                if e == via {
                    continue;
                }
                if disc[w] == UNSEEN {
                    edges.push(e);
                    disc[w] = time;
                    low[w] = time;
                    time += 1;
                    stack.push((w, e, 0));
                } else if disc[w] < disc[v] {
                    edges.push(e); // a link back up the tree
                    low[v] = low[v].min(disc[w]);
                }
                continue;
            }
            stack.pop();
            let Some(&(parent, _, _)) = stack.last() else {
                continue;
            };
            low[parent] = low[parent].min(low[v]);
            if low[v] >= disc[parent] {
                // parent separates v's subtree: the links above and including `via` are a block
                let id = out.len();
                let mut block = Block {
                    routers: Vec::new(),
                    links: Vec::new(),
                };
                while let Some(e) = edges.pop() {
                    block.links.push(e);
                    for x in [links[e].0, links[e].1] {
                        if mark[x] != id {
                            mark[x] = id;
                            block.routers.push(x);
                        }
                    }
                    if e == via {
                        break;
                    }
                }
                block.routers.sort_unstable();
                block.links.sort_unstable();
                out.push(block);
            }
        }
    }
    out
}

/// The block-cut tree from `source`: the blocks in the order they are reached, each with
/// its entry router (the source, or the cut router leading into it). Blocks that the
/// source cannot reach are left out.
pub struct BlockTree {
    /// (entry, block)
    pub blocks: Vec<(usize, Block)>,
}

impl BlockTree {
    pub fn new(n: usize, links: &[(usize, usize, u32)], source: usize) -> Self {
        let all = blocks(n, links);
        let mut of_router: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (b, routers) in all.iter().enumerate() {
            for &r in &routers.routers {
                of_router[r].push(b);
            }
        }
        let mut taken = vec![false; all.len()];
        let mut order = Vec::new();
        let mut queue = std::collections::VecDeque::from([source]);
        while let Some(entry) = queue.pop_front() {
            for &b in &of_router[entry] {
                if std::mem::replace(&mut taken[b], true) {
                    continue;
                }
                for &r in &all[b].routers {
                    if r != entry && of_router[r].len() > 1 {
                        queue.push_back(r); // a cut router: the entry of its other blocks
                    }
                }
                order.push((entry, all[b].clone()));
            }
        }
        BlockTree { blocks: order }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(b: Vec<Block>) -> Vec<Vec<usize>> {
        let mut b: Vec<Vec<usize>> = b.into_iter().map(|b| b.routers).collect();
        b.sort();
        b
    }

    #[test]
    fn a_bowtie_with_a_tail() {
        // triangle 0-1-2, triangle 2-3-4 (2 is a cut router), bridge 4-5, router 6 alone
        let links = [
            (0, 1, 1),
            (1, 2, 1),
            (0, 2, 1),
            (2, 3, 1),
            (3, 4, 1),
            (2, 4, 1),
            (4, 5, 1),
        ];
        assert_eq!(
            sorted(blocks(7, &links)),
            vec![vec![0, 1, 2], vec![2, 3, 4], vec![4, 5]]
        );
        let tree = BlockTree::new(7, &links, 5);
        let entries: Vec<(usize, Vec<usize>)> = tree
            .blocks
            .into_iter()
            .map(|(e, b)| (e, b.routers))
            .collect();
        assert_eq!(
            entries,
            vec![(5, vec![4, 5]), (4, vec![2, 3, 4]), (2, vec![0, 1, 2])]
        );
    }

    #[test]
    fn parallel_links_and_a_ring_are_one_block() {
        let links = [(0, 1, 1), (0, 1, 2), (1, 2, 1), (2, 3, 1), (3, 1, 1)];
        assert_eq!(sorted(blocks(4, &links)), vec![vec![0, 1], vec![1, 2, 3]]);
        let ring: Vec<_> = (0..50).map(|i| (i, (i + 1) % 50, 1)).collect();
        assert_eq!(sorted(blocks(50, &ring)), vec![(0..50).collect::<Vec<_>>()]);
        assert_eq!(blocks(50, &ring)[0].links, (0..50).collect::<Vec<_>>());
    }

    /// Against petgraph: a router is a cut router exactly when it is in two blocks, and a
    /// link is a bridge exactly when it is a block of two routers joined by one link.
    #[test]
    fn cut_routers_and_bridges_match_petgraph() {
        for seed in 0..5 {
            let g = crate::paths::testgraph::random_geometric(300, 3.0 + seed as f64, seed);
            let (points, bridges) = crate::paths::plan::cut_elements(&g);
            let all = blocks(g.n, &g.links);
            let mut count = vec![0; g.n];
            for b in &all {
                for &r in &b.routers {
                    count[r] += 1;
                }
            }
            let mine: Vec<usize> = (0..g.n).filter(|&r| count[r] > 1).collect();
            assert_eq!(mine, points, "seed {seed}");
            let mut pairs: Vec<(usize, usize)> = all
                .iter()
                .filter(|b| b.links.len() == 1)
                .map(|b| (b.routers[0], b.routers[1]))
                .collect();
            pairs.sort_unstable();
            assert_eq!(pairs, bridges, "seed {seed}");
        }
    }
}
