//! Flooding: one task per neighbouring brain owns its connection and hands it records in
//! order; a relay task passes on what the service accepted. A neighbour that is slow or
//! gone delays only its own task, and what queues up meanwhile is merged, not repeated.
//! Each task remembers what its neighbour holds, so the every-second sync sends only what
//! it lacks (the 40-router soak carried ~460 packets a second per link of whole databases).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tonic::transport::Channel;
use x0_identity::{IdPattern, PqMode};
use x0_proto::brain::v1::{self as pb, brain_client::BrainClient};
use x0ctl::client::{Target, connect};

use super::{
    RPC_TIMEOUT,
    events::{Flood, FromPeer, ToPeer},
    metrics::Live,
};
use crate::config::{BrainConfig, NeighborConfig};

/// A neighbour's name and its peer task's queue.
type PeerTask = (String, mpsc::UnboundedSender<ToPeer>);

/// The senders to every neighbour's peer task; neighbours come and go at run time
/// (discovery), so the list is shared by the loop and the relay.
#[derive(Clone)]
pub struct Peers {
    to: Arc<Mutex<Vec<PeerTask>>>,
    td: String,
    tls: x0_identity::FileSource,
    events: mpsc::UnboundedSender<FromPeer>,
    live: Arc<Live>,
}

impl Peers {
    /// Starts a peer task per configured neighbour; they report to `events` and count
    /// their floods in `live`.
    pub fn start(
        config: &BrainConfig,
        td: &str,
        events: mpsc::UnboundedSender<FromPeer>,
        live: &Arc<Live>,
    ) -> Self {
        let peers = Peers {
            to: Arc::default(),
            td: td.to_string(),
            tls: config.tls.clone(),
            events,
            live: live.clone(),
        };
        for n in &config.neighbors {
            peers.add(n);
        }
        peers
    }

    /// A task for a new neighbour (one already there is left as it is).
    pub fn add(&self, n: &NeighborConfig) {
        let mut to = self.to.lock().expect("peers lock");
        if to.iter().any(|(r, _)| r == &n.router) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let target = Target {
            addr: format!("https://{}", n.brain),
            svid: Some(self.tls.clone()),
            pq: PqMode::Required,
            server_id: format!("spiffe://{}/brain/{}", self.td, n.router)
                .parse::<IdPattern>()
                .ok(),
        };
        let out = Outbox {
            router: n.router.clone(),
            events: self.events.clone(),
            live: self.live.clone(),
        };
        tokio::spawn(peer(out, target, rx));
        to.push((n.router.clone(), tx));
    }

    /// Ends a neighbour's task (its queue is dropped with its sender).
    pub fn remove(&self, router: &str) {
        self.to
            .lock()
            .expect("peers lock")
            .retain(|(r, _)| r != router);
    }

    fn senders(&self) -> Vec<PeerTask> {
        self.to.lock().expect("peers lock").clone()
    }

    /// Hands `records` to every neighbour but `except` (the one they came from).
    pub fn flood(&self, except: Option<&str>, records: &[pb::SignedRecord]) {
        if records.is_empty() {
            return;
        }
        for (router, tx) in &self.senders() {
            if Some(router.as_str()) != except {
                let _ = tx.send(ToPeer::Flood(records.to_vec()));
            }
        }
    }

    /// Our telemetry to every neighbour's brain.
    pub fn exchange(&self, request: &pb::ExchangeRequest) {
        for (_, tx) in &self.senders() {
            let _ = tx.send(ToPeer::Exchange(request.clone()));
        }
    }

    /// Asks every neighbour's task for a round trip.
    pub fn probe(&self) {
        for (_, tx) in &self.senders() {
            let _ = tx.send(ToPeer::Probe);
        }
    }

    /// Passes on, until the service stops, what it accepted from one neighbour.
    pub async fn relay(self, mut floods: mpsc::UnboundedReceiver<Flood>) {
        while let Some((from, records)) = floods.recv().await {
            self.flood(from.as_deref(), &records);
        }
    }
}

/// Where a peer task reports: its neighbour's name, the loop's events, the metrics.
struct Outbox {
    router: String,
    events: mpsc::UnboundedSender<FromPeer>,
    live: Arc<Live>,
}

/// One neighbour's task: takes what queued up, floods it once, then probes if asked.
async fn peer(out: Outbox, target: Target, mut rx: mpsc::UnboundedReceiver<ToPeer>) {
    let Outbox {
        router,
        events,
        live,
    } = out;
    let mut client: Option<BrainClient<Channel>> = None;
    let mut held = Held::default();
    let answered = |at| {
        let _ = events.send(FromPeer::Answered {
            router: router.clone(),
            at,
        });
    };
    while let Some(first) = rx.recv().await {
        let mut work = vec![first];
        while let Ok(more) = rx.try_recv() {
            work.push(more);
        }
        let (records, probe, exchange) = merge(work);
        held.forget_if_due(Instant::now());
        let records: Vec<pb::SignedRecord> =
            records.into_iter().filter(|r| held.lacks(r)).collect();
        let count = records.len();
        if count > 0 {
            match flood_once(&mut client, &target, records.clone()).await {
                Some(answer) => {
                    held.answered(&answer, &records);
                    live.flooded(&router, count, true);
                    answered(Instant::now());
                }
                None => {
                    held = Held::default();
                    live.flooded(&router, count, false);
                }
            }
        }
        if let (Some(x), Some(c)) = (exchange, &mut client) {
            // Over the open connection only (the floods make it); a refusal is the
            // neighbour's to log, and the next interval brings a new one.
            let _ = tokio::time::timeout(RPC_TIMEOUT, c.exchange(x)).await;
        }
        if probe && let Some(c) = &mut client {
            let start = Instant::now();
            let answer = tokio::time::timeout(RPC_TIMEOUT, c.flood(pb::FloodRequest::default()));
            if let Ok(Ok(answer)) = answer.await {
                let (rtt, at) = (start.elapsed(), Instant::now());
                held.seen(answer.get_ref().instance);
                // Its brain answers (a sync with nothing new sends no flood).
                answered(at);
                let _ = events.send(FromPeer::Rtt {
                    router: router.clone(),
                    rtt,
                    at,
                });
            }
        }
    }
}

