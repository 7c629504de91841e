//! The dataplane's TOML configuration. Every error names the field it is about; a config
//! with any error is rejected whole, before anything is loaded or attached.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};
use x0_proto::status::Shown;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use x0_common::MAX_NEXTHOPS_PER_SET;

use crate::{
    DEFAULT_PIN_ROOT, XdpModeChoice,
    policy::{CompiledPolicy, IdentityConfig, RuleConfig, compile},
};

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
    /// The IPv4 direct table (64 MiB of kernel memory): routes up to /24 found with one
    /// array lookup. Off, IPv4 lookups probe a hash map per prefix length in use. Takes
    /// effect when the maps are created (pinned maps keep what they were created with).
    #[serde(default = "default_true")]
    pub ipv4_direct_table: bool,
    /// How large the maps are made (docs/DEPLOY.md: the small-router profile).
    #[serde(default, skip_serializing_if = "is_default_maps")]
    pub maps: crate::map_sizes::MapsConfig,
    /// Interfaces to attach to.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// Static routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub failover: FailoverConfig,
    /// BFD defaults; sessions run where an interface or a peer turns them on.
    #[serde(default)]
    pub bfd: BfdDefaults,
    /// Per-neighbour BFD settings (override the interface's and the defaults).
    #[serde(default, rename = "bfd_peer")]
    pub bfd_peers: Vec<BfdPeerConfig>,
    /// Policy: identities by address prefix ...
    #[serde(default, rename = "identity", skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityConfig>,
    /// ... and the rules between them.
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// The gRPC control API (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<crate::api::config::ApiConfig>,
    /// The Prometheus endpoint (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// The kernel's copy of our routes (on by default).
    #[serde(default)]
    pub kernel_fib: crate::kernel_fib::KernelFibConfig,
    /// The host's sysctls a router needs, checked at start.
    #[serde(default)]
    pub host: crate::host::HostConfig,
}

/// The longest a next hop stays live on a peer's word that it is only restarting.
const MAX_RESTART_GRACE_MS: u64 = 60_000;

/// When a failed next hop is used again.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// A recovered next hop carries traffic again only after staying up this long.
    pub hold_down_ms: u64,
    /// Each recent flap doubles the hold-down, up to this.
    pub max_hold_down_ms: u64,
    /// Half-life of the flap penalty.
    pub penalty_half_life_ms: u64,
    /// A next hop whose BFD peer says AdminDown (its daemon restarts, its fast path
    /// forwards on) stays live this long for the new session to come up; 0: AdminDown is
    /// a failure like any other.
    pub peer_restart_grace_ms: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            hold_down_ms: 2_000,
            max_hold_down_ms: 60_000,
            penalty_half_life_ms: 30_000,
            peer_restart_grace_ms: 10_000,
        }
    }
}

/// BFD timers (RFC 5880): we send every `tx_interval_ms`, ask the peer for no faster than
/// `rx_interval_ms`, and declare it down after `multiplier` missed intervals.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BfdDefaults {
    pub tx_interval_ms: u32,
    pub rx_interval_ms: u32,
    pub multiplier: u8,
    /// "auto": AF_XDP sockets fed by the XDP program, a UDP socket where they cannot bind
    /// (logged); "udp": UDP sockets only.
    pub transport: String,
}

impl Default for BfdDefaults {
    fn default() -> Self {
        Self {
            tx_interval_ms: 10,
            rx_interval_ms: 10,
            multiplier: 3,
            transport: "auto".into(),
        }
    }
}

/// BFD settings for one interface or neighbour; unset fields inherit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BfdOverride {
    /// Run BFD to the next hops here (default true once this table is present).
    pub enabled: Option<bool>,
    pub tx_interval_ms: Option<u32>,
    pub rx_interval_ms: Option<u32>,
    pub multiplier: Option<u8>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BfdPeerConfig {
    pub address: IpAddr,
    #[serde(flatten)]
    pub settings: BfdOverride,
}

/// The BFD parameters of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdTimers {
    pub tx_interval_ms: u32,
    pub rx_interval_ms: u32,
    pub multiplier: u8,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    /// BFD to the next hops on this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdOverride>,
    /// Policy default for traffic arriving here that no rule decides: "allow" (transit,
    /// the default) or "deny" (zero-trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
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
    /// (gateway, interface) in preference order; shared by routes with the same next hops
    /// (a batch's million routes hold a few lists, not a million: see `ViaCache`).
    pub via: NextHopList,
}

