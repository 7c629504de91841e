//! `x0-dataplane run`: bring the fast path up from a config (adopting what an earlier run
//! left pinned), keep next hops in step with the kernel's neighbour table, watch carrier and
//! BFD to switch to backups, and on exit leave forwarding running unless told to detach.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, anyhow};
use ipnet::IpNet;

use crate::{
    Dataplane,
    bfd::{
        manager::{self, BfdHandle, SessionSpec, StateEvent},
        packet::BfdState,
        transport::{Path, Transport, UdpTransport},
        xsk_transport::XskTransport,
    },
    config::{Config, ValidRoute},
    control::{Control, compile_spec},
    events::{Event as ApiEvent, EventBus, EventKind},
    health::{HealthConfig, HealthMonitor, Journal, Update},
    kernel_fib::{self, KernelFib},
    netlink::{Event, Events, Link, LocalAddr, Netlink},
    state::{ApiState, PolicySpec, StateStore},
    tables::{NextHopSpec, PortInfo, RouteTarget},
};

/// How often next hops without a MAC are re-resolved.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);
/// How long start-up waits for next hops to resolve before declaring itself ready.
const READY_WAIT: Duration = Duration::from_secs(3);
/// How often expired flows are removed from the connection table.
const CONNTRACK_GC: Duration = Duration::from_secs(5);
/// How often hold-downs are checked.
const HEALTH_TICK: Duration = Duration::from_millis(5);

pub struct RunOptions {
    pub config: Config,
    /// Where the config came from: SIGHUP reads it again and applies its policy.
    pub config_path: Option<PathBuf>,
    /// Touched once every interface is attached (for supervisors and the lab).
    pub ready_file: Option<PathBuf>,
    /// Detach and unpin everything on exit (default: keep forwarding for the next daemon).
    pub detach_on_exit: bool,
}

/// Everything the event sources and the API share, behind one lock.
pub(crate) struct Node {
    pub(crate) dp: Dataplane,
    pub(crate) health: HealthMonitor,
    pub(crate) nl: Netlink,
    pub(crate) config: Config,
    pub(crate) ports: HashMap<u32, Link>,
    pub(crate) addrs: Vec<LocalAddr>,
    pub(crate) bfd: Option<BfdHandle>,
    pub(crate) events: Arc<EventBus>,
    /// Prefixes whose routes were set through the API (the rest are the config's or local
    /// addresses); their next hops are the tables' (one copy of a million routes, not two).
    pub(crate) api_routes: std::collections::BTreeSet<IpNet>,
    /// A policy set through the API, in force instead of the config's.
    pub(crate) api_policy: Option<PolicySpec>,
    /// Next hops held for BFD through the API (`bfd_peers.rs`).
    pub(crate) bfd_peers: std::collections::BTreeSet<crate::tables::NextHopSpec>,
    pub(crate) store: Option<StateStore>,
    /// Changes that undo themselves unless confirmed.
    pub(crate) commits: crate::commits::Commits,
    pub(crate) policy_generation: u32,
    pub(crate) policy_enabled: bool,
    pub(crate) started: SystemTime,
    /// The kernel's copy of the routes (None: `kernel_fib.enabled = false`).
    pub(crate) kernel: Option<KernelFib>,
}

pub(crate) type Shared = Arc<Mutex<Option<Node>>>;

/// What `bring_up` built.
pub struct BroughtUp {
    pub dp: Dataplane,
    pub ports: HashMap<u32, Link>,
    /// The saved API routes that were installed.
    pub api_routes: BTreeMap<IpNet, ValidRoute>,
    pub policy_generation: u32,
    pub policy_enabled: bool,
}

