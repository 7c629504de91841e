//! Next-hop health: what the detectors say (carrier, BFD), turned into the liveness word
//! the fast path reads, with hold-down and flap dampening on the way back up, switch
//! counters, and a bounded history of every change.
//!
//! Pure logic with the clock passed in, so that its rules are unit-tested; the daemon
//! applies the `Update`s it returns to the maps.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use x0_common::{HEALTH_DOWN, HEALTH_HOLD_DOWN, HEALTH_UP, NextHopHealth};

use crate::tables::NextHopSpec;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthConfig {
    /// How long a recovered next hop must stay up before it carries traffic again.
    pub hold_down: Duration,
    /// The hold-down doubles with each recent flap, up to this.
    pub max_hold_down: Duration,
    /// Half-life of the flap penalty.
    pub penalty_half_life: Duration,
    /// How long a next hop whose BFD peer said AdminDown (a hitless restart: its fast
    /// path forwards on) stays live while its session comes back.
    pub peer_restart_grace: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            hold_down: Duration::from_secs(2),
            max_hold_down: Duration::from_secs(60),
            penalty_half_life: Duration::from_secs(30),
            peer_restart_grace: Duration::from_secs(10),
        }
    }
}

/// Who noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Carrier,
    Bfd,
    HoldDown,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Carrier => "carrier",
            Source::Bfd => "bfd",
            Source::HoldDown => "hold-down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
    /// Healthy again, waiting out the hold-down.
    HoldDown,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::HoldDown => "hold-down",
        }
    }
}

/// One state change, as logged and kept in the history.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthEvent {
    pub at: SystemTime,
    pub nexthop: NextHopSpec,
    pub from: State,
    pub to: State,
    pub source: Source,
    pub reason: String,
}

/// Traffic of `sets` next-hop sets moved from one next hop to another (None: none live).
#[derive(Clone, Debug, PartialEq)]
pub struct Failover {
    pub at: SystemTime,
    pub from: Option<NextHopSpec>,
    pub to: Option<NextHopSpec>,
    pub sets: u32,
}

/// What happened since the daemon last asked (it publishes these as API events).
#[derive(Clone, Debug, PartialEq)]
pub enum Journal {
    State(HealthEvent),
    Failover(Failover),
}

/// What the daemon must write: the liveness word and the health record of a next hop.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub id: u32,
    pub live: bool,
    pub record: NextHopHealth,
}

struct Entry {
    spec: NextHopSpec,
    carrier: bool,
    /// None: no BFD session; Some(false) only after the session was up and went down.
    bfd_up: Option<bool>,
    state: State,
    hold_until: Option<Instant>,
    /// Its BFD peer said AdminDown: live until then unless its session is Up again.
    grace_until: Option<Instant>,
    penalty: f64,
    penalty_at: Instant,
    record: NextHopHealth,
}

impl Entry {
    fn healthy(&self) -> bool {
        self.carrier && self.bfd_up != Some(false)
    }
    fn decayed_penalty(&self, now: Instant, half_life: Duration) -> f64 {
        let dt = now.saturating_duration_since(self.penalty_at).as_secs_f64();
        self.penalty * 0.5f64.powf(dt / half_life.as_secs_f64())
    }
}

/// Events kept in memory (older ones are dropped; all are logged).
pub const HISTORY: usize = 1024;

