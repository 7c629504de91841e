//! `x0-brain run`: watches its router's adjacencies through the dataplane API, originates
//! and floods signed link-state records, keeps the neighbours' records, and programs the
//! next-hop sets the mesh calls for (enforce) or says what it would program (observe).
//! If the brain stops, the dataplane keeps its routes and its own failover (fail-static);
//! when it comes back it pushes only what differs, so a restart disturbs nothing.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use x0_identity::{IdPattern, Identity, PqMode, SourceConfig};
use x0_proto::{
    brain::v1::{self as pb, brain_client::BrainClient, brain_server::BrainServer},
    dataplane::v1 as dpb,
};
use x0ctl::client::{Target, connect};

use crate::linkstate::state::{Shared, unix_ns};
use crate::{
    config::{BrainConfig, Mode},
    linkstate::lsdb::Lsdb,
    linkstate::lsp::Signer,
    mapek::guard::Guard,
    mapek::knowledge::Knowledge,
    mapek::link_health::LinkHealth,
    mapek::monitor::Monitor,
    paths::plan::plan,
    paths::push,
};

/// A neighbour whose brain answered within this long counts as adjacent when the
/// dataplane has no next hop for it yet.
const CONTACT_FRESH: Duration = Duration::from_secs(3);
/// Every neighbour gets the whole database this often (catches up a restarted one).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The first plan waits this long for the neighbours' records.
const SETTLE: Duration = Duration::from_secs(3);
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

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

struct Neighbours {
    clients: HashMap<String, BrainClient<Channel>>,
    contact: HashMap<String, Instant>,
    /// Round trips of the latency probes since the loop last looked.
    rtts: Vec<(String, Duration, Instant)>,
}

