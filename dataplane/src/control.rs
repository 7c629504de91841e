//! The operations the control API offers, as plain functions over the running daemon's
//! state. The gRPC service converts messages to and from these; the CLI and the config
//! loader use the same table and policy functions underneath.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};
use x0_proto::status::Shown;

use ipnet::IpNet;
use tokio::sync::broadcast;
use x0_common::NH_F_RESOLVED;

use crate::{
    bfd::manager::{BfdStats, SessionInfo},
    config::{NextHopConfig, RouteConfig, ValidRoute},
    counters::{CounterMaps, Counters, NextHopReport},
    daemon::{Node, Shared, fmt_mac},
    events::EventBus,
    explain::{DropReader, DropRecord, Explanation, Probe},
    state::PolicySpec,
    tables::{NextHopSpec, RouteTarget},
};

/// Why an operation was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    /// Valid, but not in this state (e.g. deleting a local-address route).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A table is full.
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Internal(String),
    #[error("the dataplane is shutting down")]
    Unavailable,
}

fn internal(e: impl std::fmt::Display) -> ControlError {
    ControlError::Internal(format!("{e:#}"))
}

pub type ControlResult<T> = Result<T, ControlError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub prefix: IpNet,
    /// (gateway, interface) in preference order; empty for local routes.
    pub via: Vec<(IpAddr, String)>,
    pub origin: Origin,
}

/// One operation of a batch (validated by the caller with `config::validate_route`).
#[derive(Clone, Debug)]
pub enum RouteOp {
    Add(ValidRoute),
    Replace(ValidRoute),
    Delete(IpNet),
}

impl RouteOp {
    /// The prefix the operation changes.
    pub fn prefix(&self) -> IpNet {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) => r.prefix,
            RouteOp::Delete(p) => *p,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub added: u64,
    pub replaced: u64,
    pub deleted: u64,
}

#[derive(Clone, Debug)]
pub struct InterfaceView {
    pub name: String,
    pub ifindex: u32,
    pub mode: String,
    pub up: bool,
    pub mac: String,
    pub mtu: u32,
}

#[derive(Clone, Debug)]
pub struct Info {
    pub pin_root: PathBuf,
    pub interfaces: Vec<InterfaceView>,
    pub routes: u64,
    pub fib_fallback: bool,
    pub policy_generation: u32,
    pub started: SystemTime,
}

#[derive(Clone, Debug)]
pub struct NextHopView {
    pub report: NextHopReport,
    pub interface: String,
    pub resolved: bool,
    pub mac: String,
}

#[derive(Clone, Debug)]
pub struct BfdView {
    pub sessions: Vec<SessionInfo>,
    pub stats: BfdStats,
    pub transport: &'static str,
}

#[derive(Clone, Debug)]
pub struct PolicyView {
    pub spec: PolicySpec,
    pub generation: u32,
    pub enabled: bool,
    /// Packets allowed, by rule id (position + 1).
    pub hits: BTreeMap<u32, u64>,
}

#[derive(Clone, Debug)]
pub struct StatsView {
    pub at: SystemTime,
    pub counters: Counters,
    pub interface_names: BTreeMap<u32, String>,
    pub nexthops: Vec<NextHopView>,
}

/// What the tables hold (the metrics put it beside their capacity).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub routes_v4: u64,
    pub routes_v6: u64,
    /// What the tables hold: IPv4, IPv6.
    pub capacity_v4: u64,
    pub capacity_v6: u64,
    pub nexthops: u64,
    pub rules: u64,
}

/// A handle on the running daemon for the API. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    shared: Shared,
    pub events: Arc<EventBus>,
    pin_root: PathBuf,
    interfaces: Arc<Vec<String>>,
    drops: Arc<OnceLock<broadcast::Sender<(SystemTime, DropRecord)>>>,
    /// Wakes the task that rolls back unconfirmed commits.
    commits_changed: Arc<tokio::sync::Notify>,
}

impl Control {
    pub(crate) fn new(
        shared: Shared,
        events: Arc<EventBus>,
        pin_root: PathBuf,
        interfaces: Vec<String>,
    ) -> Self {
        Self {
            shared,
            events,
            pin_root,
            interfaces: Arc::new(interfaces),
            drops: Arc::new(OnceLock::new()),
            commits_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Node) -> ControlResult<T>,
    ) -> ControlResult<T> {
        let mut guard = self.shared.lock().expect("node lock");
        let node = guard.as_mut().ok_or(ControlError::Unavailable)?;
        f(node)
    }