fn is_default_maps(m: &crate::map_sizes::MapsConfig) -> bool {
    *m == crate::map_sizes::MapsConfig::default()
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
        config.maps.validate()?;
        config.validate_bfd()?;
        config.kernel_fib.validate()?;
        config.host.validate()?;
        config.policy()?;
        if let Some(api) = &config.api {
            api.validate()?;
        }
        Ok(config)
    }

    /// The policy, validated and compiled.
    pub fn policy(&self) -> Result<CompiledPolicy> {
        let ifaces: Vec<(String, Option<String>)> = self
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.policy.clone()))
            .collect();
        compile(&self.identities, &self.rules, &ifaces)
    }

    /// BFD timers for a neighbour on an interface, or None when BFD is off for it.
    pub fn bfd_for(&self, interface: &str, peer: IpAddr) -> Option<BfdTimers> {
        let iface = self
            .interfaces
            .iter()
            .find(|i| i.name == interface)
            .and_then(|i| i.bfd.as_ref());
        let peer_cfg = self
            .bfd_peers
            .iter()
            .find(|p| p.address == peer)
            .map(|p| &p.settings);
        let enabled = peer_cfg
            .and_then(|p| p.enabled)
            .or_else(|| peer_cfg.map(|_| true))
            .or_else(|| iface.map(|i| i.enabled.unwrap_or(true)))
            .unwrap_or(false);
        if !enabled {
            return None;
        }
        let pick = |f: fn(&BfdOverride) -> Option<u32>, default: u32| {
            peer_cfg
                .and_then(f)
                .or_else(|| iface.and_then(f))
                .unwrap_or(default)
        };
        Some(BfdTimers {
            tx_interval_ms: pick(|o| o.tx_interval_ms, self.bfd.tx_interval_ms),
            rx_interval_ms: pick(|o| o.rx_interval_ms, self.bfd.rx_interval_ms),
            multiplier: peer_cfg
                .and_then(|o| o.multiplier)
                .or_else(|| iface.and_then(|o| o.multiplier))
                .unwrap_or(self.bfd.multiplier),
        })
    }

    fn validate_bfd(&self) -> Result<()> {
        let check = |what: &str, o: &BfdOverride| -> Result<()> {
            for (field, v) in [
                ("tx_interval_ms", o.tx_interval_ms),
                ("rx_interval_ms", o.rx_interval_ms),
            ] {
                if let Some(v) = v
                    && !(1..=60_000).contains(&v)
                {
                    bail!("{what}.{field}: {v} is outside 1..=60000");
                }
            }
            if o.multiplier == Some(0) {
                bail!("{what}.multiplier: must be at least 1");
            }
            Ok(())
        };
        check(
            "bfd",
            &BfdOverride {
                enabled: None,
                tx_interval_ms: Some(self.bfd.tx_interval_ms),
                rx_interval_ms: Some(self.bfd.rx_interval_ms),
                multiplier: Some(self.bfd.multiplier),
            },
        )?;
        if !["auto", "udp"].contains(&self.bfd.transport.as_str()) {
            bail!(
                "bfd.transport: {:?} is not one of auto, udp",
                self.bfd.transport
            );
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            if let Some(o) = &iface.bfd {
                check(&format!("interface[{i}].bfd"), o)?;
            }
        }
        for (i, p) in self.bfd_peers.iter().enumerate() {
            check(&format!("bfd_peer[{i}]"), &p.settings)?;
        }
        let f = &self.failover;
        if f.hold_down_ms > f.max_hold_down_ms {
            bail!(
                "failover.hold_down_ms: {} is above failover.max_hold_down_ms ({})",
                f.hold_down_ms,
                f.max_hold_down_ms
            );
        }
        if f.penalty_half_life_ms == 0 {
            bail!("failover.penalty_half_life_ms: must be above 0");
        }
        if f.peer_restart_grace_ms > MAX_RESTART_GRACE_MS {
            bail!(
                "failover.peer_restart_grace_ms: {} is above {MAX_RESTART_GRACE_MS} (a peer that does not come back is a failure)",
                f.peer_restart_grace_ms
            );
        }
        Ok(())
    }

    /// The routes, validated: prefixes parse and have no host bits, next hops are of the
    /// prefix's family and use a configured interface, 1 to 8 of them, no duplicates.
    pub fn routes(&self) -> Result<Vec<ValidRoute>> {
        let mut seen_ifaces = std::collections::HashSet::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            if iface.name.is_empty() || iface.name.len() > 15 {
                bail!(
                    "interface[{i}].name: {} is not a valid interface name",
                    Shown(&iface.name)
                );
            }
            if !seen_ifaces.insert(iface.name.as_str()) {
                bail!("interface[{i}].name: {:?} is listed twice", iface.name);
            }
        }
        let mut out: Vec<ValidRoute> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let via: Vec<(String, String)> = r
                .via
                .iter()
                .map(|nh| (nh.gateway.to_string(), nh.interface.clone()))
                .collect();
            let route = validate_route(&format!("route[{i}]"), &r.prefix, &via, &|name| {
                seen_ifaces.contains(name)
            })?;
            if out.iter().any(|o| o.prefix == route.prefix) {
                bail!("route[{i}].prefix: {} is configured twice", route.prefix);
            }
            out.push(route);
        }
        Ok(out)
    }
}

