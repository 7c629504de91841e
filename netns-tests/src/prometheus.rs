//! A real Prometheus (Debian's `prometheus` package) in a router's namespace, scraping the
//! router's dataplane and brain every second, queried through its HTTP API as an
//! operator's dashboards and alerts would.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{
    Lab,
    lab::{BRAIN_METRICS, DATAPLANE_METRICS, stop_pid_file},
    netns::exec_ok,
};

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
const LISTEN: &str = "127.0.0.1:9090";

/// Stopped when dropped.
pub struct Prometheus<'a> {
    lab: &'a Lab,
    router: String,
    stem: String,
}

impl<'a> Prometheus<'a> {
    /// Starts it in `router`'s namespace and waits until it is ready.
    pub fn start(lab: &'a Lab, router: &str) -> Result<Self> {
        if !std::path::Path::new(PROMETHEUS_BIN).exists() {
            bail!(
                "{PROMETHEUS_BIN} missing: install Debian's prometheus package (scripts/setup.sh does)"
            );
        }
        let stem = format!("prometheus-{router}");
        let dir = lab.dir.join(&stem);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config())?;
        let args: Vec<std::ffi::OsString> = vec![
            format!("--config.file={}", config.display()).into(),
            format!("--storage.tsdb.path={}", dir.join("data").display()).into(),
            format!("--web.listen-address={LISTEN}").into(),
            "--log.level=warn".into(),
        ];
        lab.spawn_daemon(router, &stem, &PathBuf::from(PROMETHEUS_BIN), &args)?;
        let prometheus = Prometheus {
            lab,
            router: router.to_string(),
            stem,
        };
        prometheus.wait_ready(Duration::from_secs(20))?;
        Ok(prometheus)
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<String> {
        let mut args = vec!["curl", "-sS", "--max-time", "5", "--get"];
        let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &encoded {
            args.extend(["--data-urlencode", e.as_str()]);
        }
        let url = format!("http://{LISTEN}{path}");
        args.push(&url);
        exec_ok(&self.lab.ns(&self.router), &args)
    }

    fn wait_ready(&self, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.get("/-/ready", &[]).is_ok_and(|t| t.contains("Ready")) {
                return Ok(());
            }
            if start.elapsed() > within {
                bail!("Prometheus not ready after {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.lab.file(&self.stem, "log")).unwrap_or_default()
    }

    /// An instant query's result vector; a query Prometheus refuses is an error with its
    /// message.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let text = self.get("/api/v1/query", &[("query", expr)])?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
        if v["status"] != "success" {
            bail!("{expr}: {}", v["error"]);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first sample's value, if any.
    pub fn value(&self, expr: &str) -> Result<Option<f64>> {
        Ok(self
            .query(expr)?
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse().ok()))
    }

    /// Waits until `expr` has a value that `ok` accepts; returns it.
    pub fn wait_for(&self, expr: &str, ok: impl Fn(f64) -> bool, within: Duration) -> Result<f64> {
        let start = Instant::now();
        loop {
            let v = self.value(expr)?;
            if let Some(v) = v.filter(|v| ok(*v)) {
                return Ok(v);
            }
            if start.elapsed() > within {
                bail!("{expr} is {v:?} after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every metric name Prometheus has stored.
    pub fn names(&self) -> Result<Vec<String>> {
        let text = self.get("/api/v1/label/__name__/values", &[])?;
        let v: Value = serde_json::from_str(&text)?;
        Ok(v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = stop_pid_file(&self.lab.file(&self.stem, "pid"), Signal::SIGTERM);
    }
}

/// Scrapes the router's two daemons every second (jobs "dataplane" and "brain").
fn scrape_config() -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: dataplane\n  static_configs:\n  - targets: ['{DATAPLANE_METRICS}']\n\
         - job_name: brain\n  static_configs:\n  - targets: ['{BRAIN_METRICS}']\n"
    )
}

/// What an endpoint serves in the classic text format (as `curl` gets it).
pub fn scrape(lab: &Lab, router: &str, endpoint: &str) -> Result<String> {
    exec_ok(
        &lab.ns(router),
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{endpoint}/metrics"),
        ],
    )
}
