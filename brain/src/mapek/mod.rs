//! The MAPE-K loop: monitor (measured link costs), analyse (detectors behind one trait),
//! plan and execute (strategies, a rate limit and a circuit breaker), knowledge (incidents
//! in redb); `link_health` runs it over the links, `guard` over misbehaving neighbours,
//! `remedy` over the root causes that analysis finds.

pub mod analyze;
pub mod execute;
pub mod guard;
pub mod knowledge;
pub mod link_health;
pub mod monitor;
pub mod remedy;
