//! How far apart the host has put two of the guest's vCPUs, read as the round trip of one
//! cache line between them.
//!
//! On the 2-core VM the benchmarks were written on, the host moves the vCPUs every few tens
//! of seconds between two placements: near (a round trip of 80-100 ns: one shared cache)
//! and far (360-400 ns: different dies). Every frame the forwarding bench's generator writes
//! on its core is read first on the router's, so the XDP ways forward ~40% less while far
//! (x0tta6bl4 2.1-2.9M against 4.1-4.5M frames/s near, one flow), the kernel way ~7% less.
//! The guest cannot choose; the bench measures it around every run and says so.

use std::{
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

/// Round trips at or above this are "far". The two placements seen sit at 80-100 ns and
/// 360-400 ns; halfway between in log terms, with room either side.
pub const FAR: Duration = Duration::from_nanos(200);

/// Bounces per reading: tens of milliseconds, short beside a run.
const BOUNCES: u64 = 100_000;

/// The median round trip of one cache line between `a` and `b`, each side a thread pinned
/// to its CPU that spins until the other has written (the calling thread stays unpinned,
/// so what it starts later keeps its affinity).
pub fn round_trip(a: usize, b: usize) -> Result<Duration> {
    let line = Arc::new(AtomicU64::new(0));
    let side = Side::new();
    let answer = {
        let (line, side) = (line.clone(), side.clone());
        thread::spawn(move || -> Result<()> {
            side.pin_and_meet(b)?;
            for i in 0..BOUNCES {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
            Ok(())
        })
    };
    let ask = thread::spawn(move || -> Result<Vec<Duration>> {
        side.pin_and_meet(a)?;
        let mut trips = Vec::with_capacity(BOUNCES as usize);
        for i in 0..BOUNCES {
            let sent = Instant::now();
            line.store(2 * i + 1, Ordering::Release);
            while line.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            trips.push(sent.elapsed());
        }
        Ok(trips)
    });
    let trips = ask
        .join()
        .map_err(|_| anyhow!("the asking thread panicked"));
    answer
        .join()
        .map_err(|_| anyhow!("the answering thread panicked"))??;
    let mut trips = trips??;
    trips.sort_unstable();
    Ok(trips[trips.len() / 2])
}

/// What the two sides share to start together, or both give up: one side spinning for an
/// answer that never comes would hang.
#[derive(Clone)]
struct Side {
    start: Arc<Barrier>,
    failed: Arc<AtomicBool>,
}

impl Side {
    fn new() -> Self {
        Side {
            start: Arc::new(Barrier::new(2)),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn pin_and_meet(&self, cpu: usize) -> Result<()> {
        let pinned = pin(cpu);
        if pinned.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        self.start.wait();
        pinned?;
        if self.failed.load(Ordering::Acquire) {
            bail!("the other side could not be pinned");
        }
        Ok(())
    }
}

fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning a thread to CPU {cpu}"))
}

/// Where a run stood, from readings just before and just after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Near,
    Far,
    /// The host moved the vCPUs during the run.
    Moved,
}

impl Placement {
    pub fn of(before: Duration, after: Duration) -> Self {
        match (before >= FAR, after >= FAR) {
            (false, false) => Placement::Near,
            (true, true) => Placement::Far,
            _ => Placement::Moved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_between_two_cores_takes_tens_to_hundreds_of_nanoseconds() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert!(cpus >= 2, "needs two CPUs");
        let rt = round_trip(0, 1).unwrap();
        // Below 10 ns nothing crossed between cores; above 100 us the sides slept.
        assert!(
            rt > Duration::from_nanos(10) && rt < Duration::from_micros(100),
            "{rt:?}"
        );
    }

    #[test]
    fn a_missing_cpu_is_an_error_not_a_hang() {
        let err = round_trip(0, nix::sched::CpuSet::count() - 1).unwrap_err();
        assert!(format!("{err:#}").contains("pinning a thread"), "{err:#}");
    }

    #[test]
    fn placement_needs_both_readings_on_one_side() {
        let (near, far) = (Duration::from_nanos(90), Duration::from_nanos(380));
        assert_eq!(Placement::of(near, near), Placement::Near);
        assert_eq!(Placement::of(far, far), Placement::Far);
        assert_eq!(Placement::of(near, far), Placement::Moved);
        assert_eq!(Placement::of(far, near), Placement::Moved);
        assert_eq!(Placement::of(FAR, FAR), Placement::Far);
    }
}
