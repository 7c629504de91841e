//! MAPE-K, knowledge: the incident log, on disk in redb (an embedded, ACID, crash-safe
//! store in pure Rust), from which the time to repair per failure type (hdrhistogram) and
//! the success rate per recovery strategy are derived. It survives restarts.

use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const INCIDENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("incidents");

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Incident {
    pub id: u64,
    /// "link-lost" (a link of the mesh went away), ...
    pub kind: String,
    /// What failed ("r4-r6").
    pub subject: String,
    pub detected_unix_ns: u64,
    /// The recovery chosen ("recompute-paths", ...).
    pub strategy: String,
    /// When new paths were in force; None while open.
    pub repaired_unix_ns: Option<u64>,
    pub success: Option<bool>,
    /// Root-cause analysis' incidents: when the evidence began (the first anomalous
    /// interval analysed), the ranked causes, the evidence in words, what was done and how
    /// it went, and when the action was undone (the evidence cleared).
    #[serde(default)]
    pub onset_unix_ns: Option<u64>,
    #[serde(default)]
    pub causes: Vec<RankedCause>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub outcome: Vec<String>,
    #[serde(default)]
    pub restored_unix_ns: Option<u64>,
}

/// One cause as an incident keeps it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct RankedCause {
    pub element: String,
    pub fault: String,
    pub confidence: f64,
}

impl Incident {
    /// A new incident (its id given by `Knowledge::record`).
    pub fn new(kind: &str, subject: &str, detected_unix_ns: u64, strategy: &str) -> Self {
        Incident {
            id: 0,
            kind: kind.into(),
            subject: subject.into(),
            detected_unix_ns,
            strategy: strategy.into(),
            repaired_unix_ns: None,
            success: None,
            onset_unix_ns: None,
            causes: Vec::new(),
            evidence: Vec::new(),
            outcome: Vec::new(),
            restored_unix_ns: None,
        }
    }

    /// From the onset when it is known (root-cause analysis), else from the detection.
    pub fn time_to_repair_ms(&self) -> Option<u64> {
        let from = self.onset_unix_ns.unwrap_or(self.detected_unix_ns);
        self.repaired_unix_ns
            .map(|r| r.saturating_sub(from) / 1_000_000)
    }
}

/// Repair times of one failure type, milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mttr {
    pub count: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

pub struct Knowledge {
    db: Database,
}

impl Knowledge {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Database::create(path)
            .with_context(|| format!("opening the knowledge base {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(INCIDENTS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Records a new incident; returns its id.
    pub fn open_incident(
        &self,
        kind: &str,
        subject: &str,
        detected_unix_ns: u64,
        strategy: &str,
    ) -> Result<u64> {
        self.record(Incident::new(kind, subject, detected_unix_ns, strategy))
    }

    /// Records `incident` under the next id; returns the id.
    pub fn record(&self, mut incident: Incident) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let id = {
            let mut t = tx.open_table(INCIDENTS)?;
            let id = t.last()?.map_or(1, |(k, _)| k.value() + 1);
            incident.id = id;
            t.insert(id, serde_json::to_vec(&incident)?.as_slice())?;
            id
        };
        tx.commit()?;
        Ok(id)
    }

    /// Changes incident `id` in one transaction.
    pub fn amend(&self, id: u64, change: impl FnOnce(&mut Incident)) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(INCIDENTS)?;
            let mut i: Incident = match t.get(id)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => anyhow::bail!("no incident {id}"),
            };
            change(&mut i);
            t.insert(id, serde_json::to_vec(&i)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Closes an incident with the time its repair was in force.
    pub fn close_incident(&self, id: u64, repaired_unix_ns: u64, success: bool) -> Result<()> {
        self.amend(id, |i| {
            i.repaired_unix_ns = Some(repaired_unix_ns);
            i.success = Some(success);
        })
    }

    pub fn incident(&self, id: u64) -> Result<Option<Incident>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INCIDENTS)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub fn incidents(&self) -> Result<Vec<Incident>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INCIDENTS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    pub fn open_incidents(&self) -> Result<Vec<Incident>> {
        Ok(self
            .incidents()?
            .into_iter()
            .filter(|i| i.repaired_unix_ns.is_none())
            .collect())
    }

    /// Time to repair of the closed incidents of `kind`.
    pub fn mttr(&self, kind: &str) -> Result<Option<Mttr>> {
        let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
        for i in self.incidents()?.iter().filter(|i| i.kind == kind) {
            if let Some(ms) = i.time_to_repair_ms() {
                h.record(ms)?;
            }
        }
        Ok((!h.is_empty()).then(|| Mttr {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        }))
    }

    /// (tries, successes) of a strategy.
    pub fn success_rate(&self, strategy: &str) -> Result<(u64, u64)> {
        let closed: Vec<Incident> = self
            .incidents()?
            .into_iter()
            .filter(|i| i.strategy == strategy && i.success.is_some())
            .collect();
        Ok((
            closed.len() as u64,
            closed.iter().filter(|i| i.success == Some(true)).count() as u64,
        ))
    }

    /// The strategy for anomaly `kind` with the best record in `table` (kind, strategies
    /// best first); untried ones score as if always successful.
    pub fn best_strategy(
        &self,
        table: &[(&str, &[&'static str])],
        kind: &str,
    ) -> Option<&'static str> {
        let (_, options) = table.iter().find(|(k, _)| *k == kind)?;
        options.iter().copied().max_by(|a, b| {
            let score = |s: &str| match self.success_rate(s) {
                Ok((0, _)) | Err(_) => 1.0,
                Ok((tries, ok)) => ok as f64 / tries as f64,
            };
            score(a).total_cmp(&score(b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_survive_reopening_and_give_repair_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb/knowledge.redb");
        {
            let kb = Knowledge::open(&path).unwrap();
            let a = kb
                .open_incident("link-lost", "r4-r6", 1_000_000_000, "recompute-paths")
                .unwrap();
            let b = kb
                .open_incident("link-lost", "r2-r3", 5_000_000_000, "recompute-paths")
                .unwrap();
            kb.close_incident(a, 1_250_000_000, true).unwrap();
            assert_eq!(kb.open_incidents().unwrap().len(), 1);
            assert_eq!(b, a + 1);
        }
        // A restart (or a crash after commit) finds everything.
        let kb = Knowledge::open(&path).unwrap();
        let all = kb.incidents().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].time_to_repair_ms(), Some(250));
        let m = kb.mttr("link-lost").unwrap().unwrap();
        assert_eq!((m.count, m.max_ms), (1, 250));
        assert!(kb.mttr("router-lost").unwrap().is_none());
        kb.close_incident(all[1].id, 5_900_000_000, false).unwrap();
        assert_eq!(kb.success_rate("recompute-paths").unwrap(), (2, 1));
        assert!(kb.close_incident(99, 0, true).is_err());
    }
}
