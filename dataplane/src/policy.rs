//! Zero-trust policy: the config's identities and rules, validated (every error names its
//! field), compiled into the maps the fast path reads, and installed atomically.
//!
//! Compiled form (docs/DESIGN.md, "Policy"): identity prefixes in two LPM maps; rules
//! grouped by (source identity, destination identity), wildcards kept as `IDENTITY_ANY`,
//! so that a packet needs two identity lookups and at most four rule-list lookups,
//! whatever the number of rules.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};
use x0_proto::status::Shown;

use anyhow::{Result, bail};
use aya::maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use x0_common::policy::{
    ACTION_ALLOW, ACTION_DENY, IDENTITY_ANY, IDENTITY_WORLD, MAX_BURST, MAX_IDENTITY_PREFIXES,
    MAX_RATE_PPS, MAX_RULE_PAIRS, MAX_RULES, POLICY_F_ENABLED, PROTO_ANY, PolicyState,
    RULES_PER_PAIR, RateLimit, RuleEntry, RuleList, RulePairKey, rule_slot,
};

/// `[[identity]]`: a numeric identity bound to address prefixes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: String,
    /// 1 to 4294967294 (0 is "world", the rest; the top value means "any").
    pub id: u32,
    pub prefixes: Vec<String>,
}

/// `[[rule]]`: who may talk to whom, on what.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Source identity name, "any" or "world".
    pub from: String,
    /// Destination identity name, "any" or "world".
    pub to: String,
    /// "tcp", "udp", "icmp", "icmpv6", "any", or an IP protocol number.
    #[serde(default = "any")]
    pub proto: String,
    /// Destination ports: "5000" or "5000-5010"; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// "allow" or "deny".
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Packets per second.
    pub pps: u64,
    /// Packets that may pass at once.
    pub burst: u64,
}

fn any() -> String {
    "any".into()
}

/// A policy ready for the maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompiledPolicy {
    pub enabled: bool,
    pub identities: Vec<(IpNet, u32)>,
    /// Rules per (source, destination) identity pair.
    pub pairs: BTreeMap<(u32, u32), Vec<RuleEntry>>,
    /// Rate limits by rule id.
    pub rates: Vec<(u32, u64, u64)>,
    /// Interfaces whose default is deny.
    pub deny_by_default: Vec<String>,
    /// Identity names by id, for explanations.
    pub names: BTreeMap<u32, String>,
}

fn protocol(s: &str) -> Option<u8> {
    Some(match s {
        "any" => PROTO_ANY,
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "icmpv6" => 58,
        n => n.parse::<u8>().ok().filter(|p| *p != 0)?,
    })
}

fn ports(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let p = s.trim().parse().ok()?;
            Some((p, p))
        }
    }
}

