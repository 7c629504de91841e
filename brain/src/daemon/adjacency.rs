//! Which neighbours are adjacent: a live next hop to them (BFD and carrier), or, when we
//! have none (our own plan may have dropped it), a fresh answer from their brain. Nothing
//! of our plan feeds back into adjacencies but through the dataplane's liveness.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use x0_proto::dataplane::v1 as dpb;

use super::dataplane::View;
use crate::config::NeighborConfig;

/// A neighbour whose brain answered within this long counts as adjacent when the
/// dataplane has no next hop for it yet.
const CONTACT_FRESH: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Adjacencies {
    adjacent: HashMap<String, bool>,
    down_since: HashMap<String, Instant>,
    /// When each neighbour's brain last took our records.
    contact: HashMap<String, Instant>,
}

impl Adjacencies {
    pub fn on_answer(&mut self, router: String, at: Instant) {
        self.contact.insert(router, at);
    }

    pub fn is_adjacent(&self, router: &str) -> bool {
        self.adjacent.get(router) == Some(&true)
    }

    /// Re-decides every neighbour from the dataplane's view; without one (the dataplane
    /// is unreachable) adjacencies stay as they were (fail-static).
    pub fn update(&mut self, neighbors: &[NeighborConfig], view: Option<&View>) {
        for n in neighbors {
            let up = match view {
                Some(v) => self.decide(n, v),
                None => self.is_adjacent(&n.router),
            };
            if self.adjacent.insert(n.router.clone(), up) != Some(up) {
                tracing::info!(neighbor = %n.router, up, "adjacency");
                if !up {
                    self.down_since.insert(n.router.clone(), Instant::now());
                }
            }
        }
    }

    fn decide(&self, n: &NeighborConfig, view: &View) -> bool {
        let carrier = view
            .interfaces
            .iter()
            .any(|i| i.name == n.interface && i.up);
        let mine: Vec<&dpb::NextHopState> = view
            .next_hops
            .iter()
            .filter(|h| n.is_at(&h.interface, &h.gateway))
            .collect();
        if !carrier {
            return false;
        }
        if !mine.is_empty() {
            return mine.iter().any(|h| h.live);
        }
        // Only answers newer than the last failure seen count.
        self.contact.get(&n.router).is_some_and(|t| {
            t.elapsed() < CONTACT_FRESH && self.down_since.get(&n.router).is_none_or(|d| t > d)
        })
    }
}
