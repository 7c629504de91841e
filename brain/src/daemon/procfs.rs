//! What /proc says of the router's CPU: the machine's busy and softirq time (/proc/stat),
//! and how long the brain's own threads waited for a CPU (/proc/self/task/*/schedstat).
//! Fractions over the time between two readings; an unreadable file reads as zero.

#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    total: u64,
    busy: u64,
    softirq: u64,
    run_delay_ns: u64,
}

#[derive(Default)]
pub struct Cpu {
    last: Option<Reading>,
}

/// Since the previous call: (busy fraction, softirq fraction, seconds waited for a CPU).
impl Cpu {
    pub fn sample(&mut self) -> (f64, f64, f64) {
        let now = read();
        let out = match self.last {
            Some(p) if now.total > p.total => {
                let total = (now.total - p.total) as f64;
                (
                    now.busy.saturating_sub(p.busy) as f64 / total,
                    now.softirq.saturating_sub(p.softirq) as f64 / total,
                    now.run_delay_ns.saturating_sub(p.run_delay_ns) as f64 / 1e9,
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
        self.last = Some(now);
        out
    }
}

fn read() -> Reading {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut r = parse_stat(&stat);
    r.run_delay_ns = run_delay_ns();
    r
}

/// The first line: cpu user nice system idle iowait irq softirq steal ...
fn parse_stat(text: &str) -> Reading {
    let fields: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 8 {
        return Reading::default();
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Reading {
        total,
        busy: total - idle,
        softirq: fields[6],
        run_delay_ns: 0,
    }
}

/// Nanoseconds every thread of ours has spent runnable but not running (second field).
fn run_delay_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_and_softirq_time() {
        let r = parse_stat("cpu  100 0 50 800 50 0 25 0 0 0\ncpu0 1 2 3\n");
        assert_eq!((r.total, r.busy, r.softirq), (1025, 175, 25));
        assert_eq!(parse_stat("garbage").total, 0);
        let mut cpu = Cpu::default();
        cpu.sample();
        let (busy, softirq, _) = cpu.sample();
        assert!((0.0..=1.0).contains(&busy) && (0.0..=1.0).contains(&softirq));
    }
}
