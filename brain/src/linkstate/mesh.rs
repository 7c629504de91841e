//! A whole topology pushed by an orchestrator (static mode), in the lab's topology format:
//! `[[router]]` names, `[[link]]` ends `{ node, iface, addrs }` with an optional `cost`.
//! Ends that are not routers are hosts. A router's prefixes are the subnets of all its
//! links (as a link-state router announces its connected networks), so that every address
//! of every router is reachable, not only the hosts.
//! Other fields (the lab's routes, BFD settings, ...) are ignored.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::Deserialize;

use crate::{paths::disjoint::CostGraph, paths::plan::Plan};

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default, rename = "router")]
    routers: Vec<RouterDef>,
    #[serde(default, rename = "link")]
    links: Vec<LinkDef>,
}

#[derive(Debug, Deserialize)]
struct RouterDef {
    name: String,
}

#[derive(Debug, Deserialize)]
struct LinkDef {
    a: End,
    b: End,
    #[serde(default = "default_cost")]
    cost: u32,
}

#[derive(Debug, Deserialize)]
struct End {
    node: String,
    iface: String,
    #[serde(default)]
    addrs: Vec<IpNet>,
}

fn default_cost() -> u32 {
    10
}

/// How a router reaches a neighbour: its own interface and the neighbour's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjacency {
    pub iface: String,
    pub neighbour_addrs: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Mesh {
    pub names: Vec<String>,
    pub prefixes: Vec<Vec<IpNet>>,
    pub graph: CostGraph,
    /// (router, neighbour) -> adjacency.
    pub adjacency: HashMap<(usize, usize), Adjacency>,
}

impl Mesh {
    pub fn parse(text: &str) -> Result<Self> {
        let f: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut m = Mesh::default();
        let mut index = HashMap::new();
        for (i, r) in f.routers.iter().enumerate() {
            if r.name.is_empty() || index.insert(r.name.clone(), i).is_some() {
                bail!("router[{i}].name: {:?} is empty or defined twice", r.name);
            }
            m.names.push(r.name.clone());
            m.prefixes.push(Vec::new());
        }
        m.graph.n = m.names.len();
        for (i, l) in f.links.iter().enumerate() {
            if l.cost == 0 {
                bail!("link[{i}].cost: must be at least 1");
            }
            // Every subnet of a router's links is its prefix, to hosts or to routers.
            for end in [&l.a, &l.b] {
                if let Some(&r) = index.get(&end.node) {
                    m.prefixes[r].extend(end.addrs.iter().map(|n| n.trunc()));
                }
            }
            match (index.get(&l.a.node), index.get(&l.b.node)) {
                (Some(&a), Some(&b)) => {
                    if a == b {
                        bail!("link[{i}]: {} links to itself", l.a.node);
                    }
                    m.graph.links.push((a, b, l.cost));
                    for (from, to, end_from, end_to) in [(a, b, &l.a, &l.b), (b, a, &l.b, &l.a)] {
                        m.adjacency.insert(
                            (from, to),
                            Adjacency {
                                iface: end_from.iface.clone(),
                                neighbour_addrs: end_to.addrs.iter().map(|n| n.addr()).collect(),
                            },
                        );
                    }
                }
                (Some(_), None) | (None, Some(_)) => {} // a host's link: its subnet, above
                (None, None) => bail!(
                    "link[{i}]: neither {:?} nor {:?} is a router",
                    l.a.node,
                    l.b.node
                ),
            }
        }
        m.graph.canonical();
        Ok(m)
    }