pub async fn run(config: BrainConfig) -> Result<()> {
    let identity = Identity::from_files(&config.tls).context("tls: our SVID")?;
    let td = identity.spiffe_id.trust_domain().to_string();
    let want = format!("/brain/{}", config.router);
    if identity.spiffe_id.path() != want {
        anyhow::bail!(
            "tls: our SVID is {}, not spiffe://{td}{want}",
            identity.spiffe_id
        );
    }
    let signer = Signer::from_files(&config.tls)?;
    let shared = Arc::new(Mutex::new(Shared {
        lsdb: Lsdb::default(),
        trust: identity.trust().clone(),
        router: config.router.clone(),
        mode: config.mode,
        changed: true,
        own_seen: 0,
        paths: Vec::new(),
        unprotected: Vec::new(),
        pushes: 0,
        last_push_unix_ns: 0,
        knowledge: Knowledge::open(&config.state_dir.join("knowledge.redb"))?,
        mapek: String::new(),
        static_topology: std::fs::read_to_string(config.state_dir.join("static-topology.toml"))
            .ok(),
        static_path: config.state_dir.join("static-topology.toml"),
        links: Vec::new(),
        bad_from: HashMap::new(),
    }));
    let mut guard = Guard::new(Instant::now());
    let mut pps: HashMap<String, f64> = HashMap::new();
    let mut pending_undo: Option<crate::mapek::guard::Action> = None;
    let mut monitor = Monitor::default();
    let (obs_tx, mut obs_rx) = mpsc::channel::<Observation>(256);
    let mut followers: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut health = LinkHealth::new(config.mode, Instant::now());
    for n in &config.neighbors {
        health.watch(&n.router);
    }
    // Links seen in the last plan: one that goes is an incident until new paths are in force.
    let mut prev_links: Option<std::collections::BTreeSet<String>> = None;

    // The service neighbours flood into.
    let watcher = x0_identity::IdentityWatcher::start(
        SourceConfig::Files(config.tls.clone()),
        Duration::from_secs(1),
    )
    .await?;
    let (incoming, local) =
        x0_identity::listen::tls(config.listen, watcher, PqMode::Required).await?;
    let (flood_tx, mut flood_rx) = mpsc::unbounded_channel();
    let service = crate::linkstate::server::Service {
        shared: shared.clone(),
        trust_domain: td.clone(),
        flood: flood_tx.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(BrainServer::new(service))
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "brain server failed");
        }
    });
    tracing::info!(%local, router = %config.router, mode = ?config.mode, "x0-brain listening");

    let neighbours = Arc::new(tokio::sync::Mutex::new(Neighbours {
        clients: HashMap::new(),
        contact: HashMap::new(),
        rtts: Vec::new(),
    }));
    let target_of = {
        let (tls, td) = (config.tls.clone(), td.clone());
        move |n: &crate::config::NeighborConfig| Target {
            addr: format!("https://{}", n.brain),
            svid: Some(tls.clone()),
            pq: PqMode::Required,
            server_id: format!("spiffe://{td}/brain/{}", n.router)
                .parse::<IdPattern>()
                .ok(),
        }
    };

    // Flooding: records to every neighbour but the one they came from.
    {
        let (neighbours, config, target_of) =
            (neighbours.clone(), config.clone(), target_of.clone());
        tokio::spawn(async move {
            while let Some((from, records)) = flood_rx.recv().await {
                for n in &config.neighbors {
                    if Some(&n.router) == from.as_ref() {
                        continue;
                    }
                    send(
                        neighbours.clone(),
                        n.router.clone(),
                        target_of(n),
                        records.clone(),
                    );
                }
            }
        });
    }

    let started = Instant::now();
    let mut sequence = read_sequence(&config.state_dir);
    let mut last_own: Option<(Vec<pb::Adjacency>, Instant)> = None;
    let mut last_sync = Instant::now() - SYNC_EVERY;
    let mut last_check = Instant::now() - Duration::from_secs(10);
    let mut adjacent: HashMap<String, bool> = HashMap::new();
    let mut down_since: HashMap<String, Instant> = HashMap::new();
    let mut dataplane: Option<x0_proto::dataplane::v1::dataplane_client::DataplaneClient<Channel>> =
        None;
    let mut tick = tokio::time::interval(Duration::from_millis(config.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Wake on the tick, or at once when the dataplane reports something.
        let mut seen = Vec::new();
        tokio::select! {
            _ = tick.tick() => {}
            Some(o) = obs_rx.recv() => seen.push(o),
        }
        while let Ok(o) = obs_rx.try_recv() {
            seen.push(o);
        }
        for o in seen {
            observe(&o, &config, &mut monitor, &mut health, &mut guard, &mut pps);
        }
        for (n, rtt, at) in neighbours.lock().await.rtts.drain(..) {
            monitor.on_rtt(&n, rtt, at);
        }
        if dataplane.is_none() {
            let t = Target {
                addr: config.dataplane.clone(),
                svid: Some(config.tls.clone()),
                pq: PqMode::Required,
                server_id: None,
            };
            match tokio::time::timeout(RPC_TIMEOUT, connect(&t)).await {
                Ok(Ok(c)) => {
                    let dp = c.dataplane(64 << 20);
                    for f in followers.drain(..) {
                        f.abort();
                    }
                    followers = follow(dp.clone(), obs_tx.clone());
                    dataplane = Some(dp);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "dataplane unreachable; keeping what is installed")
                }
                Err(_) => tracing::warn!("dataplane connection timed out"),
            }
        }

        // Monitor: which neighbours are adjacent (a live next hop, or a fresh answer).
        // Next hops (BFD and carrier) and interfaces (carrier, whether or not a route
        // uses the neighbour now: no feedback from our own plan into adjacencies).
        let view = match &mut dataplane {
            Some(dp) => {
                let nhs = tokio::time::timeout(
                    RPC_TIMEOUT,
                    dp.list_next_hops(dpb::ListNextHopsRequest {}),
                )
                .await;
                let info =
                    tokio::time::timeout(RPC_TIMEOUT, dp.get_info(dpb::GetInfoRequest {})).await;
                match (nhs, info) {
                    (Ok(Ok(n)), Ok(Ok(i))) => {
                        Some((n.into_inner().next_hops, i.into_inner().interfaces))
                    }
                    _ => {
                        dataplane = None;
                        None
                    }
                }
            }
            None => None,
        };
        {
            let contact = neighbours.lock().await.contact.clone();
            for n in &config.neighbors {
                let up = match &view {
                    Some((nhs, ifaces)) => {
                        let carrier = ifaces.iter().any(|i| i.name == n.interface && i.up);
                        let mine: Vec<&dpb::NextHopState> = nhs
                            .iter()
                            .filter(|h| {
                                h.interface == n.interface
                                    && n.addrs.iter().any(|a| a.to_string() == h.gateway)
                            })
                            .collect();
                        // Without a next hop (our plan may have dropped it), its brain's
                        // answers decide, but only ones newer than the last failure seen.
                        let heard = contact.get(&n.router).copied();
                        let fresh = heard.is_some_and(|t| {
                            t.elapsed() < CONTACT_FRESH
                                && down_since.get(&n.router).is_none_or(|d| t > *d)
                        });
                        carrier
                            && if mine.is_empty() {
                                fresh
                            } else {
                                mine.iter().any(|h| h.live)
                            }
                    }
                    None => *adjacent.get(&n.router).unwrap_or(&false), // fail-static
                };
                if adjacent.insert(n.router.clone(), up) != Some(up) {
                    tracing::info!(neighbor = %n.router, up, "adjacency");
                    if !up {
                        down_since.insert(n.router.clone(), Instant::now());
                    }
                }
            }
        }

        // MAPE-K for misbehaviour: may quarantine a router or rate-limit what it sends, by policy.
        if let Some(dp) = &mut dataplane {
            let action = {
                let s = shared.lock().expect("brain lock");
                for n in &config.neighbors {
                    guard.on_bad_records(
                        &n.router,
                        s.bad_from.get(&n.router).copied().unwrap_or(0),
                        Instant::now(),
                    );
                }
                // A router's own prefixes: a link's subnet, which both its ends announce,
                // would take the innocent end's traffic down with the quarantined one.
                let prefixes = |router: &str| -> Vec<String> {
                    let shared = |p: &String| {
                        s.lsdb
                            .records()
                            .any(|o| o.record.originator != router && o.record.prefixes.contains(p))
                    };
                    let mut v: Vec<String> = s
                        .lsdb
                        .get(router)
                        .map(|r| r.record.prefixes.clone())
                        .unwrap_or_default();
                    v.retain(|p| !shared(p));
                    for n in config.neighbors.iter().filter(|n| n.router == router) {
                        v.extend(n.addrs.iter().map(|a| ipnet::IpNet::from(*a).to_string()));
                    }
                    v
                };
                guard.tick(
                    Instant::now(),
                    &s.knowledge,
                    config.mode == Mode::Observe,
                    &pps,
                    &prefixes,
                )
            };
            if let Some(action) = action {
                let ok = set_policy_action(dp, &action).await;
                if !matches!(action, crate::mapek::guard::Action::Lift { .. }) {
                    let kb = &shared.lock().expect("brain lock").knowledge;
                    let undo = guard.confirm(ok, kb, Instant::now());
                    if let Some(undo) = undo {
                        tracing::warn!(?action, "policy action not confirmed: rolling back");
                        pending_undo = Some(undo);
                    }
                }
            }
            if let Some(undo) = pending_undo.take()
                && !set_policy_action(dp, &undo).await
            {
                pending_undo = Some(undo);
            }
        }

        // Originate: a new record when the adjacencies change, and a refresh before it ages out.
        // MAPE-K for link health: may drain (raise the cost of) a flapping link.
        // The measured cost of each link (with hysteresis), which a drain then scales.
        let measured: HashMap<String, u32> = config
            .neighbors
            .iter()
            .map(|n| (n.router.clone(), monitor.cost(&n.router, n.cost)))
            .collect();
        {
            let mut s = shared.lock().expect("brain lock");
            let lsdb = &s.lsdb;
            let mesh_cost = |n: &str| lsdb.link_cost(&config.router, n);
            let base = |n: &str| measured.get(n).copied();
            health.tick(
                Instant::now(),
                &s.knowledge,
                &config.router,
                &base,
                &mesh_cost,
            );
            s.mapek = format!("{}; policy actions on {:?}", health.state(), guard.state());
            s.links = config
                .neighbors
                .iter()
                .map(|n| {
                    let q = monitor.quality(&n.router);
                    pb::LinkQuality {
                        neighbor: n.router.clone(),
                        rtt_ms: q.latency_ms.unwrap_or(0.0),
                        loss: q.loss.unwrap_or(0.0),
                        utilisation: q.utilisation.unwrap_or(0.0),
                        base_cost: n.cost,
                        cost: health.cost(&n.router, measured[&n.router]),
                    }
                })
                .collect();
        }
        let adjacencies: Vec<pb::Adjacency> = config
            .neighbors
            .iter()
            .filter(|n| adjacent.get(&n.router) == Some(&true))
            .map(|n| pb::Adjacency {
                neighbor: n.router.clone(),
                cost: health.cost(&n.router, measured[&n.router]),
                interface: n.interface.clone(),
                neighbor_addrs: n.addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        let refresh = Duration::from_secs(u64::from(config.lifetime_s) / 3);
        // A record of our name newer than ours is out there (our state was lost, or one
        // was replayed): originate above it at once, as OSPF does, or ours would be stale.
        let overtaken = shared.lock().expect("brain lock").own_seen > sequence;
        let due = overtaken
            || match &last_own {
                None => true,
                Some((adj, at)) => *adj != adjacencies || at.elapsed() >= refresh,
            };
        if due {
            let own_seen = shared.lock().expect("brain lock").own_seen;
            sequence = sequence.max(own_seen) + 1;
            write_sequence(&config.state_dir, sequence).context("saving the record sequence")?;
            let record = pb::LinkStateRecord {
                originator: config.router.clone(),
                sequence,
                originated_unix_ns: unix_ns(SystemTime::now()),
                lifetime_s: config.lifetime_s,
                adjacencies: adjacencies.clone(),
                prefixes: config.prefixes.iter().map(|p| p.to_string()).collect(),
            };
            let signed = signer.sign(&record)?;
            {
                let mut s = shared.lock().expect("brain lock");
                let trust = s.trust.clone();
                s.lsdb
                    .offer(&signed, &trust, SystemTime::now())
                    .map_err(|e| anyhow::anyhow!("our own record: {e}"))?;
                s.changed = true;
            }
            tracing::info!(
                sequence,
                adjacencies = adjacencies.len(),
                "originated a link-state record"
            );
            let _ = flood_tx.send((None, vec![signed]));
            last_own = Some((adjacencies, Instant::now()));
        }

        // Synchronise: the whole database to every neighbour, now and then.
        if last_sync.elapsed() >= SYNC_EVERY {
            last_sync = Instant::now();
            let all: Vec<pb::SignedRecord> = shared
                .lock()
                .expect("brain lock")
                .lsdb
                .records()
                .map(|v| v.signed.clone())
                .collect();
            for n in &config.neighbors {
                send(
                    neighbours.clone(),
                    n.router.clone(),
                    target_of(n),
                    all.clone(),
                );
                probe(neighbours.clone(), n.router.clone());
            }
        }

        // Analyse and plan when the mesh changed (and now and then, to repair drift).
        let expired = shared
            .lock()
            .expect("brain lock")
            .lsdb
            .expire(SystemTime::now());
        if !expired.is_empty() {
            tracing::info!(?expired, "link-state records aged out");
            shared.lock().expect("brain lock").changed = true;
        }
        let settled = started.elapsed() >= SETTLE || {
            let s = shared.lock().expect("brain lock");
            config
                .neighbors
                .iter()
                .filter(|n| adjacent.get(&n.router) == Some(&true))
                .all(|n| s.lsdb.get(&n.router).is_some())
        };
        let changed = std::mem::take(&mut shared.lock().expect("brain lock").changed);
        if !settled || (!changed && last_check.elapsed() < Duration::from_secs(5)) {
            if changed {
                shared.lock().expect("brain lock").changed = true;
            }
            continue;
        }
        last_check = Instant::now();
        let Some(dp) = &mut dataplane else {
            shared.lock().expect("brain lock").changed = true;
            continue;
        };
        let (wanted, paths, unprotected) = {
            let s = shared.lock().expect("brain lock");
            let mesh = s.mesh();
            let Ok(me) = mesh.index(&config.router) else {
                continue;
            };
            // Analyse: links and routers that left the mesh are incidents.
            let links: std::collections::BTreeSet<String> = mesh
                .graph
                .links
                .iter()
                .map(|(a, b, _)| format!("{}-{}", mesh.names[*a], mesh.names[*b]))
                .collect();
            if let Some(prev) = &prev_links {
                let now = unix_ns(SystemTime::now());
                for lost in prev.difference(&links) {
                    tracing::warn!(link = %lost, "incident: link lost");
                    if let Err(e) =
                        s.knowledge
                            .open_incident("link-lost", lost, now, "recompute-paths")
                    {
                        tracing::error!(error = %e, "knowledge base: incident not recorded");
                    }
                }
                let attached = |set: &std::collections::BTreeSet<String>, r: &str| {
                    set.iter().any(|l| l.split('-').any(|x| x == r))
                };
                for r in &mesh.names {
                    if attached(prev, r) && !attached(&links, r) {
                        tracing::warn!(router = %r, "incident: router lost");
                        let _ = s
                            .knowledge
                            .open_incident("router-lost", r, now, "recompute-paths");
                    }
                }
            }
            prev_links = Some(links);
            let p = plan(&mesh.graph, me, config.k);
            let wanted = mesh.routes(me, &p);
            let paths = wanted
                .iter()
                .map(|(prefix, via)| pb::PathEntry {
                    prefix: prefix.to_string(),
                    next_hops: via.iter().map(|(g, i)| format!("{g}@{i}")).collect(),
                })
                .collect();
            let unprotected = p
                .unprotected
                .iter()
                .map(|d| mesh.names[*d].clone())
                .collect();
            (wanted, paths, unprotected)
        };
        {
            let mut s = shared.lock().expect("brain lock");
            s.paths = paths;
            s.unprotected = unprotected;
        }
        match push::sync(dp, &wanted, config.mode).await {
            Ok(n) => {
                let mut s = shared.lock().expect("brain lock");
                if n > 0 && config.mode == Mode::Enforce {
                    s.pushes += 1;
                    s.last_push_unix_ns = unix_ns(SystemTime::now());
                    tracing::info!(replaced = n, mode = ?config.mode, "next-hop sets updated");
                }
                // Execute confirmed: the paths the mesh calls for are in force (or, in
                // observe mode, would be), so open incidents end here.
                let now = unix_ns(SystemTime::now());
                for i in s.knowledge.open_incidents().unwrap_or_default() {
                    let ok = config.mode == Mode::Enforce;
                    if let Err(e) = s.knowledge.close_incident(i.id, now, ok) {
                        tracing::error!(error = %e, "knowledge base: incident not closed");
                    } else {
                        tracing::info!(kind = %i.kind, subject = %i.subject, ms = (now - i.detected_unix_ns) / 1_000_000, "incident repaired");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not update the dataplane; will retry");
                shared.lock().expect("brain lock").changed = true;
                dataplane = None;
            }
        }
    }
}

/// Applies a guard action to the dataplane's policy and reads it back: whether it is in force.
async fn set_policy_action(
    dp: &mut x0_proto::dataplane::v1::dataplane_client::DataplaneClient<Channel>,
    action: &crate::mapek::guard::Action,
) -> bool {
    let result = async {
        let now = dp.get_policy(dpb::GetPolicyRequest {}).await?.into_inner();
        let want = crate::mapek::guard::apply(&now, action);
        dp.set_policy(dpb::SetPolicyRequest { policy: Some(want) })
            .await?;
        let after = dp.get_policy(dpb::GetPolicyRequest {}).await?.into_inner();
        Ok::<bool, tonic::Status>(crate::mapek::guard::in_force(&after, action))
    };
    match tokio::time::timeout(RPC_TIMEOUT, result).await {
        Ok(Ok(ok)) => {
            tracing::warn!(?action, in_force = ok, "policy action applied");
            ok
        }
        Ok(Err(e)) => {
            tracing::warn!(?action, error = %e.message(), "policy action failed");
            false
        }
        Err(_) => false,
    }
}

/// What the dataplane's streams report, for the monitor.
enum Observation {
    Event(dpb::Event),
    Stats(dpb::Stats),
    Bfd(Vec<dpb::BfdSession>),
}

/// Monitor: follows the dataplane's event stream and its stats stream (with the BFD
/// sessions' counters beside each stats sample); the tasks end with the connection.
fn follow(
    dp: x0_proto::dataplane::v1::dataplane_client::DataplaneClient<Channel>,
    tx: mpsc::Sender<Observation>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let events = {
        let (mut dp, tx) = (dp.clone(), tx.clone());
        tokio::spawn(async move {
            let Ok(stream) = dp
                .watch_events(dpb::WatchEventsRequest {
                    include_history: false,
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(e)) = stream.message().await {
                if tx.send(Observation::Event(e)).await.is_err() {
                    return;
                }
            }
            tracing::warn!("the dataplane's event stream ended");
        })
    };
    let stats = {
        let mut dp = dp;
        tokio::spawn(async move {
            let Ok(stream) = dp
                .watch_stats(dpb::WatchStatsRequest {
                    interval_ms: 1000,
                    include_zero: false,
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(s)) = stream.message().await {
                let bfd = tokio::time::timeout(
                    RPC_TIMEOUT,
                    dp.list_bfd_sessions(dpb::ListBfdSessionsRequest {}),
                )
                .await;
                if tx.send(Observation::Stats(s)).await.is_err() {
                    return;
                }
                if let Ok(Ok(b)) = bfd
                    && tx
                        .send(Observation::Bfd(b.into_inner().sessions))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            tracing::warn!("the dataplane's stats stream ended");
        })
    };
    vec![events, stats]
}

/// Hands one observation to the monitor (link quality) and to MAPE-K (flaps: every loss
/// of carrier the dataplane reports, undamped, which its own hold-down damps); interface
/// stats also give the guard each neighbour's receive rate (`pps`).
fn observe(
    o: &Observation,
    config: &BrainConfig,
    monitor: &mut Monitor,
    health: &mut LinkHealth,
    guard: &mut Guard,
    pps: &mut HashMap<String, f64>,
) {
    let now = Instant::now();
    match o {
        Observation::Event(e) => {
            if let Some(dpb::event::Kind::Link(l)) = &e.kind
                && !l.up
            {
                for n in config
                    .neighbors
                    .iter()
                    .filter(|n| n.interface == l.interface)
                {
                    health.on_down(&n.router, now);
                }
            }
        }
        Observation::Stats(s) => {
            for n in &config.neighbors {
                let Some(i) = s.interfaces.iter().find(|i| i.interface == n.interface) else {
                    continue;
                };
                monitor.on_tx_bytes(&n.router, i.tx_bytes, n.capacity_mbps * 1_000_000, now);
                if let Some(rate) = guard.on_rx_packets(&n.router, i.rx_packets, now) {
                    pps.insert(n.router.clone(), rate);
                }
            }
        }
        Observation::Bfd(sessions) => {
            for n in &config.neighbors {
                let session = sessions.iter().find(|s| {
                    s.interface == n.interface && n.addrs.iter().any(|a| a.to_string() == s.peer)
                });
                if let Some(s) = session {
                    monitor.on_bfd(
                        &n.router,
                        s.state == "Up",
                        s.rx_packets,
                        Duration::from_micros(s.rx_interval_us),
                        now,
                    );
                }
            }
        }
    }
}

/// Latency probe: an empty Flood to the neighbour's brain, over the link; its round trip
/// goes to the monitor. Only over a connection already open (the syncs open it), so that
/// the handshake never counts.
fn probe(neighbours: Arc<tokio::sync::Mutex<Neighbours>>, router: String) {
    tokio::spawn(async move {
        let Some(mut client) = neighbours.lock().await.clients.get(&router).cloned() else {
            return;
        };
        let start = Instant::now();
        if let Ok(Ok(_)) =
            tokio::time::timeout(RPC_TIMEOUT, client.flood(pb::FloodRequest::default())).await
        {
            let rtt = start.elapsed();
            neighbours
                .lock()
                .await
                .rtts
                .push((router, rtt, Instant::now()));
        }
    });
}

/// Floods `records` to one neighbour in the background; remembers when it answered.
fn send(
    neighbours: Arc<tokio::sync::Mutex<Neighbours>>,
    router: String,
    target: Target,
    records: Vec<pb::SignedRecord>,
) {
    if records.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let client = neighbours.lock().await.clients.get(&router).cloned();
        let mut client = match client {
            Some(c) => c,
            None => match tokio::time::timeout(RPC_TIMEOUT, connect(&target)).await {
                Ok(Ok(c)) => {
                    let c = BrainClient::new(c.channel);
                    neighbours
                        .lock()
                        .await
                        .clients
                        .insert(router.clone(), c.clone());
                    c
                }
                _ => return,
            },
        };
        match tokio::time::timeout(RPC_TIMEOUT, client.flood(pb::FloodRequest { records })).await {
            Ok(Ok(_)) => {
                neighbours
                    .lock()
                    .await
                    .contact
                    .insert(router, Instant::now());
            }
            _ => {
                neighbours.lock().await.clients.remove(&router);
            }
        }
    });
}
