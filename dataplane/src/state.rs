//! Routes and policy set through the API, kept on disk so that a restart (or a reboot,
//! which empties the pinned maps) brings them back. Written whole to a temporary file
//! and renamed over the old one: a crash leaves the old or the new state, never half.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    config::RouteConfig,
    policy::{IdentityConfig, RuleConfig},
};

/// A whole policy as set through the API.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// (interface, "allow" | "deny") for new flows no rule decides.
    #[serde(default)]
    pub defaults: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiState {
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Overrides the config file's policy until SIGHUP installs the file's again.
    #[serde(default)]
    pub policy: Option<PolicySpec>,
}

pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("api-state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; none saved yet is an empty one.
    pub fn load(&self) -> Result<ApiState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid API state", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ApiState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    pub fn save(&self, state: &ApiState) -> Result<()> {
        let dir = self.path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(state)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming {} into place", tmp.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NextHopConfig;

    #[test]
    fn round_trip_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(&dir.path().join("sub"));
        assert_eq!(store.load().unwrap(), ApiState::default());
        let state = ApiState {
            routes: vec![RouteConfig {
                prefix: "10.0.0.0/8".into(),
                via: vec![NextHopConfig {
                    gateway: "192.0.2.1".parse().unwrap(),
                    interface: "eth0".into(),
                }],
            }],
            policy: Some(PolicySpec::default()),
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        std::fs::write(store.path(), b"{ half").unwrap();
        assert!(
            store
                .load()
                .unwrap_err()
                .to_string()
                .contains("not a valid API state")
        );
    }
}
