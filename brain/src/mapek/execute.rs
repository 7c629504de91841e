//! MAPE-K, execute: guards that keep the brain from flapping the network. A rate limit on
//! actions, and a circuit breaker that opens after repeated unconfirmed actions (closed ->
//! open -> half-open after a cool-down -> closed on a confirmed one). An action whose
//! effect is not confirmed is rolled back by the caller with what `Executor` kept.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breaker {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    RateLimited {
        retry_in: Duration,
    },
    BreakerOpen {
        retry_in: Duration,
    },
    /// Half-open: one trial action is already out.
    TrialPending,
}

pub struct Executor<A> {
    /// At most `burst` actions, refilled at one per `refill`.
    tokens: f64,
    burst: f64,
    refill: Duration,
    last: Instant,
    breaker: Breaker,
    failures: u32,
    /// Consecutive unconfirmed actions that open the breaker.
    trip_after: u32,
    cool_down: Duration,
    /// The action awaiting confirmation, with what undoes it.
    pending: Option<(A, A)>,
}

impl<A: Clone> Executor<A> {
    pub fn new(
        burst: u32,
        refill: Duration,
        trip_after: u32,
        cool_down: Duration,
        now: Instant,
    ) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            refill,
            last: now,
            breaker: Breaker::Closed,
            failures: 0,
            trip_after,
            cool_down,
            pending: None,
        }
    }

    pub fn breaker(&self) -> Breaker {
        self.breaker
    }

    /// May an action go now? On Ok the caller applies `action` and later calls `confirm`.
    pub fn begin(&mut self, action: A, undo: A, now: Instant) -> Result<(), Refusal> {
        if let Breaker::Open { until } = self.breaker {
            if now < until {
                return Err(Refusal::BreakerOpen {
                    retry_in: until - now,
                });
            }
            self.breaker = Breaker::HalfOpen;
        }
        if self.breaker == Breaker::HalfOpen && self.pending.is_some() {
            return Err(Refusal::TrialPending);
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed / self.refill.as_secs_f64()).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            let retry_in = self.refill.mul_f64(1.0 - self.tokens);
            return Err(Refusal::RateLimited { retry_in });
        }
        self.tokens -= 1.0;
        self.pending = Some((action, undo));
        Ok(())
    }

    /// The pending action's effect was seen (`ok`) or not. Returns the undo to apply when
    /// it was not.
    pub fn confirm(&mut self, ok: bool, now: Instant) -> Option<A> {
        let (_, undo) = self.pending.take()?;
        if ok {
            self.failures = 0;
            self.breaker = Breaker::Closed;
            return None;
        }
        self.failures += 1;
        if self.breaker == Breaker::HalfOpen || self.failures >= self.trip_after {
            self.breaker = Breaker::Open {
                until: now + self.cool_down,
            };
        }
        Some(undo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_then_breaker_cycle() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut e: Executor<&str> = Executor::new(2, 10 * s, 2, 30 * s, t0);
        e.begin("drain r2-r4", "undrain r2-r4", t0).unwrap();
        assert_eq!(e.confirm(true, t0), None);
        e.begin("a", "undo a", t0).unwrap();
        assert_eq!(e.confirm(true, t0), None);
        assert!(
            matches!(e.begin("b", "undo b", t0), Err(Refusal::RateLimited { .. })),
            "burst of 2 used"
        );

        // Two unconfirmed actions trip the breaker; each hands back its undo.
        let t1 = t0 + 20 * s;
        e.begin("c", "undo c", t1).unwrap();
        assert_eq!(e.confirm(false, t1), Some("undo c"));
        e.begin("d", "undo d", t1).unwrap();
        assert_eq!(e.confirm(false, t1), Some("undo d"));
        assert!(matches!(e.breaker(), Breaker::Open { .. }));
        assert!(matches!(
            e.begin("e", "undo e", t1 + s),
            Err(Refusal::BreakerOpen { .. })
        ));

        // After the cool-down, one trial; a failed trial opens it again, a good one closes it.
        let t2 = t1 + 31 * s;
        e.begin("f", "undo f", t2).unwrap();
        assert_eq!(e.breaker(), Breaker::HalfOpen);
        assert_eq!(e.begin("g", "undo g", t2), Err(Refusal::TrialPending));
        assert_eq!(e.confirm(false, t2), Some("undo f"));
        assert!(matches!(e.breaker(), Breaker::Open { .. }));
        let t3 = t2 + 31 * s;
        e.begin("h", "undo h", t3).unwrap();
        assert_eq!(e.confirm(true, t3), None);
        assert_eq!(e.breaker(), Breaker::Closed);
    }
}
