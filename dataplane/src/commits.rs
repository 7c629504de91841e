//! Confirmed commits, as `commit confirmed` on the routers operators know: a route batch or
//! a policy sent with a deadline is undone by the dataplane itself unless the caller
//! confirms it in time. A change that cuts the orchestrator off from the router it
//! manages thus heals without anyone reaching the router.
//!
//! What undoes a change is written to disk (`commits.json` beside the API state, whole,
//! fsynced) *before* the change is made, so a restart keeps the deadline; a crash between
//! the two leaves an undo that restores what is there (harmless). While a commit is
//! pending, other changes to its prefixes, or to the policy, are refused: its undo must
//! not overwrite them.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    config::RouteConfig,
    control::{BatchResult, ControlError, ControlResult, RouteOp},
    daemon::Node,
    state::{Change, PolicySpec, write_atomically},
    tables::RouteTarget,
};

/// The longest deadline: a day.
pub const MAX_CONFIRM_S: u32 = 86_400;

/// What a prefix held before a pending batch touched it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Before {
    Absent,
    /// A route set through the API.
    Api(RouteConfig),
    /// The config file's route (the file's route *at rollback* comes back).
    Config,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    Routes(Vec<(String, Before)>),
    /// The API's policy before (None: the config file's).
    Policy(Option<PolicySpec>),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Commit {
    pub id: u64,
    pub by: String,
    pub summary: String,
    pub made_unix_ns: u64,
    pub deadline_unix_ns: u64,
    pub undo: Undo,
}

impl Commit {
    pub fn kind(&self) -> &'static str {
        match self.undo {
            Undo::Routes(_) => "routes",
            Undo::Policy(_) => "policy",
        }
    }

    fn holds(&self, prefix: &str) -> bool {
        matches!(&self.undo, Undo::Routes(r) if r.iter().any(|(p, _)| p == prefix))
    }
}

/// The pending commits, and where they are kept (None: in memory only).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Commits {
    next_id: u64,
    pending: Vec<Commit>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl Commits {
    /// The pending commits kept in `dir` (none yet: empty).
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let Some(dir) = dir else {
            return Ok(Self::default());
        };
        let path = dir.join("commits.json");
        let mut commits: Self = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a list of pending commits", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        commits.path = Some(path);
        Ok(commits)
    }

    pub fn pending(&self) -> &[Commit] {
        &self.pending
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let ns = self.pending.iter().map(|c| c.deadline_unix_ns).min()?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
    }

    fn save(&self) -> ControlResult<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(self).map_err(|e| ControlError::Internal(e.to_string()))?;
        write_atomically(path, &bytes).map_err(|e| ControlError::Internal(format!("{e:#}")))
    }

    /// Adds a commit and writes it down; on error nothing is pending.
    fn add(&mut self, mut c: Commit) -> ControlResult<u64> {
        self.next_id += 1;
        c.id = self.next_id;
        self.pending.push(c);
        if let Err(e) = self.save() {
            self.pending.pop();
            return Err(e);
        }
        Ok(self.next_id)
    }

    /// Takes a commit out (confirmed or being rolled back) and writes the rest down.
    fn take(&mut self, id: u64) -> ControlResult<Commit> {
        let at = self
            .pending
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "id: commit {id} is not pending (confirmed, rolled back, or never made)"
                ))
            })?;
        let c = self.pending.remove(at);
        if let Err(e) = self.save() {
            self.pending.insert(at, c);
            return Err(e);
        }
        Ok(c)
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Checks a requested deadline (seconds) and turns it into a time.
fn deadline(within_s: u32) -> ControlResult<SystemTime> {
    if within_s == 0 || within_s > MAX_CONFIRM_S {
        return Err(ControlError::Invalid(format!(
            "confirm_within_s: {within_s} is not 1 to {MAX_CONFIRM_S}"
        )));
    }
    Ok(SystemTime::now() + Duration::from_secs(within_s.into()))
}

impl Node {
    /// Refuses a batch touching a prefix a pending commit holds.
    pub(crate) fn check_unheld_routes(&self, ops: &[RouteOp]) -> ControlResult<()> {
        for (i, op) in ops.iter().enumerate() {
            let p = op.prefix().to_string();
            if let Some(c) = self.commits.pending.iter().find(|c| c.holds(&p)) {
                return Err(ControlError::FailedPrecondition(format!(
                    "operations[{i}]: {p} is held by pending commit {}: confirm or roll it back first",
                    c.id
                )));
            }
        }
        Ok(())
    }

