//! The route, next-hop-set and next-hop maps, and the bookkeeping that keeps them
//! consistent. This is the one place that writes them.
//!
//! Update order keeps every lookup consistent (docs/DESIGN.md, "Consistent updates"):
//! a route is written only after its next hops and its set exist, a changed set is written
//! to a fresh id and the route swapped to it in one LPM update (the kernel replaces trie
//! nodes under RCU), and ids are freed only after nothing points to them.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use aya::maps::{
    Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, lpm_trie::Key,
};
use ipnet::IpNet;
use thiserror::Error;

use crate::{v4_direct::V4DirectTable, v4_filter::V4Filter};
use x0_common::{
    Counter, IF_STATS_ARRAY_LEN, MAX_NEXTHOP_SETS, MAX_NEXTHOPS, MAX_NEXTHOPS_PER_SET,
    NEIGH_PER_PORT, NH_F_IPV6, NH_F_RESOLVED, NH_LIVE, NextHop, NextHopHealth, NextHopSet,
    PortState, ROUTE_F_LOCAL, Route, V4ExactKey, V4Lengths, mac_key,
};

/// A next hop as configured: a gateway reached through an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHopSpec {
    pub gateway: IpAddr,
    pub ifindex: u32,
}

/// An egress port's own addresses, needed to build next hops on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Carrier present: a next hop created on a port that is down starts dead.
    pub up: bool,
}

#[derive(Debug, Error)]
pub enum TableError {
    #[error("a route needs 1 to {MAX_NEXTHOPS_PER_SET} next hops, got {0}")]
    NextHopCount(usize),
    #[error("next hop {0} is not in the address family of prefix {1}")]
    FamilyMismatch(IpAddr, IpNet),
    #[error("next hop {gateway} uses ifindex {ifindex}, which is not an attached interface")]
    UnknownPort { gateway: IpAddr, ifindex: u32 },
    #[error("prefix {0} has host bits set (did you mean {1}?)")]
    HostBits(IpNet, IpNet),
    #[error("no route for {0}")]
    NoSuchRoute(IpNet),
    #[error("{0} table full ({1} entries)")]
    Full(&'static str, u32),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("writing map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
}

/// What a route points to, as user space remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// Addressed to this router: the kernel takes it.
    Local,
    /// Next hops in preference order.
    NextHops(Vec<NextHopSpec>),
}

/// A next hop with its id in the map and its current value.
#[derive(Clone, Debug)]
pub struct NextHopState {
    pub id: u32,
    pub spec: NextHopSpec,
    pub value: NextHop,
    refs: u32,
}

struct IdPool {
    next: u32,
    free: Vec<u32>,
    max: u32,
    what: &'static str,
}

impl IdPool {
    /// Id 0 is never handed out, so that a zeroed entry never points anywhere valid.
    fn new(max: u32, what: &'static str) -> Self {
        Self {
            next: 1,
            free: Vec::new(),
            max,
            what,
        }
    }
    fn take(&mut self) -> Result<u32, TableError> {
        if let Some(id) = self.free.pop() {
            return Ok(id);
        }
        if self.next >= self.max {
            return Err(TableError::Full(self.what, self.max));
        }
        self.next += 1;
        Ok(self.next - 1)
    }
    fn give(&mut self, id: u32) {
        self.free.push(id);
    }
    /// After adoption: ids below `end` are taken where `used` says so, free otherwise.
    fn reserve_below(&mut self, end: u32, used: impl Fn(u32) -> bool) {
        self.next = self.next.max(end);
        self.free = (1..end).filter(|id| !used(*id)).rev().collect();
    }
}

/// The maps this module writes.
pub struct TableMaps {
    pub routes_v4: LpmTrie<MapData, [u8; 4], Route>,
    /// The IPv4 routes again by (length, address), the lengths in use and the probe
    /// filter: the fast path's IPv4 lookup (x0_common::MAX_V4_LENGTHS).
    pub routes_v4_exact: BpfHashMap<MapData, V4ExactKey, Route>,
    pub v4_lengths: Array<MapData, V4Lengths>,
    pub v4_filter: V4Filter,
    /// What the fast path reads first: the routes up to /24, per /24.
    pub v4_direct: V4DirectTable,
    pub routes_v6: LpmTrie<MapData, [u8; 16], Route>,
    /// Routes the maps were made to hold (the config's [maps], or an older run's pins):
    /// IPv4, IPv6.
    pub capacities: (u32, u32),
    pub sets: Array<MapData, NextHopSet>,
    pub nexthops: Array<MapData, NextHop>,
    /// Written here only when a next hop is created; the health monitor owns it after.
    pub live: Array<MapData, u32>,
    pub nh_stats: PerCpuArray<MapData, Counter>,
    pub health: Array<MapData, NextHopHealth>,
    /// Neighbours whose frames the fast path time-stamps (passive liveness).
    pub port_state: Array<MapData, PortState>,
}