/// A full sync at least this often, whatever the neighbour is known to hold (what the
/// bookkeeping below cannot see: a record it dropped while its brain ran on).
const FULL_SYNC_EVERY: Duration = Duration::from_secs(30);

/// What the neighbour is known to hold: the records it answered for in this run of its
/// brain (its `instance`), forgotten on a failed flood, a new instance, and every
/// FULL_SYNC_EVERY.
#[derive(Default)]
struct Held {
    records: HashSet<prost::bytes::Bytes>,
    instance: Option<u64>,
    since: Option<Instant>,
}

impl Held {
    fn lacks(&self, r: &pb::SignedRecord) -> bool {
        !self.records.contains(&r.record)
    }

    /// A flood's answer: every record sent is held, unless one was refused for more than
    /// being known already (then the next sync sends them again).
    fn answered(&mut self, answer: &pb::FloodResponse, sent: &[pb::SignedRecord]) {
        self.seen(answer.instance);
        let known = |reason: &str| reason == "duplicate" || reason == "stale";
        if answer.rejected.iter().all(|r| known(&r.reason)) {
            self.records.extend(sent.iter().map(|r| r.record.clone()));
        }
    }

    fn seen(&mut self, instance: u64) {
        if self.instance != Some(instance) {
            self.records.clear();
            self.instance = Some(instance);
        }
    }

    fn forget_if_due(&mut self, now: Instant) {
        if self.since.is_none_or(|s| now - s >= FULL_SYNC_EVERY) {
            self.records.clear();
            self.since = Some(now);
        }
    }
}

/// The queued work as one flood (each distinct record once, in the order queued),
/// whether a probe was asked for, and the newest telemetry.
fn merge(work: Vec<ToPeer>) -> (Vec<pb::SignedRecord>, bool, Option<pb::ExchangeRequest>) {
    let (mut records, mut probe, mut exchange) = (Vec::new(), false, None);
    let mut seen = HashSet::new();
    for w in work {
        match w {
            ToPeer::Probe => probe = true,
            ToPeer::Exchange(x) => exchange = Some(x),
            ToPeer::Flood(rs) => {
                records.extend(rs.into_iter().filter(|r| seen.insert(r.record.clone())))
            }
        }
    }
    (records, probe, exchange)
}

/// One Flood RPC, connecting first if needed; a failure drops the connection so the next
/// flood makes a new one. The neighbour's answer, if it gave one.
async fn flood_once(
    client: &mut Option<BrainClient<Channel>>,
    target: &Target,
    records: Vec<pb::SignedRecord>,
) -> Option<pb::FloodResponse> {
    if client.is_none() {
        match tokio::time::timeout(RPC_TIMEOUT, connect(target)).await {
            Ok(Ok(c)) => *client = Some(BrainClient::new(c.channel)),
            _ => return None,
        }
    }
    let c = client.as_mut()?;
    match tokio::time::timeout(RPC_TIMEOUT, c.flood(pb::FloodRequest { records })).await {
        Ok(Ok(answer)) => Some(answer.into_inner()),
        _ => {
            *client = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(b: u8) -> pb::SignedRecord {
        pb::SignedRecord {
            record: vec![b].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_neighbour_is_sent_only_what_it_does_not_hold() {
        let t0 = Instant::now();
        let mut held = Held::default();
        held.forget_if_due(t0);
        let answer = |instance, rejected: &[&str]| pb::FloodResponse {
            instance,
            rejected: rejected
                .iter()
                .map(|r| pb::Rejection {
                    reason: r.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        held.answered(&answer(7, &["duplicate"]), &[record(1), record(2)]);
        assert!(!held.lacks(&record(1)) && held.lacks(&record(3)));
        // A refusal for another reason: sent again next time.
        held.answered(&answer(7, &["forged"]), &[record(3)]);
        assert!(held.lacks(&record(3)));
        // Its brain restarted: it may hold nothing.
        held.seen(8);
        assert!(held.lacks(&record(1)));
        held.answered(&answer(8, &[]), &[record(1)]);
        held.forget_if_due(t0 + Duration::from_secs(29));
        assert!(!held.lacks(&record(1)));
        held.forget_if_due(t0 + FULL_SYNC_EVERY);
        assert!(held.lacks(&record(1)), "the full sync every 30 s");
    }

    #[test]
    fn queued_floods_merge_into_one_with_each_record_once() {
        let work = vec![
            ToPeer::Flood(vec![record(1), record(2)]),
            ToPeer::Probe,
            ToPeer::Flood(vec![record(2), record(3)]),
        ];
        let (records, probe, exchange) = merge(work);
        let bytes: Vec<u8> = records.iter().map(|r| r.record[0]).collect();
        assert_eq!(bytes, vec![1, 2, 3]);
        assert!(probe && exchange.is_none());
        assert!(!merge(vec![ToPeer::Flood(vec![record(1)])]).1);
        let x = |n| {
            ToPeer::Exchange(pb::ExchangeRequest {
                unix_ns: n,
                ..Default::default()
            })
        };
        let (_, _, newest) = merge(vec![x(1), x(2)]);
        assert_eq!(newest.unwrap().unix_ns, 2);
    }
}
