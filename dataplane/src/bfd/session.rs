//! One BFD session in asynchronous mode (RFC 5880 section 6.8): the state machine, timer
//! negotiation, slow start while not Up, and Poll/Final. Time is passed in, so the rules
//! are unit-tested without a network.

use std::time::{Duration, Instant};

use super::packet::{BfdState, ControlPacket, Diag};

/// While a session is not Up it sends no faster than once a second (RFC 5880 6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
}

/// A change of the session's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: BfdState,
    pub to: BfdState,
    pub diag: Diag,
    /// The state the peer last said it was in (AdminDown: it went down on purpose).
    pub peer: BfdState,
}

pub struct Session {
    cfg: SessionConfig,
    state: BfdState,
    local_disc: u32,
    remote_disc: u32,
    diag: Diag,
    remote_state: BfdState,
    /// What the peer asks of us (bfd.RemoteMinRxInterval); 1 us until we hear from it.
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    /// The peer set Demand: once both are Up it wants no periodic packets from us.
    remote_demand: bool,
    /// What we advertise as DesiredMinTxInterval (slow while not Up).
    desired_tx: Duration,
    poll_active: bool,
    final_due: bool,
    next_tx: Instant,
    detect_at: Option<Instant>,
    rng: u64,
    /// Valid packets received: against the peer's interval, what the link loses.
    rx_packets: u64,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl Session {
    pub fn new(cfg: SessionConfig, local_disc: u32, now: Instant) -> Self {
        assert!(local_disc != 0, "discriminators are non-zero");
        Self {
            cfg,
            state: BfdState::Down,
            local_disc,
            remote_disc: 0,
            diag: Diag::None,
            remote_state: BfdState::Down,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            desired_tx: cfg.desired_min_tx.max(SLOW_TX),
            poll_active: false,
            final_due: false,
            next_tx: now,
            detect_at: None,
            rng: local_disc as u64 | 1,
            rx_packets: 0,
        }
    }

    pub fn state(&self) -> BfdState {
        self.state
    }
    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }
    pub fn remote_state(&self) -> BfdState {
        self.remote_state
    }

    /// The agreed transmit interval: what we want, but no faster than the peer accepts.
    pub fn tx_interval(&self) -> Duration {
        self.desired_tx.max(self.remote_min_rx)
    }

    /// How long without a packet before the peer is declared down.
    pub fn detection_time(&self) -> Duration {
        self.cfg.required_min_rx.max(self.remote_desired_tx) * self.remote_detect_mult as u32
    }