/// Checks one route given as text (from the config or the API); errors start with
/// `field` ("route[3]", "route") and name the part that is wrong. `via` is (gateway,
/// interface) in preference order.
pub fn validate_route(
    field: &str,
    prefix: &str,
    via: &[(String, String)],
    interface_known: &dyn Fn(&str) -> bool,
) -> Result<ValidRoute> {
    let prefix = validate_prefix(field, prefix)?;
    let via = validate_via(field, prefix, via, interface_known)?;
    Ok(ValidRoute {
        prefix,
        via: via.into(),
    })
}

fn validate_prefix(field: &str, prefix: &str) -> Result<IpNet> {
    let prefix: IpNet = prefix.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "{field}.prefix: {} is not an address/length prefix",
            Shown(prefix)
        )
    })?;
    if prefix.trunc() != prefix {
        bail!(
            "{field}.prefix: {prefix} has host bits set (did you mean {}?)",
            prefix.trunc()
        );
    }
    Ok(prefix)
}

fn validate_via(
    field: &str,
    prefix: IpNet,
    via: &[(String, String)],
    interface_known: &dyn Fn(&str) -> bool,
) -> Result<Vec<(IpAddr, String)>> {
    if via.is_empty() || via.len() > MAX_NEXTHOPS_PER_SET {
        bail!(
            "{field}.via: needs 1 to {MAX_NEXTHOPS_PER_SET} next hops, has {}",
            via.len()
        );
    }
    let mut out = Vec::with_capacity(via.len());
    for (j, (gateway, interface)) in via.iter().enumerate() {
        let gw: IpAddr = gateway.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{field}.via[{j}].gateway: {} is not an address",
                Shown(gateway)
            )
        })?;
        check_family(field, j, gw, prefix)?;
        if gw.is_unspecified() || gw.is_multicast() || gw.is_loopback() {
            bail!("{field}.via[{j}].gateway: {gw} cannot be a next hop");
        }
        if !interface_known(interface) {
            bail!(
                "{field}.via[{j}].interface: {} is not one of the configured interfaces",
                Shown(interface)
            );
        }
        if out.contains(&(gw, interface.clone())) {
            bail!("{field}.via[{j}]: {gw} via {interface} is listed twice");
        }
        out.push((gw, interface.clone()));
    }
    Ok(out)
}

fn check_family(field: &str, j: usize, gw: IpAddr, prefix: IpNet) -> Result<()> {
    if gw.is_ipv4() != prefix.addr().is_ipv4() {
        bail!("{field}.via[{j}].gateway: {gw} is not of the family of {prefix}");
    }
    Ok(())
}

/// Validates routes whose next-hop lists repeat (a batch), sharing one validated list
/// among the routes that name it: a million routes through two next hops hold one list.
/// At most `VIA_CACHE_LISTS` distinct lists are kept (a batch of all-different lists
/// validates each on its own, as without the cache).
#[derive(Default)]
pub struct ViaCache {
    /// The lists as given (gateway, interface text) and as validated.
    lists: std::collections::HashMap<Vec<(String, String)>, NextHopList>,
}

/// A validated next-hop list, shared.
pub type NextHopList = Arc<[(IpAddr, String)]>;

const VIA_CACHE_LISTS: usize = 4096;

