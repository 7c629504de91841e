//! Who has been heard and what we think of them: a candidate is verified (mutual TLS)
//! no sooner than its backoff allows, becomes a neighbour when that succeeds, and is
//! dropped when its hellos stop for the hold time or it says it is going away.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::hello::Heard;

/// The first retry after a failed verification; it doubles up to `BACKOFF_MAX`.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Hold time = this many of the sender's promised intervals (as babel's and OSPF's).
const HOLD_INTERVALS: f64 = 3.5;

#[derive(Clone, Debug, PartialEq)]
enum State {
    Waiting {
        next_try: Instant,
        backoff: Duration,
    },
    Verifying {
        backoff: Duration,
    },
    Neighbour,
}

struct Entry {
    heard: Heard,
    last: Instant,
    state: State,
}

/// What changed for the loop to act on.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Verified: a neighbour now, as last heard.
    Up(Heard),
    /// A neighbour no longer (hold time, going away, or it moved).
    Down(String),
}

#[derive(Default)]
pub struct Candidates {
    entries: HashMap<String, Entry>,
}

impl Candidates {
    /// A hello that passed its checks. A neighbour that now says something else (another
    /// interface, other addresses) is dropped and verified again.
    pub fn on_hello(&mut self, heard: Heard, now: Instant) -> Option<Change> {
        let router = heard.router.clone();
        if heard.interval.is_zero() {
            let gone = self.entries.remove(&router)?;
            return (gone.state == State::Neighbour).then_some(Change::Down(router));
        }
        match self.entries.get_mut(&router) {
            Some(e) if same_place(&e.heard, &heard) => {
                e.heard = heard;
                e.last = now;
                None
            }
            Some(e) if e.heard.ifindex != heard.ifindex && e.state != State::Neighbour => {
                // Heard on a second link while not yet verified: keep the first.
                None
            }
            Some(e) => {
                let was = std::mem::replace(&mut e.state, waiting(now, BACKOFF_MIN));
                (e.heard, e.last) = (heard, now);
                (was == State::Neighbour).then_some(Change::Down(router))
            }
            None => {
                let state = waiting(now, BACKOFF_MIN);
                self.entries.insert(
                    router,
                    Entry {
                        heard,
                        last: now,
                        state,
                    },
                );
                None
            }
        }
    }

    /// The candidates whose turn to be verified has come (now marked as being verified).
    pub fn due(&mut self, now: Instant) -> Vec<Heard> {
        let mut due = Vec::new();
        for e in self.entries.values_mut() {
            if let State::Waiting { next_try, backoff } = e.state
                && next_try <= now
            {
                e.state = State::Verifying { backoff };
                due.push(e.heard.clone());
            }
        }
        due
    }

    /// A verification's outcome; a failure waits out the backoff, which then doubles.
    pub fn verified(&mut self, router: &str, ok: bool, now: Instant) -> Option<Change> {
        let e = self.entries.get_mut(router)?;
        let State::Verifying { backoff } = e.state else {
            return None;
        };
        if ok {
            e.state = State::Neighbour;
            return Some(Change::Up(e.heard.clone()));
        }
        e.state = State::Waiting {
            next_try: now + backoff,
            backoff: (backoff * 2).min(BACKOFF_MAX),
        };
        None
    }

    /// Drops everyone silent for their hold time; the neighbours among them come back.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let mut gone = Vec::new();
        self.entries.retain(|router, e| {
            let alive = now.duration_since(e.last) < e.heard.interval.mul_f64(HOLD_INTERVALS);
            if !alive && e.state == State::Neighbour {
                gone.push(Change::Down(router.clone()));
            }
            alive
        });
        gone
    }

    /// When a candidate's next verification may start (for the status and tests).
    pub fn next_try(&self, router: &str) -> Option<Instant> {
        match self.entries.get(router)?.state {
            State::Waiting { next_try, .. } => Some(next_try),
            _ => None,
        }
    }
}

fn waiting(now: Instant, backoff: Duration) -> State {
    State::Waiting {
        next_try: now,
        backoff,
    }
}

fn same_place(a: &Heard, b: &Heard) -> bool {
    a.ifindex == b.ifindex && a.addrs == b.addrs && a.brain == b.brain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(router: &str, interval_ms: u64) -> Heard {
        Heard {
            router: router.into(),
            interface: "eth1".into(),
            ifindex: 3,
            brain: "198.18.12.2:7444".parse().unwrap(),
            addrs: vec!["198.18.12.2".parse().unwrap()],
            interval: Duration::from_millis(interval_ms),
            sequence: 1,
        }
    }

    #[test]
    fn a_verified_candidate_is_a_neighbour_until_its_hold_time() {
        let (mut c, t0) = (Candidates::default(), Instant::now());
        assert_eq!(c.on_hello(heard("r2", 1000), t0), None);
        assert_eq!(c.due(t0).len(), 1);
        assert!(c.due(t0).is_empty(), "verified once at a time");
        assert_eq!(
            c.verified("r2", true, t0),
            Some(Change::Up(heard("r2", 1000)))
        );
        assert!(c.expire(t0 + Duration::from_millis(3400)).is_empty());
        assert_eq!(
            c.on_hello(heard("r2", 1000), t0 + Duration::from_secs(3)),
            None
        );
        assert!(c.expire(t0 + Duration::from_millis(6400)).is_empty());
        let at = t0 + Duration::from_millis(6500);
        assert_eq!(c.expire(at), vec![Change::Down("r2".into())]);
    }

    #[test]
    fn failures_back_off_doubling_to_a_minute() {
        let (mut c, mut now) = (Candidates::default(), Instant::now());
        c.on_hello(heard("liar", 1000), now);
        let mut waits = Vec::new();
        for _ in 0..9 {
            assert_eq!(c.due(now).len(), 1);
            assert_eq!(c.verified("liar", false, now), None);
            let next = c.next_try("liar").unwrap();
            waits.push((next - now).as_secs());
            assert!(c.due(next - Duration::from_millis(1)).is_empty());
            now = next;
            c.on_hello(heard("liar", 1000), now);
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn going_away_or_moving_drops_a_neighbour_at_once() {
        let (mut c, t0) = (Candidates::default(), Instant::now());
        c.on_hello(heard("r2", 1000), t0);
        c.due(t0);
        c.verified("r2", true, t0);
        let moved = Heard {
            addrs: vec!["198.18.12.9".parse().unwrap()],
            ..heard("r2", 1000)
        };
        assert_eq!(c.on_hello(moved, t0), Some(Change::Down("r2".into())));
        assert_eq!(c.due(t0).len(), 1, "verified again");
        c.verified("r2", true, t0);
        assert_eq!(
            c.on_hello(heard("r2", 0), t0),
            Some(Change::Down("r2".into()))
        );
        assert!(c.next_try("r2").is_none() && c.due(t0).is_empty());
        // A candidate never verified goes quietly.
        c.on_hello(heard("r3", 1000), t0);
        assert_eq!(c.on_hello(heard("r3", 0), t0), None);
    }
}
