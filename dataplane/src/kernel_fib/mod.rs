//! The kernel's copy of our routes (docs/DESIGN.md, "The kernel's FIB"). What the fast path
//! hands to the kernel (TTL expiry, fragments, packets too big) and what the router sends
//! itself go by the kernel's FIB, so every route of ours is also there, under our own
//! protocol number and metric: through one nexthop object per next-hop set, pointing at
//! the set's first live next hop, or `unreachable` while none is live. A failover in the
//! kernel is then one nexthop replace, whatever the number of routes on the set.

pub mod messages;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    health::{HealthMonitor, State},
    netlink::{Netlink, errno_of},
    tables::{NextHopSpec, Tables},
};
use messages::KernelRoute;

/// Our routes' protocol number unless the config says otherwise.
pub const DEFAULT_PROTOCOL: u8 = 250;

/// Nexthop object ids are this plus the set id (sets are below 2^16): a range of our own.
pub const NEXTHOP_ID_BASE: u32 = 0x7830_0000;

/// `[kernel_fib]` in the config.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelFibConfig {
    /// Mirror every route into the kernel's main table (off: the kernel knows none).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The routes' and nexthops' protocol number (`ip route show proto 250`).
    #[serde(default = "default_protocol")]
    pub protocol: u8,
    /// The routes' metric: another daemon's route to the same prefix with another metric
    /// is never replaced.
    #[serde(default = "default_metric")]
    pub metric: u32,
}

fn default_true() -> bool {
    true
}
fn default_protocol() -> u8 {
    DEFAULT_PROTOCOL
}
fn default_metric() -> u32 {
    50
}

impl Default for KernelFibConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            protocol: default_protocol(),
            metric: default_metric(),
        }
    }
}

impl KernelFibConfig {
    pub fn validate(&self) -> Result<()> {
        // 0-4 are the kernel's own (unspec, redirect, kernel, boot, static).
        if self.protocol <= 4 {
            anyhow::bail!(
                "kernel_fib.protocol: {} is the kernel's own; use 5-255 (default 250)",
                self.protocol
            );
        }
        Ok(())
    }
}

/// What the kernel holds for one next-hop set.
#[derive(Clone, Debug, PartialEq)]
struct SetState {
    members: Vec<u32>,
    /// The next hop the set's nexthop object points at; None: its routes are unreachable.
    active: Option<NextHopSpec>,
}

/// Keeps the kernel's routes of our protocol equal to the tables.
pub struct KernelFib {
    config: KernelFibConfig,
    sets: HashMap<u32, SetState>,
    /// Requests the kernel refused, since start (each logged).
    pub errors: u64,
}

/// The first next hop of `members` that the health monitor has up.
fn active_of(members: &[u32], health: &HealthMonitor) -> Option<NextHopSpec> {
    members
        .iter()
        .find(|id| health.state(**id) == Some(State::Up))
        .and_then(|id| health.spec_of(*id))
}

/// ENOENT / ESRCH: what the kernel answers for something that is already gone.
fn is_gone(e: &anyhow::Error) -> bool {
    matches!(errno_of(e), Some(libc::ENOENT) | Some(libc::ESRCH))
}

impl KernelFib {
    pub fn new(config: KernelFibConfig) -> Self {
        Self {
            config,
            sets: HashMap::new(),
            errors: 0,
        }
    }

    fn nexthop_id(set: u32) -> u32 {
        NEXTHOP_ID_BASE + set
    }

    fn refused(&mut self, e: anyhow::Error) {
        self.errors += 1;
        tracing::error!(error = %format!("{e:#}"), "the kernel refused a route change");
    }

    /// Makes the kernel hold exactly the tables' routes: adopts what an earlier run left
    /// (equal routes are not rewritten, so nothing flaps), fixes what differs and removes
    /// routes and nexthops of our protocol that the tables do not have. Returns how many
    /// routes were written and removed.
    pub fn start(
        &mut self,
        nl: &Netlink,
        tables: &Tables,
        health: &HealthMonitor,
    ) -> Result<(usize, usize)> {
        let metric = self.config.metric;
        let held: HashMap<IpNet, Option<u32>> = messages::routes(nl, self.config.protocol)?
            .into_iter()
            .filter(|r| r.metric == metric)
            .map(|r| (r.prefix, r.nexthop))
            .collect();
        let objects: HashSet<u32> = messages::nexthops(nl, self.config.protocol)?
            .into_iter()
            .collect();
        let sets = tables.sets_by_id();
        for (set, members) in &sets {
            self.push_set(nl, *set, members.clone(), health);
        }
        let mut written = 0;
        for (prefix, target) in tables.routes() {
            if *target == crate::tables::RouteTarget::Local {
                continue;
            }
            let want = self.route_nexthop(tables.route_set(prefix).unwrap_or(0));
            if held.get(prefix) != Some(&want) {
                written += 1;
                self.write_route(nl, *prefix, want);
            }
        }
        let mut removed = 0;
        for (prefix, _) in held {
            let ours = tables.route_set(&prefix).is_some_and(|s| s != 0);
            if !ours {
                removed += 1;
                self.remove_route(nl, prefix);
            }
        }
        for id in objects {
            let set = id.wrapping_sub(NEXTHOP_ID_BASE);
            let used = self.sets.get(&set).is_some_and(|s| s.active.is_some());
            if !used && let Err(e) = messages::delete_nexthop(nl, id) {
                self.refused(e);
            }
        }
        Ok((written, removed))
    }