/// Validates and compiles. `interfaces` are (name, "allow" | "deny") of the config.
pub fn compile(
    identities: &[IdentityConfig],
    rules: &[RuleConfig],
    interfaces: &[(String, Option<String>)],
) -> Result<CompiledPolicy> {
    let mut out = CompiledPolicy::default();
    let mut by_name: HashMap<&str, u32> = HashMap::new();
    let mut prefixes: HashMap<IpNet, usize> = HashMap::new();
    for (i, ident) in identities.iter().enumerate() {
        if ident.name.is_empty() || ["any", "world"].contains(&ident.name.as_str()) {
            bail!(
                "identity[{i}].name: {} is empty or reserved",
                Shown(&ident.name)
            );
        }
        if ident.id == IDENTITY_WORLD || ident.id == IDENTITY_ANY {
            bail!(
                "identity[{i}].id: {} is reserved (0 is world, {} is any)",
                ident.id,
                IDENTITY_ANY
            );
        }
        if by_name.insert(&ident.name, ident.id).is_some() {
            bail!(
                "identity[{i}].name: {} is defined twice",
                Shown(&ident.name)
            );
        }
        if out.names.insert(ident.id, ident.name.clone()).is_some() {
            bail!("identity[{i}].id: {} is used by another identity", ident.id);
        }
        for (j, p) in ident.prefixes.iter().enumerate() {
            let net: IpNet = p.parse().map_err(|_| {
                anyhow::anyhow!(
                    "identity[{i}].prefixes[{j}]: {} is not an address/length prefix",
                    Shown(p)
                )
            })?;
            if net.trunc() != net {
                bail!(
                    "identity[{i}].prefixes[{j}]: {net} has host bits set (did you mean {}?)",
                    net.trunc()
                );
            }
            if let Some(other) = prefixes.insert(net, i) {
                bail!("identity[{i}].prefixes[{j}]: {net} already belongs to identity[{other}]");
            }
            out.identities.push((net, ident.id));
        }
    }
    if out.identities.len() > MAX_IDENTITY_PREFIXES as usize {
        bail!(
            "identity: {} prefixes, at most {MAX_IDENTITY_PREFIXES}",
            out.identities.len()
        );
    }
    if rules.len() > MAX_RULES as usize {
        bail!("rule: {} rules, at most {MAX_RULES}", rules.len());
    }
    let ident = |i: usize, field: &str, name: &str| -> Result<u32> {
        match name {
            "any" => Ok(IDENTITY_ANY),
            "world" => Ok(IDENTITY_WORLD),
            n => by_name.get(n).copied().ok_or_else(|| {
                anyhow::anyhow!("rule[{i}].{field}: no identity named {}", Shown(n))
            }),
        }
    };
    for (i, r) in rules.iter().enumerate() {
        let id = i as u32 + 1;
        let src = ident(i, "from", &r.from)?;
        let dst = ident(i, "to", &r.to)?;
        let proto = protocol(&r.proto).ok_or_else(|| {
            anyhow::anyhow!(
                "rule[{i}].proto: {} is not tcp, udp, icmp, icmpv6, any or 1-255",
                Shown(&r.proto)
            )
        })?;
        let (port_lo, port_hi) = match &r.ports {
            None => (0, u16::MAX),
            Some(p) => ports(p).ok_or_else(|| {
                anyhow::anyhow!("rule[{i}].ports: {} is not a port or a range a-b", Shown(p))
            })?,
        };
        if port_lo > port_hi {
            bail!("rule[{i}].ports: {port_lo}-{port_hi} is out of order");
        }
        if r.ports.is_some() && ![6, 17].contains(&proto) {
            bail!("rule[{i}].ports: ports need proto tcp or udp");
        }
        let action = match r.action.as_str() {
            "allow" => ACTION_ALLOW,
            "deny" => ACTION_DENY,
            a => bail!("rule[{i}].action: {} is not allow or deny", Shown(a)),
        };
        if let Some(rate) = &r.rate {
            if action != ACTION_ALLOW {
                bail!("rule[{i}].rate: only allow rules take a rate limit");
            }
            if rate.pps == 0 || rate.pps > MAX_RATE_PPS {
                bail!(
                    "rule[{i}].rate.pps: {} is outside 1..={MAX_RATE_PPS}",
                    rate.pps
                );
            }
            if rate.burst == 0 || rate.burst > MAX_BURST {
                bail!(
                    "rule[{i}].rate.burst: {} is outside 1..={MAX_BURST}",
                    rate.burst
                );
            }
            out.rates.push((id, rate.pps, rate.burst));
        }
        // Exact identities and protocol weigh most, then narrower port ranges.
        let width = (port_hi - port_lo) as u32;
        let specificity = (u16::from(src != IDENTITY_ANY) << 12)
            | (u16::from(dst != IDENTITY_ANY) << 11)
            | (u16::from(proto != PROTO_ANY) << 10)
            | (1023 - (width * 1023 / 65535) as u16);
        let list = out.pairs.entry((src, dst)).or_default();
        if list.len() == RULES_PER_PAIR {
            bail!(
                "rule[{i}]: more than {RULES_PER_PAIR} rules from {:?} to {:?}",
                r.from,
                r.to
            );
        }
        list.push(RuleEntry {
            port_lo,
            port_hi,
            proto,
            action,
            specificity,
            rule_id: id,
        });
    }
    if out.pairs.len() > MAX_RULE_PAIRS as usize {
        bail!(
            "rule: {} identity pairs with rules, at most {MAX_RULE_PAIRS}",
            out.pairs.len()
        );
    }
    for (i, (name, policy)) in interfaces.iter().enumerate() {
        match policy.as_deref() {
            None | Some("allow") => {}
            Some("deny") => out.deny_by_default.push(name.clone()),
            Some(p) => bail!("interface[{i}].policy: {p:?} is not allow or deny"),
        }
    }
    out.enabled = !out.pairs.is_empty() || !out.deny_by_default.is_empty();
    Ok(out)
}

