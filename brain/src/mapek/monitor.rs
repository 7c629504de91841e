//! Monitor: what the brain measures about the link to each neighbour, kept as bounded time
//! series, and the cost it advertises for the link from them.
//!
//! - latency: round trips of an empty Flood to the neighbour's brain, which crosses that
//!   link (the minimum over the window: queueing and processing only ever add);
//! - loss: the link's BFD packets received against what the peer's interval promises;
//! - utilisation: bytes the dataplane sent out of the interface against its capacity.
//!
//! The cost is the configured one scaled by ETX (De Couto et al. 2003: expected
//! transmissions, 1 / (1 - loss)^2 with the loss taken as the same both ways) and by the
//! queueing factor 1 / (1 - utilisation), plus a delay penalty shaped like babeld's RTT
//! extension (Jonglez, Boutier, Chroboczek 2014): nothing up to 10 ms of round trip (what a
//! busy router's own processing adds), rising linearly to 1.5 times the default link cost
//! at 120 ms.
//! Load-dependent costs oscillate (traffic leaves a loaded link, which then looks idle and
//! draws it back: the ARPANET's 1979 delay metric did), so, as its 1989 revision (HN-SPF)
//! did, the load factor is capped (at 3x), the utilisation is a mean over the window, and
//! the cost is advertised again only when it moves by a quarter or more: noise never floods
//! the mesh with records or moves traffic, and real load moves it at most once a window.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

/// Samples older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(30);
/// At most this many samples per series (a sample a second fills the window).
const CAPACITY: usize = 64;
/// Loss below this is measurement noise: BFD's jitter makes the peer's rate uncertain, and
/// a busy peer sends late (2% was measured at no loss in the six-router lab).
const LOSS_FLOOR: f64 = 0.05;
/// The delay penalty: round trips (ms) where it starts and where it is full, and how much.
const RTT_MIN_MS: f64 = 10.0;
const RTT_MAX_MS: f64 = 120.0;
const RTT_PENALTY: f64 = 15.0;
/// The mean of RFC 5880's jitter (75 to 100% of the interval).
pub const JITTER_MEAN: f64 = 0.875;
/// Re-advertise when the cost moves by this fraction of what is advertised.
const HYSTERESIS: f64 = 0.25;
/// A series says nothing until it has this many samples (a brain that just started, or
/// a BFD session that just came up, measures its own start).
const MIN_SAMPLES: usize = 5;
/// The most that load can multiply a cost by.
const LOAD_CAP: f64 = 3.0;

/// A bounded series of (when, value).
#[derive(Debug, Default)]
pub struct Series(VecDeque<(Instant, f64)>);

impl Series {
    pub fn push(&mut self, at: Instant, v: f64) {
        if self.0.len() == CAPACITY {
            self.0.pop_front();
        }
        self.0.push_back((at, v));
    }