    /// The next instant `poll_timers` has work.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut t = self.next_tx;
        if self.final_due {
            t = now;
        }
        if let Some(d) = self.detect_at {
            t = t.min(d);
        }
        t
    }

    pub fn rx_packets(&self) -> u64 {
        self.rx_packets
    }

    /// How often the peer sends to us (RFC 5880 6.8.7, before its jitter of up to -25%).
    pub fn rx_interval(&self) -> Duration {
        self.remote_desired_tx.max(self.cfg.required_min_rx)
    }

    /// A valid packet for this session arrived (RFC 5880 6.8.6).
    pub fn on_packet(&mut self, p: &ControlPacket, now: Instant) -> Option<Change> {
        self.rx_packets += 1;
        let interval_before = self.tx_interval();
        self.remote_state = p.state;
        self.remote_min_rx = Duration::from_micros(p.required_min_rx as u64);
        self.remote_desired_tx = Duration::from_micros(p.desired_min_tx as u64);
        self.remote_detect_mult = p.detect_mult;
        self.remote_disc = p.my_disc;
        self.remote_demand = p.demand;
        // The peer now accepts packets faster (typically: it came Up and left its 1 s
        // slow start): do not wait out the old, longer interval.
        let interval = self.tx_interval();
        if interval < interval_before {
            let sooner = now + self.jittered(interval);
            self.next_tx = self.next_tx.min(sooner);
        }
        if p.final_ && self.poll_active {
            self.poll_active = false;
        }
        if p.poll {
            self.final_due = true;
        }
        self.detect_at = Some(now + self.detection_time());
        if self.state == BfdState::AdminDown {
            return None;
        }
        let to = match (self.state, p.state) {
            (s, BfdState::AdminDown) if s != BfdState::Down => {
                self.diag = Diag::NeighborSignaledDown;
                BfdState::Down
            }
            (BfdState::Down, BfdState::Down) => BfdState::Init,
            (BfdState::Down, BfdState::Init) => BfdState::Up,
            (BfdState::Init, BfdState::Init | BfdState::Up) => BfdState::Up,
            (BfdState::Up, BfdState::Down) => {
                self.diag = Diag::NeighborSignaledDown;
                BfdState::Down
            }
            (s, _) => s,
        };
        self.set_state(to, now)
    }

    /// Detection timeout and transmission. Returns a state change, and the packet to send
    /// now, if any.
    pub fn poll_timers(&mut self, now: Instant) -> (Option<Change>, Option<ControlPacket>) {
        let mut change = None;
        if let Some(d) = self.detect_at
            && now >= d
        {
            self.detect_at = None;
            self.remote_disc = 0;
            self.remote_state = BfdState::Down;
            if matches!(self.state, BfdState::Init | BfdState::Up) {
                self.diag = Diag::ControlDetectionExpired;
                change = self.set_state(BfdState::Down, now);
            }
        }
        let periodic = now >= self.next_tx;
        if !(periodic || self.final_due) {
            return (change, None);
        }
        let packet = self.packet();
        self.final_due = false;
        if periodic {
            self.next_tx = now + self.jittered(self.tx_interval());
        }
        // A peer that asks for no packets (RequiredMinRx 0), or in Demand mode, gets only
        // Finals and Polls (RFC 5880 6.8.7).
        let send = (!self.remote_min_rx.is_zero() && !self.remote_demand_active())
            || packet.final_
            || packet.poll;
        (change, send.then_some(packet))
    }

    /// Demand mode is active on the peer (RFC 5880 6.8.6): it set Demand and both are Up.
    fn remote_demand_active(&self) -> bool {
        self.remote_demand && self.state == BfdState::Up && self.remote_state == BfdState::Up
    }

    fn set_state(&mut self, to: BfdState, now: Instant) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let change = Change {
            from: self.state,
            to,
            diag: self.diag,
            peer: self.remote_state,
        };
        self.state = to;
        let desired = if to == BfdState::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.desired_min_tx.max(SLOW_TX)
        };
        if desired != self.desired_tx {
            self.desired_tx = desired;
            // A changed interval is announced with a Poll sequence (6.8.3); send at once.
            self.poll_active = to == BfdState::Up;
            self.next_tx = now;
        }
        if to == BfdState::Up {
            self.diag = Diag::None;
        }
        Some(change)
    }

    /// Takes the session AdminDown (RFC 5880 6.8.16: the daemon stops on purpose while its
    /// fast path forwards on) and returns the packet that tells the peer.
    pub fn admin_down(&mut self) -> ControlPacket {
        self.state = BfdState::AdminDown;
        self.diag = Diag::AdminDown;
        self.poll_active = false;
        self.packet()
    }

    fn packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: self.poll_active && !self.final_due,
            final_: self.final_due,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx: us(self.desired_tx),
            required_min_rx: us(self.cfg.required_min_rx),
            required_min_echo_rx: 0,
        }
    }

    /// 75 to 100 % of the interval (75 to 90 % with a multiplier of 1), RFC 5880 6.8.7.
    fn jittered(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = if self.cfg.detect_mult == 1 { 15 } else { 25 };
        d * (75 + (self.rng % (span + 1)) as u32) / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> SessionConfig {
        SessionConfig {
            desired_min_tx: 10 * MS,
            required_min_rx: 10 * MS,
            detect_mult: 3,
        }
    }

    /// Two sessions wired together, stepped in 1 ms ticks; `a_to_b` / `b_to_a` say whether
    /// packets get through in each direction.
    struct Pair {
        a: Session,
        b: Session,
        now: Instant,
        changes: Vec<(char, Change, Duration)>,
        start: Instant,
    }

    impl Pair {
        fn new() -> Self {
            let now = Instant::now();
            Pair {
                a: Session::new(cfg(), 11, now),
                b: Session::new(cfg(), 22, now),
                now,
                changes: vec![],
                start: now,
            }
        }
        fn run(&mut self, d: Duration, a_to_b: bool, b_to_a: bool) {
            let end = self.now + d;
            while self.now < end {
                self.now += MS;
                let (ca, pa) = self.a.poll_timers(self.now);
                let (cb, pb) = self.b.poll_timers(self.now);
                let t = self.now - self.start;
                ca.into_iter().for_each(|c| self.changes.push(('a', c, t)));
                cb.into_iter().for_each(|c| self.changes.push(('b', c, t)));
                if let (Some(p), true) = (pa, a_to_b) {
                    let p = ControlPacket::decode(&p.encode()).unwrap();
                    if let Some(c) = self.b.on_packet(&p, self.now) {
                        self.changes.push(('b', c, t));
                    }
                }
                if let (Some(p), true) = (pb, b_to_a) {
                    let p = ControlPacket::decode(&p.encode()).unwrap();
                    if let Some(c) = self.a.on_packet(&p, self.now) {
                        self.changes.push(('a', c, t));
                    }
                }
            }
        }
    }

    #[test]
    fn three_way_handshake_then_fast_timers_after_poll_final() {
        let mut p = Pair::new();
        p.run(3000 * MS, true, true);
        assert_eq!(p.a.state(), BfdState::Up);
        assert_eq!(p.b.state(), BfdState::Up);
        let a_states: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.0 == 'a')
            .map(|c| c.1.to)
            .collect();
        assert_eq!(
            a_states,
            vec![BfdState::Init, BfdState::Up]
                .into_iter()
                .filter(|s| a_states.contains(s))
                .collect::<Vec<_>>()
        );
        assert!(a_states.ends_with(&[BfdState::Up]));
        assert_eq!(p.a.tx_interval(), 10 * MS, "fast once Up");
        assert!(
            !p.a.poll_active && !p.b.poll_active,
            "poll sequences completed"
        );
        assert_eq!(p.a.detection_time(), 30 * MS);
        assert_eq!(p.a.remote_disc(), 22);
    }

    #[test]
    fn silence_is_detected_within_the_detection_time() {
        let mut p = Pair::new();
        p.run(3000 * MS, true, true);
        let cut = p.now - p.start;
        p.run(100 * MS, false, false);
        let down: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.1.to == BfdState::Down)
            .collect();
        assert_eq!(down.len(), 2, "both ends go down: {down:?}");
        for (who, c, t) in down {
            assert_eq!(c.diag, Diag::ControlDetectionExpired, "{who}");
            let after = *t - cut;
            assert!(
                after <= 31 * MS && after >= 15 * MS,
                "{who} detected after {after:?}"
            );
        }
        assert_eq!(
            p.a.tx_interval(),
            SLOW_TX,
            "back to slow transmission while down"
        );
    }

    #[test]
    fn one_way_loss_brings_both_ends_down() {
        let mut p = Pair::new();
        p.run(3000 * MS, true, true);
        p.changes.clear();
        // a's packets stop reaching b; b's still reach a.
        p.run(200 * MS, false, true);
        let b_down = p
            .changes
            .iter()
            .find(|c| c.0 == 'b' && c.1.to == BfdState::Down)
            .expect("b times out");
        assert_eq!(b_down.1.diag, Diag::ControlDetectionExpired);
        let a_down = p
            .changes
            .iter()
            .find(|c| c.0 == 'a' && c.1.to == BfdState::Down)
            .expect("a is told");
        assert_eq!(a_down.1.diag, Diag::NeighborSignaledDown);
        assert!(a_down.2 >= b_down.2);
    }

    #[test]
    fn admin_down_from_the_peer_takes_the_session_down() {
        let mut p = Pair::new();
        p.run(3000 * MS, true, true);
        let mut pkt = p.b.packet();
        pkt.state = BfdState::AdminDown;
        let c = p.a.on_packet(&pkt, p.now).unwrap();
        assert_eq!((c.to, c.diag), (BfdState::Down, Diag::NeighborSignaledDown));
    }

    /// A daemon restarting hitlessly says AdminDown (6.8.16); its successor starts a new
    /// session (a new discriminator), which the peer takes up within its slow start.
    #[test]
    fn a_peer_that_said_admin_down_comes_back_as_a_new_session() {
        let mut p = Pair::new();
        p.run(3000 * MS, true, true);
        let bye = p.b.admin_down();
        assert_eq!(
            (bye.state, bye.diag),
            (BfdState::AdminDown, Diag::AdminDown)
        );
        assert_eq!(bye.your_disc, 11, "addressed to the peer's session");
        let c = p.a.on_packet(&bye, p.now).unwrap();
        assert_eq!(
            (c.from, c.to, c.peer),
            (BfdState::Up, BfdState::Down, BfdState::AdminDown)
        );
        p.b = Session::new(cfg(), 33, p.now);
        p.changes.clear();
        p.run(2500 * MS, true, true);
        assert_eq!((p.a.state(), p.b.state()), (BfdState::Up, BfdState::Up));
        assert_eq!(p.a.remote_disc(), 33);
    }

    #[test]
    fn a_poll_is_answered_with_a_final_at_once() {
        let now = Instant::now();
        let mut s = Session::new(cfg(), 5, now);
        let (_, first) = s.poll_timers(now);
        assert!(first.is_some());
        let mut peer = Session::new(cfg(), 6, now).packet();
        peer.poll = true;
        s.on_packet(&peer, now + MS);
        assert_eq!(s.next_deadline(now + MS), now + MS, "the Final is due now");
        let (_, p) = s.poll_timers(now + MS);
        let p = p.expect("final sent");
        assert!(p.final_ && !p.poll);
    }

    /// A peer that leaves its slow start (RequiredMinRx 1 s -> 10 ms) gets our packets at
    /// the fast rate at once, not after the old 1 s interval (as FRR's bfdd does).
    #[test]
    fn a_faster_peer_reschedules_the_next_packet() {
        let now = Instant::now();
        let mut s = Session::new(cfg(), 7, now);
        let mut peer = Session::new(cfg(), 8, now).packet();
        peer.required_min_rx = 1_000_000;
        peer.state = BfdState::Init;
        peer.your_disc = 7;
        assert_eq!(s.on_packet(&peer, now).unwrap().to, BfdState::Up);
        s.poll_timers(now); // the Poll, at once
        assert!(
            s.next_deadline(now) >= now + 750 * MS,
            "1 s while the peer asks for it"
        );
        peer.state = BfdState::Up;
        peer.required_min_rx = 10_000;
        s.on_packet(&peer, now + MS);
        assert!(
            s.next_deadline(now + MS) <= now + 11 * MS,
            "rescheduled to the fast interval"
        );
    }

    /// RFC 5880 6.8.7: a peer in Demand mode (D set, both Up) gets no periodic packets, but
    /// its Polls are still answered; leaving Demand mode brings them back.
    #[test]
    fn a_peer_in_demand_mode_gets_only_finals() {
        let mut p = Pair::new();
        p.run(2500 * MS, true, true);
        let now = p.now;
        let mut peer = p.b.packet();
        peer.demand = true;
        // The peer keeps sending every 10 ms (its Demand asks only us to stop); counts what
        // `a` sends from ms `from` to `to`.
        let window = |a: &mut Session, peer: &ControlPacket, from: u32, to: u32| {
            (from..=to)
                .filter_map(|i| {
                    if i % 10 == 0 {
                        a.on_packet(peer, now + i * MS);
                    }
                    a.poll_timers(now + i * MS).1
                })
                .count()
        };
        assert_eq!(window(&mut p.a, &peer, 0, 100), 0, "no periodic packets");
        assert_eq!(p.a.state(), BfdState::Up);
        peer.poll = true;
        p.a.on_packet(&peer, now + 101 * MS);
        let (_, f) = p.a.poll_timers(now + 101 * MS);
        assert!(f.is_some_and(|f| f.final_), "the Poll is answered");
        peer.demand = false;
        peer.poll = false;
        let sent = window(&mut p.a, &peer, 102, 150);
        assert!(sent >= 4, "periodic again: {sent} in 48 ms");
    }

    #[test]
    fn transmission_is_jittered_between_75_and_100_percent() {
        let now = Instant::now();
        let mut s = Session::new(cfg(), 9, now);
        for _ in 0..1000 {
            let j = s.jittered(100 * MS);
            assert!(j >= 75 * MS && j <= 100 * MS, "{j:?}");
        }
    }
}
