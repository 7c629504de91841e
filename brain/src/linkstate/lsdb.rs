//! The link-state database: the newest verified record of every originator, its
//! counters, and the mesh the records describe (a link counts only when both ends report
//! it, as OSPF's two-way check).

use std::{
    collections::{BTreeMap, HashMap},
    time::SystemTime,
};

use ipnet::IpNet;
use x0_identity::Trust;
use x0_proto::brain::v1::{LinkStateRecord, SignedRecord};

use crate::{
    linkstate::lsp::{Reject, Verified, verify},
    linkstate::mesh::{Adjacency, Mesh},
    paths::disjoint::CostGraph,
};

#[derive(Default)]
pub struct Lsdb {
    records: BTreeMap<String, Verified>,
    pub accepted: u64,
    /// Refusals by reason; duplicates (floods overlap: normal) are counted apart.
    pub rejected: BTreeMap<&'static str, u64>,
    pub duplicates: u64,
}

impl Lsdb {
    /// Verifies and keeps `signed` if it is newer than what is held. Ok(true): new (pass
    /// it on); Err: why not (counted).
    pub fn offer(
        &mut self,
        signed: &SignedRecord,
        trust: &Trust,
        now: SystemTime,
    ) -> Result<Verified, Reject> {
        if self.holds_exactly(signed) {
            // Every sync and every overlapping flood brings records we hold byte for byte:
            // they were verified when they came first (two signatures and a chain each).
            self.duplicates += 1;
            return Err(Reject::Duplicate);
        }
        let r =
            verify(signed, trust, now).and_then(|v| match self.records.get(&v.record.originator) {
                Some(held) if held.record.sequence > v.record.sequence => Err(Reject::Stale {
                    got: v.record.sequence,
                    have: held.record.sequence,
                }),
                Some(held) if held.record.sequence == v.record.sequence => Err(Reject::Duplicate),
                _ => Ok(v),
            });
        match r {
            Ok(v) => {
                self.accepted += 1;
                self.records.insert(v.record.originator.clone(), v.clone());
                Ok(v)
            }
            Err(e) => {
                if e == Reject::Duplicate {
                    self.duplicates += 1;
                } else {
                    *self.rejected.entry(e.name()).or_default() += 1;
                }
                Err(e)
            }
        }
    }

    /// Takes a record the caller has verified (`lsp::verify`) without verifying it again:
    /// for a simulation that shares one verification among a thousand databases.
    pub fn adopt(&mut self, v: Verified) {
        self.records.insert(v.record.originator.clone(), v);
    }

    /// Whether `signed` is byte for byte the record held for its originator.
    fn holds_exactly(&self, signed: &SignedRecord) -> bool {
        let Ok(record) = <LinkStateRecord as prost::Message>::decode(signed.record.as_ref()) else {
            return false;
        };
        self.records
            .get(&record.originator)
            .is_some_and(|held| held.signed == *signed)
    }

    /// Drops records past their lifetime; returns their originators.
    pub fn expire(&mut self, now: SystemTime) -> Vec<String> {
        let gone: Vec<String> = self
            .records
            .iter()
            .filter(|(_, v)| v.expires() <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.records.remove(k);
        }
        gone
    }

    pub fn records(&self) -> impl Iterator<Item = &Verified> {
        self.records.values()
    }

    pub fn get(&self, originator: &str) -> Option<&Verified> {
        self.records.get(originator)
    }

    /// The cost of the link a - b when both ends report it (the higher of the two).
    pub fn link_cost(&self, a: &str, b: &str) -> Option<u32> {
        let report = |from: &str, to: &str| {
            self.records
                .get(from)?
                .record
                .adjacencies
                .iter()
                .find(|x| x.neighbor == to)
                .map(|x| x.cost)
        };
        Some(report(a, b)?.max(report(b, a)?))
    }

    /// The mesh the records describe.
    pub fn mesh(&self) -> Mesh {
        let names: Vec<String> = self.records.keys().cloned().collect();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut m = Mesh {
            prefixes: vec![Vec::new(); names.len()],
            graph: CostGraph {
                n: names.len(),
                links: Vec::new(),
            },
            adjacency: HashMap::new(),
            names: Vec::new(),
        };
        for (a, v) in self.records.values().enumerate() {
            m.prefixes[a] = v
                .record
                .prefixes
                .iter()
                .filter_map(|p| p.parse::<IpNet>().ok())
                .collect();
            for adj in &v.record.adjacencies {
                let Some(&b) = index.get(adj.neighbor.as_str()) else {
                    continue;
                };
                let Some(cost) = self.link_cost(&v.record.originator, &adj.neighbor) else {
                    continue; // one-way: not a link yet
                };
                m.adjacency.insert(
                    (a, b),
                    Adjacency {
                        iface: adj.interface.clone(),
                        neighbour_addrs: adj
                            .neighbor_addrs
                            .iter()
                            .filter_map(|s| s.parse().ok())
                            .collect(),
                    },
                );
                if a < b {
                    m.graph.links.push((a, b, cost));
                }
            }
        }
        m.graph.canonical();
        m.names = names;
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linkstate::lsp::{
        Signer,
        tests::{files, issue, pki, record},
    };
    use x0_proto::brain::v1::Adjacency as Adj;

    #[test]
    fn newest_wins_stale_and_duplicates_are_counted_and_links_need_both_ends() {
        let p = pki();
        issue(p.dir.path(), "/brain/r2", "r2");
        let s1 = Signer::from_files(&files(p.dir.path(), "r1")).unwrap();
        let s2 = Signer::from_files(&files(p.dir.path(), "r2")).unwrap();
        let now = SystemTime::now();
        let mut db = Lsdb::default();
        let r1v2 = s1.sign(&record("r1", 2)).unwrap();
        db.offer(&r1v2, &p.trust, now).unwrap();
        assert_eq!(db.offer(&r1v2, &p.trust, now), Err(Reject::Duplicate));
        let r1v1 = s1.sign(&record("r1", 1)).unwrap();
        assert_eq!(
            db.offer(&r1v1, &p.trust, now),
            Err(Reject::Stale { got: 1, have: 2 })
        );
        // r1 reports r2, but r2 has not reported r1 yet: no link.
        assert!(db.mesh().graph.links.is_empty());
        let mut r2 = record("r2", 1);
        r2.adjacencies = vec![Adj {
            neighbor: "r1".into(),
            cost: 30,
            interface: "eth0".into(),
            neighbor_addrs: vec!["198.18.12.1".into()],
        }];
        r2.prefixes = vec!["198.18.2.0/24".into()];
        db.offer(&s2.sign(&r2).unwrap(), &p.trust, now).unwrap();
        let m = db.mesh();
        assert_eq!(m.names, ["r1", "r2"]);
        assert_eq!(
            m.graph.links,
            vec![(0, 1, 30)],
            "both ends; the higher cost"
        );
        assert_eq!(m.adjacency[&(0, 1)].iface, "eth1");
        assert_eq!(
            (db.accepted, db.rejected["stale"], db.duplicates),
            (2, 1, 1)
        );
        // Lifetimes end.
        assert_eq!(
            db.expire(now + std::time::Duration::from_secs(61)),
            ["r1", "r2"]
        );
    }
}