    fn trim(&mut self, now: Instant) {
        while self
            .0
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.0.pop_front();
        }
    }

    /// The minimum, once there are enough samples.
    pub fn min(&self) -> Option<f64> {
        (self.0.len() >= MIN_SAMPLES)
            .then(|| self.0.iter().map(|x| x.1).fold(f64::INFINITY, f64::min))
    }

    /// The mean, once there are enough samples.
    pub fn mean(&self) -> Option<f64> {
        (self.0.len() >= MIN_SAMPLES)
            .then(|| self.0.iter().map(|x| x.1).sum::<f64>() / self.0.len() as f64)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What is known about one link.
#[derive(Debug, Default)]
pub struct Link {
    /// Round trips, ms.
    pub rtt_ms: Series,
    /// Fraction lost, per BFD sample.
    pub loss: Series,
    /// Fraction of capacity sent, per stats sample.
    pub utilisation: Series,
    bfd_last: Option<(Instant, u64, Duration)>,
    tx_last: Option<(Instant, u64)>,
    advertised: Option<u32>,
}

/// The measured quality of a link, as shown to operators.
#[derive(Clone, Debug, PartialEq)]
pub struct Quality {
    pub latency_ms: Option<f64>,
    pub loss: Option<f64>,
    pub utilisation: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Monitor {
    links: HashMap<String, Link>,
}

impl Monitor {
    pub fn link(&self, neighbor: &str) -> Option<&Link> {
        self.links.get(neighbor)
    }

    fn entry(&mut self, neighbor: &str, now: Instant) -> &mut Link {
        let l = self.links.entry(neighbor.to_string()).or_default();
        for s in [&mut l.rtt_ms, &mut l.loss, &mut l.utilisation] {
            s.trim(now);
        }
        l
    }

    /// A round trip to the neighbour's brain over the link.
    pub fn on_rtt(&mut self, neighbor: &str, rtt: Duration, now: Instant) {
        self.entry(neighbor, now)
            .rtt_ms
            .push(now, rtt.as_secs_f64() * 1e3);
    }

    /// The BFD session on the link has received `rx_packets` in all, the peer sending
    /// every `rx_interval`. A counter that went back (a new session) starts over, and so
    /// does a session that is not up (a link that is down is not lossy: its adjacency is
    /// gone, which the mesh already knows, and it must not be penalised once back) or whose
    /// interval changed (it left BFD's 1 s slow start: the packets counted came slower).
    pub fn on_bfd(
        &mut self,
        neighbor: &str,
        up: bool,
        rx_packets: u64,
        rx_interval: Duration,
        now: Instant,
    ) {
        let l = self.entry(neighbor, now);
        if !up {
            l.bfd_last = None;
            return;
        }
        if let Some((then, before, interval)) = l.bfd_last
            && rx_packets >= before
            && interval == rx_interval
            && !rx_interval.is_zero()
        {
            let elapsed = now.duration_since(then).as_secs_f64();
            let expected = elapsed / (rx_interval.as_secs_f64() * JITTER_MEAN);
            if expected >= 10.0 {
                let got = (rx_packets - before) as f64;
                l.loss.push(now, (1.0 - got / expected).clamp(0.0, 1.0));
            } else {
                return; // too soon to say: keep the older reference point
            }
        }
        l.bfd_last = Some((now, rx_packets, rx_interval));
    }

    /// The dataplane has sent `tx_bytes` in all out of the interface to the neighbour.
    pub fn on_tx_bytes(&mut self, neighbor: &str, tx_bytes: u64, capacity_bps: u64, now: Instant) {
        let l = self.entry(neighbor, now);
        if let Some((then, before)) = l.tx_last
            && tx_bytes >= before
            && capacity_bps > 0
        {
            let secs = now.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                let bps = (tx_bytes - before) as f64 * 8.0 / secs;
                l.utilisation
                    .push(now, (bps / capacity_bps as f64).clamp(0.0, 1.0));
            }
        }
        l.tx_last = Some((now, tx_bytes));
    }

    pub fn quality(&self, neighbor: &str) -> Quality {
        let l = self.links.get(neighbor);
        Quality {
            latency_ms: l.and_then(|l| l.rtt_ms.min()),
            loss: l.and_then(|l| l.loss.mean()),
            utilisation: l.and_then(|l| l.utilisation.mean()),
        }
    }

    /// The cost the measurements call for, from the configured `base`.
    pub fn measured_cost(&self, neighbor: &str, base: u32) -> u32 {
        let q = self.quality(neighbor);
        let loss = q.loss.filter(|l| *l >= LOSS_FLOOR).unwrap_or(0.0).min(0.9);
        let etx = 1.0 / ((1.0 - loss) * (1.0 - loss));
        let queueing = (1.0 / (1.0 - q.utilisation.unwrap_or(0.0).min(0.99))).min(LOAD_CAP);
        let rtt = q.latency_ms.unwrap_or(0.0);
        let delay = RTT_PENALTY * ((rtt - RTT_MIN_MS) / (RTT_MAX_MS - RTT_MIN_MS)).clamp(0.0, 1.0);
        let cost = f64::from(base) * etx * queueing + delay;
        cost.round().clamp(1.0, f64::from(u32::MAX / 4)) as u32
    }

    /// The cost to advertise: the last advertised one unless the measured one moved by
    /// the hysteresis, or is back at the configured one (a clean link returns to it).
    pub fn cost(&mut self, neighbor: &str, base: u32) -> u32 {
        let measured = self.measured_cost(neighbor, base);
        let l = self.links.entry(neighbor.to_string()).or_default();
        let keep = measured != base
            && l.advertised.is_some_and(|a| {
                (f64::from(measured) - f64::from(a)).abs() < HYSTERESIS * f64::from(a)
            });
        if !keep {
            l.advertised = Some(measured);
        }
        l.advertised.expect("set above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn an_idle_clean_near_link_keeps_its_configured_cost() {
        let t0 = Instant::now();
        let mut m = Monitor::default();
        for s in 0..10u64 {
            let now = at(t0, s * 1000);
            m.on_rtt("r2", Duration::from_micros(300 + s * 50), now);
            // 10 ms BFD with the peer's jitter: about 114 packets a second, none lost
            m.on_bfd("r2", true, s * 114, Duration::from_millis(10), now);
            m.on_tx_bytes("r2", s * 1000, 1_000_000_000, now);
        }
        let q = m.quality("r2");
        assert!(q.loss.unwrap() < 0.01, "{q:?}");
        assert!(
            (q.latency_ms.unwrap() - 0.3).abs() < 1e-9,
            "the minimum: {q:?}"
        );
        assert_eq!(m.cost("r2", 10), 10);
    }

    #[test]
    fn loss_delay_and_load_raise_the_cost() {
        let t0 = Instant::now();
        let mut m = Monitor::default();
        for s in 0..10u64 {
            let now = at(t0, s * 1000);
            m.on_rtt("r3", Duration::from_millis(40), now);
            // 30% of ~114 a second lost
            m.on_bfd("r3", true, s * 80, Duration::from_millis(10), now);
            // 500 Mbit/s of 1 Gbit/s
            m.on_tx_bytes("r3", s * 62_500_000, 1_000_000_000, now);
        }
        let q = m.quality("r3");
        assert!((q.loss.unwrap() - 0.3).abs() < 0.02, "{q:?}");
        assert!((q.utilisation.unwrap() - 0.5).abs() < 1e-6, "{q:?}");
        // 10 x 1/(0.7^2) x 1/(1-0.5) + 15 x (40-10)/(120-10) = 40.8 + 4.1
        let c = m.cost("r3", 10);
        assert!((44..=46).contains(&c), "{c}");
    }

    #[test]
    fn hysteresis_keeps_the_cost_through_noise_and_follows_real_change() {
        let t0 = Instant::now();
        let mut m = Monitor::default();
        for i in 0..4 {
            m.on_rtt("r2", Duration::from_millis(150), at(t0, i * 1000));
        }
        assert_eq!(m.cost("r2", 10), 10, "four samples say nothing yet");
        m.on_rtt("r2", Duration::from_millis(150), at(t0, 4000));
        assert_eq!(m.cost("r2", 10), 25, "the full delay penalty");
        // a little faster: measured 22, advertised still 25
        m.on_rtt("r2", Duration::from_millis(100), at(t0, 5000));
        assert_eq!(m.measured_cost("r2", 10), 22);
        assert_eq!(m.cost("r2", 10), 25);
        // the samples age out of the window, then a near link again: back to the base
        for i in 0..5 {
            m.on_rtt("r2", Duration::from_millis(12), at(t0, 40_000 + i * 1000));
        }
        assert_eq!(m.measured_cost("r2", 10), 10);
        assert_eq!(m.cost("r2", 10), 10);
    }

    #[test]
    fn a_restarted_counter_or_a_short_gap_measures_nothing() {
        let t0 = Instant::now();
        let mut m = Monitor::default();
        let ten = Duration::from_millis(10);
        m.on_bfd("r2", true, 5000, ten, t0);
        m.on_bfd("r2", true, 10, ten, at(t0, 1000)); // session restarted
        m.on_bfd("r2", true, 11, ten, at(t0, 1010)); // too soon
        assert!(m.link("r2").unwrap().loss.is_empty());
        m.on_bfd("r2", true, 124, ten, at(t0, 2000));
        assert_eq!(m.link("r2").unwrap().loss.len(), 1);
        // down for a while, then up: the time down is not counted as loss
        m.on_bfd("r2", false, 130, ten, at(t0, 3000));
        m.on_bfd("r2", true, 130, ten, at(t0, 9000));
        for i in 1..=4 {
            m.on_bfd("r2", true, 130 + i * 114, ten, at(t0, 9000 + i * 1000));
        }
        assert_eq!(m.link("r2").unwrap().loss.len(), 5);
        assert!(m.quality("r2").loss.unwrap() < LOSS_FLOOR);
        // out of a 1 s slow start: 1 packet in the last second is not 99% loss
        m.on_bfd("r3", true, 5, Duration::from_secs(1), at(t0, 0));
        m.on_bfd("r3", true, 6, ten, at(t0, 1000));
        for i in 1..=5 {
            m.on_bfd("r3", true, 6 + i * 114, ten, at(t0, 1000 + i * 1000));
        }
        assert!(
            m.quality("r3").loss.unwrap() < LOSS_FLOOR,
            "{:?}",
            m.quality("r3")
        );
        m.on_tx_bytes("r2", 1 << 40, 1_000_000_000, t0);
        m.on_tx_bytes("r2", 0, 1_000_000_000, at(t0, 1000)); // counters reset
        assert!(m.link("r2").unwrap().utilisation.is_empty());
    }

    #[test]
    fn series_are_bounded() {
        let t0 = Instant::now();
        let mut m = Monitor::default();
        for i in 0..1000 {
            m.on_rtt("r2", Duration::from_millis(1), at(t0, i));
        }
        assert_eq!(m.link("r2").unwrap().rtt_ms.len(), CAPACITY);
    }
}
