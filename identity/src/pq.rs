//! Key exchange policy: X25519MLKEM768 (X25519 + ML-KEM-768 hybrid) and its classical fallbacks.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use serde::{Deserialize, Serialize};

/// Which key exchange groups a TLS endpoint offers and accepts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PqMode {
    /// X25519MLKEM768 only: a peer without it cannot connect (harvest-now-decrypt-later safe).
    #[default]
    Required,
    /// X25519MLKEM768 first, X25519 and P-256 for peers that lack it.
    Preferred,
    /// Classical only (X25519, P-256): for comparisons and old peers.
    Off,
}

impl PqMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PqMode::Required => "required",
            PqMode::Preferred => "preferred",
            PqMode::Off => "off",
        }
    }
}

impl fmt::Display for PqMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PqMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(PqMode::Required),
            "preferred" => Ok(PqMode::Preferred),
            "off" => Ok(PqMode::Off),
            other => Err(format!(
                "unknown pq mode {other:?}: expected \"required\", \"preferred\" or \"off\""
            )),
        }
    }
}

/// The aws-lc-rs provider restricted to the groups of `pq` (cipher suites and signature
/// algorithms stay the provider's defaults).
pub fn crypto_provider(pq: PqMode) -> Arc<CryptoProvider> {
    let kx_groups = match pq {
        PqMode::Required => vec![kx_group::X25519MLKEM768],
        PqMode::Preferred => vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
        ],
        PqMode::Off => vec![kx_group::X25519, kx_group::SECP256R1],
    };
    Arc::new(CryptoProvider {
        kx_groups,
        ..aws_lc_rs::default_provider()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    fn names(pq: PqMode) -> Vec<NamedGroup> {
        crypto_provider(pq)
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect()
    }

    #[test]
    fn groups_per_mode() {
        assert_eq!(names(PqMode::Required), [NamedGroup::X25519MLKEM768]);
        assert_eq!(
            names(PqMode::Preferred),
            [
                NamedGroup::X25519MLKEM768,
                NamedGroup::X25519,
                NamedGroup::secp256r1
            ]
        );
        assert_eq!(
            names(PqMode::Off),
            [NamedGroup::X25519, NamedGroup::secp256r1]
        );
    }

    #[test]
    fn parse_and_display() {
        for m in [PqMode::Required, PqMode::Preferred, PqMode::Off] {
            assert_eq!(m.to_string().parse::<PqMode>().unwrap(), m);
        }
        assert!("maybe".parse::<PqMode>().unwrap_err().contains("maybe"));
        assert_eq!(PqMode::default(), PqMode::Required);
    }
}