/// The policy maps, and what this process wrote into each version.
pub struct PolicyMaps {
    pub state: Array<MapData, PolicyState>,
    pub ident_v4: LpmTrie<MapData, [u8; 5], u32>,
    pub ident_v6: LpmTrie<MapData, [u8; 17], u32>,
    pub rules: BpfHashMap<MapData, RulePairKey, RuleList>,
    pub rate: Array<MapData, RateLimit>,
}

impl PolicyMaps {
    pub fn generation(&self) -> u32 {
        self.state.get(&0, 0).map(|s| s.generation).unwrap_or(0)
    }

    /// Installs `p` in the version not in force, then switches to it with one write.
    /// `set_default(ifindex, version, deny)` records the interface defaults of a version.
    pub fn install(
        &mut self,
        p: &CompiledPolicy,
        ifindex_of: &dyn Fn(&str) -> Option<u32>,
        set_default: &mut dyn FnMut(u32, u32, bool) -> Result<()>,
        all_ports: &[u32],
    ) -> Result<u32> {
        let current = self.generation();
        let next = current.wrapping_add(1);
        let v = next & 1;
        self.clear_version(v)?;
        for (net, id) in &p.identities {
            match net {
                IpNet::V4(n) => {
                    let o = n.addr().octets();
                    self.ident_v4.insert(
                        &Key::new(8 + n.prefix_len() as u32, [v as u8, o[0], o[1], o[2], o[3]]),
                        id,
                        0,
                    )?
                }
                IpNet::V6(n) => {
                    let mut d = [0u8; 17];
                    d[0] = v as u8;
                    d[1..].copy_from_slice(&n.addr().octets());
                    self.ident_v6
                        .insert(&Key::new(8 + n.prefix_len() as u32, d), id, 0)?
                }
            }
        }
        for ((src, dst), entries) in &p.pairs {
            let mut list = RuleList {
                len: entries.len() as u32,
                ..Default::default()
            };
            list.entries[..entries.len()].copy_from_slice(entries);
            self.rules.insert(
                RulePairKey {
                    version: v,
                    src: *src,
                    dst: *dst,
                },
                list,
                0,
            )?;
        }
        // Every rule slot of this version: fresh buckets for the rules with a rate.
        let now = crate::bpffs::coarse_now_ns();
        let rates: HashMap<u32, (u64, u64)> =
            p.rates.iter().map(|(id, r, b)| (*id, (*r, *b))).collect();
        for id in 1..=MAX_RULES {
            let bucket = match rates.get(&id) {
                Some((rate, burst)) => RateLimit {
                    rate_pps: *rate,
                    burst: *burst,
                    tokens_nano: burst * 1_000_000_000,
                    last_ns: now,
                },
                None => RateLimit::default(),
            };
            if bucket != RateLimit::default()
                || self.rate.get(&rule_slot(v, id), 0)? != RateLimit::default()
            {
                self.rate.set(rule_slot(v, id), bucket, 0)?;
            }
        }
        for &ifindex in all_ports {
            set_default(ifindex, v, false)?;
        }
        for name in &p.deny_by_default {
            if let Some(ifindex) = ifindex_of(name) {
                set_default(ifindex, v, true)?;
            }
        }
        // The switch: one aligned 4-byte word (the generation) for every packet at once.
        let flags = if p.enabled { POLICY_F_ENABLED } else { 0 };
        self.state.set(
            0,
            PolicyState {
                generation: next,
                flags,
            },
            0,
        )?;
        Ok(next)
    }

