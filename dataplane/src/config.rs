//! The dataplane's TOML configuration. Every error names the field it is about; a config
//! with any error is rejected whole, before anything is loaded or attached.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use x0_common::MAX_NEXTHOPS_PER_SET;

use crate::{DEFAULT_PIN_ROOT, XdpModeChoice};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory on a bpffs where the maps are pinned.
    #[serde(default = "default_pin_root")]
    pub pin_root: PathBuf,
    /// Forward through the kernel FIB when no route of ours matches.
    #[serde(default = "default_true")]
    pub fib_fallback: bool,
    #[serde(default)]
    pub xdp_mode: XdpModeChoice,
    /// Interfaces to attach to.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// Static routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination prefix, e.g. "198.18.2.0/24" or "2001:db8:2::/64".
    pub prefix: String,
    /// Next hops in preference order.
    pub via: Vec<NextHopConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NextHopConfig {
    /// The neighbour's address.
    pub gateway: IpAddr,
    /// The interface it is reached through (one of `interface`).
    pub interface: String,
}

/// A route after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRoute {
    pub prefix: IpNet,
    pub via: Vec<(IpAddr, String)>,
}

fn default_pin_root() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_ROOT)
}

fn default_true() -> bool {
    true
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.routes()?;
        Ok(config)
    }

    /// The routes, validated: prefixes parse and have no host bits, next hops are of the
    /// prefix's family and use a configured interface, 1 to 8 of them, no duplicates.
    pub fn routes(&self) -> Result<Vec<ValidRoute>> {
        let mut seen_ifaces = std::collections::HashSet::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            if iface.name.is_empty() || iface.name.len() > 15 {
                bail!(
                    "interface[{i}].name: {:?} is not a valid interface name",
                    iface.name
                );
            }
            if !seen_ifaces.insert(iface.name.as_str()) {
                bail!("interface[{i}].name: {:?} is listed twice", iface.name);
            }
        }
        let mut out: Vec<ValidRoute> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let prefix: IpNet = r.prefix.parse().map_err(|_| {
                anyhow::anyhow!(
                    "route[{i}].prefix: {:?} is not an address/length prefix",
                    r.prefix
                )
            })?;
            if prefix.trunc() != prefix {
                bail!(
                    "route[{i}].prefix: {prefix} has host bits set (did you mean {}?)",
                    prefix.trunc()
                );
            }
            if out.iter().any(|o| o.prefix == prefix) {
                bail!("route[{i}].prefix: {prefix} is configured twice");
            }
            if r.via.is_empty() || r.via.len() > MAX_NEXTHOPS_PER_SET {
                bail!(
                    "route[{i}].via: needs 1 to {MAX_NEXTHOPS_PER_SET} next hops, has {}",
                    r.via.len()
                );
            }
            let mut via = Vec::new();
            for (j, nh) in r.via.iter().enumerate() {
                if nh.gateway.is_ipv4() != prefix.addr().is_ipv4() {
                    bail!(
                        "route[{i}].via[{j}].gateway: {} is not of the family of {prefix}",
                        nh.gateway
                    );
                }
                if nh.gateway.is_unspecified()
                    || nh.gateway.is_multicast()
                    || nh.gateway.is_loopback()
                {
                    bail!(
                        "route[{i}].via[{j}].gateway: {} cannot be a next hop",
                        nh.gateway
                    );
                }
                if !seen_ifaces.contains(nh.interface.as_str()) {
                    bail!(
                        "route[{i}].via[{j}].interface: {:?} is not one of the configured interfaces",
                        nh.interface
                    );
                }
                if via.contains(&(nh.gateway, nh.interface.clone())) {
                    bail!(
                        "route[{i}].via[{j}]: {} via {} is listed twice",
                        nh.gateway,
                        nh.interface
                    );
                }
                via.push((nh.gateway, nh.interface.clone()));
            }
            out.push(ValidRoute { prefix, via });
        }
        Ok(out)
    }
}
