//! Which peers a connection accepts: one SPIFFE ID, every ID under a path, or a whole trust domain.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use spiffe::{SpiffeId, TrustDomain};

/// `spiffe://td/router/r1` (exactly that ID), `spiffe://td/brain/*` (one or more segments
/// under /brain) or `spiffe://td/*` (any workload of the trust domain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPattern {
    trust_domain: TrustDomain,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Exact(SpiffeId),
    /// Path before the final `/*` ("" for the whole trust domain).
    Under(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("{0:?} is not a SPIFFE ID pattern: it must start with spiffe://")]
    NoScheme(String),
    #[error("{0:?}: `*` is only allowed as the whole last path segment (spiffe://td/path/*)")]
    Wildcard(String),
    #[error(
        "{0:?} names a trust domain, not a workload: use {0}/* for every workload of the trust domain"
    )]
    TrustDomainOnly(String),
    #[error("{pattern:?} is not a valid SPIFFE ID pattern: {reason}")]
    Invalid { pattern: String, reason: String },
}

impl IdPattern {
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match &self.kind {
            Kind::Exact(want) => id == want,
            Kind::Under(prefix) => {
                id.trust_domain() == &self.trust_domain
                    && id
                        .path()
                        .strip_prefix(prefix.as_str())
                        // "/x" at least: SPIFFE IDs have no empty segments.
                        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
            }
        }
    }
}

impl FromStr for IdPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("spiffe://"))
        {
            return Err(PatternError::NoScheme(s.to_string()));
        }
        let invalid = |e: spiffe::SpiffeIdError| PatternError::Invalid {
            pattern: s.to_string(),
            reason: e.to_string(),
        };
        if let Some(base) = s.strip_suffix("/*") {
            if base.contains('*') {
                return Err(PatternError::Wildcard(s.to_string()));
            }
            // The part before `/*` is a SPIFFE ID itself (the trust domain ID when no path).
            let base = SpiffeId::new(base).map_err(invalid)?;
            return Ok(IdPattern {
                trust_domain: base.trust_domain().clone(),
                kind: Kind::Under(base.path().to_string()),
            });
        }
        if s.contains('*') {
            return Err(PatternError::Wildcard(s.to_string()));
        }
        let id = SpiffeId::new(s).map_err(invalid)?;
        if id.path().is_empty() {
            return Err(PatternError::TrustDomainOnly(s.to_string()));
        }
        Ok(IdPattern {
            trust_domain: id.trust_domain().clone(),
            kind: Kind::Exact(id),
        })
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Exact(id) => write!(f, "{id}"),
            Kind::Under(prefix) => write!(f, "spiffe://{}{prefix}/*", self.trust_domain),
        }
    }
}

impl<'de> Deserialize<'de> for IdPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for IdPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).unwrap()
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            (
                "spiffe://mesh.example/router/r1",
                "spiffe://mesh.example/router/r1",
                true,
            ),
            (
                "spiffe://mesh.example/router/r1",
                "spiffe://mesh.example/router/r2",
                false,
            ),
            (
                "spiffe://mesh.example/router/r1",
                "spiffe://mesh.example/router/r1/x",
                false,
            ),
            (
                "spiffe://mesh.example/router/r1",
                "spiffe://other.example/router/r1",
                false,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://mesh.example/brain/b1",
                true,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://mesh.example/brain/eu/b1",
                true,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://mesh.example/brain",
                false,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://mesh.example/brainx/b1",
                false,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://mesh.example/router/r1",
                false,
            ),
            (
                "spiffe://mesh.example/brain/*",
                "spiffe://other.example/brain/b1",
                false,
            ),
            (
                "spiffe://mesh.example/*",
                "spiffe://mesh.example/router/r1",
                true,
            ),
            ("spiffe://mesh.example/*", "spiffe://mesh.example/x", true),
            ("spiffe://mesh.example/*", "spiffe://other.example/x", false),
            (
                "spiffe://mesh.example/*",
                "spiffe://mesh.example.evil/x",
                false,
            ),
        ];
        for (pattern, candidate, want) in table {
            let p: IdPattern = pattern.parse().unwrap();
            assert_eq!(p.matches(&id(candidate)), *want, "{pattern} vs {candidate}");
            assert_eq!(p.to_string(), *pattern, "display round trip");
        }
    }

    #[test]
    fn parse_errors() {
        use PatternError::*;
        let err = |s: &str| s.parse::<IdPattern>().unwrap_err();
        assert_eq!(
            err("mesh.example/router"),
            NoScheme("mesh.example/router".into())
        );
        assert_eq!(
            err("https://mesh.example/x"),
            NoScheme("https://mesh.example/x".into())
        );
        assert_eq!(
            err("spiffe://mesh.example/*/x"),
            Wildcard("spiffe://mesh.example/*/x".into())
        );
        assert_eq!(
            err("spiffe://mesh.example/b*"),
            Wildcard("spiffe://mesh.example/b*".into())
        );
        assert_eq!(
            err("spiffe://mesh.example/*/*"),
            Wildcard("spiffe://mesh.example/*/*".into())
        );
        assert_eq!(
            err("spiffe://mesh.example"),
            TrustDomainOnly("spiffe://mesh.example".into())
        );
        assert!(matches!(err("spiffe://mesh example/x"), Invalid { .. }));
        assert!(matches!(err("spiffe://mesh.example//x"), Invalid { .. }));
        assert!(
            err("spiffe://mesh.example/b*")
                .to_string()
                .contains("last path segment")
        );
    }

    #[test]
    fn serde_from_string() {
        let p: IdPattern = serde_json::from_str("\"spiffe://mesh.example/brain/*\"").unwrap();
        assert!(p.matches(&id("spiffe://mesh.example/brain/b1")));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            "\"spiffe://mesh.example/brain/*\""
        );
        let e = serde_json::from_str::<IdPattern>("\"mesh.example\"").unwrap_err();
        assert!(e.to_string().contains("must start with spiffe://"), "{e}");
    }
}