pub struct Tables {
    routes_v4: LpmTrie<MapData, [u8; 4], Route>,
    routes_v4_exact: BpfHashMap<MapData, V4ExactKey, Route>,
    v4_lengths: Array<MapData, V4Lengths>,
    v4_filter: V4Filter,
    v4_direct: V4DirectTable,
    /// IPv4 routes per prefix length, to publish the lengths in use.
    v4_per_length: [u32; 33],
    routes_v6: LpmTrie<MapData, [u8; 16], Route>,
    sets: Array<MapData, NextHopSet>,
    nexthops: Array<MapData, NextHop>,
    live: Array<MapData, u32>,
    nh_stats: PerCpuArray<MapData, Counter>,
    health: Array<MapData, NextHopHealth>,
    port_state: Array<MapData, PortState>,
    /// Next hops created or freed since the daemon last asked (it tells the health monitor).
    created: Vec<(u32, NextHopSpec)>,
    freed: Vec<u32>,
    cpus: usize,
    ports: HashMap<u32, PortInfo>,
    routes: BTreeMap<IpNet, (RouteTarget, u32)>,
    /// Routes the maps hold, per family.
    capacity_v4: u32,
    capacity_v6: u32,
    /// IPv6 entries of `routes` (the rest are IPv4): the maps' capacities are per family.
    v6_routes: usize,
    nh_by_spec: HashMap<NextHopSpec, NextHopState>,
    set_by_ids: HashMap<Vec<u32>, (u32, u32)>,
    nh_ids: IdPool,
    set_ids: IdPool,
    /// Prefixes whose route changed, for the kernel's copy (None: nobody asked to track).
    route_journal: Option<Vec<IpNet>>,
}

impl Tables {
    pub fn new(maps: TableMaps) -> Self {
        let TableMaps {
            routes_v4,
            routes_v4_exact,
            v4_lengths,
            v4_filter,
            v4_direct,
            routes_v6,
            capacities: (capacity_v4, capacity_v6),
            sets,
            nexthops,
            live,
            nh_stats,
            health,
            port_state,
        } = maps;
        Self {
            capacity_v4,
            capacity_v6,
            routes_v4,
            routes_v4_exact,
            v4_lengths,
            v4_filter,
            v4_direct,
            v4_per_length: [0; 33],
            routes_v6,
            sets,
            nexthops,
            live,
            nh_stats,
            health,
            port_state,
            created: Vec::new(),
            freed: Vec::new(),
            cpus: aya::util::nr_cpus().unwrap_or(1),
            ports: HashMap::new(),
            routes: BTreeMap::new(),
            v6_routes: 0,
            nh_by_spec: HashMap::new(),
            set_by_ids: HashMap::new(),
            nh_ids: IdPool::new(MAX_NEXTHOPS, "next-hop"),
            set_ids: IdPool::new(MAX_NEXTHOP_SETS, "next-hop-set"),
            route_journal: None,
        }
    }

    /// Declares (or updates) an egress port; next hops on it take its MAC and MTU.
    pub fn set_port(&mut self, ifindex: u32, info: PortInfo) -> Result<(), TableError> {
        self.ports.insert(ifindex, info);
        // The fast path forwards only frames addressed to the port's own MAC.
        if ifindex < IF_STATS_ARRAY_LEN {
            let mut state = self
                .port_state
                .get(&ifindex, 0)
                .map_err(|e| TableError::Map("ports", e))?;
            if state.own_mac != mac_key(info.mac) {
                state.own_mac = mac_key(info.mac);
                self.port_state
                    .set(ifindex, state, 0)
                    .map_err(|e| TableError::Map("ports", e))?;
            }
        }
        let ids: Vec<NextHopSpec> = self
            .nh_by_spec
            .keys()
            .filter(|s| s.ifindex == ifindex)
            .copied()
            .collect();
        for spec in ids {
            let nh = self.nh_by_spec.get_mut(&spec).expect("listed above");
            if nh.value.src_mac == info.mac && nh.value.mtu == info.mtu {
                continue; // unchanged: no write, so no packet can see a half-written entry
            }
            nh.value.src_mac = info.mac;
            nh.value.mtu = info.mtu;
            let (id, value) = (nh.id, nh.value);
            self.write_nexthop(id, value)?;
        }
        Ok(())
    }

    /// The target of one installed prefix (a map lookup, not a scan).
    pub fn route(&self, prefix: &IpNet) -> Option<&RouteTarget> {
        self.routes.get(prefix).map(|(t, _)| t)
    }

    pub fn routes(&self) -> impl Iterator<Item = (&IpNet, &RouteTarget)> {
        self.routes.iter().map(|(p, (t, _))| (p, t))
    }