/// Builds the dataplane from the config and the API's saved state (its routes replace
/// the config's for the same prefix; its policy replaces the config's). On error, what
/// this run attached is taken down again, unless it had adopted a running one (which is
/// left forwarding as it was).
pub fn bring_up(config: &Config, nl: &Netlink, api: &ApiState) -> Result<BroughtUp> {
    let mut routes = config.routes()?;
    let known = |name: &str| config.interfaces.iter().any(|i| i.name == name);
    let mut api_routes = BTreeMap::new();
    for (i, r) in api.routes.iter().enumerate() {
        let via: Vec<(String, String)> = r
            .via
            .iter()
            .map(|nh| (nh.gateway.to_string(), nh.interface.clone()))
            .collect();
        match crate::config::validate_route(
            &format!("saved API route[{i}]"),
            &r.prefix,
            &via,
            &known,
        ) {
            Ok(v) => {
                routes.retain(|c| c.prefix != v.prefix);
                routes.push(v.clone());
                api_routes.insert(v.prefix, v);
            }
            // The config changed under it (an interface went away): say so loudly; it
            // stays in the state file until the API changes routes again.
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "a saved API route no longer fits the config; not installed")
            }
        }
    }
    let links = nl.links()?;
    let mut ports: HashMap<&str, Link> = HashMap::new();
    for (i, iface) in config.interfaces.iter().enumerate() {
        let link = links
            .iter()
            .find(|l| l.name == iface.name)
            .ok_or_else(|| no_such_interface(i, &iface.name))?;
        ports.insert(iface.name.as_str(), link.clone());
    }

    let mut dp = Dataplane::load_sized(
        &config.pin_root,
        &config.maps.sizes(config.ipv4_direct_table),
    )?;
    let adopted = dp.adopted();
    let mut policy_state = (0, false);
    let result = (|| -> Result<()> {
        dp.set_fib_fallback(config.fib_fallback)?;
        for link in ports.values() {
            dp.add_port(link)?;
        }
        for a in nl.addresses()? {
            set_local(&mut dp, &a, true);
        }
        for (i, r) in routes.iter().enumerate() {
            let specs = r
                .via
                .iter()
                .map(|(gateway, name)| NextHopSpec {
                    gateway: *gateway,
                    ifindex: ports[name.as_str()].ifindex,
                })
                .collect();
            dp.tables()
                .upsert(r.prefix, RouteTarget::NextHops(specs))
                .with_context(|| format!("route[{i}] ({})", r.prefix))?;
        }
        let policy = match &api.policy {
            Some(spec) => compile_spec(spec, config).context("the policy saved by the API")?,
            None => config.policy()?,
        };
        let generation = dp.install_policy(&policy, &|name| ports.get(name).map(|l| l.ifindex))?;
        policy_state = (generation, policy.enabled);
        tracing::info!(
            generation,
            enabled = policy.enabled,
            identities = policy.identities.len(),
            rule_pairs = policy.pairs.len(),
            "policy installed"
        );
        // Routes an earlier run programmed that neither the config nor the API has now.
        let desired: std::collections::HashSet<IpNet> = routes.iter().map(|r| r.prefix).collect();
        let stale: Vec<IpNet> = dp
            .tables_ref()
            .routes()
            .filter(|(p, t)| **t != RouteTarget::Local && !desired.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for p in &stale {
            dp.tables().remove(*p)?;
        }
        if !stale.is_empty() {
            tracing::info!(
                removed = stale.len(),
                "removed adopted routes that are no longer configured"
            );
        }
        let pruned = dp.tables().prune_foreign()?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                "removed routes an earlier run left that the config no longer has"
            );
        }
        for n in nl.neighbours()? {
            dp.tables().set_neighbour(n.ifindex, n.addr, n.mac)?;
        }
        resolve_missing(&dp, nl);
        for iface in &config.interfaces {
            dp.attach(&ports[iface.name.as_str()], config.xdp_mode)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(BroughtUp {
            dp,
            ports: ports.into_values().map(|l| (l.ifindex, l)).collect(),
            api_routes,
            policy_generation: policy_state.0,
            policy_enabled: policy_state.1,
        }),
        Err(e) => {
            if let Err(e2) = dp.shutdown(!adopted) {
                tracing::warn!(error = %e2, "cleanup after a failed start");
            }
            Err(e)
        }
    }
}

