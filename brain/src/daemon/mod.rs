//! `x0-brain run`: watches its router's adjacencies through the dataplane API, originates
//! and floods signed link-state records, keeps the neighbours' records, and programs the
//! next-hop sets the mesh calls for (enforce) or says what it would program (observe).
//! If the brain stops, the dataplane keeps its routes and its own failover (fail-static);
//! when it comes back it pushes only what differs, so a restart disturbs nothing.
//!
//! The wiring: the gRPC service (neighbours flood into it), a relay and one peer task per
//! neighbour (flooding, `peers`), the dataplane's follower tasks (`dataplane`), and the
//! loop here, which owns MAPE-K's state and runs its steps in order every interval.

mod adjacency;
mod dataplane;
mod events;
mod metrics;
mod observe;
mod originate;
mod peers;
mod planning;
mod procfs;
mod protect;
mod telemetry;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use x0_identity::{Identity, PqMode, SourceConfig};
use x0_proto::brain::v1::{self as pb, brain_server::BrainServer};

use crate::{
    config::{BrainConfig, NeighborConfig, Originate},
    discovery::{self, Change, Found},
    linkstate::{lsp::Signer, server::Service, state::Shared},
};
use adjacency::Adjacencies;
use dataplane::Dataplane;
use events::{Flood, FromPeer, Observation};
use observe::Senses;
use originate::Originator;
use peers::Peers;
use planning::Planner;
use protect::Protector;
use telemetry::Telemetry;

/// How long any call to the dataplane or a neighbour's brain may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Every neighbour gets the whole database this often (catches up a restarted one).
const SYNC_EVERY: Duration = Duration::from_secs(1);

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
    let (telemetry, model) = Telemetry::new(&config);
    let mut state = Shared::open(&config, identity.trust().clone())?;
    state.model = model;
    let shared = Arc::new(Mutex::new(state));
    let live = Arc::new(metrics::Live::new(&config.neighbors));
    // Kept for the brain's life: dropping it stops the endpoint.
    let _metrics = match &config.metrics {
        Some(m) => Some(x0_ops::serve(m.listen, metrics::registry(&live, shared.clone())).await?),
        None => None,
    };
    let (flood_tx, flood_rx) = mpsc::unbounded_channel::<Flood>();
    serve(&config, shared.clone(), td.clone(), flood_tx).await?;
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    let peers = Peers::start(&config, &td, peer_tx, &live);
    tokio::spawn(peers.clone().relay(flood_rx));
    let (found_tx, found_rx) = mpsc::unbounded_channel();
    let speaker = match &config.discovery {
        Some(d) => Some(discovery::start(
            discovery::Settings {
                router: config.router.clone(),
                listen: config.listen,
                tls: config.tls.clone(),
                trust_domain: td.clone(),
                config: d.clone(),
                statics: config.neighbors.iter().map(|n| n.router.clone()).collect(),
            },
            found_tx,
        )?),
        None => None,
    };
    x0_ops::service::ready(&format!(
        "router {}, {} neighbours",
        config.router,
        config.neighbors.len()
    ));
    let alive = shared.clone();
    x0_ops::service::start_watchdog(move || alive.lock().is_ok());
    let (dataplane, observations) = Dataplane::new(&config);
    let control = Control {
        senses: Senses::new(&config),
        telemetry,
        protector: Protector::new(Instant::now()),
        adjacencies: Adjacencies::default(),
        originator: Originator::new(signer, &config.state_dir),
        planner: Planner::new(live.clone()),
        live,
        dataplane,
        peers,
        speaker,
        connected: Vec::new(),
        shared,
        config,
    };
    control.run(observations, peer_rx, found_rx).await
}

/// SIGTERM (systemd, the lab) or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// The subnets of the dataplane's interfaces, as the kernel has them.
fn connected_subnets(view: &dataplane::View) -> Vec<String> {
    let names: Vec<String> = view.interfaces.iter().map(|i| i.name.clone()).collect();
    discovery::link::links(&names)
        .iter()
        .flat_map(|l| l.nets.iter().map(|n| n.trunc().to_string()))
        .collect()
}

/// Starts the service neighbours flood into and operators read (mutual TLS, PQ required).
async fn serve(
    config: &BrainConfig,
    shared: Arc<Mutex<Shared>>,
    trust_domain: String,
    flood: mpsc::UnboundedSender<Flood>,
) -> Result<()> {
    let source = SourceConfig::Files(config.tls.clone());
    let watcher = x0_identity::IdentityWatcher::start(source, Duration::from_secs(1)).await?;
    let (incoming, local) =
        x0_identity::listen::tls(config.listen, watcher, PqMode::Required).await?;
    let service = Service {
        shared,
        trust_domain,
        flood,
        instance: crate::linkstate::server::new_instance(),
    };
    tokio::spawn(async move {
        let server = x0_proto::server::limited(tonic::transport::Server::builder())
            .layer(x0_proto::status::StatusLayer)
            .add_service(BrainServer::new(service));
        if let Err(e) = server.serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "brain server failed");
        }
    });
    tracing::info!(%local, router = %config.router, mode = ?config.mode, "x0-brain listening");
    Ok(())
}

