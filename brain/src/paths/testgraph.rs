//! Random geometric graphs (routers scattered on a unit square, linked when close): the
//! shape of a wireless mesh, for benchmarks and tests. A tiny deterministic generator
//! keeps results reproducible without a dependency.

use crate::paths::disjoint::CostGraph;

/// SplitMix64 (Steele, Lea, Flood 2014): enough randomness for test topologies.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` routers on the unit square, linked within the radius that gives about
/// `degree` neighbours on average; link cost grows with distance (1 to 100). Routers
/// left apart are joined to their nearest connected neighbour, so the graph is connected.
pub fn random_geometric(n: usize, degree: f64, seed: u64) -> CostGraph {
    let mut rng = SplitMix(seed);
    let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.unit(), rng.unit())).collect();
    let radius = (degree / (std::f64::consts::PI * n as f64)).sqrt();
    let d =
        |a: usize, b: usize| ((pts[a].0 - pts[b].0).powi(2) + (pts[a].1 - pts[b].1).powi(2)).sqrt();
    let cost = |dist: f64| 1 + (dist / radius * 99.0).min(99.0) as u32;
    let mut links = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let dist = d(a, b);
            if dist <= radius {
                links.push((a, b, cost(dist)));
            }
        }
    }
    // Connect the components (union-find), nearest pairs first.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut Vec<usize>, x: usize) -> usize {
        if p[x] != x {
            let r = find(p, p[x]);
            p[x] = r;
        }
        p[x]
    }
    for &(a, b, _) in &links {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[ra] = rb;
    }
    for a in 0..n {
        if find(&mut parent, a) == find(&mut parent, 0) {
            continue;
        }
        let b = (0..n)
            .filter(|&b| find(&mut parent, b) == find(&mut parent, 0))
            .min_by(|&x, &y| d(a, x).total_cmp(&d(a, y)))
            .expect("the root's component is not empty");
        links.push((a.min(b), a.max(b), cost(d(a, b))));
        let ra = find(&mut parent, a);
        let rb = find(&mut parent, b);
        parent[ra] = rb;
    }
    CostGraph { n, links }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_with_the_asked_degree() {
        let g = random_geometric(1000, 5.0, 1);
        let avg = 2.0 * g.links.len() as f64 / g.n as f64;
        assert!((3.5..7.0).contains(&avg), "average degree {avg}");
        let sets = crate::paths::disjoint::from_source(&g, 0, 1);
        assert!(sets.iter().skip(1).all(|s| s.is_some()), "connected");
    }
}