impl ViaCache {
    /// As `validate_route`, with the same errors.
    pub fn route(
        &mut self,
        field: &str,
        prefix: &str,
        via: Vec<(String, String)>,
        interface_known: &dyn Fn(&str) -> bool,
    ) -> Result<ValidRoute> {
        let prefix = validate_prefix(field, prefix)?;
        if let Some(list) = self.lists.get(&via) {
            // Validated before for a prefix of one family: only the family may differ.
            check_family(field, 0, list[0].0, prefix)?;
            return Ok(ValidRoute {
                prefix,
                via: list.clone(),
            });
        }
        let list: NextHopList = validate_via(field, prefix, &via, interface_known)?.into();
        if self.lists.len() < VIA_CACHE_LISTS {
            self.lists.insert(via, list.clone());
        }
        Ok(ValidRoute { prefix, via: list })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_shares_its_next_hop_lists_and_errs_as_one_route_would() {
        let known = |n: &str| n == "eth1";
        let via = |gw: &str| vec![(gw.to_string(), "eth1".to_string())];
        let mut cache = ViaCache::default();
        let a = cache
            .route("r[0]", "10.0.0.0/24", via("192.0.2.1"), &known)
            .unwrap();
        let b = cache
            .route("r[1]", "10.0.1.0/24", via("192.0.2.1"), &known)
            .unwrap();
        assert!(Arc::ptr_eq(&a.via, &b.via));
        assert_eq!(
            b,
            validate_route("r[1]", "10.0.1.0/24", &via("192.0.2.1"), &known).unwrap()
        );
        // A cached list under a prefix of the other family: the same error as without.
        let cached = cache.route("r[2]", "2001:db8::/64", via("192.0.2.1"), &known);
        let fresh = validate_route("r[2]", "2001:db8::/64", &via("192.0.2.1"), &known);
        assert_eq!(
            cached.unwrap_err().to_string(),
            fresh.unwrap_err().to_string()
        );
        let bad = cache.route("r[3]", "10.0.2.1/24", via("192.0.2.1"), &known);
        assert!(bad.unwrap_err().to_string().contains("host bits"));
    }

    const GOOD: &str = r#"
pin_root = "/run/x0/bpf"
fib_fallback = false
xdp_mode = "native"
ipv4_direct_table = false

[[interface]]
name = "eth1"

[[interface]]
name = "eth2"

[[route]]
prefix = "198.18.2.0/24"
via = [{ gateway = "198.18.12.2", interface = "eth1" }, { gateway = "198.18.13.3", interface = "eth2" }]

[[route]]
prefix = "2001:db8:2::/64"
via = [{ gateway = "2001:db8:12::2", interface = "eth1" }]
"#;

    #[test]
    fn a_good_config_parses_with_every_field() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.pin_root, PathBuf::from("/run/x0/bpf"));
        assert!(!c.fib_fallback);
        assert_eq!(c.xdp_mode, XdpModeChoice::Native);
        assert!(!c.ipv4_direct_table);
        let routes = c.routes().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].prefix.to_string(), "198.18.2.0/24");
        assert_eq!(
            routes[0].via[1],
            ("198.18.13.3".parse().unwrap(), "eth2".to_string())
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.pin_root, PathBuf::from(DEFAULT_PIN_ROOT));
        assert!(c.fib_fallback);
        assert_eq!(c.xdp_mode, XdpModeChoice::Auto);
        assert!(c.ipv4_direct_table);
    }

    /// Each broken config must be refused with a message naming the field.
    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "prefix",
                r#"prefix = "198.18.2.0/24""#,
                r#"prefix = "198.18.2.0""#,
            ),
            (
                "host bits",
                r#"prefix = "198.18.2.0/24""#,
                r#"prefix = "198.18.2.1/24""#,
            ),
            (
                "family",
                r#"gateway = "2001:db8:12::2""#,
                r#"gateway = "198.18.12.2""#,
            ),
            (
                "interface",
                r#"{ gateway = "2001:db8:12::2", interface = "eth1" }"#,
                r#"{ gateway = "2001:db8:12::2", interface = "eth9" }"#,
            ),
            (
                "gateway",
                r#"gateway = "198.18.12.2""#,
                r#"gateway = "198.18.12.300""#,
            ),
            ("unknown key", "fib_fallback = false", "fib_falback = false"),
            ("mode", r#"xdp_mode = "native""#, r#"xdp_mode = "turbo""#),
            (
                "missing via",
                r#"via = [{ gateway = "2001:db8:12::2", interface = "eth1" }]"#,
                "",
            ),
            (
                "multicast gateway",
                r#"gateway = "198.18.12.2""#,
                r#"gateway = "224.0.0.5""#,
            ),
        ];
        let expect_in_message = [
            "route[0].prefix",
            "route[0].prefix",
            "route[1].via[0].gateway",
            "route[1].via[0].interface",
            "gateway",
            "fib_falback",
            "turbo",
            "via",
            "route[0].via[0].gateway",
        ];
        for ((what, from, to), want) in cases.iter().zip(expect_in_message) {
            assert!(GOOD.contains(from), "{what}: fixture text missing");
            let text = GOOD.replacen(from, to, 1);
            let err = format!("{:#}", Config::parse(&text).expect_err(what));
            assert!(
                err.contains(want),
                "{what}: error {err:?} does not name {want:?}"
            );
        }
    }

    #[test]
    fn too_many_next_hops_and_duplicates_are_refused() {
        let nine = (0..9)
            .map(|i| {
                format!(
                    r#"{{ gateway = "198.18.12.{}", interface = "eth1" }}"#,
                    i + 2
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "[[interface]]\nname = \"eth1\"\n[[route]]\nprefix = \"198.18.2.0/24\"\nvia = [{nine}]\n"
        );
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(
            err.contains("route[0].via: needs 1 to 8 next hops, has 9"),
            "{err}"
        );

        let dup = GOOD
            .replace("2001:db8:2::/64", "198.18.2.0/24")
            .replace("2001:db8:12::2", "198.18.12.2");
        let err = format!("{:#}", Config::parse(&dup).unwrap_err());
        assert!(
            err.contains("route[1].prefix: 198.18.2.0/24 is configured twice"),
            "{err}"
        );

        let twice = GOOD.replace("name = \"eth2\"", "name = \"eth1\"");
        let err = format!("{:#}", Config::parse(&twice).unwrap_err());
        assert!(err.contains("interface[1].name"), "{err}");
    }

    #[test]
    fn bfd_settings_inherit_from_defaults_to_interface_to_peer() {
        let text = r#"
[bfd]
tx_interval_ms = 20
multiplier = 4

[[interface]]
name = "eth1"
bfd = { rx_interval_ms = 30 }

[[interface]]
name = "eth2"

[[bfd_peer]]
address = "198.18.12.9"
tx_interval_ms = 50

[[bfd_peer]]
address = "198.18.12.8"
enabled = false
"#;
        let c = Config::parse(text).unwrap();
        let t = |iface: &str, peer: &str| c.bfd_for(iface, peer.parse().unwrap());
        assert_eq!(
            t("eth2", "198.18.13.3"),
            None,
            "off unless an interface or peer turns it on"
        );
        assert_eq!(
            t("eth1", "198.18.12.2"),
            Some(BfdTimers {
                tx_interval_ms: 20,
                rx_interval_ms: 30,
                multiplier: 4
            })
        );
        assert_eq!(
            t("eth1", "198.18.12.9"),
            Some(BfdTimers {
                tx_interval_ms: 50,
                rx_interval_ms: 30,
                multiplier: 4
            })
        );
        assert_eq!(
            t("eth2", "198.18.12.9"),
            Some(BfdTimers {
                tx_interval_ms: 50,
                rx_interval_ms: 10,
                multiplier: 4
            })
        );
        assert_eq!(t("eth1", "198.18.12.8"), None, "a peer can turn it off");

        for (bad, field) in [
            ("[bfd]\nmultiplier = 0\n", "bfd.multiplier"),
            ("[bfd]\ntransport = \"carrier-pigeon\"\n", "bfd.transport"),
            (
                "[[interface]]\nname = \"eth1\"\nbfd = { tx_interval_ms = 0 }\n",
                "interface[0].bfd.tx_interval_ms",
            ),
            (
                "[[bfd_peer]]\naddress = \"198.18.12.9\"\nrx_interval_ms = 70000\n",
                "bfd_peer[0].rx_interval_ms",
            ),
            (
                "[failover]\nhold_down_ms = 90000\n",
                "failover.hold_down_ms",
            ),
            (
                "[failover]\npeer_restart_grace_ms = 600000\n",
                "failover.peer_restart_grace_ms",
            ),
        ] {
            let err = format!("{:#}", Config::parse(bad).unwrap_err());
            assert!(err.contains(field), "{bad}: {err}");
        }
    }
}
