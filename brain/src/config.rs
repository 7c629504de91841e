//! `x0-brain run --config brain.toml`: the router it serves, its dataplane, its
//! neighbours' brains, its SVID.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use x0_identity::FileSource;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Analyse and plan, log what would change, change nothing (the default).
    #[default]
    Observe,
    Enforce,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrainConfig {
    /// This router's name in the mesh (its brain's SVID is spiffe://<td>/brain/<router>).
    pub router: String,
    #[serde(default)]
    pub mode: Mode,
    /// Paths per destination.
    #[serde(default = "default_k")]
    pub k: usize,
    /// The local dataplane's API: unix:///... or https://...
    pub dataplane: String,
    /// Where neighbouring brains reach this one (mutual TLS).
    pub listen: std::net::SocketAddr,
    /// How often adjacencies are checked and the plan re-examined.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Lifetime of this brain's records.
    #[serde(default = "default_lifetime")]
    pub lifetime_s: u32,
    /// Where the record sequence number is kept.
    pub state_dir: PathBuf,
    /// Prefixes reached through this router (its hosts).
    #[serde(default)]
    pub prefixes: Vec<IpNet>,
    pub tls: FileSource,
    /// How often telemetry is sampled and exchanged with the neighbours' brains.
    #[serde(default = "default_telemetry_interval")]
    pub telemetry_interval_ms: u64,
    /// The anomaly model (`x0-brain train`): unset, the one shipped inside the brain;
    /// `"none"`, no scores.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Each interval's telemetry as JSON lines (for datasets), if set.
    #[serde(default)]
    pub telemetry_log: Option<PathBuf>,
    /// The Prometheus endpoint (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Which prefixes our records carry: `prefixes`, and (by default) every subnet of
    /// the dataplane's interfaces, as a link-state router announces its connected networks.
    #[serde(default)]
    pub originate: Originate,
    /// Neighbours found by hellos on the mesh links (absent: only `neighbor` entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryConfig>,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<NeighborConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Originate {
    /// `prefixes` and the subnets of the dataplane's interfaces (link-local excluded).
    #[default]
    Connected,
    /// `prefixes` only.
    Listed,
}

/// Hellos on the mesh links (docs/DISCOVERY.md); a static `neighbor` of the same name
/// keeps its settings and is never dropped by the hold time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The interfaces to other routers (hellos are sent and heard only there).
    pub interfaces: Vec<String>,
    #[serde(default = "default_hello_interval")]
    pub hello_interval_ms: u32,
    /// The UDP port hellos go to (all routers of a mesh use the same).
    #[serde(default = "default_hello_port")]
    pub port: u16,
    /// The cost and capacity a discovered neighbour's link gets.
    #[serde(default = "default_cost")]
    pub cost: u32,
    #[serde(default = "default_capacity")]
    pub capacity_mbps: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, plain HTTP: loopback or a management network.
    pub listen: std::net::SocketAddr,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub router: String,
    /// Our interface to it, and its addresses on that link.
    pub interface: String,
    pub addrs: Vec<IpAddr>,
    /// The cost with a clean, idle, near link; what is measured scales it (monitor.rs).
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// What the link carries, for its utilisation.
    #[serde(default = "default_capacity")]
    pub capacity_mbps: u64,
    /// Its brain ("198.18.12.2:7444").
    pub brain: String,
}

impl NeighborConfig {
    /// Whether `addr` on `interface` is this neighbour (a next hop's gateway, a BFD peer).
    pub fn is_at(&self, interface: &str, addr: &str) -> bool {
        self.interface == interface && self.addrs.iter().any(|a| a.to_string() == addr)
    }

    /// Our BFD session to this neighbour, among `sessions`.
    pub fn session<'a>(
        &self,
        sessions: &'a [x0_proto::dataplane::v1::BfdSession],
    ) -> Option<&'a x0_proto::dataplane::v1::BfdSession> {
        sessions.iter().find(|s| self.is_at(&s.interface, &s.peer))
    }
}

fn default_k() -> usize {
    3
}
fn default_interval() -> u64 {
    200
}
fn default_telemetry_interval() -> u64 {
    1000
}
fn default_lifetime() -> u32 {
    60
}
fn default_hello_interval() -> u32 {
    1000
}
fn default_hello_port() -> u16 {
    7446
}
fn default_cost() -> u32 {
    10
}
fn default_capacity() -> u64 {
    1000
}

impl BrainConfig {
    pub fn parse(text: &str) -> Result<Self> {
        let c: BrainConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if c.router.is_empty() {
            bail!("router: empty");
        }
        if !(1..=8).contains(&c.k) {
            bail!("k: {} is not 1 to 8", c.k);
        }
        if !(20..=10_000).contains(&c.interval_ms) {
            bail!("interval_ms: {} is not 20 to 10000", c.interval_ms);
        }
        if !(100..=60_000).contains(&c.telemetry_interval_ms) {
            bail!(
                "telemetry_interval_ms: {} is not 100 to 60000",
                c.telemetry_interval_ms
            );
        }
        if !(10..=3600).contains(&c.lifetime_s) {
            bail!("lifetime_s: {} is not 10 to 3600", c.lifetime_s);
        }
        for (i, n) in c.neighbors.iter().enumerate() {
            if n.router == c.router || n.router.is_empty() {
                bail!("neighbor[{i}].router: {:?}", n.router);
            }
            if n.cost == 0 {
                bail!("neighbor[{i}].cost: must be at least 1");
            }
            if !(1..=10_000_000).contains(&n.capacity_mbps) {
                bail!(
                    "neighbor[{i}].capacity_mbps: {} is not 1 to 10000000",
                    n.capacity_mbps
                );
            }
            if n.addrs.is_empty() {
                bail!("neighbor[{i}].addrs: empty");
            }
        }
        if let Some(d) = &c.discovery {
            d.validate()?;
        }
        Ok(c)
    }
}

impl DiscoveryConfig {
    fn validate(&self) -> Result<()> {
        if self.interfaces.is_empty() {
            bail!("discovery.interfaces: empty (name the links to other routers)");
        }
        if !(100..=60_000).contains(&self.hello_interval_ms) {
            bail!(
                "discovery.hello_interval_ms: {} is not 100 to 60000",
                self.hello_interval_ms
            );
        }
        if self.port == 0 || self.cost == 0 {
            bail!("discovery.port and discovery.cost: must be at least 1");
        }
        if !(1..=10_000_000).contains(&self.capacity_mbps) {
            bail!(
                "discovery.capacity_mbps: {} is not 1 to 10000000",
                self.capacity_mbps
            );
        }
        Ok(())
    }
}
