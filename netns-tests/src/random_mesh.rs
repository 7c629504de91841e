//! Random geometric meshes from a seed: routers at random points of a unit square, each
//! linked to its two nearest (and along a minimum spanning tree, so the mesh is connected),
//! at most five links a router; costs grow with distance. Host h1 hangs off r1, h2 off the
//! router farthest from it. Addresses: link i is 198.19.i.0/24 and 2001:db8:100:i::/64 (its
//! `a` end .1 / ::1), hosts as in six.toml. BFD at 20 ms x 3 (a dozen routers' sessions on
//! two cores). The same seed gives the same mesh.

use std::fmt::Write;

use anyhow::{Result, bail};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::Topology;

const MAX_DEGREE: usize = 5;

/// A mesh of `routers` routers (3 to 200) and two hosts.
pub fn random_mesh(routers: usize, seed: u64) -> Result<Topology> {
    if !(3..=200).contains(&routers) {
        bail!("routers: {routers} is not 3 to 200");
    }
    let (at, links) = geometric(routers, seed);
    Topology::parse(&render(&at, &links))
}

/// A router's place in the unit square.
pub type Point = (f64, f64);

/// The mesh's geometry alone, for any size (the in-process flooding simulation): each
/// router's point and the links as pairs of router indices (the lower first).
pub fn geometric(routers: usize, seed: u64) -> (Vec<Point>, Vec<(usize, usize)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let at: Vec<(f64, f64)> = (0..routers).map(|_| (rng.random(), rng.random())).collect();
    let links = links(&at);
    (at, links)
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Minimum spanning tree (Prim, O(n^2)), then each router's two nearest while both have room.
fn links(at: &[(f64, f64)]) -> Vec<(usize, usize)> {
    let n = at.len();
    let mut links: Vec<(usize, usize)> = Vec::new();
    let mut inside = vec![false; n];
    // The nearest router inside the tree of each one outside, and how far.
    let mut best: Vec<(f64, usize)> = (0..n).map(|b| (dist(at[0], at[b]), 0)).collect();
    inside[0] = true;
    for _ in 1..n {
        let b = (0..n)
            .filter(|&b| !inside[b])
            .min_by(|&x, &y| best[x].0.total_cmp(&best[y].0))
            .expect("a router outside");
        let a = best[b].1;
        inside[b] = true;
        links.push((a.min(b), a.max(b)));
        for c in (0..n).filter(|&c| !inside[c]) {
            let d = dist(at[b], at[c]);
            if d < best[c].0 {
                best[c] = (d, b);
            }
        }
    }
    let degree =
        |links: &[(usize, usize)], v: usize| links.iter().filter(|l| l.0 == v || l.1 == v).count();
    for v in 0..n {
        let mut near: Vec<usize> = (0..n).filter(|&u| u != v).collect();
        near.sort_by(|&x, &y| dist(at[v], at[x]).total_cmp(&dist(at[v], at[y])));
        for u in near.into_iter().take(2) {
            let l = (v.min(u), v.max(u));
            if !links.contains(&l)
                && degree(&links, v) < MAX_DEGREE
                && degree(&links, u) < MAX_DEGREE
            {
                links.push(l);
            }
        }
    }
    links
}

/// A router's interface to a neighbour, and the neighbour's addresses on that link.
#[derive(Clone)]
struct Port {
    iface: String,
    peer_v4: String,
    peer_v6: String,
}

/// The mesh in the lab's topology format.
fn render(at: &[(f64, f64)], links: &[(usize, usize)]) -> String {
    let n = at.len();
    let far = (0..n)
        .max_by(|&x, &y| dist(at[0], at[x]).total_cmp(&dist(at[0], at[y])))
        .unwrap_or(0);
    let hosts = [(0, "h1", 1), (far, "h2", 2)];
    let (ports, link_text) = router_links(at, links);
    let mut out = String::from("# A random mesh (netns-tests/src/random_mesh.rs).\n");
    for (_, name, net) in hosts {
        let _ = writeln!(
            out,
            "[[host]]\nname = \"{name}\"\ngateway = [\"198.18.{net}.1\", \"2001:db8:{net}::1\"]\n"
        );
    }
    for (r, ports) in ports.iter().enumerate() {
        let _ = writeln!(
            out,
            "[[router]]\nname = \"r{}\"\nbfd = {{ tx_interval_ms = 20, rx_interval_ms = 20, multiplier = 3 }}\nroutes = [",
            r + 1
        );
        for (router, _, net) in hosts {
            for v6 in [false, true] {
                out.push_str(&host_route(router == r, ports, net, v6));
            }
        }
        out.push_str("]\n\n");
    }
    for (router, name, net) in hosts {
        let _ = writeln!(
            out,
            "[[link]]\na = {{ node = \"{name}\", iface = \"eth0\", addrs = [\"198.18.{net}.2/24\", \"2001:db8:{net}::2/64\"] }}\nb = {{ node = \"r{}\", iface = \"eth0\", addrs = [\"198.18.{net}.1/24\", \"2001:db8:{net}::1/64\"] }}\n",
            router + 1
        );
    }
    out + &link_text
}

/// Each router's ports (in order: eth1, eth2, ...) and the links between routers as TOML.
fn router_links(at: &[(f64, f64)], links: &[(usize, usize)]) -> (Vec<Vec<Port>>, String) {
    let mut ports: Vec<Vec<Port>> = vec![Vec::new(); at.len()];
    let mut text = String::new();
    for (i, &(a, b)) in links.iter().enumerate() {
        let (a4, b4) = (format!("198.19.{i}.1"), format!("198.19.{i}.2"));
        let (a6, b6) = (
            format!("2001:db8:100:{i:x}::1"),
            format!("2001:db8:100:{i:x}::2"),
        );
        let (ia, ib) = (
            format!("eth{}", ports[a].len() + 1),
            format!("eth{}", ports[b].len() + 1),
        );
        ports[a].push(Port {
            iface: ia.clone(),
            peer_v4: b4.clone(),
            peer_v6: b6.clone(),
        });
        ports[b].push(Port {
            iface: ib.clone(),
            peer_v4: a4.clone(),
            peer_v6: a6.clone(),
        });
        let cost = 10 + (dist(at[a], at[b]) * 20.0).round() as u32;
        let _ = writeln!(
            text,
            "[[link]]\na = {{ node = \"r{}\", iface = \"{ia}\", addrs = [\"{a4}/24\", \"{a6}/64\"] }}\nb = {{ node = \"r{}\", iface = \"{ib}\", addrs = [\"{b4}/24\", \"{b6}/64\"] }}\ncost = {cost}\n",
            a + 1,
            b + 1
        );
    }
    (ports, text)
}

/// A router's route to host net `net`: straight to the host where it hangs off this
/// router, else through every neighbour (the brains then choose).
fn host_route(attached: bool, ports: &[Port], net: u8, v6: bool) -> String {
    let prefix = if v6 {
        format!("2001:db8:{net}::/64")
    } else {
        format!("198.18.{net}.0/24")
    };
    let via: Vec<String> = if attached {
        let gw = if v6 {
            format!("2001:db8:{net}::2")
        } else {
            format!("198.18.{net}.2")
        };
        vec![format!("{{ gateway = \"{gw}\", interface = \"eth0\" }}")]
    } else {
        ports
            .iter()
            .map(|p| {
                let gw = if v6 { &p.peer_v6 } else { &p.peer_v4 };
                format!("{{ gateway = \"{gw}\", interface = \"{}\" }}", p.iface)
            })
            .collect()
    };
    format!(
        "  {{ prefix = \"{prefix}\", via = [{}] }},\n",
        via.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_connected_mesh_within_the_degree_bound() {
        let t = random_mesh(12, 7).unwrap();
        let text = |t: &Topology| toml::to_string(t).unwrap();
        assert_eq!(text(&t), text(&random_mesh(12, 7).unwrap()));
        assert_ne!(text(&t), text(&random_mesh(12, 8).unwrap()));
        assert_eq!(t.routers.len(), 12);
        let router_links: Vec<_> = t
            .links
            .iter()
            .filter(|l| t.is_router(&l.a.node) && t.is_router(&l.b.node))
            .collect();
        assert!(router_links.len() >= 11, "{}", router_links.len());
        for r in &t.routers {
            let d = router_links
                .iter()
                .filter(|l| l.a.node == r.name || l.b.node == r.name)
                .count();
            assert!((1..=MAX_DEGREE).contains(&d), "{}: {d}", r.name);
        }
        // Connected: every router is reached from r1.
        let mut seen = vec!["r1".to_string()];
        while let Some(next) = router_links.iter().find_map(|l| {
            let (a, b) = (&l.a.node, &l.b.node);
            match (seen.contains(a), seen.contains(b)) {
                (true, false) => Some(b.clone()),
                (false, true) => Some(a.clone()),
                _ => None,
            }
        }) {
            seen.push(next);
        }
        assert_eq!(seen.len(), 12);
    }
}