    /// Refuses a policy change while a policy commit is pending.
    pub(crate) fn check_unheld_policy(&self) -> ControlResult<()> {
        match self.commits.pending.iter().find(|c| c.kind() == "policy") {
            Some(c) => Err(ControlError::FailedPrecondition(format!(
                "policy: pending commit {} holds it: confirm or roll it back first",
                c.id
            ))),
            None => Ok(()),
        }
    }

    /// What each prefix the batch touches holds now, in first-touch order.
    fn routes_before(&self, ops: &[RouteOp]) -> Vec<(String, Before)> {
        let tables = self.dp.tables_ref();
        let mut out: Vec<(String, Before)> = Vec::new();
        for op in ops {
            let p = op.prefix();
            let key = p.to_string();
            if out.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let before = match (self.api_routes.contains(&p), tables.route(&p)) {
                (true, Some(_)) => self.route_config_of(&p).map_or(Before::Absent, Before::Api),
                (false, Some(RouteTarget::NextHops(_))) => Before::Config,
                // Local addresses: the batch itself refuses to touch them.
                _ => Before::Absent,
            };
            out.push((key, before));
        }
        out
    }

    pub(crate) fn commit_routes(
        &mut self,
        ops: Vec<RouteOp>,
        within_s: u32,
        by: String,
    ) -> ControlResult<(BatchResult, u64)> {
        let deadline = deadline(within_s)?;
        self.check_unheld_routes(&ops)?;
        let before = self.routes_before(&ops);
        let mut names: Vec<&str> = before.iter().take(3).map(|(p, _)| p.as_str()).collect();
        if before.len() > 3 {
            names.push("...");
        }
        let summary = format!("{} route operations: {}", ops.len(), names.join(", "));
        let undo = Undo::Routes(before);
        self.pending(by, summary, deadline, undo, |n| n.apply_routes(ops))
    }

    pub(crate) fn commit_policy(
        &mut self,
        spec: PolicySpec,
        within_s: u32,
        by: String,
    ) -> ControlResult<(u32, u64)> {
        let deadline = deadline(within_s)?;
        self.check_unheld_policy()?;
        let summary = format!(
            "policy: {} identities, {} rules, {} interface defaults",
            spec.identities.len(),
            spec.rules.len(),
            spec.defaults.len()
        );
        let undo = Undo::Policy(self.api_policy.clone());
        self.pending(by, summary, deadline, undo, |n| n.set_policy(spec))
    }

    /// Writes down a pending commit with its undo, then makes the change; a change that
    /// fails leaves no commit.
    fn pending<T>(
        &mut self,
        by: String,
        summary: String,
        deadline: SystemTime,
        undo: Undo,
        change: impl FnOnce(&mut Self) -> ControlResult<T>,
    ) -> ControlResult<(T, u64)> {
        let id = self.commits.add(Commit {
            id: 0,
            by,
            summary,
            made_unix_ns: unix_ns(SystemTime::now()),
            deadline_unix_ns: unix_ns(deadline),
            undo,
        })?;
        match change(self) {
            Ok(r) => Ok((r, id)),
            Err(e) => {
                self.forget(id);
                Err(e)
            }
        }
    }

    /// Drops a commit whose change was never made.
    fn forget(&mut self, id: u64) {
        if let Err(e) = self.commits.take(id) {
            tracing::error!(id, error = %e, "a failed change's commit stays on disk: its rollback will restore what is there");
        }
    }

    pub(crate) fn confirm_commit(&mut self, id: u64) -> ControlResult<()> {
        let c = self.commits.take(id)?;
        tracing::info!(id, kind = c.kind(), summary = c.summary, "commit confirmed");
        Ok(())
    }

    /// Undoes a pending commit's change.
    pub(crate) fn rollback_commit(&mut self, id: u64, why: &str) -> ControlResult<()> {
        let c = self.commits.take(id)?;
        let r = match c.undo {
            Undo::Routes(before) => self.undo_routes(before),
            Undo::Policy(before) => self.restore_policy(before),
        };
        match &r {
            Ok(()) => tracing::warn!(id, summary = c.summary, by = c.by, "{why}: rolled back"),
            Err(e) => {
                tracing::error!(id, summary = c.summary, error = %e, "{why}: rolling back failed")
            }
        }
        r
    }

