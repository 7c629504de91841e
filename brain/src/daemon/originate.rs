//! Originating our link-state record: a new one when the adjacencies change, a refresh
//! before it ages out, and one above any newer record of our name that is out there. The
//! sequence survives restarts in the state directory.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use x0_proto::brain::v1 as pb;

use crate::{
    config::BrainConfig,
    linkstate::{
        lsp::Signer,
        state::{Shared, unix_ns},
    },
};

pub struct Originator {
    signer: Signer,
    state_dir: PathBuf,
    sequence: u64,
    /// The adjacencies and prefixes of our last record, and when it was made.
    last: Option<(Vec<pb::Adjacency>, Vec<String>, Instant)>,
}

impl Originator {
    pub fn new(signer: Signer, state_dir: &Path) -> Self {
        Originator {
            signer,
            state_dir: state_dir.to_path_buf(),
            sequence: read_sequence(state_dir),
            last: None,
        }
    }

    /// A signed record, taken into our own database, if one is due (to be flooded).
    pub fn step(
        &mut self,
        adjacencies: Vec<pb::Adjacency>,
        prefixes: Vec<String>,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
    ) -> Result<Option<pb::SignedRecord>> {
        let own_seen = shared.lock().expect("brain lock").own_seen;
        if !self.due(&adjacencies, &prefixes, own_seen, config.lifetime_s) {
            return Ok(None);
        }
        self.originate(adjacencies, prefixes, shared, config)
            .map(Some)
    }

    /// A record with no adjacencies and no prefixes: we are leaving the mesh, and our
    /// neighbours' brains should not wait for our old one to age out.
    pub fn withdraw(
        &mut self,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
    ) -> Result<pb::SignedRecord> {
        self.originate(Vec::new(), Vec::new(), shared, config)
    }

    fn originate(
        &mut self,
        adjacencies: Vec<pb::Adjacency>,
        prefixes: Vec<String>,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
    ) -> Result<pb::SignedRecord> {
        let own_seen = shared.lock().expect("brain lock").own_seen;
        self.sequence = self.sequence.max(own_seen) + 1;
        write_sequence(&self.state_dir, self.sequence).context("saving the record sequence")?;
        let record = pb::LinkStateRecord {
            originator: config.router.clone(),
            sequence: self.sequence,
            originated_unix_ns: unix_ns(SystemTime::now()),
            lifetime_s: config.lifetime_s,
            adjacencies: adjacencies.clone(),
            prefixes: prefixes.clone(),
        };
        let signed = self.signer.sign(&record)?;
        {
            let mut s = shared.lock().expect("brain lock");
            let trust = s.trust.clone();
            s.lsdb
                .offer(&signed, &trust, SystemTime::now())
                .map_err(|e| anyhow::anyhow!("our own record: {e}"))?;
            s.changed = true;
        }
        let (sequence, count) = (self.sequence, adjacencies.len());
        tracing::info!(
            sequence,
            adjacencies = count,
            "originated a link-state record"
        );
        self.last = Some((adjacencies, prefixes, Instant::now()));
        Ok(signed)
    }

    /// A record of our name newer than ours (our state was lost, or one was replayed)
    /// calls for one above it at once, as OSPF does, or ours would be stale.
    fn due(
        &self,
        adjacencies: &[pb::Adjacency],
        prefixes: &[String],
        own_seen: u64,
        lifetime_s: u32,
    ) -> bool {
        let refresh = Duration::from_secs(u64::from(lifetime_s) / 3);
        own_seen > self.sequence
            || match &self.last {
                None => true,
                Some((adj, pfx, at)) => {
                    adj != adjacencies || pfx != prefixes || at.elapsed() >= refresh
                }
            }
    }
}

fn read_sequence(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("sequence"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_sequence(dir: &Path, seq: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("sequence.tmp");
    std::fs::write(&tmp, seq.to_string())?;
    std::fs::rename(&tmp, dir.join("sequence"))?;
    Ok(())
}