/// Local addresses get a local route, so packets for the router go to its kernel.
fn set_local(dp: &mut Dataplane, a: &LocalAddr, present: bool) {
    let is_link_local = match a.addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if is_link_local || a.addr.is_loopback() {
        return; // never forwarded anyway
    }
    let prefix = IpNet::from(a.addr);
    let tables = dp.tables();
    let result = if present {
        tables.upsert(prefix, RouteTarget::Local)
    } else if tables
        .routes()
        .any(|(p, t)| *p == prefix && *t == RouteTarget::Local)
    {
        tables.remove(prefix)
    } else {
        Ok(())
    };
    match result {
        Ok(()) => tracing::debug!(%prefix, present, "local route"),
        Err(e) => tracing::warn!(%prefix, error = %e, "local route not updated"),
    }
}

fn no_such_interface(i: usize, name: &str) -> anyhow::Error {
    anyhow!("interface[{i}].name: no interface named {name:?} in this network namespace")
}

/// The host's sysctls, in one log line (a warning when some are left as a router would not
/// have them). A config naming a missing interface is refused first, with nothing changed.
fn check_host(config: &Config) -> Result<()> {
    for (i, iface) in config.interfaces.iter().enumerate() {
        crate::netlink::ifindex_of(&iface.name).map_err(|_| no_such_interface(i, &iface.name))?;
    }
    let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
    let net = std::path::Path::new("/proc/sys/net");
    let (line, left) = crate::host::check(&config.host, &names, net)?;
    if left {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
    Ok(())
}

fn resolve_missing(dp: &Dataplane, nl: &Netlink) {
    for spec in dp.tables_ref().unresolved() {
        if let Err(e) = nl.resolve(spec.ifindex, spec.gateway) {
            tracing::debug!(gateway = %spec.gateway, ifindex = spec.ifindex, error = %e, "cannot ask the kernel to resolve");
        }
    }
}

impl Node {
    /// Next hops without a MAC: those whose neighbour the kernel already knows take its
    /// MAC from the kernel's table (a next hop made again after its routes were gone gets
    /// no netlink event: the neighbour did not change, and the fast path would send its
    /// traffic to a backup for good), the rest are resolved again.
    fn resolve_unresolved(&mut self) {
        let missing = self.dp.tables_ref().unresolved();
        if missing.is_empty() {
            return;
        }
        let known = self.nl.neighbours().unwrap_or_default();
        for n in known.into_iter().filter(|n| {
            n.mac.is_some()
                && missing
                    .iter()
                    .any(|s| s.gateway == n.addr && s.ifindex == n.ifindex)
        }) {
            if let Err(e) = self.on_netlink(Event::Neighbour(n)) {
                tracing::warn!(error = %format!("{e:#}"), "a known neighbour's MAC not taken");
            }
        }
        resolve_missing(&self.dp, &self.nl);
    }

    /// Writes what the health monitor decided, and publishes what changed.
    fn apply(&mut self, updates: Vec<Update>) {
        let ids: Vec<u32> = updates.iter().map(|u| u.id).collect();
        for u in updates {
            if let Err(e) = self.dp.tables().apply_health(u.id, u.live, &u.record) {
                tracing::error!(id = u.id, error = %e, "next-hop liveness not written");
            }
        }
        // The fast path has moved; the kernel's copy follows.
        if let Some(k) = &mut self.kernel
            && !ids.is_empty()
        {
            let since = Instant::now();
            let sets = k.liveness_changed(&self.nl, self.dp.tables_ref(), &self.health, &ids);
            if sets > 0 {
                let after_us = since.elapsed().as_micros() as u64;
                tracing::info!(sets, after_us, "the kernel's routes followed the fast path");
            }
        }
        self.publish_journal();
    }

    /// Writes the route changes since the last call into the kernel's FIB.
    fn sync_kernel_routes(&mut self) {
        let changes = self.dp.tables().take_route_changes();
        if let Some(k) = &mut self.kernel {
            k.routes_changed(&self.nl, self.dp.tables_ref(), &self.health, changes);
        }
    }

    /// Starts the kernel's copy of the routes (when the config has it on): from here on
    /// every route change is also written there.
    fn start_kernel_routes(&mut self) -> Result<()> {
        if !self.config.kernel_fib.enabled {
            return Ok(());
        }
        self.dp.tables().journal_routes();
        let mut k = KernelFib::new(self.config.kernel_fib.clone());
        let (written, removed) = k.start(&self.nl, self.dp.tables_ref(), &self.health)?;
        tracing::info!(
            written,
            removed,
            protocol = self.config.kernel_fib.protocol,
            "kernel routes in step"
        );
        self.kernel = Some(k);
        Ok(())
    }

    fn publish_journal(&mut self) {
        let journal = self.health.take_journal();
        if journal.is_empty() {
            return;
        }
        let names = self.port_names();
        let hop = |s: crate::tables::NextHopSpec| {
            (
                s.gateway,
                names.get(&s.ifindex).cloned().unwrap_or_default(),
            )
        };
        for j in journal {
            let event = match j {
                Journal::State(e) => ApiEvent {
                    at: e.at,
                    reason: e.reason.clone(),
                    kind: EventKind::NextHop {
                        gateway: e.nexthop.gateway,
                        interface: hop(e.nexthop).1,
                        from: e.from.name(),
                        to: e.to.name(),
                        source: e.source.name(),
                    },
                },
                Journal::Failover(f) => ApiEvent {
                    at: f.at,
                    reason: format!(
                        "traffic of {} next-hop set(s) moved from {} to {}",
                        f.sets,
                        f.from.map_or("none".into(), |s| s.gateway.to_string()),
                        f.to.map_or("none".into(), |s| s.gateway.to_string())
                    ),
                    kind: EventKind::Failover {
                        from: f.from.map(hop),
                        to: f.to.map(hop),
                        sets: f.sets,
                    },
                },
            };
            self.events.publish(event);
        }
    }

    /// Tells the health monitor and BFD about next hops created or freed by table changes.
    pub(crate) fn sync_nexthops(&mut self) {
        let (created, freed) = self.dp.tables().take_changes();
        let (now, wall) = (Instant::now(), SystemTime::now());
        for id in freed {
            if let Some(spec) = self.health.spec_of(id)
                && let Some(bfd) = &self.bfd
            {
                bfd.remove(spec);
            }
            self.health.forget(id);
        }
        let mut updates = Vec::new();
        for (id, spec) in created {
            let carrier = self.ports.get(&spec.ifindex).is_some_and(|l| l.up);
            let record = self.dp.tables_ref().health_record(id);
            updates.push(self.health.register(id, spec, carrier, record, now, wall));
            self.start_bfd(spec);
        }
        self.health.set_sets(self.dp.tables_ref().sets());
        self.apply(updates);
        self.sync_kernel_routes();
    }

    fn start_bfd(&self, spec: NextHopSpec) {
        let (Some(bfd), Some(link)) = (&self.bfd, self.ports.get(&spec.ifindex)) else {
            return;
        };
        let Some(timers) = self.config.bfd_for(&link.name, spec.gateway) else {
            return;
        };
        let Some(local) = self.local_addr_for(spec) else {
            tracing::warn!(peer = %spec.gateway, iface = %link.name, "no local address of that family on the interface: no BFD");
            return;
        };
        bfd.add(
            spec,
            SessionSpec {
                path: Path {
                    ifindex: spec.ifindex,
                    ifname: link.name.clone(),
                    local,
                    peer: spec.gateway,
                },
                timers,
            },
        );
        self.tell_bfd_macs(spec);
    }

    /// The MACs BFD frames to this next hop carry (AF_XDP builds whole frames).
    fn tell_bfd_macs(&self, spec: NextHopSpec) {
        let (Some(bfd), Some(link)) = (&self.bfd, self.ports.get(&spec.ifindex)) else {
            return;
        };
        let Some(nh) = self.dp.tables_ref().nexthops().find(|n| n.spec == spec) else {
            return;
        };
        let dst = (nh.value.flags & x0_common::NH_F_RESOLVED != 0).then_some(nh.value.dst_mac);
        bfd.neighbour(spec, link.mac, dst);
    }

    /// Our address on the next hop's interface, in its subnet if there is one.
    fn local_addr_for(&self, spec: NextHopSpec) -> Option<IpAddr> {
        let on_link: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|a| a.ifindex == spec.ifindex && a.addr.is_ipv4() == spec.gateway.is_ipv4())
            .map(|a| a.addr)
            .collect();
        let same_subnet = |a: &IpAddr| match (a, spec.gateway) {
            (IpAddr::V4(a), IpAddr::V4(g)) => a.octets()[..3] == g.octets()[..3],
            (IpAddr::V6(a), IpAddr::V6(g)) => {
                !a.is_unicast_link_local() && a.segments()[..4] == g.segments()[..4]
            }
            _ => false,
        };
        on_link
            .iter()
            .copied()
            .find(same_subnet)
            .or_else(|| on_link.first().copied())
    }

    fn on_netlink(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Neighbour(n) => {
                if self.dp.tables().set_neighbour(n.ifindex, n.addr, n.mac)? {
                    self.tell_bfd_macs(NextHopSpec {
                        gateway: n.addr,
                        ifindex: n.ifindex,
                    });
                    match n.mac {
                        Some(mac) => {
                            tracing::info!(gateway = %n.addr, ifindex = n.ifindex, mac = %fmt_mac(&mac), "next hop resolved")
                        }
                        None => {
                            tracing::info!(gateway = %n.addr, ifindex = n.ifindex, "next hop unresolved: its traffic goes to a backup or the kernel")
                        }
                    }
                }
            }
            Event::NeighbourGone(n) => {
                let spec = NextHopSpec {
                    gateway: n.addr,
                    ifindex: n.ifindex,
                };
                if self.dp.tables_ref().nexthops().any(|s| s.spec == spec) {
                    // Keep forwarding with the last MAC (as the kernel does with a stale
                    // entry) and ask again; a failed resolution marks it unresolved.
                    let _ = self.nl.resolve(n.ifindex, n.addr);
                }
            }
            Event::Link(link) => {
                let Some(old) = self.ports.get(&link.ifindex).cloned() else {
                    return Ok(());
                };
                self.dp.tables().set_port(
                    link.ifindex,
                    PortInfo {
                        mac: link.mac,
                        mtu: link.mtu,
                        up: link.up,
                    },
                )?;
                if old.up != link.up || old.mtu != link.mtu {
                    self.events.publish(ApiEvent {
                        at: SystemTime::now(),
                        reason: format!(
                            "{} is {}, MTU {}",
                            link.name,
                            if link.up { "up" } else { "down" },
                            link.mtu
                        ),
                        kind: EventKind::Link {
                            interface: link.name.clone(),
                            up: link.up,
                            mtu: link.mtu,
                        },
                    });
                }
                if old.up != link.up {
                    let updates = self.health.carrier(
                        link.ifindex,
                        link.up,
                        Instant::now(),
                        SystemTime::now(),
                    );
                    self.apply(updates);
                    if link.up {
                        // The kernel flushed the neighbours when the carrier went: resolve
                        // again before the hold-down ends.
                        resolve_missing(&self.dp, &self.nl);
                    }
                }
                self.ports.insert(link.ifindex, link);
            }
            Event::LinkGone(ifindex) => {
                if let Some(mut link) = self.ports.get(&ifindex).cloned() {
                    tracing::warn!(ifindex, iface = %link.name, "an attached interface was deleted");
                    link.up = false;
                    let updates =
                        self.health
                            .carrier(ifindex, false, Instant::now(), SystemTime::now());
                    self.apply(updates);
                    self.ports.insert(ifindex, link);
                }
            }
            Event::AddrAdded(a) => {
                set_local(&mut self.dp, &a, true);
                if !self.addrs.contains(&a) {
                    self.addrs.push(a);
                }
            }
            Event::AddrRemoved(a) => {
                set_local(&mut self.dp, &a, false);
                self.addrs.retain(|x| *x != a);
            }
        }
        Ok(())
    }

    fn on_bfd(&mut self, ev: StateEvent) {
        self.events.publish(ApiEvent {
            at: SystemTime::now(),
            reason: format!(
                "BFD session with {} {:?} -> {:?} ({:?})",
                ev.nexthop.gateway, ev.change.from, ev.change.to, ev.change.diag
            ),
            kind: EventKind::Bfd {
                peer: ev.nexthop.gateway,
                interface: self
                    .port_names()
                    .get(&ev.nexthop.ifindex)
                    .cloned()
                    .unwrap_or_default(),
                from: format!("{:?}", ev.change.from),
                to: format!("{:?}", ev.change.to),
                diagnostic: format!("{:?}", ev.change.diag),
            },
        });
        let Some(id) = self.health.id_of(&ev.nexthop) else {
            return;
        };
        let (now, wall) = (Instant::now(), SystemTime::now());
        let updates = match (ev.change.from, ev.change.to) {
            (_, BfdState::Up) => self.health.bfd(id, true, "BFD session up", now, wall),
            (BfdState::Up, _)
                if ev.change.peer == BfdState::AdminDown
                    && self.health.bfd_peer_restarting(id, now) =>
            {
                tracing::info!(peer = %ev.nexthop.gateway, grace = ?self.health.config().peer_restart_grace, "BFD peer said AdminDown (restarting): its next hop stays live");
                Vec::new()
            }
            (BfdState::Up, _) => {
                let mut reason = format!("BFD session down ({:?})", ev.change.diag);
                if let Some(ago) = self.dp.tables_ref().neighbour_last_seen(&ev.nexthop)
                    && ago < ev.detection_time * 2 / 3
                {
                    // Frames from it within 2/3 of a detection time (a silent peer is >= 1
                    // detection time, less the coarse clock's 4 ms): it is sending, so the
                    // failure is on our side of the path (or it told us so).
                    reason.push_str(&format!(
                        "; one-way failure: frames from it still arrive ({ago:?} ago)"
                    ));
                }
                self.health.bfd(id, false, &reason, now, wall)
            }
            _ => Vec::new(),
        };
        self.apply(updates);
    }
}

