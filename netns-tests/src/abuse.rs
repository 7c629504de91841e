//! HTTP/2 and TLS abuse of a router's API while a healthy client keeps calling it: the
//! attacks are tests/python/h2_abuse.py (Python's h2, written frame by frame where h2
//! would refuse), the healthy client is x0ctl's over the Unix socket. Used by the
//! api_abuse lab test (what the server did) and `x0-bench api-abuse` (the figures).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use x0_proto::dataplane::v1 as pb;

use crate::lab::{API_ADDR, Lab};

/// Every attack the script knows.
pub const ATTACKS: [&str; 5] = [
    "rapid-reset",
    "continuation",
    "streams",
    "slow-reader",
    "tls-stall",
];

/// What one attack did, and how the healthy client fared meanwhile.
#[derive(Debug)]
pub struct Report {
    /// The script's JSON summary (what the server did to the attacker).
    pub attack: Value,
    pub healthy: Calls,
    /// The daemon's VmRSS before and after the attack (kB).
    pub rss_kb: (u64, u64),
}

/// A healthy client's calls: how many succeeded and failed, latencies sorted (us).
#[derive(Debug, Default)]
pub struct Calls {
    pub ok: usize,
    pub failed: Vec<String>,
    pub latencies_us: Vec<u64>,
}

impl Calls {
    pub fn quantile_us(&self, q: f64) -> u64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0;
        }
        self.latencies_us[((n - 1) as f64 * q).round() as usize]
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/h2_abuse.py")
}

/// Calls GetInfo back to back over `router`'s Unix socket until `stop`.
fn healthy_client(socket: PathBuf, stop: Arc<AtomicBool>) -> Result<Calls> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let target = x0ctl::client::Target {
            addr: format!("unix://{}", socket.display()),
            svid: None,
            pq: x0_identity::PqMode::Required,
            server_id: None,
        };
        let mut dp = x0ctl::client::connect(&target).await?.dataplane(4 << 20);
        let mut calls = Calls::default();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let call = dp.get_info(pb::GetInfoRequest {});
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(_)) => calls.ok += 1,
                Ok(Err(e)) => calls.failed.push(e.to_string()),
                Err(_) => calls.failed.push("no answer within 5 s".into()),
            }
            calls
                .latencies_us
                .push(started.elapsed().as_micros() as u64);
            // About 1,000 calls a second: a busy orchestrator, not a flood of our own.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        calls.latencies_us.sort_unstable();
        Ok(calls)
    })
}

/// The healthy client alone for `seconds`: the baseline to compare with.
pub fn baseline(lab: &Lab, router: &str, seconds: f64) -> Result<Calls> {
    let stop = Arc::new(AtomicBool::new(false));
    let socket = lab.api_socket(router);
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || healthy_client(socket, stop))
    };
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    client.join().expect("healthy client thread")
}

/// Runs `attack` against `router` for `seconds` while the healthy client calls.
pub fn run(lab: &Lab, router: &str, attack: &str, seconds: f64) -> Result<Report> {
    if !ATTACKS.contains(&attack) {
        bail!("{attack}: not one of {ATTACKS:?}");
    }
    let pid = lab.pid(router).context("the dataplane is not running")?;
    let rss_before = rss_kb(pid.as_raw())?;
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (socket, stop) = (lab.api_socket(router), stop.clone());
        std::thread::spawn(move || healthy_client(socket, stop))
    };
    let out = attack_command(lab, router, attack, seconds)
        .output()
        .context("running h2_abuse.py (python3-h2 is installed by scripts/setup.sh)")?;
    let rss_after = rss_kb(pid.as_raw())?;
    stop.store(true, Ordering::Relaxed);
    let healthy = client.join().expect("healthy client thread")?;
    if !out.status.success() {
        bail!(
            "h2_abuse.py {attack}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let attack: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("h2_abuse.py's output: {:?}", out.stdout))?;
    Ok(Report {
        attack,
        healthy,
        rss_kb: (rss_before, rss_after),
    })
}

/// The script against the Unix socket, or (tls-stall) the TLS listener in the namespace.
fn attack_command(lab: &Lab, router: &str, attack: &str, seconds: f64) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns(router), "/usr/bin/python3"])
        .arg(script())
        .arg(attack);
    match attack {
        "tls-stall" => cmd.arg(API_ADDR),
        _ => cmd.arg(lab.api_socket(router)),
    };
    cmd.arg(seconds.to_string());
    cmd
}

fn rss_kb(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS missing")
}
