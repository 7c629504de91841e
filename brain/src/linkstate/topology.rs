//! The mesh as the brain sees it: routers (with the prefixes attached to them) and links
//! with a cost, on petgraph. Down links stay in the graph (their history matters to the
//! analysis) but paths never use them.

use std::collections::HashMap;

use ipnet::IpNet;
use petgraph::{
    Undirected,
    graph::{EdgeIndex, Graph, NodeIndex},
    visit::EdgeRef,
};

#[derive(Clone, Debug, PartialEq)]
pub struct Router {
    /// Its name in the mesh (the last segment of its SPIFFE ID).
    pub name: String,
    /// Subnets reached through it (its hosts).
    pub prefixes: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// Routing cost, at least 1 (from latency, loss and utilisation).
    pub cost: u32,
    pub up: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub graph: Graph<Router, Link, Undirected>,
    by_name: HashMap<String, NodeIndex>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("no router named {0:?}")]
    NoRouter(String),
    #[error("link {0} - {1}: a router cannot link to itself")]
    SelfLink(String, String),
    #[error("link {0} - {1}: cost must be at least 1")]
    ZeroCost(String, String),
}

impl Topology {
    /// Adds a router, or returns the one of that name.
    pub fn router(&mut self, name: &str) -> NodeIndex {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        let i = self.graph.add_node(Router {
            name: name.into(),
            prefixes: Vec::new(),
        });
        self.by_name.insert(name.into(), i);
        i
    }

    pub fn index(&self, name: &str) -> Result<NodeIndex, TopologyError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| TopologyError::NoRouter(name.into()))
    }

    pub fn name(&self, i: NodeIndex) -> &str {
        &self.graph[i].name
    }

    /// Adds or updates the link between two routers (one link per pair).
    pub fn link(
        &mut self,
        a: &str,
        b: &str,
        cost: u32,
        up: bool,
    ) -> Result<EdgeIndex, TopologyError> {
        if a == b {
            return Err(TopologyError::SelfLink(a.into(), b.into()));
        }
        if cost == 0 {
            return Err(TopologyError::ZeroCost(a.into(), b.into()));
        }
        let (ia, ib) = (self.router(a), self.router(b));
        Ok(match self.graph.find_edge(ia, ib) {
            Some(e) => {
                self.graph[e] = Link { cost, up };
                e
            }
            None => self.graph.add_edge(ia, ib, Link { cost, up }),
        })
    }

    pub fn set_prefixes(&mut self, router: &str, prefixes: Vec<IpNet>) {
        let i = self.router(router);
        self.graph[i].prefixes = prefixes;
    }

    /// Up links as (a, b, cost).
    pub fn up_links(&self) -> impl Iterator<Item = (NodeIndex, NodeIndex, u32)> + '_ {
        self.graph
            .edge_references()
            .filter(|e| e.weight().up)
            .map(|e| (e.source(), e.target(), e.weight().cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_and_links_by_name() {
        let mut t = Topology::default();
        t.link("r1", "r2", 10, true).unwrap();
        t.link("r2", "r1", 20, false).unwrap();
        assert_eq!(t.graph.node_count(), 2);
        assert_eq!(t.graph.edge_count(), 1, "one link per pair, updated");
        assert_eq!(t.up_links().count(), 0);
        assert_eq!(
            t.link("r1", "r1", 1, true),
            Err(TopologyError::SelfLink("r1".into(), "r1".into()))
        );
        assert_eq!(
            t.link("r1", "r3", 0, true),
            Err(TopologyError::ZeroCost("r1".into(), "r3".into()))
        );
        assert_eq!(t.index("r9"), Err(TopologyError::NoRouter("r9".into())));
    }
}