/// SIGHUP: reads the config again and installs its policy; an invalid one is refused with
/// the field named and the policy in force stays.
fn reload_policy(shared: &Shared, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        return tracing::warn!("SIGHUP: no config file to read again");
    };
    let (new_config, policy) = match Config::from_file(path).and_then(|c| {
        let p = c.policy()?;
        Ok((c, p))
    }) {
        Ok(p) => p,
        Err(e) => {
            return tracing::error!(error = %format!("{e:#}"), "SIGHUP: config refused; the policy in force stays");
        }
    };
    let mut guard = shared.lock().expect("node lock");
    let Some(node) = guard.as_mut() else { return };
    let names: HashMap<String, u32> = node
        .ports
        .values()
        .map(|l| (l.name.clone(), l.ifindex))
        .collect();
    match node.dp.install_policy(&policy, &|n| names.get(n).copied()) {
        Ok(generation) => {
            tracing::info!(
                generation,
                enabled = policy.enabled,
                "SIGHUP: policy installed (the config file's; a policy set through the API is dropped)"
            );
            node.policy_generation = generation;
            node.policy_enabled = policy.enabled;
            node.config.identities = new_config.identities;
            node.config.rules = new_config.rules;
            for iface in &mut node.config.interfaces {
                iface.policy = new_config
                    .interfaces
                    .iter()
                    .find(|i| i.name == iface.name)
                    .and_then(|i| i.policy.clone());
            }
            if node.api_policy.take().is_some() {
                node.persist([crate::state::Change::Policy(None)]);
            }
            node.drop_policy_commits();
        }
        Err(e) => tracing::error!(error = %format!("{e:#}"), "SIGHUP: policy not installed"),
    }
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Starts BFD: over AF_XDP sockets fed by the XDP program where they bind ("auto"), with
/// UDP sockets underneath; or over UDP sockets only ("udp").
fn start_bfd(
    config: &Config,
    dp: &mut Dataplane,
    events: mpsc::Sender<StateEvent>,
) -> Result<BfdHandle> {
    let udp = UdpTransport::new().context("opening the BFD UDP sockets (port 3784)")?;
    let maps = dp.take_xsk_maps();
    let transport: Box<dyn Transport> = match (config.bfd.transport.as_str(), maps) {
        ("auto", Some(maps)) => {
            tracing::info!(
                "BFD transport: AF_XDP sockets fed by the XDP program, UDP where they cannot bind"
            );
            Box::new(XskTransport::new(udp, maps))
        }
        _ => {
            tracing::info!("BFD transport: UDP sockets (RFC 5881)");
            Box::new(udp)
        }
    };
    Ok(manager::spawn(transport, events)?)
}

