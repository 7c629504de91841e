//! `[api]`: the gRPC listeners, our SVID, post-quantum mode, who may call what, limits.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use x0_identity::{IdPattern, PqMode};

use super::authz::rpc_names;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Unix socket for the local brain and operator (absent: none). Access is governed by
    /// its file permissions; every peer's uid/pid is logged (SO_PEERCRED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<PathBuf>,
    /// The socket's permissions, octal ("0660").
    #[serde(default = "default_mode")]
    pub unix_mode: String,
    /// TCP address for remote orchestrators and brains, always mutual TLS (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// X25519MLKEM768 key exchange: "required" (default), "preferred" or "off".
    #[serde(default)]
    pub pq: PqMode,
    /// Our SVID: files, or the SPIFFE Workload API. Required with `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Who may call what over TCP (default deny).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowConfig>,
    /// Largest request or response message, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Requests per second per caller (SPIFFE ID or Unix uid), and the burst above it.
    #[serde(default = "default_rate")]
    pub requests_per_sec: u32,
    #[serde(default = "default_burst")]
    pub request_burst: u32,
    /// Where routes and policy set through the API are kept across restarts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM files: our certificate chain (leaf first), its key, the trust bundle, and
    /// optional CRLs. All are re-read when they change on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<PathBuf>,
    /// Or the SPIFFE Workload API at this socket ("unix:/run/spire/agent.sock"; "env":
    /// SPIFFE_ENDPOINT_SOCKET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_api: Option<String>,
    /// How often the files are checked for changes.
    #[serde(default = "default_reload_ms")]
    pub reload_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// "spiffe://mesh.example/brain/*", "spiffe://mesh.example/orchestrator/o1", ...
    pub spiffe_id: String,
    /// RPC names ("AddRoute") or groups: "read", "routes", "policy", "*".
    pub rpcs: Vec<String>,
}

fn default_mode() -> String {
    "0600".into()
}
fn default_max_message() -> usize {
    4 << 20
}
fn default_rate() -> u32 {
    1000
}
fn default_burst() -> u32 {
    2000
}
fn default_reload_ms() -> u64 {
    1000
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/x0tta6bl4")
}

impl ApiConfig {
    pub fn validate(&self) -> Result<()> {
        if self.unix_socket.is_none() && self.listen.is_none() {
            bail!("api: neither unix_socket nor listen is set");
        }
        self.mode()?;
        if !(1024..=64 << 20).contains(&self.max_message_bytes) {
            bail!("api.max_message_bytes: must be 1024 to 67108864");
        }
        if self.requests_per_sec == 0 || self.request_burst == 0 {
            bail!("api.requests_per_sec, api.request_burst: must be at least 1");
        }
        if self.listen.is_some() {
            let Some(tls) = &self.tls else {
                bail!("api.tls: required with api.listen (mutual TLS is not optional)");
            };
            tls.source()?;
        }
        for (i, a) in self.allow.iter().enumerate() {
            a.spiffe_id
                .parse::<IdPattern>()
                .map_err(|e| anyhow::anyhow!("api.allow[{i}].spiffe_id: {e}"))?;
            if a.rpcs.is_empty() {
                bail!("api.allow[{i}].rpcs: empty");
            }
            for (j, r) in a.rpcs.iter().enumerate() {
                if rpc_names(r).is_none() {
                    bail!(
                        "api.allow[{i}].rpcs[{j}]: {r:?} is not an RPC of the dataplane nor a group (read, routes, policy, *)"
                    );
                }
            }
        }
        Ok(())
    }

    pub fn mode(&self) -> Result<u32> {
        u32::from_str_radix(self.unix_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                anyhow::anyhow!("api.unix_mode: {:?} is not an octal mode", self.unix_mode)
            })
    }
}

impl TlsConfig {
    pub fn source(&self) -> Result<x0_identity::SourceConfig> {
        match (&self.workload_api, &self.cert, &self.key, &self.bundle) {
            (Some(socket), None, None, None) => Ok(x0_identity::SourceConfig::WorkloadApi {
                socket: (socket != "env").then(|| socket.clone()),
            }),
            (None, Some(cert), Some(key), Some(bundle)) => {
                Ok(x0_identity::SourceConfig::Files(x0_identity::FileSource {
                    cert: cert.clone(),
                    key: key.clone(),
                    bundle: bundle.clone(),
                    crls: self.crls.clone(),
                }))
            }
            (Some(_), ..) => bail!("api.tls: workload_api and certificate files are exclusive"),
            _ => bail!("api.tls: set cert, key and bundle (files), or workload_api"),
        }
    }
}