    /// Records a port's policy default (deny or allow) for a policy version.
    pub fn set_port_default(
        &mut self,
        ifindex: u32,
        version: u32,
        deny: bool,
    ) -> Result<(), TableError> {
        if ifindex >= IF_STATS_ARRAY_LEN {
            return Ok(());
        }
        let err = |e| TableError::Map("ports", e);
        let mut state = self.port_state.get(&ifindex, 0).map_err(err)?;
        let action = if deny {
            x0_common::policy::ACTION_DENY
        } else {
            x0_common::policy::ACTION_ALLOW
        } as u32;
        if state.default_action[(version & 1) as usize] != action {
            state.default_action[(version & 1) as usize] = action;
            self.port_state.set(ifindex, state, 0).map_err(err)?;
        }
        Ok(())
    }

    /// Writes a next hop's liveness word and health record (from the health monitor).
    pub fn apply_health(
        &mut self,
        id: u32,
        live: bool,
        record: &NextHopHealth,
    ) -> Result<(), TableError> {
        let err = |e| TableError::Map("next-hop health", e);
        self.live
            .set(id, if live { NH_LIVE } else { 0 }, 0)
            .map_err(err)?;
        self.health.set(id, record, 0).map_err(err)
    }

    /// Packets and bytes forwarded through each next hop, by id (summed over CPUs).
    pub fn nexthop_counters(&self) -> Result<std::collections::BTreeMap<u32, Counter>, TableError> {
        let mut out = std::collections::BTreeMap::new();
        for nh in self.nh_by_spec.values() {
            let per_cpu = self
                .nh_stats
                .get(&nh.id, 0)
                .map_err(|e| TableError::Map("next-hop counters", e))?;
            let sum = per_cpu.iter().fold(Counter::default(), |a, c| Counter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            });
            out.insert(nh.id, sum);
        }
        Ok(out)
    }

    /// The health record the maps hold for a next hop.
    pub fn health_record(&self, id: u32) -> NextHopHealth {
        self.health.get(&id, 0).unwrap_or_default()
    }

    pub fn port(&self, ifindex: u32) -> Option<PortInfo> {
        self.ports.get(&ifindex).copied()
    }

    /// Next hops created and freed since the last call.
    pub fn take_changes(&mut self) -> (Vec<(u32, NextHopSpec)>, Vec<u32>) {
        (
            std::mem::take(&mut self.created),
            std::mem::take(&mut self.freed),
        )
    }

    /// Every next-hop set, as next-hop ids in preference order.
    pub fn sets(&self) -> Vec<Vec<u32>> {
        self.set_by_ids.keys().cloned().collect()
    }

    /// Every next-hop set by its id.
    pub fn sets_by_id(&self) -> HashMap<u32, Vec<u32>> {
        self.set_by_ids
            .iter()
            .map(|(ids, (set, _))| (*set, ids.clone()))
            .collect()
    }

    /// The set a prefix's route uses (0: a local route), or None without a route.
    pub fn route_set(&self, prefix: &IpNet) -> Option<u32> {
        self.routes.get(prefix).map(|(_, set)| *set)
    }

    /// Every prefix whose route uses `set_id` (a scan: for the rare whole-set rewrite).
    pub fn routes_with_set(&self, set_id: u32) -> Vec<IpNet> {
        self.routes
            .iter()
            .filter(|(_, (_, s))| *s == set_id)
            .map(|(p, _)| *p)
            .collect()
    }

    /// From now on, remember every prefix whose route is added, changed or removed.
    pub fn journal_routes(&mut self) {
        self.route_journal.get_or_insert_with(Vec::new);
    }

    /// Prefixes whose route changed since the last call, in the order of the changes.
    pub fn take_route_changes(&mut self) -> Vec<IpNet> {
        self.route_journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn journal(&mut self, prefix: IpNet) {
        if let Some(j) = &mut self.route_journal {
            j.push(prefix);
        }
    }

    pub fn ports(&self) -> impl Iterator<Item = (&u32, &PortInfo)> {
        self.ports.iter()
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The IPv4 prefix lengths the fast path probes, longest first, as the kernel map
    /// holds them; `None` when it walks the LPM trie instead.
    pub fn v4_lookup_lengths(&self) -> Result<Option<Vec<u32>>, TableError> {
        let v = self
            .v4_lengths
            .get(&0, 0)
            .map_err(|e| TableError::Map("IPv4 lengths", e))?;
        Ok((v.count != 0).then(|| v.lengths[..v.count as usize].to_vec()))
    }

    /// The IPv4 probe filter, as the fast path reads it.
    pub fn v4_filter(&self) -> &V4Filter {
        &self.v4_filter
    }

    /// The IPv4 direct table, for tests and diagnostics.
    pub fn v4_direct(&self) -> &V4DirectTable {
        &self.v4_direct
    }

    /// Unmaps the memory-mapped tables' windows: an idle daemon maps none (the daemon
    /// calls it on every health tick, between operations).
    pub fn release_mappings(&self) {
        self.v4_direct.release();
        self.v4_filter.release();
    }

    /// Windows of the memory-mapped tables mapped now.
    pub fn mapped_windows(&self) -> usize {
        self.v4_direct.mapped() + self.v4_filter.mapped()
    }

    /// Routes per family: (IPv4, IPv6).
    /// Routes the maps hold: (IPv4, IPv6).
    pub fn route_capacities(&self) -> (u32, u32) {
        (self.capacity_v4, self.capacity_v6)
    }

    pub fn route_counts(&self) -> (usize, usize) {
        (self.routes.len() - self.v6_routes, self.v6_routes)
    }

    pub fn nexthops(&self) -> impl Iterator<Item = &NextHopState> {
        self.nh_by_spec.values()
    }

    /// Next hops whose MAC is not known yet.
    pub fn unresolved(&self) -> Vec<NextHopSpec> {
        let mut v: Vec<_> = self
            .nh_by_spec
            .values()
            .filter(|n| n.value.flags & NH_F_RESOLVED == 0)
            .map(|n| n.spec)
            .collect();
        v.sort();
        v
    }

    /// Adds or replaces the route for `prefix`.
    pub fn upsert(&mut self, prefix: IpNet, target: RouteTarget) -> Result<(), TableError> {
        if prefix.trunc() != prefix {
            return Err(TableError::HostBits(prefix, prefix.trunc()));
        }
        if let RouteTarget::NextHops(specs) = &target {
            self.check_nexthops(prefix, specs)?;
        }
        if self.routes.get(&prefix).map(|(t, _)| t) == Some(&target) {
            return Ok(());
        }
        let set_id = match &target {
            RouteTarget::Local => 0,
            RouteTarget::NextHops(specs) => self.acquire_set(specs)?,
        };
        let route = route_value(&target, set_id);
        if let Err(e) = self.write_route(prefix, &route) {
            if set_id != 0 {
                self.release_set(set_id);
            }
            return Err(e);
        }
        self.journal(prefix);
        match self.routes.insert(prefix, (target, set_id)) {
            Some((_, old_set)) if old_set != 0 => self.release_set(old_set),
            Some(_) => {}
            None => self.counted(prefix, true)?,
        }
        Ok(())
    }

    pub fn remove(&mut self, prefix: IpNet) -> Result<(), TableError> {
        let Some((_, set_id)) = self.routes.get(&prefix).cloned() else {
            return Err(TableError::NoSuchRoute(prefix));
        };
        self.delete_route(prefix)?;
        self.routes.remove(&prefix);
        self.journal(prefix);
        self.counted(prefix, false)?;
        if set_id != 0 {
            self.release_set(set_id);
        }
        Ok(())
    }

    /// Takes over what an earlier run left in pinned maps: next hops (by their stored
    /// gateway), sets and routes, with their ids, so that nothing in the fast path is
    /// rewritten or renumbered. Returns how many routes were adopted.
    pub fn adopt(&mut self) -> Result<usize, TableError> {
        let err = |e| TableError::Map("adopting", e);
        let mut max_nh = 0;
        for id in 1..MAX_NEXTHOPS {
            let value = self.nexthops.get(&id, 0).map_err(err)?;
            if value.ifindex == 0 {
                continue;
            }
            let spec = NextHopSpec {
                gateway: value.gateway_ip(),
                ifindex: value.ifindex,
            };
            self.nh_by_spec.insert(
                spec,
                NextHopState {
                    id,
                    spec,
                    value,
                    refs: 0,
                },
            );
            self.created.push((id, spec));
            max_nh = id;
        }
        let mut max_set = 0;
        let mut set_ids: HashMap<u32, Vec<u32>> = HashMap::new();
        for id in 1..MAX_NEXTHOP_SETS {
            let set = self.sets.get(&id, 0).map_err(err)?;
            if set.len == 0 || set.len as usize > MAX_NEXTHOPS_PER_SET {
                continue;
            }
            let ids = set.nexthops[..set.len as usize].to_vec();
            if !ids
                .iter()
                .all(|i| self.nh_by_spec.values().any(|n| n.id == *i))
            {
                continue; // points at next hops that are gone: unusable, not adopted
            }
            set_ids.insert(id, ids);
            max_set = id;
        }
        let mut routes = Vec::new();
        for key in self.routes_v4.keys() {
            let key = key.map_err(err)?;
            let net = ipnet::Ipv4Net::new(key.data().into(), key.prefix_len() as u8).map(IpNet::V4);
            if let Ok(net) = net {
                routes.push((net, self.routes_v4.get(&key, 0).map_err(err)?));
            }
        }
        for key in self.routes_v6.keys() {
            let key = key.map_err(err)?;
            let net = ipnet::Ipv6Net::new(key.data().into(), key.prefix_len() as u8).map(IpNet::V6);
            if let Ok(net) = net {
                routes.push((net, self.routes_v6.get(&key, 0).map_err(err)?));
            }
        }
        // What the exact map must mirror: every IPv4 route the trie holds.
        let v4_in_trie: HashMap<V4ExactKey, Route> = routes
            .iter()
            .filter_map(|(net, route)| match net {
                IpNet::V4(p) => Some((
                    V4ExactKey::masked(p.prefix_len().into(), p.addr().octets()),
                    *route,
                )),
                IpNet::V6(_) => None,
            })
            .collect();
        let mut adopted = 0;
        for (net, route) in routes {
            let target = if route.flags & ROUTE_F_LOCAL != 0 {
                (RouteTarget::Local, 0)
            } else if let Some(ids) = set_ids.get(&route.nexthop_set) {
                let specs = ids
                    .iter()
                    .map(|i| {
                        self.nh_by_spec
                            .values()
                            .find(|n| n.id == *i)
                            .expect("checked")
                            .spec
                    })
                    .collect();
                let entry = self
                    .set_by_ids
                    .entry(ids.clone())
                    .or_insert((route.nexthop_set, 0));
                if entry.1 == 0 {
                    for i in ids {
                        let spec = self
                            .nh_by_spec
                            .values()
                            .find(|n| n.id == *i)
                            .expect("checked")
                            .spec;
                        self.nh_by_spec.get_mut(&spec).expect("present").refs += 1;
                    }
                }
                entry.1 += 1;
                (RouteTarget::NextHops(specs), route.nexthop_set)
            } else {
                continue; // left for prune_foreign
            };
            if self.routes.insert(net, target).is_none() {
                match net {
                    IpNet::V4(p) => self.v4_per_length[usize::from(p.prefix_len())] += 1,
                    IpNet::V6(_) => self.v6_routes += 1,
                }
            }
            adopted += 1;
        }
        self.sync_v4_exact(v4_in_trie)?;
        // Ids in use are not handed out again; unused next hops are freed.
        self.nh_ids.reserve_below(max_nh + 1, |id| {
            self.nh_by_spec.values().any(|n| n.id == id)
        });
        self.set_ids.reserve_below(max_set + 1, |id| {
            self.set_by_ids.values().any(|(s, _)| *s == id)
        });
        let unused: Vec<NextHopSpec> = self
            .nh_by_spec
            .values()
            .filter(|n| n.refs == 0)
            .map(|n| n.spec)
            .collect();
        for spec in unused {
            let id = self.nh_by_spec.remove(&spec).expect("present").id;
            self.nh_ids.give(id);
            self.created.retain(|(i, _)| *i != id);
        }
        Ok(adopted)
    }

    /// Deletes routes found in the maps that this table did not write (left by an earlier
    /// run in pinned maps). Returns how many.
    pub fn prune_foreign(&mut self) -> Result<usize, TableError> {
        let mut stale = Vec::new();
        for key in self.routes_v4.keys().flatten() {
            let net = IpNet::V4(
                ipnet::Ipv4Net::new(key.data().into(), key.prefix_len() as u8).expect("valid"),
            );
            if !self.routes.contains_key(&net) {
                stale.push(net);
            }
        }
        for key in self.routes_v6.keys().flatten() {
            let net = IpNet::V6(
                ipnet::Ipv6Net::new(key.data().into(), key.prefix_len() as u8).expect("valid"),
            );
            if !self.routes.contains_key(&net) {
                stale.push(net);
            }
        }
        for net in &stale {
            self.delete_route(*net)?;
        }
        Ok(stale.len())
    }

    /// Records what the kernel knows of the neighbour `addr` on `ifindex`. Returns whether
    /// a next hop changed.
    pub fn set_neighbour(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        mac: Option<[u8; 6]>,
    ) -> Result<bool, TableError> {
        let spec = NextHopSpec {
            gateway: addr,
            ifindex,
        };
        let Some(nh) = self.nh_by_spec.get_mut(&spec) else {
            return Ok(false);
        };
        let mut value = nh.value;
        match mac {
            Some(mac) => {
                value.dst_mac = mac;
                value.flags |= NH_F_RESOLVED;
            }
            None => value.flags &= !NH_F_RESOLVED,
        }
        if value == nh.value {
            return Ok(false);
        }
        nh.value = value;
        let id = nh.id;
        self.write_nexthop(id, value)?;
        self.track_neighbour(ifindex);
        Ok(true)
    }

    /// Keeps each port's `X0_PORTS` slots holding the resolved MACs of its next hops,
    /// so that the fast path stamps their frames. A port tracks up to NEIGH_PER_PORT.
    fn track_neighbour(&mut self, ifindex: u32) {
        if ifindex >= IF_STATS_ARRAY_LEN {
            return;
        }
        let mut wanted: Vec<u64> = self
            .nh_by_spec
            .values()
            .filter(|n| n.spec.ifindex == ifindex && n.value.flags & NH_F_RESOLVED != 0)
            .map(|n| mac_key(n.value.dst_mac))
            .collect();
        wanted.sort();
        wanted.dedup();
        let Ok(mut port) = self.port_state.get(&ifindex, 0) else {
            return;
        };
        let before = port;
        // Keep the slots (and times) of MACs still wanted, free the rest, then fill.
        for i in 0..NEIGH_PER_PORT {
            if !wanted.contains(&port.macs[i]) {
                port.macs[i] = 0;
                port.seen_ns[i] = 0;
            }
        }
        for mac in wanted {
            if port.macs.contains(&mac) {
                continue;
            }
            match port.macs.iter().position(|m| *m == 0) {
                Some(i) => port.macs[i] = mac,
                None => tracing::debug!(ifindex, "more neighbours than passive-liveness slots"),
            }
        }
        if port != before {
            let _ = self.port_state.set(ifindex, port, 0);
        }
    }

    /// How long ago (coarse monotonic clock) the fast path last saw a frame from the
    /// next hop's neighbour, if it ever did.
    pub fn neighbour_last_seen(&self, spec: &NextHopSpec) -> Option<std::time::Duration> {
        let nh = self.nh_by_spec.get(spec)?;
        let port = self.port_state.get(&spec.ifindex, 0).ok()?;
        let slot = port
            .macs
            .iter()
            .position(|m| *m == mac_key(nh.value.dst_mac))?;
        let seen = port.seen_ns[slot];
        if seen == 0 {
            return None;
        }
        Some(std::time::Duration::from_nanos(
            crate::bpffs::coarse_now_ns().saturating_sub(seen),
        ))
    }

    /// Holds a next hop no route may use yet (a neighbour found before any route names
    /// it): it is made as a route would make it, so its BFD session and health run.
    pub fn hold_nexthop(&mut self, spec: NextHopSpec) -> Result<(), TableError> {
        if !self.ports.contains_key(&spec.ifindex) {
            return Err(TableError::UnknownPort {
                gateway: spec.gateway,
                ifindex: spec.ifindex,
            });
        }
        self.acquire_nexthop(spec).map(|_| ())
    }

    /// Lets go of a held next hop (freed if no route uses it).
    pub fn release_held_nexthop(&mut self, spec: NextHopSpec) {
        if let Some(id) = self.nh_by_spec.get(&spec).map(|n| n.id) {
            self.release_nexthop(id);
        }
    }

    fn check_nexthops(&self, prefix: IpNet, specs: &[NextHopSpec]) -> Result<(), TableError> {
        if specs.is_empty() || specs.len() > MAX_NEXTHOPS_PER_SET {
            return Err(TableError::NextHopCount(specs.len()));
        }
        for s in specs {
            if s.gateway.is_ipv4() != matches!(prefix, IpNet::V4(_)) {
                return Err(TableError::FamilyMismatch(s.gateway, prefix));
            }
            if !self.ports.contains_key(&s.ifindex) {
                return Err(TableError::UnknownPort {
                    gateway: s.gateway,
                    ifindex: s.ifindex,
                });
            }
        }
        Ok(())
    }

    fn acquire_nexthop(&mut self, spec: NextHopSpec) -> Result<u32, TableError> {
        if let Some(nh) = self.nh_by_spec.get_mut(&spec) {
            nh.refs += 1;
            return Ok(nh.id);
        }
        let port = self.ports[&spec.ifindex];
        let id = self.nh_ids.take()?;
        let (gateway, flags) = match spec.gateway {
            IpAddr::V4(a) => {
                let mut g = [0; 16];
                g[..4].copy_from_slice(&a.octets());
                (g, 0)
            }
            IpAddr::V6(a) => (a.octets(), NH_F_IPV6),
        };
        let value = NextHop {
            ifindex: spec.ifindex,
            flags,
            mtu: port.mtu,
            src_mac: port.mac,
            dst_mac: [0; 6],
            gateway,
        };
        // Fresh counters and health for a fresh (or reused) id, and the liveness word,
        // before any set can point here.
        let written = self
            .reset_nexthop_state(id, port.up)
            .and_then(|()| self.write_nexthop(id, value));
        if let Err(e) = written {
            self.nh_ids.give(id);
            return Err(e);
        }
        self.nh_by_spec.insert(
            spec,
            NextHopState {
                id,
                spec,
                value,
                refs: 1,
            },
        );
        self.created.push((id, spec));
        Ok(id)
    }

    fn release_nexthop(&mut self, id: u32) {
        let Some(spec) = self
            .nh_by_spec
            .values()
            .find(|n| n.id == id)
            .map(|n| n.spec)
        else {
            return;
        };
        let nh = self.nh_by_spec.get_mut(&spec).expect("found above");
        nh.refs -= 1;
        if nh.refs == 0 {
            self.nh_by_spec.remove(&spec);
            self.nh_ids.give(id);
            self.freed.push(id);
        }
    }

    fn acquire_set(&mut self, specs: &[NextHopSpec]) -> Result<u32, TableError> {
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            match self.acquire_nexthop(*spec) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    ids.into_iter().for_each(|id| self.release_nexthop(id));
                    return Err(e);
                }
            }
        }
        if let Some((set_id, refs)) = self.set_by_ids.get_mut(&ids) {
            *refs += 1;
            let set_id = *set_id;
            // The set already holds one reference on each of its next hops.
            ids.into_iter().for_each(|id| self.release_nexthop(id));
            return Ok(set_id);
        }
        let set_id = match self.set_ids.take() {
            Ok(id) => id,
            Err(e) => {
                ids.into_iter().for_each(|id| self.release_nexthop(id));
                return Err(e);
            }
        };
        let mut value = NextHopSet {
            len: ids.len() as u32,
            nexthops: [0; MAX_NEXTHOPS_PER_SET],
        };
        value.nexthops[..ids.len()].copy_from_slice(&ids);
        if let Err(e) = self.sets.set(set_id, value, 0) {
            self.set_ids.give(set_id);
            ids.into_iter().for_each(|id| self.release_nexthop(id));
            return Err(TableError::Map("next-hop sets", e));
        }
        self.set_by_ids.insert(ids, (set_id, 1));
        Ok(set_id)
    }

    fn release_set(&mut self, set_id: u32) {
        let Some(ids) = self
            .set_by_ids
            .iter()
            .find(|(_, (id, _))| *id == set_id)
            .map(|(ids, _)| ids.clone())
        else {
            return;
        };
        let entry = self.set_by_ids.get_mut(&ids).expect("found above");
        entry.1 -= 1;
        if entry.1 == 0 {
            self.set_by_ids.remove(&ids);
            self.set_ids.give(set_id);
            ids.into_iter().for_each(|id| self.release_nexthop(id));
        }
    }

    fn reset_nexthop_state(&mut self, id: u32, up: bool) -> Result<(), TableError> {
        let err = |e| TableError::Map("next-hop state", e);
        let zeros = PerCpuValues::try_from(vec![Counter::default(); self.cpus])
            .map_err(|e| TableError::Io("next-hop counters", e))?;
        self.nh_stats.set(id, zeros, 0).map_err(err)?;
        self.health
            .set(id, NextHopHealth::default(), 0)
            .map_err(err)?;
        self.live
            .set(id, if up { NH_LIVE } else { 0 }, 0)
            .map_err(err)
    }

    fn write_nexthop(&mut self, id: u32, value: NextHop) -> Result<(), TableError> {
        self.nexthops
            .set(id, value, 0)
            .map_err(|e| TableError::Map("next hops", e))
    }

    /// Counts a route of `prefix` in or out; publishes the IPv4 lengths when the set of
    /// lengths in use changed.
    fn counted(&mut self, prefix: IpNet, added: bool) -> Result<(), TableError> {
        match prefix {
            IpNet::V6(_) if added => self.v6_routes += 1,
            IpNet::V6(_) => self.v6_routes -= 1,
            IpNet::V4(p) => {
                let n = &mut self.v4_per_length[usize::from(p.prefix_len())];
                let before = *n;
                *n = if added { *n + 1 } else { *n - 1 };
                if (before == 0) != (*n == 0) {
                    self.publish_v4_lengths()?;
                }
            }
        }
        Ok(())
    }

    /// The lengths in use, longest first, for the fast path. A new length is published
    /// after its routes are in the exact map, and a length is withdrawn after its last
    /// route left both maps.
    fn publish_v4_lengths(&mut self) -> Result<(), TableError> {
        let mut v = V4Lengths::default();
        let used = (0..=32u32)
            .rev()
            .filter(|l| self.v4_per_length[*l as usize] > 0);
        for (i, l) in used.enumerate() {
            v.lengths[i] = l;
            v.count += 1;
        }
        self.v4_lengths
            .set(0, v, 0)
            .map_err(|e| TableError::Map("IPv4 lengths", e))
    }

    /// Makes the exact map and the probe filter hold `wanted` (the trie's IPv4 routes, as
    /// adopt read them) and nothing else (maps pinned by an older version, or a crash
    /// between two writes, leave them behind). The filter first: its bits must cover
    /// every route the exact map holds.
    fn sync_v4_exact(&mut self, wanted: HashMap<V4ExactKey, Route>) -> Result<(), TableError> {
        let err = |e| TableError::Map("adopting", e);
        self.v4_filter
            .rebuild(wanted.keys().map(|k| (k.prefix_len as u8, k.addr)))
            .map_err(|e| TableError::Io("mapping the probe filter", e))?;
        let stale: Vec<V4ExactKey> = self
            .routes_v4_exact
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains_key(k))
            .collect();
        for (k, route) in &wanted {
            if self.routes_v4_exact.get(k, 0).ok().as_ref() != Some(route) {
                self.routes_v4_exact.insert(k, route, 0).map_err(err)?;
            }
        }
        for k in stale {
            self.routes_v4_exact.remove(&k).map_err(err)?;
        }
        self.v4_direct
            .rebuild(wanted.iter().map(|(k, r)| (k.prefix_len as u8, k.addr, *r)))
            .map_err(direct)?;
        // A whole pass over both tables: its windows go now, not at the next tick.
        self.release_mappings();
        self.publish_v4_lengths()
    }

    /// The longest route shorter than `p` that covers it (for the direct table's words
    /// that `p` leaves), with its prefix length.
    fn v4_cover(&self, p: ipnet::Ipv4Net) -> Option<(u8, Route)> {
        (0..p.prefix_len()).rev().find_map(|len| {
            let net = ipnet::Ipv4Net::new(p.addr(), len).expect("shorter").trunc();
            let (target, set_id) = self.routes.get(&IpNet::V4(net))?;
            Some((len, route_value(target, *set_id)))
        })
    }

    /// Removes a route from the maps: the LPM trie, then the exact map, then its filter
    /// bit (a lookup between two steps still finds the route, or falls back to a
    /// shorter prefix).
    fn delete_route(&mut self, prefix: IpNet) -> Result<(), TableError> {
        let map = |e| TableError::Map("routes", e);
        match prefix {
            IpNet::V4(p) => {
                self.routes_v4
                    .remove(&Key::new(p.prefix_len().into(), p.addr().octets()))
                    .map_err(map)?;
                let key = V4ExactKey::masked(p.prefix_len().into(), p.addr().octets());
                match self.routes_v4_exact.remove(&key) {
                    Err(aya::maps::MapError::KeyNotFound) | Ok(()) => {}
                    Err(e) => return Err(map(e)),
                }
                self.v4_filter
                    .remove(p.prefix_len(), key.addr)
                    .map_err(filter)?;
                if p.prefix_len() <= 24 {
                    let cover = self.v4_cover(p);
                    self.v4_direct
                        .clear_route(p.prefix_len(), key.addr, cover)
                        .map_err(direct)
                } else {
                    self.v4_direct.remove_longer(key.addr).map_err(direct)
                }
            }
            IpNet::V6(p) => self
                .routes_v6
                .remove(&Key::new(p.prefix_len().into(), p.addr().octets()))
                .map_err(map),
        }
    }

    /// Writes a route into the maps: a new route's filter bit, the exact map, then the
    /// LPM trie; should a write fail, the earlier ones are undone so that none disagree.
    fn write_route(&mut self, prefix: IpNet, route: &Route) -> Result<(), TableError> {
        let map = |e| TableError::Map("routes", e);
        match prefix {
            IpNet::V4(p) => {
                let key = V4ExactKey::masked(p.prefix_len().into(), p.addr().octets());
                let before = self.routes_v4_exact.get(&key, 0).ok();
                if before.is_none() {
                    self.v4_filter
                        .add(p.prefix_len(), key.addr)
                        .map_err(filter)?;
                }
                let written = self.routes_v4_exact.insert(key, route, 0).and_then(|()| {
                    self.routes_v4.insert(
                        &Key::new(p.prefix_len().into(), p.addr().octets()),
                        route,
                        0,
                    )
                });
                if let Err(e) = written {
                    let _ = match before {
                        Some(old) => self.routes_v4_exact.insert(key, old, 0),
                        None => self.routes_v4_exact.remove(&key),
                    };
                    if before.is_none() {
                        let _ = self.v4_filter.remove(p.prefix_len(), key.addr);
                    }
                    return Err(map(e));
                }
                if p.prefix_len() <= 24 {
                    self.v4_direct
                        .set_route(p.prefix_len(), key.addr, route)
                        .map_err(direct)
                } else if before.is_none() {
                    self.v4_direct.add_longer(key.addr).map_err(direct)
                } else {
                    Ok(())
                }
            }
            IpNet::V6(p) => self
                .routes_v6
                .insert(
                    &Key::new(p.prefix_len().into(), p.addr().octets()),
                    route,
                    0,
                )
                .map_err(map),
        }
    }
}

fn direct(e: std::io::Error) -> TableError {
    TableError::Io("mapping the IPv4 direct table", e)
}

fn filter(e: std::io::Error) -> TableError {
    TableError::Io("mapping the probe filter", e)
}

/// The route maps' value for a route to `target` through next-hop set `set_id`.
fn route_value(target: &RouteTarget, set_id: u32) -> Route {
    match target {
        RouteTarget::Local => Route {
            nexthop_set: 0,
            flags: ROUTE_F_LOCAL,
        },
        RouteTarget::NextHops(_) => Route {
            nexthop_set: set_id,
            flags: 0,
        },
    }
}