/// Runs until SIGTERM or SIGINT.
/// The gRPC API and the metrics endpoint, each if configured; the metrics count the
/// API's calls.
async fn serve_operators(
    config: &Config,
    control: Control,
) -> Result<(Option<crate::api::ApiHandle>, Option<x0_ops::MetricsServer>)> {
    let calls = Arc::new(crate::api::metered::ApiMetrics::default());
    let api = match &config.api {
        Some(api_config) => Some(
            crate::api::serve(api_config.clone(), control.clone(), calls.clone())
                .await
                .context("starting the gRPC API")?,
        ),
        None => None,
    };
    let metrics = match &config.metrics {
        Some(m) => Some(
            crate::metrics::serve(m, control, &calls)
                .await
                .context("starting the metrics endpoint")?,
        ),
        None => None,
    };
    Ok((api, metrics))
}

pub async fn run(opts: RunOptions) -> Result<()> {
    check_host(&opts.config)?;
    // Subscribe before the first dump, so no change between the two is lost.
    let mut events = Events::subscribe()?;
    let nl = Netlink::connect()?;
    let store = opts
        .config
        .api
        .as_ref()
        .map(|a| StateStore::new(&a.state_dir));
    let saved = match &store {
        Some(s) => s.load()?,
        None => ApiState::default(),
    };
    let commits =
        crate::commits::Commits::load(opts.config.api.as_ref().map(|a| a.state_dir.as_path()))?;
    let BroughtUp {
        dp,
        ports,
        api_routes,
        policy_generation,
        policy_enabled,
    } = bring_up(&opts.config, &nl, &saved)?;
    for (ifindex, name, mode) in dp.attached() {
        tracing::info!(iface = name, ifindex, ?mode, "forwarding");
    }
    let f = &opts.config.failover;
    let health = HealthMonitor::new(HealthConfig {
        hold_down: Duration::from_millis(f.hold_down_ms),
        max_hold_down: Duration::from_millis(f.max_hold_down_ms),
        penalty_half_life: Duration::from_millis(f.penalty_half_life_ms),
        peer_restart_grace: Duration::from_millis(f.peer_restart_grace_ms),
    });
    let wants_bfd = opts
        .config
        .routes()?
        .iter()
        .chain(api_routes.values())
        .flat_map(|r| r.via.iter())
        .any(|(gw, iface)| opts.config.bfd_for(iface, *gw).is_some())
        || opts
            .config
            .interfaces
            .iter()
            .any(|i| i.bfd.as_ref().is_some_and(|b| b.enabled != Some(false)));
    let (bfd_tx, bfd_rx) = mpsc::channel();
    let mut dp = dp;
    let bfd = if wants_bfd {
        Some(start_bfd(&opts.config, &mut dp, bfd_tx)?)
    } else {
        None
    };
    let api_routes = api_routes.into_keys().collect();
    let mut node = Node {
        dp,
        health,
        nl,
        config: opts.config.clone(),
        ports,
        addrs: Netlink::connect()?.addresses()?,
        bfd,
        events: Arc::new(EventBus::default()),
        api_routes,
        api_policy: saved.policy,
        bfd_peers: Default::default(),
        store,
        commits,
        policy_generation,
        policy_enabled,
        started: SystemTime::now(),
        kernel: None,
    };
    node.sync_nexthops();
    node.start_kernel_routes()
        .context("writing the routes into the kernel's FIB")?;
    let events_bus = node.events.clone();
    let shared: Shared = Arc::new(Mutex::new(Some(node)));
    let control = Control::new(
        shared.clone(),
        events_bus,
        opts.config.pin_root.clone(),
        opts.config
            .interfaces
            .iter()
            .map(|i| i.name.clone())
            .collect(),
    );
    tokio::spawn(control.clone().expire_commits());
    let (api, metrics) = serve_operators(&opts.config, control).await?;

    // Netlink events: neighbours, carrier, addresses.
    let ev_shared = shared.clone();
    std::thread::Builder::new()
        .name("netlink-events".into())
        .spawn(move || {
            loop {
                match events.next_event() {
                    Ok(event) => {
                        let mut guard = ev_shared.lock().expect("node lock");
                        let Some(node) = guard.as_mut() else { return };
                        if let Err(e) = node.on_netlink(event) {
                            tracing::warn!(error = %e, "netlink event not applied");
                        }
                    }
                    Err(e) => return tracing::error!(error = %e, "netlink event stream failed"),
                }
            }
        })?;

    // BFD state changes.
    let bfd_shared = shared.clone();
    std::thread::Builder::new()
        .name("bfd-events".into())
        .spawn(move || {
            while let Ok(ev) = bfd_rx.recv() {
                let mut guard = bfd_shared.lock().expect("node lock");
                let Some(node) = guard.as_mut() else { return };
                node.on_bfd(ev);
            }
        })?;

    // Hold-downs.
    let tick_shared = shared.clone();
    std::thread::Builder::new()
        .name("health-tick".into())
        .spawn(move || {
            loop {
                std::thread::sleep(HEALTH_TICK);
                let mut guard = tick_shared.lock().expect("node lock");
                let Some(node) = guard.as_mut() else { return };
                let updates = node.health.tick(Instant::now(), SystemTime::now());
                node.apply(updates);
                // Between operations (they hold the lock): the tables' windows go.
                node.dp.tables_ref().release_mappings();
            }
        })?;

    // Ready once every next hop has a MAC (or the wait is over): until then their packets
    // go through the kernel, which may not forward them.
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let unresolved = shared
            .lock()
            .expect("node lock")
            .as_ref()
            .map_or(0, |n| n.dp.tables_ref().unresolved().len());
        if unresolved == 0 {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(unresolved, "next hops still unresolved; going ready anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(p) = &opts.ready_file {
        std::fs::write(p, b"ready\n").with_context(|| format!("writing {}", p.display()))?;
    }
    tracing::info!(pin_root = %opts.config.pin_root.display(), "x0-dataplane ready");
    x0_ops::service::ready(&format!(
        "forwarding on {} interfaces",
        opts.config.interfaces.len()
    ));
    // Pings only while the daemon's state can be locked: a wedged lock blocks the ping,
    // and systemd restarts the daemon (forwarding goes on from the pinned maps).
    let alive = shared.clone();
    x0_ops::service::start_watchdog(move || alive.lock().is_ok_and(|n| n.is_some()));

    let retry_shared = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESOLVE_RETRY);
        loop {
            tick.tick().await;
            let mut guard = retry_shared.lock().expect("node lock");
            match guard.as_mut() {
                Some(n) => n.resolve_unresolved(),
                None => return,
            }
        }
    });

    // Expired flows leave the connection table (the fast path only ignores them).
    let pin_root = opts.config.pin_root.clone();
    std::thread::Builder::new()
        .name("conntrack-gc".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CONNTRACK_GC);
                match crate::policy::expire_flows(&pin_root) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(expired = n, "connection table swept"),
                    Err(e) => tracing::warn!(error = %e, "connection table sweep"),
                }
            }
        })?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT"); break; }
            _ = hup.recv() => {
                x0_ops::service::reloading();
                reload_policy(&shared, opts.config_path.as_deref());
                x0_ops::service::ready("config reloaded");
            }
        }
    }
    x0_ops::service::stopping();
    if let Some(api) = api {
        api.shutdown().await;
    }
    if let Some(metrics) = metrics {
        metrics.shutdown().await;
    }
    let node = shared.lock().expect("node lock").take().expect("running");
    match node.bfd {
        // The fast path forwards on: the peers keep their next hops through us.
        Some(bfd) if !opts.detach_on_exit => bfd.stop_for_restart(),
        bfd => drop(bfd),
    }
    if opts.detach_on_exit && node.kernel.is_some() {
        let (routes, nexthops) = kernel_fib::clear(&node.nl, node.config.kernel_fib.protocol)?;
        tracing::info!(routes, nexthops, "kernel routes removed");
    }
    node.dp.shutdown(opts.detach_on_exit)?;
    if let Some(p) = &opts.ready_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!(detached = opts.detach_on_exit, "bye");
    Ok(())
}