    /// Removes every identity and rule entry of `version` (left by the policy before the
    /// one in force, so no packet can still be reading it).
    fn clear_version(&mut self, version: u32) -> Result<()> {
        let v4: Vec<_> = self
            .ident_v4
            .keys()
            .flatten()
            .filter(|k| k.data()[0] as u32 == version)
            .collect();
        for k in v4 {
            self.ident_v4.remove(&k)?;
        }
        let v6: Vec<_> = self
            .ident_v6
            .keys()
            .flatten()
            .filter(|k| k.data()[0] as u32 == version)
            .collect();
        for k in v6 {
            self.ident_v6.remove(&k)?;
        }
        let rules: Vec<_> = self
            .rules
            .keys()
            .flatten()
            .filter(|k| k.version == version)
            .collect();
        for k in rules {
            self.rules.remove(&k)?;
        }
        Ok(())
    }
}

/// The identity name of an id, for people.
pub fn identity_name(names: &BTreeMap<u32, String>, id: u32) -> String {
    match id {
        IDENTITY_WORLD => "world".into(),
        IDENTITY_ANY => "any".into(),
        id => names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
    }
}

/// Rule `id` (position + 1 in `rules`) for people; 0 is "no rule".
pub fn describe_rule(rules: &[RuleConfig], id: u32) -> String {
    match (id, rules.get((id as usize).wrapping_sub(1))) {
        (0, _) => "no rule".to_string(),
        (id, Some(r)) => format!(
            "rule {id} (rule[{}]: {} {} -> {} {}{})",
            id - 1,
            r.action,
            r.from,
            r.to,
            r.proto,
            r.ports
                .as_ref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default()
        ),
        (id, None) => format!("rule {id}"),
    }
}

/// Parses an address for `explain`.
pub fn parse_addr(s: &str, field: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{field}: {} is not an IP address", Shown(s)))
}

/// Removes the flows whose idle timeout has passed from the pinned connection tables
/// (IPv4 and IPv6). Returns how many.
pub fn expire_flows(pin_root: &std::path::Path) -> Result<usize> {
    use x0_common::{
        map_names,
        policy::{CtKey, CtKey4},
    };
    let v4 = expire::<CtKey4>(pin_root, map_names::CONNTRACK_V4, |k| k.proto)?;
    let v6 = expire::<CtKey>(pin_root, map_names::CONNTRACK, |k| k.proto)?;
    Ok(v4 + v6)
}

/// `expire_flows` for one table, whose key type gives the protocol with `proto`.
fn expire<K: aya::Pod>(
    pin_root: &std::path::Path,
    map: &str,
    proto: impl Fn(&K) -> u8,
) -> Result<usize> {
    use x0_common::policy::{CtEntry, ct_timeout};
    let mut ct: BpfHashMap<MapData, K, CtEntry> = crate::bpffs::open_pinned(pin_root, map)?;
    let now = crate::bpffs::coarse_now_ns();
    let expired: Vec<K> = ct
        .iter()
        .flatten()
        .filter(|(k, e)| now.saturating_sub(e.last_ns) >= ct_timeout(proto(k), e.flags))
        .map(|(k, _)| k)
        .collect();
    for k in &expired {
        let _ = ct.remove(k);
    }
    Ok(expired.len())
}
