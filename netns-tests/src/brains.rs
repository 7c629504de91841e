//! A brain beside every router: configs generated from the topology (neighbours, their
//! addresses on each link, link costs, the router's subnets), SVIDs from the lab CA, and
//! `x0-brain run` in the router's namespace.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use x0_brain::config::{BrainConfig, DiscoveryConfig, Mode, NeighborConfig, Originate};

use crate::Lab;

/// Where each brain listens, on every address of its router.
pub const BRAIN_PORT: u16 = 7444;

impl Lab {
    fn brain_bin(&self) -> Result<PathBuf> {
        self.dataplane_bin
            .parent()
            .map(|d| d.join("x0-brain"))
            .filter(|p| p.is_file())
            .context("x0-brain binary not found next to x0-dataplane (cargo build)")
    }

    /// The config of `router`'s brain: with discovery, only its mesh interfaces (its
    /// neighbours and subnets are found at run time); otherwise every neighbour and subnet.
    pub fn brain_config(&self, router: &str, mode: Mode) -> Result<BrainConfig> {
        let mut config = self.static_brain_config(router, mode)?;
        if self.topo.discover {
            config.discovery = Some(DiscoveryConfig {
                interfaces: config
                    .neighbors
                    .iter()
                    .map(|n| n.interface.clone())
                    .collect(),
                hello_interval_ms: 1000,
                port: 7446,
                cost: 10,
                capacity_mbps: 1000,
            });
            config.neighbors.clear();
            config.prefixes.clear();
        }
        Ok(config)
    }

    fn static_brain_config(&self, router: &str, mode: Mode) -> Result<BrainConfig> {
        let mut neighbors = Vec::new();
        let mut prefixes = Vec::new();
        for l in &self.topo.links {
            let (mine, theirs) = if l.a.node == router {
                (&l.a, &l.b)
            } else if l.b.node == router {
                (&l.b, &l.a)
            } else {
                continue;
            };
            // Every subnet of the router, as a link-state router announces its connected
            // networks: the mesh reaches every router address, not only the hosts.
            prefixes.extend(mine.addrs.iter().map(|a| a.trunc()));
            if self.topo.is_router(&theirs.node) {
                let v4 = theirs
                    .addrs
                    .iter()
                    .find(|a| a.addr().is_ipv4())
                    .context("an IPv4 address on the link")?;
                neighbors.push(NeighborConfig {
                    router: theirs.node.clone(),
                    interface: mine.iface.clone(),
                    addrs: theirs.addrs.iter().map(|a| a.addr()).collect(),
                    cost: l.cost.unwrap_or(10),
                    capacity_mbps: l.capacity_mbps.unwrap_or(1000),
                    brain: format!("{}:{BRAIN_PORT}", v4.addr()),
                });
            }
        }
        let files = self.pki().files(&format!("brain-{router}"));
        Ok(BrainConfig {
            router: router.into(),
            mode,
            k: 3,
            dataplane: format!("unix://{}", self.api_socket(router).display()),
            listen: format!("0.0.0.0:{BRAIN_PORT}").parse().expect("valid"),
            interval_ms: 100,
            lifetime_s: 60,
            state_dir: self.dir.join("brain-state").join(router),
            prefixes,
            telemetry_interval_ms: 1000,
            model: None,
            // The lab keeps every interval's telemetry (datasets are made from it).
            telemetry_log: Some(
                self.dir
                    .join("brain-state")
                    .join(router)
                    .join("telemetry.jsonl"),
            ),
            tls: x0_identity::FileSource {
                crls: Vec::new(),
                ..files
            },
            metrics: Some(x0_brain::config::MetricsConfig {
                listen: crate::lab::BRAIN_METRICS.parse().expect("constant"),
            }),
            originate: Originate::Connected,
            discovery: None,
            neighbors,
        })
    }

    /// Starts (or restarts) `router`'s brain, minting its SVID the first time.
    pub fn start_brain(&self, router: &str, mode: Mode) -> Result<()> {
        self.start_brain_with(router, mode, |_| {})
    }

    /// `start_brain` with the lab's config changed by `edit` first (a model, say).
    pub fn start_brain_with(
        &self,
        router: &str,
        mode: Mode,
        edit: impl FnOnce(&mut BrainConfig),
    ) -> Result<()> {
        let name = format!("brain-{router}");
        if !self.pki().svid_dir().join(format!("{name}.pem")).exists() {
            self.pki().issue(
                &format!("/brain/{router}"),
                &name,
                Duration::from_secs(86_400),
            )?;
        }
        let mut config = self.brain_config(router, mode)?;
        edit(&mut config);
        let path = self.file(&name, "toml");
        fs::write(&path, toml::to_string(&config)?)?;
        self.spawn_daemon(
            router,
            &name,
            &self.brain_bin()?,
            &["run".into(), "--config".into(), path.into()],
        )
    }

    /// Stops `router`'s brain (SIGKILL with `kill`: no chance to tidy up).
    pub fn stop_brain(&self, router: &str, kill: bool) -> Result<()> {
        let signal = if kill {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        crate::lab::stop_pid_file(&self.file(&format!("brain-{router}"), "pid"), signal)
    }

    pub fn brain_log(&self, router: &str) -> String {
        fs::read_to_string(self.file(&format!("brain-{router}"), "log")).unwrap_or_default()
    }
}
