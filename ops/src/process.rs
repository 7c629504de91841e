//! The standard `process_*` metrics (as the Go and Python clients export them), read from
//! /proc at scrape time: what a router's operator watches for leaks and CPU.

use std::fmt;

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Unit};

use crate::Scrape;

#[derive(Debug)]
pub struct ProcessCollector;

/// From /proc/self/stat: (user + system CPU seconds, start time in seconds since boot,
/// virtual memory bytes, resident pages).
fn stat() -> Option<(f64, f64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = clock_ticks();
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let start = f.get(19)?.parse::<f64>().ok()? / ticks;
    Some((
        cpu,
        start,
        f.get(20)?.parse().ok()?,
        f.get(21)?.parse().ok()?,
    ))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

fn page_size() -> u64 {
    // SAFETY: as above.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(1) as u64
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut s = Scrape::new(encoder);
        let Some((cpu, start, virt, rss_pages)) = stat() else {
            return Ok(());
        };
        let cpu_help = "User and system CPU time spent";
        s.counter_f64("process_cpu", cpu_help, Some(Unit::Seconds), cpu)?;
        let rss = (rss_pages * page_size()) as f64;
        s.gauge(
            "process_resident_memory",
            "Resident memory size",
            Some(Unit::Bytes),
            rss,
        )?;
        s.gauge(
            "process_virtual_memory",
            "Virtual memory size",
            Some(Unit::Bytes),
            virt as f64,
        )?;
        if let Some(boot) = boot_time() {
            let help = "Start time of the process since the Unix epoch";
            s.gauge(
                "process_start_time",
                help,
                Some(Unit::Seconds),
                boot + start,
            )?;
        }
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        s.gauge(
            "process_open_fds",
            "Open file descriptors",
            None,
            fds as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_a_start_time() {
        let (cpu, start, virt, rss) = stat().expect("/proc/self/stat");
        assert!(cpu >= 0.0 && start > 0.0);
        assert!(
            virt > rss * page_size(),
            "virtual {virt} vs resident pages {rss}"
        );
        assert!(boot_time().unwrap() > 1.5e9);
    }
}
