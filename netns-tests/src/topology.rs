//! Topology files: hosts, routers (with their x0-dataplane routes) and the veth links
//! between them, with addresses.

use std::{collections::HashSet, net::IpAddr, path::Path};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use x0_dataplane::{
    XdpModeChoice,
    config::{BfdDefaults, BfdPeerConfig, FailoverConfig, RouteConfig},
    policy::{IdentityConfig, RuleConfig},
};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The brains find their neighbours by hellos and originate their routers' subnets
    /// (minimal configs: no `[[neighbor]]`, no `prefixes`); see `discovering`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discover: bool,
    #[serde(default, rename = "host")]
    pub hosts: Vec<Host>,
    #[serde(default, rename = "router")]
    pub routers: Vec<Router>,
    #[serde(default, rename = "link")]
    pub links: Vec<Link>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// Default gateways (one per address family).
    #[serde(default)]
    pub gateway: Vec<IpAddr>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    /// x0-dataplane static routes (the dataplane config's format).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default = "yes")]
    pub fib_fallback: bool,
    /// The dataplane's IPv4 direct table (64 MiB); off, lookups probe per prefix length.
    #[serde(default = "yes")]
    pub ipv4_direct_table: bool,
    /// The dataplane's `[maps]` (the small-router profile).
    #[serde(default, skip_serializing_if = "is_default_maps")]
    pub maps: x0_dataplane::map_sizes::MapsConfig,
    /// The kernel's own IP forwarding (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding).
    #[serde(default = "yes")]
    pub kernel_forwarding: bool,
    /// The dataplane's `[host]` section; absent: it fixes the host's sysctls, but leaves
    /// forwarding off on a router the topology runs without kernel forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<x0_dataplane::host::HostConfig>,
    /// Routes for the kernel FIB, as `ip route add` arguments.
    #[serde(default)]
    pub kernel_routes: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpModeChoice,
    /// BFD timers; when set, BFD runs on every interface that faces another router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdDefaults>,
    #[serde(default)]
    pub failover: FailoverConfig,
    /// BFD to these neighbours too (for example a host running bfdd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bfd_peers: Vec<BfdPeerConfig>,
    /// Policy (the dataplane config's format).
    #[serde(default, rename = "identity", skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityConfig>,
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Interfaces whose policy default is deny (zero-trust); the others are transit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zero_trust: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub a: End,
    pub b: End,
    /// Routing cost for the brains (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
    /// What the brains take the link to carry (default 1000 Mbit/s), for its utilisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_mbps: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    pub node: String,
    pub iface: String,
    #[serde(default)]
    pub addrs: Vec<IpNet>,
}

fn yes() -> bool {
    true
}

impl Topology {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("topology {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let t: Topology = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        let mut names = HashSet::new();
        for n in self
            .hosts
            .iter()
            .map(|h| &h.name)
            .chain(self.routers.iter().map(|r| &r.name))
        {
            if n.is_empty() || n.len() > 8 || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!("node name {n:?}: use 1 to 8 letters and digits");
            }
            if !names.insert(n.as_str()) {
                bail!("node name {n:?} is used twice");
            }
        }
        let mut ifaces = HashSet::new();
        for (i, l) in self.links.iter().enumerate() {
            for (side, end) in [("a", &l.a), ("b", &l.b)] {
                if !names.contains(end.node.as_str()) {
                    bail!("link[{i}].{side}.node: no node named {:?}", end.node);
                }
                if end.iface.is_empty() || end.iface.len() > 15 {
                    bail!(
                        "link[{i}].{side}.iface: {:?} is not a valid interface name",
                        end.iface
                    );
                }
                if !ifaces.insert((end.node.clone(), end.iface.clone())) {
                    bail!("link[{i}].{side}: {}:{} is used twice", end.node, end.iface);
                }
            }
        }
        for r in &self.routers {
            for (i, route) in r.routes.iter().enumerate() {
                for (j, nh) in route.via.iter().enumerate() {
                    if !ifaces.contains(&(r.name.clone(), nh.interface.clone())) {
                        bail!(
                            "router {}: routes[{i}].via[{j}].interface: {} has no interface {:?}",
                            r.name,
                            r.name,
                            nh.interface
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The same mesh as it would be deployed with discovery: no static routes, brains
    /// with minimal configs.
    pub fn discovering(mut self) -> Self {
        self.discover = true;
        for r in &mut self.routers {
            r.routes.clear();
        }
        self
    }

    pub fn router(&self, name: &str) -> Option<&Router> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The interfaces of `node`, in link order.
    pub fn ifaces_of(&self, node: &str) -> Vec<&End> {
        self.links
            .iter()
            .flat_map(|l| [&l.a, &l.b])
            .filter(|e| e.node == node)
            .collect()
    }

    /// The node at the other end of `node`'s interface `iface`.
    pub fn peer_of(&self, node: &str, iface: &str) -> Option<&End> {
        self.links.iter().find_map(|l| {
            if l.a.node == node && l.a.iface == iface {
                Some(&l.b)
            } else if l.b.node == node && l.b.iface == iface {
                Some(&l.a)
            } else {
                None
            }
        })
    }

    pub fn is_router(&self, node: &str) -> bool {
        self.router(node).is_some()
    }

    /// The first address of `node` in the given family (for traffic tests).
    pub fn addr_of(&self, node: &str, v6: bool) -> Option<IpAddr> {
        self.ifaces_of(node)
            .iter()
            .flat_map(|e| e.addrs.iter())
            .map(|n| n.addr())
            .find(|a| a.is_ipv6() == v6)
    }
}

fn is_default_maps(m: &x0_dataplane::map_sizes::MapsConfig) -> bool {
    *m == x0_dataplane::map_sizes::MapsConfig::default()
}