    /// Rolls back every commit past its deadline; the next deadline after them.
    pub(crate) fn expire_commits(&mut self, now: SystemTime) -> Option<SystemTime> {
        let now = unix_ns(now);
        let due: Vec<u64> = (self.commits.pending.iter())
            .filter(|c| c.deadline_unix_ns <= now)
            .map(|c| c.id)
            .collect();
        for id in due {
            // A failure is logged; the commit is gone either way (no retry loop).
            let _ = self.rollback_commit(id, "not confirmed in time");
        }
        self.commits.next_deadline()
    }

    /// SIGHUP installed the config file's policy: a pending policy commit has nothing left
    /// to undo.
    pub(crate) fn drop_policy_commits(&mut self) {
        let ids: Vec<u64> = (self.commits.pending.iter())
            .filter(|c| c.kind() == "policy")
            .map(|c| c.id)
            .collect();
        for id in ids {
            tracing::warn!(
                id,
                "pending policy commit dropped: SIGHUP installed the config file's policy"
            );
            self.forget(id);
        }
    }

    fn undo_routes(&mut self, before: Vec<(String, Before)>) -> ControlResult<()> {
        let known = |name: &str| self.config.interfaces.iter().any(|i| i.name == name);
        let config_routes = self
            .config
            .routes()
            .map_err(|e| ControlError::Internal(format!("the config's routes: {e:#}")))?;
        let mut ops = Vec::new();
        let mut back_to_config = Vec::new();
        for (i, (prefix, b)) in before.into_iter().enumerate() {
            let p: IpNet = prefix.parse().map_err(|_| {
                ControlError::Internal(format!("undo[{i}]: {prefix:?} is not a prefix"))
            })?;
            let restore = match b {
                Before::Api(r) => {
                    let via: Vec<(String, String)> = (r.via.iter())
                        .map(|n| (n.gateway.to_string(), n.interface.clone()))
                        .collect();
                    let v =
                        crate::config::validate_route(&format!("undo[{i}]"), &prefix, &via, &known)
                            .map_err(|e| ControlError::Internal(format!("{e:#}")))?;
                    Some(v)
                }
                Before::Config => {
                    let v = config_routes.iter().find(|r| r.prefix == p).cloned();
                    back_to_config.extend(v.as_ref().map(|r| r.prefix));
                    v
                }
                Before::Absent => None,
            };
            match restore {
                Some(v) => ops.push(RouteOp::Replace(v)),
                None if self.dp.tables_ref().route(&p).is_some() => ops.push(RouteOp::Delete(p)),
                None => {}
            }
        }
        self.apply_routes(ops)?;
        // Restored from the file: no longer the API's (its journal line says so).
        for p in &back_to_config {
            self.api_routes.remove(p);
        }
        self.persist(back_to_config.iter().map(|p| Change::Delete(p.to_string())));
        Ok(())
    }

    fn restore_policy(&mut self, before: Option<PolicySpec>) -> ControlResult<()> {
        match before {
            Some(spec) => self.set_policy(spec).map(drop),
            None => {
                self.api_policy = None;
                let file = self.policy_spec();
                self.set_policy(file)?;
                self.api_policy = None;
                self.persist([Change::Policy(None)]);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(deadline_unix_ns: u64) -> Commit {
        Commit {
            id: 0,
            by: "local".into(),
            summary: "test".into(),
            made_unix_ns: 1,
            deadline_unix_ns,
            undo: Undo::Routes(vec![("203.0.113.0/24".into(), Before::Absent)]),
        }
    }

    #[test]
    fn pending_commits_survive_a_reload_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Commits::load(Some(dir.path())).unwrap();
        assert_eq!(c.add(commit(30)).unwrap(), 1);
        assert_eq!(c.add(commit(20)).unwrap(), 2);
        c.take(1).unwrap();
        let mut again = Commits::load(Some(dir.path())).unwrap();
        assert_eq!(again.pending(), c.pending());
        assert!(again.pending()[0].holds("203.0.113.0/24"));
        assert_eq!(
            again.next_deadline(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(20))
        );
        assert_eq!(again.add(commit(40)).unwrap(), 3);
        assert!(matches!(again.take(1), Err(ControlError::NotFound(_))));
    }

    #[test]
    fn a_bad_file_or_deadline_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("commits.json"), "{").unwrap();
        let e = Commits::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("commits.json"), "{e}");
        for s in [0, MAX_CONFIRM_S + 1] {
            let e = deadline(s).unwrap_err().to_string();
            assert!(e.starts_with("confirm_within_s:"), "{e}");
        }
        assert!(deadline(MAX_CONFIRM_S).is_ok());
    }
}