pub struct HealthMonitor {
    config: HealthConfig,
    entries: HashMap<u32, Entry>,
    /// Every next-hop set in preference order, to know where traffic moves.
    sets: Vec<Vec<u32>>,
    history: VecDeque<HealthEvent>,
    journal: Vec<Journal>,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl HealthMonitor {
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            sets: Vec::new(),
            history: VecDeque::new(),
            journal: Vec::new(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Tracks a next hop (again). `record` is what the pinned map holds (a restarted
    /// daemon keeps the counters); the state follows the carrier.
    pub fn register(
        &mut self,
        id: u32,
        spec: NextHopSpec,
        carrier: bool,
        record: NextHopHealth,
        now: Instant,
        wall: SystemTime,
    ) -> Update {
        // A record left by an earlier run keeps its verdict: a next hop that a probe had
        // declared down stays down until the probe says otherwise.
        let (state, bfd_up, hold_until) = match (carrier, record.state) {
            (false, _) => (State::Down, None, None),
            (true, HEALTH_DOWN) => (State::Down, Some(false), None),
            (true, HEALTH_HOLD_DOWN) => {
                let left =
                    Duration::from_nanos(record.hold_until_unix_ns.saturating_sub(unix_ns(wall)));
                (State::HoldDown, None, Some(now + left))
            }
            (true, _) => (State::Up, None, None),
        };
        let entry = Entry {
            spec,
            carrier,
            bfd_up,
            state,
            hold_until,
            grace_until: None,
            penalty: record.penalty_milli as f64 / 1000.0,
            penalty_at: now,
            record: NextHopHealth {
                state: encode(state),
                ..record
            },
        };
        let update = Update {
            id,
            live: state == State::Up,
            record: entry.record,
        };
        self.entries.insert(id, entry);
        update
    }

    pub fn forget(&mut self, id: u32) {
        self.entries.remove(&id);
    }

    pub fn set_sets(&mut self, sets: Vec<Vec<u32>>) {
        self.sets = sets;
    }

    pub fn state(&self, id: u32) -> Option<State> {
        self.entries.get(&id).map(|e| e.state)
    }

    pub fn record(&self, id: u32) -> Option<NextHopHealth> {
        self.entries.get(&id).map(|e| e.record)
    }

    /// State changes and failovers since the last call.
    pub fn take_journal(&mut self) -> Vec<Journal> {
        std::mem::take(&mut self.journal)
    }

    pub fn history(&self) -> impl Iterator<Item = &HealthEvent> {
        self.history.iter()
    }

    pub fn ids_on(&self, ifindex: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.spec.ifindex == ifindex)
            .map(|(i, _)| *i)
            .collect();
        v.sort();
        v
    }

    pub fn spec_of(&self, id: u32) -> Option<NextHopSpec> {
        self.entries.get(&id).map(|e| e.spec)
    }

    pub fn id_of(&self, spec: &NextHopSpec) -> Option<u32> {
        self.entries
            .iter()
            .find(|(_, e)| e.spec == *spec)
            .map(|(i, _)| *i)
    }

    /// Carrier of an interface changed.
    pub fn carrier(
        &mut self,
        ifindex: u32,
        up: bool,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Update> {
        let ids = self.ids_on(ifindex);
        let reason = if up { "carrier up" } else { "carrier lost" };
        self.change(&ids, now, wall, Source::Carrier, reason, |e| e.carrier = up)
    }

    /// A BFD session's state changed (`up` only counts once the session was established).
    pub fn bfd(
        &mut self,
        id: u32,
        up: bool,
        reason: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Update> {
        self.change(&[id], now, wall, Source::Bfd, reason, |e| {
            e.bfd_up = Some(up);
            e.grace_until = None;
        })
    }

    /// The BFD peer said AdminDown: it restarts while its fast path forwards on (RFC 5882
    /// 3.2: not a failure of the path). The next hop stays as it is for the grace; `tick`
    /// takes it down if its session is not Up again by then. False: no grace configured
    /// (or an unknown next hop): the caller treats it as a failure.
    pub fn bfd_peer_restarting(&mut self, id: u32, now: Instant) -> bool {
        let grace = self.config.peer_restart_grace;
        match self.entries.get_mut(&id) {
            Some(e) if !grace.is_zero() => {
                e.grace_until = Some(now + grace);
                true
            }
            _ => false,
        }
    }

    /// Next hops whose peer said AdminDown and did not come back within the grace.
    fn graces_over(&mut self, now: Instant, wall: SystemTime) -> Vec<Update> {
        let mut over: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.grace_until.is_some_and(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        over.sort();
        if over.is_empty() {
            return Vec::new();
        }
        let reason = format!(
            "BFD peer said AdminDown and is not back after {:?}",
            self.config.peer_restart_grace
        );
        self.change(&over, now, wall, Source::Bfd, &reason, |e| {
            e.bfd_up = Some(false);
            e.grace_until = None;
        })
    }

    /// Ends hold-downs and restart graces that are over. Call it often (every few ms).
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<Update> {
        let mut updates = self.graces_over(now, wall);
        updates.extend(self.hold_downs_over(now, wall));
        updates
    }

    fn hold_downs_over(&mut self, now: Instant, wall: SystemTime) -> Vec<Update> {
        let due: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state == State::HoldDown && e.hold_until.is_some_and(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let active_before = self.active();
        let mut updates = Vec::new();
        for id in &due {
            self.transition(
                *id,
                State::Up,
                now,
                wall,
                Source::HoldDown,
                "stayed up for the hold-down",
            );
        }
        self.count_switches(&active_before, wall);
        for id in self.touched(&due, &active_before) {
            updates.push(self.update(id));
        }
        updates
    }

    fn change(
        &mut self,
        ids: &[u32],
        now: Instant,
        wall: SystemTime,
        source: Source,
        reason: &str,
        f: impl Fn(&mut Entry),
    ) -> Vec<Update> {
        let active_before = self.active();
        let hold_down = self.config.hold_down;
        let max_hold = self.config.max_hold_down;
        let half_life = self.config.penalty_half_life;
        let mut changed = Vec::new();
        for &id in ids {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            f(e);
            let next = match (e.state, e.healthy()) {
                (State::Up, false) | (State::HoldDown, false) => State::Down,
                (State::Down, true) => State::HoldDown,
                (s, _) => s,
            };
            if next == e.state {
                continue;
            }
            // Every failure counts as a flap, also one during a hold-down.
            if next == State::Down {
                e.penalty = e.decayed_penalty(now, half_life) + 1.0;
                e.penalty_at = now;
            }
            if next == State::HoldDown {
                let penalty = e.decayed_penalty(now, half_life).max(1.0);
                let factor = 2f64.powf(penalty - 1.0).min(1e6);
                let hold = hold_down.mul_f64(factor).min(max_hold);
                e.hold_until = Some(now + hold);
                e.record.hold_until_unix_ns = unix_ns(wall + hold);
            }
            let detail = match next {
                State::HoldDown => format!(
                    "{reason}; live again after {:?} unless it fails",
                    e.hold_until.unwrap() - now
                ),
                _ => reason.to_string(),
            };
            self.transition(id, next, now, wall, source, &detail);
            changed.push(id);
        }
        self.count_switches(&active_before, wall);
        self.touched(&changed, &active_before)
            .into_iter()
            .map(|id| self.update(id))
            .collect()
    }

    fn transition(
        &mut self,
        id: u32,
        to: State,
        now: Instant,
        wall: SystemTime,
        source: Source,
        reason: &str,
    ) {
        let half_life = self.config.penalty_half_life;
        let e = self.entries.get_mut(&id).expect("known id");
        let event = HealthEvent {
            at: wall,
            nexthop: e.spec,
            from: e.state,
            to,
            source,
            reason: reason.into(),
        };
        e.state = to;
        e.record.state = encode(to);
        e.record.penalty_milli = (e.decayed_penalty(now, half_life) * 1000.0) as u32;
        if to != State::HoldDown {
            e.hold_until = None;
            e.record.hold_until_unix_ns = 0;
        }
        tracing::info!(
            nexthop = %event.nexthop.gateway, ifindex = event.nexthop.ifindex, from = %event.from.name(),
            to = %event.to.name(), source = %event.source.name(), reason = %event.reason, "next hop state"
        );
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.journal.push(Journal::State(event.clone()));
        self.history.push_back(event);
    }

    /// The next hop that carries each set's traffic (first live one), by set index.
    fn active(&self) -> Vec<Option<u32>> {
        self.sets
            .iter()
            .map(|set| {
                set.iter()
                    .copied()
                    .find(|id| self.entries.get(id).is_some_and(|e| e.state == State::Up))
            })
            .collect()
    }

    fn count_switches(&mut self, before: &[Option<u32>], wall: SystemTime) {
        let after = self.active();
        let mut moved: Vec<(Option<u32>, Option<u32>)> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, a)| (*b, *a))
            .collect();
        moved.sort();
        let now_ns = unix_ns(wall);
        for (i, &(from, to)) in moved.iter().enumerate() {
            if i > 0 && moved[i - 1] == (from, to) {
                continue;
            }
            let sets = moved.iter().filter(|m| **m == (from, to)).count() as u32;
            let spec = |id: Option<u32>| id.and_then(|id| self.entries.get(&id)).map(|e| e.spec);
            self.journal.push(Journal::Failover(Failover {
                at: wall,
                from: spec(from),
                to: spec(to),
                sets,
            }));
            if let Some(e) = from.and_then(|id| self.entries.get_mut(&id)) {
                e.record.switches_from += 1;
                e.record.last_switch_unix_ns = now_ns;
            }
            if let Some(e) = to.and_then(|id| self.entries.get_mut(&id)) {
                e.record.switches_to += 1;
                e.record.last_switch_unix_ns = now_ns;
            }
        }
    }

    /// Ids whose record may have changed: the ones that changed state, and every next hop
    /// that was or is active in a set (their switch counters).
    fn touched(&self, changed: &[u32], before: &[Option<u32>]) -> Vec<u32> {
        let mut ids: Vec<u32> = changed.to_vec();
        ids.extend(before.iter().flatten());
        ids.extend(self.active().into_iter().flatten());
        ids.sort();
        ids.dedup();
        ids.retain(|id| self.entries.contains_key(id));
        ids
    }

    fn update(&self, id: u32) -> Update {
        let e = &self.entries[&id];
        Update {
            id,
            live: e.state == State::Up,
            record: e.record,
        }
    }
}

fn encode(s: State) -> u32 {
    match s {
        State::Up => HEALTH_UP,
        State::Down => HEALTH_DOWN,
        State::HoldDown => HEALTH_HOLD_DOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(last: u8, ifindex: u32) -> NextHopSpec {
        NextHopSpec {
            gateway: format!("198.18.12.{last}").parse().unwrap(),
            ifindex,
        }
    }

    /// Primary 1 on ifindex 3, backup 2 on ifindex 4, one set [1, 2].
    fn monitor(now: Instant) -> HealthMonitor {
        let mut m = HealthMonitor::new(HealthConfig::default());
        m.register(
            1,
            spec(2, 3),
            true,
            NextHopHealth::default(),
            now,
            SystemTime::now(),
        );
        m.register(
            2,
            spec(3, 4),
            true,
            NextHopHealth::default(),
            now,
            SystemTime::now(),
        );
        m.set_sets(vec![vec![1, 2]]);
        m
    }

    fn live(updates: &[Update], id: u32) -> Option<bool> {
        updates.iter().find(|u| u.id == id).map(|u| u.live)
    }

    #[test]
    fn carrier_loss_kills_at_once_and_recovery_waits_for_the_hold_down() {
        let t0 = Instant::now();
        let w0 = SystemTime::now();
        let mut m = monitor(t0);
        let u = m.carrier(3, false, t0, w0);
        assert_eq!(live(&u, 1), Some(false));
        assert_eq!(m.state(1), Some(State::Down));
        assert_eq!(m.record(1).unwrap().switches_from, 1);
        assert_eq!(m.record(2).unwrap().switches_to, 1);

        let t1 = t0 + Duration::from_secs(5);
        let u = m.carrier(3, true, t1, w0);
        assert_eq!(live(&u, 1), Some(false), "not live during the hold-down");
        assert_eq!(m.state(1), Some(State::HoldDown));
        assert!(
            m.tick(t1 + Duration::from_millis(1999), w0).is_empty(),
            "2 s hold-down not over"
        );
        let u = m.tick(t1 + Duration::from_secs(2), w0);
        assert_eq!(live(&u, 1), Some(true));
        assert_eq!(
            m.record(1).unwrap().switches_to,
            1,
            "traffic moved back to the primary"
        );
        assert_eq!(m.record(2).unwrap().switches_from, 1);
        let kinds: Vec<(State, State, Source)> =
            m.history().map(|e| (e.from, e.to, e.source)).collect();
        assert_eq!(
            kinds,
            vec![
                (State::Up, State::Down, Source::Carrier),
                (State::Down, State::HoldDown, Source::Carrier),
                (State::HoldDown, State::Up, Source::HoldDown)
            ]
        );
    }

    #[test]
    fn a_failure_during_the_hold_down_starts_over_and_flapping_grows_the_hold_down() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut m = monitor(t0);
        // Toggle every 200 ms for 5 s (12 down/up cycles).
        let mut t = t0;
        for _ in 0..12 {
            m.carrier(3, false, t, w);
            t += Duration::from_millis(200);
            let u = m.carrier(3, true, t, w);
            assert_eq!(live(&u, 1), Some(false), "never live while flapping");
            t += Duration::from_millis(200);
            assert!(live(&m.tick(t, w), 1).is_none());
        }
        // The hold-down has grown far beyond 2 s: still held after 10 s.
        assert_eq!(m.state(1), Some(State::HoldDown));
        assert!(
            live(&m.tick(t + Duration::from_secs(10), w), 1).is_none(),
            "dampened"
        );
        assert!(m.record(1).unwrap().penalty_milli > 10_000);
        // It comes back within the cap.
        assert_eq!(
            live(&m.tick(t + m.config().max_hold_down, w), 1),
            Some(true)
        );
        // Only one switch away and one back, however often the link flapped.
        assert_eq!(m.record(2).unwrap().switches_to, 1);
        assert_eq!(m.record(1).unwrap().switches_to, 1);
    }

    #[test]
    fn a_peer_restarting_keeps_its_next_hop_live_for_the_grace_only() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut m = monitor(t0);
        m.bfd(1, true, "up", t0, w);
        // It came back within the grace: nothing ever moved.
        let events = m.history().count();
        assert!(m.bfd_peer_restarting(1, t0));
        assert!(m.tick(t0 + Duration::from_secs(9), w).is_empty());
        let u = m.bfd(1, true, "up again", t0 + Duration::from_secs(9), w);
        assert_ne!(live(&u, 1), Some(false));
        assert!(m.tick(t0 + Duration::from_secs(30), w).is_empty());
        assert_eq!(m.state(1), Some(State::Up));
        assert_eq!(m.history().count(), events, "no state change at all");
        // It did not: down when the grace is over, and the backup carries the traffic.
        let t1 = t0 + Duration::from_secs(40);
        assert!(m.bfd_peer_restarting(1, t1));
        assert!(m.tick(t1 + Duration::from_millis(9_999), w).is_empty());
        let u = m.tick(t1 + Duration::from_secs(10), w);
        assert_eq!(live(&u, 1), Some(false));
        assert_eq!(m.state(1), Some(State::Down));
        let last = m.history().last().unwrap();
        assert!(last.reason.contains("AdminDown"), "{last:?}");
        // No grace configured: the caller treats AdminDown as a failure.
        let mut strict = HealthMonitor::new(HealthConfig {
            peer_restart_grace: Duration::ZERO,
            ..HealthConfig::default()
        });
        strict.register(1, spec(2, 3), true, NextHopHealth::default(), t0, w);
        assert!(!strict.bfd_peer_restarting(1, t0));
    }

    #[test]
    fn bfd_and_carrier_must_both_be_up() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut m = monitor(t0);
        let u = m.bfd(1, false, "detection time expired", t0, w);
        assert_eq!(live(&u, 1), Some(false));
        m.carrier(3, false, t0, w);
        m.bfd(1, true, "session up", t0, w);
        assert_eq!(m.state(1), Some(State::Down), "carrier still down");
        m.carrier(3, true, t0, w);
        assert_eq!(m.state(1), Some(State::HoldDown));
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut m = monitor(t0);
        for i in 0..(HISTORY as u32 + 10) {
            m.carrier(3, i % 2 == 1, t0, w);
        }
        assert_eq!(m.history().count(), HISTORY);
    }
}
