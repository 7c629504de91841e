//! How large the maps are made, from the config's `[maps]`: the default profile holds an
//! Internet table (2M IPv4 and 1M IPv6 routes, 262,144 flows per family, the 64 MiB IPv4
//! direct table: 191 MiB of kernel memory); "small" is for routers with little memory
//! (16,384 IPv4 and 8,192 IPv6 routes, 16,384 flows, no direct table). Sizes apply when
//! the maps are created: pinned maps keep theirs (`x0-dataplane detach` first to resize).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use x0_common::{MAX_ROUTES_V4, MAX_ROUTES_V6, map_names, policy::CT_DEFAULT_ENTRIES};

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    #[default]
    Default,
    Small,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MapsConfig {
    #[serde(default)]
    pub profile: Profile,
    /// IPv4 routes the tables hold (overrides the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_v4: Option<u32>,
    /// IPv6 routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_v6: Option<u32>,
    /// Flows the connection table holds, per address family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<u32>,
}

/// Entries per map for a profile: (IPv4 routes, IPv6 routes, flows).
fn profile_sizes(p: Profile) -> (u32, u32, u32) {
    match p {
        Profile::Default => (MAX_ROUTES_V4, MAX_ROUTES_V6, CT_DEFAULT_ENTRIES),
        Profile::Small => (16_384, 8_192, 16_384),
    }
}

impl MapsConfig {
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("routes_v4", self.routes_v4, MAX_ROUTES_V4),
            ("routes_v6", self.routes_v6, MAX_ROUTES_V6),
            ("conntrack", self.conntrack, 1 << 24),
        ];
        for (name, value, max) in checks {
            if let Some(v) = value
                && !(1..=max).contains(&v)
            {
                bail!("maps.{name}: {v} is not 1 to {max}");
            }
        }
        Ok(())
    }

    /// Whether the IPv4 direct table is made (`ipv4_direct_table`, and not the small
    /// profile).
    pub fn direct_table(&self, ipv4_direct_table: bool) -> bool {
        ipv4_direct_table && self.profile != Profile::Small
    }

    /// Max entries by map name, for the loader.
    pub fn sizes(&self, ipv4_direct_table: bool) -> Vec<(&'static str, u32)> {
        let (v4, v6, ct) = profile_sizes(self.profile);
        let v4 = self.routes_v4.unwrap_or(v4);
        let ct = self.conntrack.unwrap_or(ct);
        let mut sizes = vec![
            (map_names::ROUTES_V4, v4),
            (map_names::ROUTES_V4_EXACT, v4),
            (map_names::ROUTES_V6, self.routes_v6.unwrap_or(v6)),
            (map_names::CONNTRACK, ct),
            (map_names::CONNTRACK_V4, ct),
        ];
        if !self.direct_table(ipv4_direct_table) {
            // One element: the program sees the table as off.
            sizes.push((map_names::V4_DIRECT, 1));
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(sizes: &[(&str, u32)], name: &str) -> Option<u32> {
        sizes.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn the_small_profile_shrinks_routes_flows_and_drops_the_direct_table() {
        let small = MapsConfig {
            profile: Profile::Small,
            routes_v6: Some(1000),
            ..Default::default()
        };
        let s = small.sizes(true);
        assert_eq!(size(&s, map_names::ROUTES_V4_EXACT), Some(16_384));
        assert_eq!(size(&s, map_names::ROUTES_V6), Some(1000));
        assert_eq!(size(&s, map_names::CONNTRACK_V4), Some(16_384));
        assert_eq!(size(&s, map_names::V4_DIRECT), Some(1));
        let d = MapsConfig::default().sizes(true);
        assert_eq!(size(&d, map_names::ROUTES_V4), Some(MAX_ROUTES_V4));
        assert_eq!(size(&d, map_names::V4_DIRECT), None);
        assert_eq!(
            size(&MapsConfig::default().sizes(false), map_names::V4_DIRECT),
            Some(1)
        );
    }

    #[test]
    fn sizes_out_of_range_are_refused_by_name() {
        let bad = MapsConfig {
            routes_v4: Some(0),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            format!("maps.routes_v4: 0 is not 1 to {MAX_ROUTES_V4}")
        );
        let big = MapsConfig {
            conntrack: Some(1 << 25),
            ..Default::default()
        };
        assert!(
            big.validate()
                .unwrap_err()
                .to_string()
                .starts_with("maps.conntrack:")
        );
    }
}