    /// The nexthop object a route of `set` points at (None: unreachable).
    fn route_nexthop(&self, set: u32) -> Option<u32> {
        self.sets
            .get(&set)
            .and_then(|s| s.active)
            .map(|_| Self::nexthop_id(set))
    }

    /// Points the set's object at its first live next hop (created if missing).
    fn push_set(&mut self, nl: &Netlink, set: u32, members: Vec<u32>, health: &HealthMonitor) {
        let active = active_of(&members, health);
        if let Some(spec) = active {
            let id = Self::nexthop_id(set);
            let p = self.config.protocol;
            if let Err(e) = messages::replace_nexthop(nl, id, p, spec.gateway, spec.ifindex, true) {
                self.refused(e);
            }
        }
        self.sets.insert(set, SetState { members, active });
    }

    fn write_route(&mut self, nl: &Netlink, prefix: IpNet, nexthop: Option<u32>) {
        let (p, m) = (self.config.protocol, self.config.metric);
        if let Err(e) = messages::replace_route(nl, prefix, p, m, nexthop) {
            self.refused(e);
        }
    }

    fn remove_route(&mut self, nl: &Netlink, prefix: IpNet) {
        let (p, m) = (self.config.protocol, self.config.metric);
        match messages::delete_route(nl, prefix, p, m) {
            Err(e) if !is_gone(&e) => self.refused(e),
            _ => {}
        }
    }

    /// Follows the tables after routes changed (`prefixes`, in the order they changed):
    /// each route's set first, then the route; sets no route uses any more last.
    pub fn routes_changed(
        &mut self,
        nl: &Netlink,
        tables: &Tables,
        health: &HealthMonitor,
        prefixes: Vec<IpNet>,
    ) {
        if prefixes.is_empty() {
            return;
        }
        let sets = tables.sets_by_id();
        for prefix in prefixes {
            match tables.route_set(&prefix) {
                None | Some(0) => self.remove_route(nl, prefix),
                Some(set) => {
                    let members = &sets[&set];
                    if self.sets.get(&set).map(|s| &s.members) != Some(members) {
                        self.push_set(nl, set, members.clone(), health);
                    }
                    let want = self.route_nexthop(set);
                    self.write_route(nl, prefix, want);
                }
            }
        }
        // Objects of sets no route uses are left in the kernel (deleting one waits for an
        // RCU grace period, milliseconds, in the API's path); a reused set id replaces its
        // content, and start and detach remove what is left.
        self.sets.retain(|set, s| sets.get(set) == Some(&s.members));
    }

    /// Follows the health monitor after next hops `ids` changed state: every set whose
    /// first live next hop changed moves in one nexthop replace. Returns how many moved.
    pub fn liveness_changed(
        &mut self,
        nl: &Netlink,
        tables: &Tables,
        health: &HealthMonitor,
        ids: &[u32],
    ) -> usize {
        let touched: Vec<u32> = self
            .sets
            .iter()
            .filter(|(_, s)| s.members.iter().any(|m| ids.contains(m)))
            .map(|(set, _)| *set)
            .collect();
        let mut moved = 0;
        for set in touched {
            let state = &self.sets[&set];
            let active = active_of(&state.members, health);
            if active != state.active {
                let before = state.active;
                self.move_set(nl, tables, set, before, active);
                moved += 1;
            }
        }
        moved
    }

    fn move_set(
        &mut self,
        nl: &Netlink,
        tables: &Tables,
        set: u32,
        before: Option<NextHopSpec>,
        after: Option<NextHopSpec>,
    ) {
        let id = Self::nexthop_id(set);
        let p = self.config.protocol;
        self.sets.get_mut(&set).expect("listed").active = after;
        let Some(spec) = after else {
            // None live: the routes become unreachable; the object stays, idle (deleting it
            // waits for an RCU grace period), until a next hop is live again.
            for prefix in tables.routes_with_set(set) {
                self.write_route(nl, prefix, None);
            }
            return;
        };
        let (gw, ifindex) = (spec.gateway, spec.ifindex);
        let replaced = match before {
            Some(_) => messages::replace_nexthop(nl, id, p, gw, ifindex, false),
            None => Err(std::io::Error::from_raw_os_error(libc::ENOENT).into()),
        };
        match replaced {
            Ok(()) => {}
            // The kernel deleted it (and its routes) with a link that lost its carrier, or
            // the routes were unreachable: create it and point the routes at it again.
            Err(e) if is_gone(&e) => {
                if let Err(e) = messages::replace_nexthop(nl, id, p, gw, ifindex, true) {
                    return self.refused(e);
                }
                for prefix in tables.routes_with_set(set) {
                    self.write_route(nl, prefix, Some(id));
                }
            }
            Err(e) => self.refused(e),
        }
        tracing::debug!(set, gateway = %gw, "kernel route moved");
    }
}

/// Removes every route and nexthop object of `protocol` (detach). Returns how many of each.
pub fn clear(nl: &Netlink, protocol: u8) -> Result<(usize, usize)> {
    let routes: Vec<KernelRoute> = messages::routes(nl, protocol)?;
    for r in &routes {
        match messages::delete_route(nl, r.prefix, protocol, r.metric) {
            Err(e) if !is_gone(&e) => return Err(e),
            _ => {}
        }
    }
    let objects = messages::nexthops(nl, protocol)?;
    for id in &objects {
        match messages::delete_nexthop(nl, *id) {
            Err(e) if !is_gone(&e) => return Err(e),
            _ => {}
        }
    }
    Ok((routes.len(), objects.len()))
}