/// The loop's state: MAPE-K's parts and the connections they act through.
struct Control {
    config: BrainConfig,
    shared: Arc<Mutex<Shared>>,
    senses: Senses,
    telemetry: Telemetry,
    protector: Protector,
    adjacencies: Adjacencies,
    originator: Originator,
    planner: Planner,
    dataplane: Dataplane,
    peers: Peers,
    live: Arc<metrics::Live>,
    /// Discovery's hellos (None: static neighbours only).
    speaker: Option<discovery::Speaker>,
    /// The subnets of the dataplane's interfaces (originated unless `originate = "listed"`).
    connected: Vec<String>,
}

impl Control {
    async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        mut from_peers: mpsc::UnboundedReceiver<FromPeer>,
        mut found: mpsc::UnboundedReceiver<Found>,
    ) -> Result<()> {
        let mut stop = std::pin::pin!(stop_signal());
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync = Instant::now() - SYNC_EVERY;
        loop {
            // Wake on the tick, or at once when the dataplane reports something.
            let mut seen = Vec::new();
            tokio::select! {
                deadline = tick.tick() => {
                    self.telemetry.on_late(deadline.elapsed().as_secs_f64());
                }
                Some(o) = observations.recv() => seen.push(o),
                Some(f) = found.recv() => self.on_found(f),
                _ = &mut stop => return self.leave().await,
            }
            while let Ok(f) = found.try_recv() {
                self.on_found(f);
            }
            while let Ok(o) = observations.try_recv() {
                seen.push(o);
            }
            self.monitor(seen, &mut from_peers).await;
            self.act().await?;
            if last_sync.elapsed() >= SYNC_EVERY {
                last_sync = Instant::now();
                self.synchronise();
            }
            let (dp, shared) = (&mut self.dataplane, &self.shared);
            self.planner
                .step(dp, shared, &self.config, &self.adjacencies)
                .await;
        }
    }

    /// Monitor: observations, round trips and answers, then who is adjacent.
    async fn monitor(
        &mut self,
        seen: Vec<Observation>,
        from_peers: &mut mpsc::UnboundedReceiver<FromPeer>,
    ) {
        while let Ok(e) = from_peers.try_recv() {
            match e {
                FromPeer::Answered { router, at } => {
                    self.telemetry.on_answer(&router);
                    self.adjacencies.on_answer(router, at);
                }
                FromPeer::Rtt { router, rtt, at } => {
                    self.telemetry.on_rtt(&router, rtt.as_secs_f64() * 1e3);
                    self.senses.on_rtt(&router, rtt, at);
                }
            }
        }
        for o in &seen {
            self.senses.take(o, &self.config, &mut self.protector);
            self.sample(o);
        }
        self.dataplane.ensure_connected().await;
        self.dataplane.sync_bfd_peers(&self.config.neighbors).await;
        let view = self.dataplane.view().await;
        self.adjacencies
            .update(&self.config.neighbors, view.as_ref());
        if let Some(v) = &view {
            self.connected = connected_subnets(v);
        }
    }

    /// Telemetry: a completed interval is scored and sent to the neighbours' brains.
    fn sample(&mut self, o: &Observation) {
        match o {
            Observation::Stats(s) => self.telemetry.on_stats(s),
            Observation::Event(e) => {
                if let Some(x0_proto::dataplane::v1::event::Kind::Link(l)) = &e.kind
                    && !l.up
                {
                    let on_link = self
                        .config
                        .neighbors
                        .iter()
                        .filter(|n| n.interface == l.interface);
                    on_link.for_each(|n| self.telemetry.on_carrier_loss(&n.router));
                }
            }
            Observation::Bfd(sessions, read_at) => {
                if let Some(sample) = self.telemetry.on_bfd(sessions, *read_at, &self.config) {
                    let request = self.telemetry.publish(&sample, &self.shared, &self.config);
                    self.peers.exchange(&request);
                    self.analyse_causes(&sample);
                }
            }
        }
    }

    /// MAPE-K over root causes: this interval as our brain sees it (our router, our
    /// links, our neighbours' features).
    fn analyse_causes(&mut self, sample: &crate::models::features::RouterSample) {
        let interval = self.telemetry.interval(sample, &self.shared, &self.config);
        let routers: Vec<String> = std::iter::once(self.config.router.clone())
            .chain(self.config.neighbors.iter().map(|n| n.router.clone()))
            .collect();
        let links: Vec<(String, String)> = self
            .config
            .neighbors
            .iter()
            .map(|n| (self.config.router.clone(), n.router.clone()))
            .collect();
        let view = crate::mapek::remedy::View {
            interval,
            routers: &routers,
            links: &links,
            interval_ms: self.config.telemetry_interval_ms,
        };
        let s = self.shared.lock().expect("brain lock");
        self.senses
            .remedy
            .analyse(view, &s.knowledge, Instant::now());
    }

    /// The guard's actions, link health, and a new record of ours if one is due.
    async fn act(&mut self) -> Result<()> {
        if let Some(dp) = self.dataplane.client() {
            self.protector.step(dp, &self.shared, &self.config).await;
        }
        let guarded = self.protector.guard.state();
        let costs = self.senses.link_costs(&self.shared, &self.config, &guarded);
        let adjacencies = self.adjacencies_to_advertise(&costs);
        let prefixes = self.prefixes();
        if let Some(signed) =
            self.originator
                .step(adjacencies, prefixes, &self.shared, &self.config)?
        {
            self.peers.flood(None, &[signed]);
        }
        Ok(())
    }

    fn adjacencies_to_advertise(&self, costs: &HashMap<String, u32>) -> Vec<pb::Adjacency> {
        self.config
            .neighbors
            .iter()
            .filter(|n| self.adjacencies.is_adjacent(&n.router))
            .map(|n| pb::Adjacency {
                neighbor: n.router.clone(),
                cost: costs[&n.router],
                interface: n.interface.clone(),
                neighbor_addrs: n.addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect()
    }

    /// Our prefixes: the configured ones, then the connected subnets; each once.
    fn prefixes(&self) -> Vec<String> {
        let listed = self.config.prefixes.iter().map(|p| p.to_string());
        let connected = match self.config.originate {
            Originate::Connected => self.connected.clone(),
            Originate::Listed => Vec::new(),
        };
        let mut all: Vec<String> = Vec::new();
        for p in listed.chain(connected) {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    }

    /// What discovery found: counted, and a neighbour added or removed at run time.
    fn on_found(&mut self, f: Found) {
        match f {
            Found::Refused(reason) => self.live.hello_refused(reason),
            Found::Verified(_, None) => self.live.verified("ok"),
            Found::Verified(router, Some(e)) => {
                self.live.verified(e.reason);
                tracing::warn!(%router, reason = e.reason, detail = %e.detail, "a router that said hello was not taken as a neighbour");
            }
            Found::Change(Change::Up(heard)) => self.add_neighbor(heard),
            Found::Change(Change::Down(router)) => self.remove_neighbor(&router),
        }
    }

    fn add_neighbor(&mut self, heard: discovery::hello::Heard) {
        let Some(d) = &self.config.discovery else {
            return;
        };
        if self
            .config
            .neighbors
            .iter()
            .any(|n| n.router == heard.router)
        {
            return;
        }
        let n = NeighborConfig {
            router: heard.router,
            interface: heard.interface,
            addrs: heard.addrs,
            cost: d.cost,
            capacity_mbps: d.capacity_mbps,
            brain: heard.brain.to_string(),
        };
        tracing::info!(neighbor = %n.router, interface = %n.interface, brain = %n.brain, "neighbour discovered and verified");
        self.peers.add(&n);
        self.senses.health.watch(&n.router);
        self.live.watch(&n.router);
        self.live.discovered(true);
        self.config.neighbors.push(n);
        // It gets our database now rather than at the next sync.
        self.synchronise();
    }

    fn remove_neighbor(&mut self, router: &str) {
        let before = self.config.neighbors.len();
        self.config.neighbors.retain(|n| n.router != router);
        if self.config.neighbors.len() < before {
            tracing::info!(neighbor = %router, "discovered neighbour gone");
            self.peers.remove(router);
            self.live.discovered(false);
        }
    }

    /// A graceful stop. With discovery our neighbours hold us only while we say hello,
    /// so we say "going away" on every mesh link and flood a record without adjacencies
    /// or prefixes: the mesh routes around us now rather than after the hold time.
    /// Without discovery a stop is fail-static (the dataplane keeps forwarding and BFD
    /// decides adjacency), so nothing is withdrawn and a restart disturbs nothing.
    async fn leave(mut self) -> Result<()> {
        let Some(speaker) = &self.speaker else {
            tracing::info!("stopping (fail-static: the dataplane keeps its routes)");
            return Ok(());
        };
        tracing::info!("stopping: withdrawing from the mesh");
        speaker.goodbye().await;
        let signed = self.originator.withdraw(&self.shared, &self.config)?;
        self.peers.flood(None, &[signed]);
        // The peer tasks hand it over on connections that are already open.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.config.neighbors.clear();
        Ok(())
    }

    /// The whole database to every neighbour, and a latency probe behind it.
    fn synchronise(&self) {
        let all: Vec<pb::SignedRecord> = {
            let s = self.shared.lock().expect("brain lock");
            s.lsdb.records().map(|v| v.signed.clone()).collect()
        };
        self.peers.flood(None, &all);
        self.peers.probe();
    }
}