    pub fn index(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| anyhow::anyhow!("--router: no router named {name:?} in the topology"))
    }

    /// The routes `router` should have: every other router's prefixes via the plan's next
    /// hops, each as (gateway of the prefix's family, our interface), in preference order.
    /// A prefix several routers originate (a link's subnet, from both its ends) goes to the
    /// nearest of them; one `router` originates itself is its own (connected), never routed.
    pub fn routes(&self, router: usize, plan: &Plan) -> BTreeMap<IpNet, Vec<(IpAddr, String)>> {
        let own = &self.prefixes[router];
        let mut nearest: BTreeMap<IpNet, (u64, usize)> = BTreeMap::new();
        for (&dest, hops) in &plan.next_hops {
            for prefix in self.prefixes[dest].iter().filter(|p| !own.contains(p)) {
                let best = nearest.entry(*prefix).or_insert((hops.cost, dest));
                *best = (*best).min((hops.cost, dest));
            }
        }
        nearest
            .into_iter()
            .filter_map(|(prefix, (_, dest))| {
                let via = self.gateways(router, &plan.next_hops[&dest].via, prefix);
                (!via.is_empty()).then_some((prefix, via))
            })
            .collect()
    }

    /// The gateways of `prefix`'s family and our interfaces towards `neighbours`.
    fn gateways(
        &self,
        router: usize,
        neighbours: &[usize],
        prefix: IpNet,
    ) -> Vec<(IpAddr, String)> {
        neighbours
            .iter()
            .filter_map(|n| {
                let adj = self.adjacency.get(&(router, *n))?;
                let gw = adj
                    .neighbour_addrs
                    .iter()
                    .find(|a| a.is_ipv4() == prefix.addr().is_ipv4())?;
                Some((*gw, adj.iface.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIAMOND: &str = include_str!("../../../netns-tests/topologies/diamond.toml");

    #[test]
    fn the_lab_diamond_gives_r1_both_ways_to_h2() {
        let m = Mesh::parse(DIAMOND).unwrap();
        let r1 = m.index("r1").unwrap();
        let p = crate::paths::plan::plan(&m.graph, r1, 3);
        let routes = m.routes(r1, &p);
        let to_h2 = &routes[&"198.18.2.0/24".parse::<IpNet>().unwrap()];
        let mut gws: Vec<String> = to_h2.iter().map(|(g, i)| format!("{g}@{i}")).collect();
        gws.sort();
        assert_eq!(gws, ["198.18.12.2@eth1", "198.18.13.3@eth2"]);
        let v6 = &routes[&"2001:db8:2::/64".parse::<IpNet>().unwrap()];
        assert!(v6.iter().all(|(g, _)| g.is_ipv6()) && v6.len() == 2);
        assert!(
            !routes.contains_key(&"198.18.1.0/24".parse::<IpNet>().unwrap()),
            "its own prefix"
        );
    }

    #[test]
    fn link_subnets_go_to_their_nearest_end_and_our_own_are_never_routed() {
        let m = Mesh::parse(DIAMOND).unwrap();
        let r1 = m.index("r1").unwrap();
        let routes = m.routes(r1, &crate::paths::plan::plan(&m.graph, r1, 3));
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        for own in [
            "198.18.1.0/24",
            "198.18.12.0/24",
            "198.18.13.0/24",
            "2001:db8:12::/64",
        ] {
            assert!(!routes.contains_key(&net(own)), "{own} is connected to r1");
        }
        // r2-r4's subnet: r2 (cost 10) is nearer than r4 (20), and r3-r4's through r3.
        let first = |p: &str| format!("{}@{}", routes[&net(p)][0].0, routes[&net(p)][0].1);
        assert_eq!(first("198.18.24.0/24"), "198.18.12.2@eth1");
        assert_eq!(first("2001:db8:24::/64"), "2001:db8:12::2@eth1");
        assert_eq!(first("198.18.34.0/24"), "198.18.13.3@eth2");
    }

    #[test]
    fn the_order_links_are_learnt_in_changes_no_route() {
        // In the six-router lab r4 has equally good path sets to r3; which one the flow
        // takes followed the links' order (the file's, or the link-state records').
        let six = include_str!("../../../netns-tests/topologies/six.toml");
        let m = Mesh::parse(six).unwrap();
        let mut learnt = m.clone();
        learnt.graph.links.rotate_left(4);
        let all = |m: &Mesh| -> Vec<_> {
            (0..m.names.len())
                .map(|r| m.routes(r, &crate::paths::plan::plan(&m.graph, r, 3)))
                .collect()
        };
        let before = all(&m);
        assert_ne!(
            all(&learnt),
            before,
            "the order mattered without canonical()"
        );
        learnt.graph.canonical();
        assert_eq!(all(&learnt), before);
    }

    #[test]
    fn bad_topologies_are_refused_with_the_field() {
        let e = Mesh::parse("[[router]]\nname = \"a\"\n[[router]]\nname = \"a\"\n").unwrap_err();
        assert!(e.to_string().starts_with("router[1].name"), "{e}");
        let e = Mesh::parse(
            "[[router]]\nname = \"a\"\n[[link]]\ncost = 0\na = { node = \"a\", iface = \"x\" }\nb = { node = \"h\", iface = \"y\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("link[0].cost"), "{e}");
    }
}
