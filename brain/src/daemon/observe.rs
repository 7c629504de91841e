//! MAPE-K's monitor and its link-health analysis: the dataplane's observations and the
//! neighbours' round trips go in; each link's cost to advertise (measured, then scaled by
//! a drain if it flaps) comes out, and the status shows both.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use x0_proto::{brain::v1 as pb, dataplane::v1 as dpb};

use super::{events::Observation, protect::Protector};
use crate::{
    config::BrainConfig,
    linkstate::state::Shared,
    mapek::{link_health::LinkHealth, monitor::Monitor, remedy::Remedy},
};

pub struct Senses {
    pub monitor: Monitor,
    pub health: LinkHealth,
    pub remedy: Remedy,
}

impl Senses {
    pub fn new(config: &BrainConfig) -> Self {
        let mut health = LinkHealth::new(config.mode, Instant::now());
        for n in &config.neighbors {
            health.watch(&n.router);
        }
        Senses {
            monitor: Monitor::default(),
            health,
            remedy: Remedy::new(config.mode, &config.router, Instant::now()),
        }
    }

    /// One observation: to the monitor (link quality), to link health (every loss of
    /// carrier, undamped: its own hold-down damps) and to the guard (what each neighbour sends the router itself).
    pub fn take(&mut self, o: &Observation, config: &BrainConfig, protector: &mut Protector) {
        let now = Instant::now();
        match o {
            Observation::Event(e) => self.on_event(e, config, now),
            Observation::Stats(s) => {
                for n in &config.neighbors {
                    let Some(i) = s.interfaces.iter().find(|i| i.interface == n.interface) else {
                        continue;
                    };
                    let capacity = n.capacity_mbps * 1_000_000;
                    self.monitor
                        .on_tx_bytes(&n.router, i.tx_bytes, capacity, now);
                    if let Some(rate) =
                        protector
                            .guard
                            .on_passed_packets(&n.router, i.passed_packets, now)
                    {
                        protector.pps.insert(n.router.clone(), rate);
                    }
                }
            }
            Observation::Bfd(sessions, _) => self.on_bfd(sessions, config, now),
        }
    }

    fn on_event(&mut self, e: &dpb::Event, config: &BrainConfig, now: Instant) {
        if let Some(dpb::event::Kind::Link(l)) = &e.kind
            && !l.up
        {
            for n in config
                .neighbors
                .iter()
                .filter(|n| n.interface == l.interface)
            {
                self.health.on_down(&n.router, now);
            }
        }
    }

    fn on_bfd(&mut self, sessions: &[dpb::BfdSession], config: &BrainConfig, now: Instant) {
        for n in &config.neighbors {
            if let Some(s) = n.session(sessions) {
                let interval = Duration::from_micros(s.rx_interval_us);
                let up = s.state == "Up";
                self.monitor
                    .on_bfd(&n.router, up, s.rx_packets, interval, now);
            }
        }
    }

    pub fn on_rtt(&mut self, router: &str, rtt: Duration, at: Instant) {
        self.monitor.on_rtt(router, rtt, at);
    }

    /// Analyses link health and returns each neighbour's cost to advertise; the status
    /// gets the links' quality and the MAPE-K state (with the guard's, `guarded`).
    pub fn link_costs(
        &mut self,
        shared: &Mutex<Shared>,
        config: &BrainConfig,
        guarded: &[String],
    ) -> HashMap<String, u32> {
        // The measured cost of each link (with hysteresis), which a drain then scales.
        let measured: HashMap<String, u32> = config
            .neighbors
            .iter()
            .map(|n| (n.router.clone(), self.monitor.cost(&n.router, n.cost)))
            .collect();
        let mut s = shared.lock().expect("brain lock");
        let lsdb = &s.lsdb;
        let mesh_cost = |n: &str| lsdb.link_cost(&config.router, n);
        let base = |n: &str| measured.get(n).copied();
        let now = Instant::now();
        self.health
            .tick(now, &s.knowledge, &config.router, &base, &mesh_cost);
        self.remedy.confirm(&s.knowledge, now, &base, &mesh_cost);
        s.mapek = format!(
            "{}; {}; policy actions on {guarded:?}",
            self.health.state(),
            self.remedy.state()
        );
        // Drained by either loop is drained once.
        let costs: HashMap<String, u32> = measured
            .iter()
            .map(|(n, m)| {
                let cost = self.health.cost(n, *m).max(self.remedy.cost(n, *m));
                (n.clone(), cost)
            })
            .collect();
        s.links = config
            .neighbors
            .iter()
            .map(|n| self.quality(n, costs[&n.router]))
            .collect();
        costs
    }

    fn quality(&self, n: &crate::config::NeighborConfig, cost: u32) -> pb::LinkQuality {
        let q = self.monitor.quality(&n.router);
        pb::LinkQuality {
            neighbor: n.router.clone(),
            rtt_ms: q.latency_ms.unwrap_or(0.0),
            loss: q.loss.unwrap_or(0.0),
            utilisation: q.utilisation.unwrap_or(0.0),
            base_cost: n.cost,
            cost,
            // Filled in by the status, from both ends' latest scores.
            anomaly_score: None,
        }
    }
}