    /// Names of the dataplane's interfaces (the only ones routes may use; fixed for the
    /// daemon's life, so no lock is taken to read them).
    pub fn interface_names(&self) -> &[String] {
        &self.interfaces
    }

    pub fn info(&self) -> ControlResult<Info> {
        self.with(|n| {
            let modes: HashMap<u32, String> =
                n.dp.attached()
                    .map(|(i, _, m)| (i, format!("{m:?}").to_lowercase()))
                    .collect();
            let mut interfaces: Vec<InterfaceView> = n
                .ports
                .values()
                .map(|l| InterfaceView {
                    name: l.name.clone(),
                    ifindex: l.ifindex,
                    mode: modes.get(&l.ifindex).cloned().unwrap_or_default(),
                    up: l.up,
                    mac: fmt_mac(&l.mac),
                    mtu: l.mtu,
                })
                .collect();
            interfaces.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Info {
                pin_root: self.pin_root.clone(),
                interfaces,
                routes: n.dp.tables_ref().route_count() as u64,
                fib_fallback: n.config.fib_fallback,
                policy_generation: n.policy_generation,
                started: n.started,
            })
        })
    }

    pub fn usage(&self) -> ControlResult<Usage> {
        self.with(|n| {
            let tables = n.dp.tables_ref();
            let (v4, v6) = tables.route_counts();
            let (max_v4, max_v6) = tables.route_capacities();
            Ok(Usage {
                routes_v4: v4 as u64,
                routes_v6: v6 as u64,
                capacity_v4: max_v4.into(),
                capacity_v6: max_v6.into(),
                nexthops: tables.nexthops().count() as u64,
                rules: n
                    .api_policy
                    .as_ref()
                    .map_or(n.config.rules.len(), |p| p.rules.len()) as u64,
            })
        })
    }

    /// Routes the tables hold, both families.
    pub fn route_capacity(&self) -> ControlResult<u64> {
        self.with(|n| {
            let (v4, v6) = n.dp.tables_ref().route_capacities();
            Ok(u64::from(v4) + u64::from(v6))
        })
    }

    pub fn routes(&self) -> ControlResult<Vec<RouteView>> {
        self.with(|n| {
            let names = n.port_names();
            Ok(n.dp
                .tables_ref()
                .routes()
                .map(|(prefix, target)| match target {
                    RouteTarget::Local => RouteView {
                        prefix: *prefix,
                        via: Vec::new(),
                        origin: Origin::Local,
                    },
                    RouteTarget::NextHops(specs) => RouteView {
                        prefix: *prefix,
                        via: specs
                            .iter()
                            .map(|s| {
                                (
                                    s.gateway,
                                    names.get(&s.ifindex).cloned().unwrap_or_default(),
                                )
                            })
                            .collect(),
                        origin: if n.api_routes.contains(prefix) {
                            Origin::Api
                        } else {
                            Origin::Config
                        },
                    },
                })
                .collect())
        })
    }

    /// Applies `ops` in order, all or nothing: they are checked against the table first,
    /// and if writing one fails, the ones before it are undone.
    pub fn apply_routes(&self, ops: Vec<RouteOp>) -> ControlResult<BatchResult> {
        self.with(|n| {
            n.check_unheld_routes(&ops)?;
            n.apply_routes(ops)
        })
    }

    /// As `apply_routes`, undone unless `confirm_commit` names it within `within_s`
    /// seconds; the pending commit's id with the result.
    pub fn commit_routes(
        &self,
        ops: Vec<RouteOp>,
        within_s: u32,
        by: String,
    ) -> ControlResult<(BatchResult, u64)> {
        let r = self.with(|n| n.commit_routes(ops, within_s, by))?;
        self.commits_changed.notify_one();
        Ok(r)
    }

    /// As `set_policy`, undone unless confirmed in time.
    pub fn commit_policy(
        &self,
        spec: PolicySpec,
        within_s: u32,
        by: String,
    ) -> ControlResult<(u32, u64)> {
        let r = self.with(|n| n.commit_policy(spec, within_s, by))?;
        self.commits_changed.notify_one();
        Ok(r)
    }

    pub fn commits(&self) -> ControlResult<Vec<crate::commits::Commit>> {
        self.with(|n| Ok(n.commits.pending().to_vec()))
    }

    pub fn confirm_commit(&self, id: u64) -> ControlResult<()> {
        self.with(|n| n.confirm_commit(id))
    }

    pub fn rollback_commit(&self, id: u64) -> ControlResult<()> {
        self.with(|n| n.rollback_commit(id, "rollback asked for"))
    }

    /// Rolls back the commits past their deadline, until the daemon stops: woken at the
    /// next deadline or when a commit is made.
    pub async fn expire_commits(self) {
        loop {
            let c = self.clone();
            let next = tokio::task::spawn_blocking(move || {
                c.with(|n| Ok(n.expire_commits(SystemTime::now())))
            })
            .await;
            let Ok(Ok(next)) = next else { return };
            let wait = next.map_or(Duration::from_secs(3600), |t| {
                t.duration_since(SystemTime::now()).unwrap_or_default()
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.commits_changed.notified() => {}
            }
        }
    }

    pub fn nexthops(&self) -> ControlResult<Vec<NextHopView>> {
        self.with(|n| n.nexthop_views(&self.pin_root))
    }

    pub fn bfd(&self) -> ControlResult<BfdView> {
        self.with(|n| {
            Ok(match &n.bfd {
                Some(b) => BfdView {
                    sessions: b.sessions.lock().expect("bfd sessions lock").clone(),
                    stats: b.stats.lock().expect("bfd stats lock").clone(),
                    transport: b.transport,
                },
                None => BfdView {
                    sessions: Vec::new(),
                    stats: BfdStats::default(),
                    transport: "",
                },
            })
        })
    }

    pub fn policy(&self) -> ControlResult<PolicyView> {
        let hits = crate::counters::read_rule_hits(&self.pin_root).map_err(internal)?;
        self.with(|n| {
            Ok(PolicyView {
                spec: n.policy_spec(),
                generation: n.policy_generation,
                enabled: n.policy_enabled,
                hits,
            })
        })
    }

    /// Validates, installs atomically and keeps `spec`; an invalid one changes nothing.
    pub fn set_policy(&self, spec: PolicySpec) -> ControlResult<u32> {
        self.with(|n| {
            n.check_unheld_policy()?;
            n.set_policy(spec)
        })
    }

    pub fn stats(&self) -> ControlResult<StatsView> {
        let counters = CounterMaps::from_pins(&self.pin_root)
            .and_then(|m| m.read())
            .map_err(internal)?;
        self.with(|n| {
            Ok(StatsView {
                at: SystemTime::now(),
                counters,
                interface_names: n.port_names(),
                nexthops: n.nexthop_views(&self.pin_root)?,
            })
        })
    }

    /// Runs the live program on the probe; returns the explanation and its text.
    pub fn explain(&self, probe: &Probe) -> ControlResult<(Explanation, String, String, String)> {
        let e = crate::explain::explain(&self.pin_root, probe)
            .map_err(|e| ControlError::Invalid(format!("{e:#}")))?;
        self.with(|n| {
            let compiled = n.compiled_policy().unwrap_or_default();
            let spec = n.policy_spec();
            let names = n.port_names();
            let ident = |id: u32| crate::policy::identity_name(&compiled.names, id);
            let rule = |id: u32| crate::policy::describe_rule(&spec.rules, id);
            let text = crate::explain::render(probe, &e, &ident, &rule, &|i| {
                names
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| format!("ifindex {i}"))
            });
            let (src, dst) = (ident(e.trace.src_identity), ident(e.trace.dst_identity));
            Ok((e, text, src, dst))
        })
    }

    /// Interface names by ifindex.
    pub fn port_names(&self) -> ControlResult<BTreeMap<u32, String>> {
        self.with(|n| Ok(n.port_names()))
    }

    /// Sampled drops, from one reader of the drop ring shared by every subscriber.
    pub fn subscribe_drops(&self) -> ControlResult<broadcast::Receiver<(SystemTime, DropRecord)>> {
        if let Some(tx) = self.drops.get() {
            return Ok(tx.subscribe());
        }
        let mut reader = DropReader::open(&self.pin_root).map_err(internal)?;
        let (tx, rx) = broadcast::channel(4096);
        if self.drops.set(tx.clone()).is_err() {
            return Ok(self.drops.get().expect("set").subscribe());
        }
        let alive = self.shared.clone();
        std::thread::Builder::new()
            .name("drop-events".into())
            .spawn(move || {
                while alive.lock().expect("node lock").is_some() {
                    let r = reader.poll(Duration::from_millis(250), &mut |d| {
                        let _ = tx.send((SystemTime::now(), d));
                        true
                    });
                    if let Err(e) = r {
                        return tracing::error!(error = %e, "drop ring reader failed");
                    }
                }
            })
            .map_err(internal)?;
        Ok(rx)
    }
}

