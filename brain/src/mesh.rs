//! A whole topology pushed by an orchestrator (static mode), in the lab's topology format:
//! `[[router]]` names, `[[link]]` ends `{ node, iface, addrs }` with an optional `cost`.
//! Ends that are not routers are hosts: their link's subnets are the router's prefixes.
//! Other fields (the lab's routes, BFD settings, ...) are ignored.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::Deserialize;

use crate::{disjoint::CostGraph, plan::Plan};

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
                (Some(&r), None) | (None, Some(&r)) => {
                    let end = if index.contains_key(&l.a.node) {
                        &l.a
                    } else {
                        &l.b
                    };
                    for net in &end.addrs {
                        m.prefixes[r].push(net.trunc());
                    }
                }
                (None, None) => bail!(
                    "link[{i}]: neither {:?} nor {:?} is a router",
                    l.a.node,
                    l.b.node
                ),
            }
        }
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
    pub fn routes(&self, router: usize, plan: &Plan) -> BTreeMap<IpNet, Vec<(IpAddr, String)>> {
        let mut out = BTreeMap::new();
        for (&dest, hops) in &plan.next_hops {
            for prefix in &self.prefixes[dest] {
                let via: Vec<(IpAddr, String)> = hops
                    .via
                    .iter()
                    .filter_map(|n| {
                        let adj = self.adjacency.get(&(router, *n))?;
                        let gw = adj
                            .neighbour_addrs
                            .iter()
                            .find(|a| a.is_ipv4() == prefix.addr().is_ipv4())?;
                        Some((*gw, adj.iface.clone()))
                    })
                    .collect();
                if !via.is_empty() {
                    out.insert(*prefix, via);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIAMOND: &str = include_str!("../../netns-tests/topologies/diamond.toml");

    #[test]
    fn the_lab_diamond_gives_r1_both_ways_to_h2() {
        let m = Mesh::parse(DIAMOND).unwrap();
        let r1 = m.index("r1").unwrap();
        let p = crate::plan::plan(&m.graph, r1, 3);
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
