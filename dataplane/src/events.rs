//! The daemon's event stream: link, next-hop, BFD and failover events, published to every
//! API subscriber and kept in a bounded history for late subscribers.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::broadcast;

/// Events kept for `include_history` (older ones are dropped; all are logged).
pub const HISTORY: usize = 1024;
/// Events a slow subscriber may fall behind by before it is told it lagged.
const CHANNEL: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub reason: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Link {
        interface: String,
        up: bool,
        mtu: u32,
    },
    NextHop {
        gateway: IpAddr,
        interface: String,
        from: &'static str,
        to: &'static str,
        source: &'static str,
    },
    Bfd {
        peer: IpAddr,
        interface: String,
        from: String,
        to: String,
        diagnostic: String,
    },
    Failover {
        /// (gateway, interface) traffic left and moved to; None: no live next hop.
        from: Option<(IpAddr, String)>,
        to: Option<(IpAddr, String)>,
        sets: u32,
    },
}

impl Event {
    pub fn unix_ns(&self) -> u64 {
        self.at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CHANNEL).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        let mut h = self.history.lock().expect("event history lock");
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(event.clone());
        // Sent under the lock, so a subscriber's history and live events neither overlap
        // nor leave a gap.
        let _ = self.tx.send(event);
    }

    /// The history (if asked) and a receiver for everything after it.
    pub fn subscribe(&self, with_history: bool) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().expect("event history lock");
        let past = if with_history {
            h.iter().cloned().collect()
        } else {
            Vec::new()
        };
        (past, self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(n: u32) -> Event {
        Event {
            at: SystemTime::now(),
            reason: format!("e{n}"),
            kind: EventKind::Link {
                interface: "eth0".into(),
                up: n.is_multiple_of(2),
                mtu: 1500,
            },
        }
    }

    #[test]
    fn history_is_bounded_and_followed_by_live_events() {
        let bus = EventBus::default();
        for n in 0..(HISTORY as u32 + 10) {
            bus.publish(link(n));
        }
        let (past, mut rx) = bus.subscribe(true);
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past[0].reason, "e10", "the oldest were dropped");
        bus.publish(link(9999));
        assert_eq!(rx.try_recv().unwrap().reason, "e9999");
        let (none, _) = bus.subscribe(false);
        assert!(none.is_empty());
    }
}