impl Node {
    pub(crate) fn port_names(&self) -> BTreeMap<u32, String> {
        self.ports
            .values()
            .map(|l| (l.ifindex, l.name.clone()))
            .collect()
    }

    fn specs(&self, via: &[(IpAddr, String)]) -> ControlResult<Vec<NextHopSpec>> {
        // Exactly as long as needed: the tables keep it for the route's life.
        let mut specs = Vec::with_capacity(via.len());
        for (gateway, name) in via {
            let link = (self.ports.values())
                .find(|l| &l.name == name)
                .ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "interface {} is not one of the dataplane's",
                        Shown(name)
                    ))
                })?;
            specs.push(NextHopSpec {
                gateway: *gateway,
                ifindex: link.ifindex,
            });
        }
        Ok(specs)
    }

    pub(crate) fn apply_routes(&mut self, ops: Vec<RouteOp>) -> ControlResult<BatchResult> {
        let (result, before) = self.check_batch(&ops)?;
        if let Err((failed_at, prefix, e)) = self.write_batch(&ops) {
            self.undo_batch(&ops[..=failed_at], before);
            self.sync_nexthops();
            let msg = format!("{prefix}: {e}; the batch was undone");
            return Err(if msg.contains("no free") || msg.contains("full") {
                ControlError::Exhausted(msg)
            } else {
                ControlError::Internal(msg)
            });
        }
        self.sync_nexthops();
        self.record_batch(&ops);
        Ok(result)
    }

    /// Checks the whole batch before the table is touched, against what the batch has done
    /// so far to each prefix it names (present, and whether local) over what the table
    /// holds; only the touched prefixes are kept (a single update beside a million routes
    /// must not copy them). Returns the counts, and the route each first-touched prefix
    /// had (a prefix absent here is absent after an undo): a million new routes keep no
    /// undo at all.
    fn check_batch(
        &self,
        ops: &[RouteOp],
    ) -> ControlResult<(BatchResult, HashMap<IpNet, RouteTarget>)> {
        let tables = self.dp.tables_ref();
        let mut touched: HashMap<IpNet, Option<bool>> = HashMap::with_capacity(ops.len());
        let mut before = HashMap::new();
        let present = |touched: &HashMap<IpNet, Option<bool>>, p: &IpNet| match touched.get(p) {
            Some(state) => *state,
            None => tables.route(p).map(|t| *t == RouteTarget::Local),
        };
        let mut touch = |touched: &mut HashMap<IpNet, Option<bool>>, p: IpNet, state| {
            if touched.insert(p, state).is_none()
                && let Some(t) = tables.route(&p)
            {
                before.insert(p, t.clone());
            }
        };
        let (v4, v6) = tables.route_counts();
        let (mut v4, mut v6) = (v4 as i64, v6 as i64);
        let mut grow = |p: &IpNet, by: i64| match p {
            IpNet::V4(_) => v4 += by,
            IpNet::V6(_) => v6 += by,
        };
        let mut result = BatchResult::default();
        for (i, op) in ops.iter().enumerate() {
            let field = |what: &str| format!("operations[{i}].{what}");
            match op {
                RouteOp::Add(r) => {
                    if present(&touched, &r.prefix).is_some() {
                        return Err(ControlError::AlreadyExists(format!(
                            "{}: {} already has a route",
                            field("add.prefix"),
                            r.prefix
                        )));
                    }
                    self.specs(&r.via)?;
                    touch(&mut touched, r.prefix, Some(false));
                    grow(&r.prefix, 1);
                    result.added += 1;
                }
                RouteOp::Replace(r) => {
                    match present(&touched, &r.prefix) {
                        Some(true) => {
                            return Err(ControlError::FailedPrecondition(format!(
                                "{}: {} is an address of this router",
                                field("replace.prefix"),
                                r.prefix
                            )));
                        }
                        Some(false) => result.replaced += 1,
                        None => {
                            grow(&r.prefix, 1);
                            result.added += 1;
                        }
                    }
                    self.specs(&r.via)?;
                    touch(&mut touched, r.prefix, Some(false));
                }
                RouteOp::Delete(p) => match present(&touched, p) {
                    None => {
                        return Err(ControlError::NotFound(format!(
                            "{}: {p} has no route",
                            field("delete")
                        )));
                    }
                    Some(true) => {
                        return Err(ControlError::FailedPrecondition(format!(
                            "{}: {p} is an address of this router",
                            field("delete")
                        )));
                    }
                    Some(false) => {
                        touch(&mut touched, *p, None);
                        grow(p, -1);
                        result.deleted += 1;
                    }
                },
            }
        }
        let (max_v4, max_v6) = tables.route_capacities();
        if v4 > i64::from(max_v4) || v6 > i64::from(max_v6) {
            return Err(ControlError::Exhausted(format!(
                "the batch would leave {v4} IPv4 and {v6} IPv6 routes; the tables hold {max_v4} and {max_v6}"
            )));
        }
        Ok((result, before))
    }

    /// Writes a checked batch in order; on a failed write, the operation's index, its
    /// prefix and the error (the ones before it are written).
    fn write_batch(&mut self, ops: &[RouteOp]) -> Result<(), (usize, IpNet, String)> {
        for (i, op) in ops.iter().enumerate() {
            let (prefix, written) = match op {
                RouteOp::Add(r) | RouteOp::Replace(r) => (
                    r.prefix,
                    // Resolved again (checked already): no batch-long copy of every list.
                    self.specs(&r.via)
                        .map_err(|e| e.to_string())
                        .and_then(|specs| {
                            (self.dp.tables())
                                .upsert(r.prefix, RouteTarget::NextHops(specs))
                                .map_err(|e| e.to_string())
                        }),
                ),
                RouteOp::Delete(p) => (*p, self.dp.tables().remove(*p).map_err(|e| e.to_string())),
            };
            written.map_err(|e| (i, prefix, e))?;
        }
        Ok(())
    }

    /// Puts back what the written operations changed: each prefix's route before, or none.
    fn undo_batch(&mut self, written: &[RouteOp], mut before: HashMap<IpNet, RouteTarget>) {
        let mut seen = std::collections::HashSet::new();
        for op in written.iter().rev() {
            let p = op.prefix();
            if !seen.insert(p) {
                continue;
            }
            let tables = self.dp.tables();
            let r = match before.remove(&p) {
                Some(t) => tables.upsert(p, t),
                None if tables.route(&p).is_some() => tables.remove(p),
                None => Ok(()),
            };
            if let Err(e) = r {
                tracing::error!(prefix = %p, error = %e, "undoing a failed batch");
            }
        }
    }

    /// A written batch's routes become the API's, each journalled from the table (one
    /// line at a time: a million are never all in memory as text).
    fn record_batch(&mut self, ops: &[RouteOp]) {
        for op in ops {
            match op {
                RouteOp::Add(r) | RouteOp::Replace(r) => {
                    self.api_routes.insert(r.prefix);
                }
                RouteOp::Delete(p) => {
                    if !self.api_routes.remove(p) {
                        tracing::warn!(prefix = %p, "a route of the config file was deleted through the API; it comes back when the config is loaded again");
                    }
                }
            }
        }
        self.persist(ops.iter().map(|op| {
            let p = op.prefix();
            match self.route_config_of(&p) {
                Some(r) if self.api_routes.contains(&p) => crate::state::Change::Route(r),
                _ => crate::state::Change::Delete(p.to_string()),
            }
        }));
    }

    /// Journals changes to the API's state; writes a snapshot when one is due (or the
    /// journal cannot be written).
    pub(crate) fn persist(&self, changes: impl IntoIterator<Item = crate::state::Change>) {
        let Some(store) = &self.store else { return };
        match store.append(changes, self.api_routes.len()) {
            Ok(false) => {}
            Ok(true) => self.save_state(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "API journal not written; writing a snapshot");
                self.save_state();
            }
        }
    }

    /// Writes the API's routes and policy to disk whole; an error is logged (the change is
    /// in force, but would not survive a restart).
    pub(crate) fn save_state(&self) {
        let Some(store) = &self.store else { return };
        let routes = (self.api_routes.iter()).filter_map(|p| self.route_config_of(p));
        if let Err(e) = store.save_streamed(routes, &self.api_policy) {
            tracing::error!(error = %format!("{e:#}"), "API state not saved: it will not survive a restart");
        }
    }

    /// A route as the config and the API state write it, from the tables (the next hops'
    /// interfaces by name); None for no route or a local address.
    pub(crate) fn route_config_of(&self, prefix: &IpNet) -> Option<RouteConfig> {
        let RouteTarget::NextHops(specs) = self.dp.tables_ref().route(prefix)? else {
            return None;
        };
        let via = specs.iter().map(|s| NextHopConfig {
            gateway: s.gateway,
            interface: (self.ports.get(&s.ifindex)).map_or_else(String::new, |l| l.name.clone()),
        });
        Some(RouteConfig {
            prefix: prefix.to_string(),
            via: via.collect(),
        })
    }

    fn nexthop_views(&self, pin_root: &std::path::Path) -> ControlResult<Vec<NextHopView>> {
        let tables = self.dp.tables_ref();
        let known: BTreeMap<u32, (bool, [u8; 6])> = tables
            .nexthops()
            .map(|n| (n.id, (n.value.flags & NH_F_RESOLVED != 0, n.value.dst_mac)))
            .collect();
        let names = self.port_names();
        let reports =
            crate::counters::read_nexthops_of(pin_root, known.keys().copied()).map_err(internal)?;
        Ok(reports
            .into_iter()
            .map(|r| {
                let (resolved, mac) = known.get(&r.id).copied().unwrap_or_default();
                NextHopView {
                    interface: names.get(&r.ifindex).cloned().unwrap_or_default(),
                    resolved,
                    mac: if resolved {
                        fmt_mac(&mac)
                    } else {
                        String::new()
                    },
                    report: r,
                }
            })
            .collect())
    }

    /// The policy in force, as a spec: the API's if one was set, else the config's.
    pub(crate) fn policy_spec(&self) -> PolicySpec {
        self.api_policy.clone().unwrap_or_else(|| PolicySpec {
            identities: self.config.identities.clone(),
            rules: self.config.rules.clone(),
            defaults: self
                .config
                .interfaces
                .iter()
                .filter_map(|i| i.policy.clone().map(|p| (i.name.clone(), p)))
                .collect(),
        })
    }

    fn compiled_policy(&self) -> anyhow::Result<crate::policy::CompiledPolicy> {
        compile_spec(&self.policy_spec(), &self.config)
    }

    pub(crate) fn set_policy(&mut self, spec: PolicySpec) -> ControlResult<u32> {
        // Errors name the API's fields (the config's [[identity]] and [[rule]] are the
        // message's `identities` and `rules`).
        let compiled = compile_spec(&spec, &self.config).map_err(|e| {
            let msg = format!("policy.{e:#}")
                .replacen("policy.identity[", "policy.identities[", 1)
                .replacen("policy.rule[", "policy.rules[", 1)
                .replacen("policy.rule:", "policy.rules:", 1);
            ControlError::Invalid(msg)
        })?;
        let names: HashMap<String, u32> = self
            .ports
            .values()
            .map(|l| (l.name.clone(), l.ifindex))
            .collect();
        let generation = self
            .dp
            .install_policy(&compiled, &|n| names.get(n).copied())
            .map_err(internal)?;
        self.policy_generation = generation;
        self.policy_enabled = compiled.enabled;
        self.api_policy = Some(spec.clone());
        self.persist([crate::state::Change::Policy(Some(spec))]);
        tracing::info!(
            generation,
            enabled = compiled.enabled,
            "policy set through the API"
        );
        Ok(generation)
    }
}

/// Compiles a policy spec against the config's interfaces; errors name the field.
pub fn compile_spec(
    spec: &PolicySpec,
    config: &crate::config::Config,
) -> anyhow::Result<crate::policy::CompiledPolicy> {
    let mut ifaces: Vec<(String, Option<String>)> = config
        .interfaces
        .iter()
        .map(|i| (i.name.clone(), None))
        .collect();
    for (i, (name, action)) in spec.defaults.iter().enumerate() {
        let Some(slot) = ifaces.iter_mut().find(|(n, _)| n == name) else {
            anyhow::bail!(
                "defaults[{i}].interface: {} is not one of the dataplane's interfaces",
                Shown(name)
            );
        };
        if action != "allow" && action != "deny" {
            anyhow::bail!(
                "defaults[{i}].action: {} is not allow or deny",
                Shown(action)
            );
        }
        slot.1 = Some(action.clone());
    }
    crate::policy::compile(&spec.identities, &spec.rules, &ifaces)
}
