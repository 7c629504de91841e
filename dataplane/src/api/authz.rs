//! Who may call what: a table from SPIFFE ID patterns to RPCs, default deny.

use x0_identity::IdPattern;

use super::config::AllowConfig;

/// Reading: no state changes.
pub const READ: &[&str] = &[
    "GetInfo",
    "ListRoutes",
    "ListNextHops",
    "ListBfdSessions",
    "GetPolicy",
    "GetStats",
    "WatchStats",
    "WatchEvents",
    "Explain",
    "MonitorDrops",
    "ListCommits",
];
/// Programming routes, and BFD to the neighbours they will use.
/// Confirming or rolling back a pending commit (of either kind) comes with changing routes
/// or policy.
pub const ROUTES: &[&str] = &[
    "AddRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "BatchRoutes",
    "AddBfdPeer",
    "RemoveBfdPeer",
    "ConfirmCommit",
    "RollbackCommit",
];
/// Setting the zero-trust policy.
pub const POLICY: &[&str] = &["SetPolicy", "ConfirmCommit", "RollbackCommit"];

/// The RPCs a name in `allow.rpcs` stands for (None: not a name we know).
pub fn rpc_names(name: &str) -> Option<Vec<&'static str>> {
    let all = || READ.iter().chain(ROUTES).chain(POLICY).copied();
    match name {
        "*" => Some(all().collect()),
        "read" => Some(READ.to_vec()),
        "routes" => Some(ROUTES.to_vec()),
        "policy" => Some(POLICY.to_vec()),
        n => all().find(|r| *r == n).map(|r| vec![r]),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    rules: Vec<(IdPattern, Vec<&'static str>)>,
}

impl Authorizer {
    /// From a validated config.
    pub fn new(allow: &[AllowConfig]) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        for (i, a) in allow.iter().enumerate() {
            let pattern = a
                .spiffe_id
                .parse::<IdPattern>()
                .map_err(|e| anyhow::anyhow!("api.allow[{i}].spiffe_id: {e}"))?;
            let mut rpcs = Vec::new();
            for r in &a.rpcs {
                rpcs.extend(
                    rpc_names(r).ok_or_else(|| anyhow::anyhow!("api.allow[{i}].rpcs: {r:?}"))?,
                );
            }
            rules.push((pattern, rpcs));
        }
        Ok(Self { rules })
    }

    /// Whether the SPIFFE ID may call `rpc` (a method name of the dataplane service).
    pub fn allows(&self, id: &spiffe::SpiffeId, rpc: &str) -> bool {
        self.rules
            .iter()
            .any(|(p, rpcs)| p.matches(id) && rpcs.contains(&rpc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(id: &str, rpcs: &[&str]) -> AllowConfig {
        AllowConfig {
            spiffe_id: id.into(),
            rpcs: rpcs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn default_deny_and_groups() {
        let a = Authorizer::new(&[
            allow("spiffe://mesh.example/brain/*", &["routes", "read"]),
            allow(
                "spiffe://mesh.example/orchestrator/o1",
                &["GetStats", "policy"],
            ),
        ])
        .unwrap();
        let id = |s: &str| spiffe::SpiffeId::new(s).unwrap();
        assert!(a.allows(&id("spiffe://mesh.example/brain/r1"), "BatchRoutes"));
        assert!(a.allows(&id("spiffe://mesh.example/brain/r1"), "ListRoutes"));
        assert!(!a.allows(&id("spiffe://mesh.example/brain/r1"), "SetPolicy"));
        assert!(a.allows(&id("spiffe://mesh.example/orchestrator/o1"), "SetPolicy"));
        assert!(!a.allows(&id("spiffe://mesh.example/orchestrator/o1"), "AddRoute"));
        assert!(!a.allows(&id("spiffe://mesh.example/orchestrator/o2"), "GetStats"));
        assert!(!a.allows(&id("spiffe://other.example/brain/r1"), "ListRoutes"));
        assert!(!Authorizer::default().allows(&id("spiffe://mesh.example/brain/r1"), "GetInfo"));
        assert!(rpc_names("Frobnicate").is_none());
        assert_eq!(
            rpc_names("*").unwrap().len(),
            READ.len() + ROUTES.len() + POLICY.len()
        );
    }
}
