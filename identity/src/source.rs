//! A live identity that rotates without restarts, from files (polled) or from the SPIFFE
//! Workload API (SPIRE agent; pushed).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use spiffe::X509Source;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fmt_unix;
use crate::svid::{FileSet, FileSource, Identity};

/// Where the identity comes from, e.g. in TOML:
/// `source = "files"` with `cert`, `key`, `bundle`, `crls`, or
/// `source = "workload_api"` with an optional `socket`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    Files(FileSource),
    WorkloadApi {
        /// `unix:///path`, `unix:/path` or a plain absolute path; default: the
        /// SPIFFE_ENDPOINT_SOCKET environment variable. CRLs do not exist here.
        #[serde(default)]
        socket: Option<String>,
    },
}

/// How long the first SVID may take to arrive from the Workload API.
const WORKLOAD_API_FIRST_SVID: Duration = Duration::from_secs(30);

/// The current identity, replaced as rotations arrive. Dropping it stops the watching.
pub struct IdentityWatcher {
    rx: watch::Receiver<Arc<Identity>>,
    task: JoinHandle<()>,
}

impl Drop for IdentityWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityWatcher {
    /// Loads the first identity (an error if that fails) and watches for new ones. `poll` is
    /// the files' polling period; the Workload API pushes its rotations.
    pub async fn start(cfg: SourceConfig, poll: Duration) -> Result<Self> {
        match cfg {
            SourceConfig::Files(src) => Self::files(src, poll),
            SourceConfig::WorkloadApi { socket } => Self::workload_api(socket).await,
        }
    }

    pub fn current(&self) -> Arc<Identity> {
        self.rx.borrow().clone()
    }

    /// A receiver that sees every new identity (e.g. to rebuild TLS configurations).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.rx.clone()
    }

    fn files(src: FileSource, poll: Duration) -> Result<Self> {
        let set = FileSet::read(&src)?;
        let mut loaded = fingerprint(&src, &set);
        let id = Identity::from_file_set(&src, &set)?;
        log_new(&id, "files");
        let (tx, rx) = watch::channel(Arc::new(id));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A change is loaded once it has stayed the same for one poll, so that a set
            // being rewritten file by file is not caught half-way.
            let mut pending = None;
            let mut last_error = None;
            loop {
                tick.tick().await;
                // Small local files: read in place rather than on a blocking thread.
                let set = match FileSet::read(&src) {
                    Ok(set) => set,
                    Err(e) => {
                        let msg = e.to_string();
                        if last_error.as_ref() != Some(&msg) {
                            tracing::error!("identity files: {msg}; keeping the current SVID");
                            last_error = Some(msg);
                        }
                        continue;
                    }
                };
                last_error = None;
                let fp = fingerprint(&src, &set);
                if fp == loaded {
                    pending = None;
                    continue;
                }
                if pending != Some(fp) {
                    pending = Some(fp);
                    continue;
                }
                pending = None;
                loaded = fp;
                match Identity::from_file_set(&src, &set) {
                    Ok(id) => {
                        log_new(&id, "files");
                        tx.send_replace(Arc::new(id));
                    }
                    Err(e) => {
                        let cur = tx.borrow().clone();
                        tracing::error!(
                            "identity files changed but are refused: {e}; keeping {} (serial {})",
                            cur.spiffe_id,
                            cur.serial
                        );
                    }
                }
            }
        });
        Ok(IdentityWatcher { rx, task })
    }

    async fn workload_api(socket: Option<String>) -> Result<Self> {
        let mut builder = X509Source::builder().initial_sync_timeout(WORKLOAD_API_FIRST_SVID);
        let shown = match &socket {
            Some(s) => {
                // The spiffe crate wants a URI; accept a bare path too.
                let uri = if s.starts_with('/') {
                    format!("unix://{s}")
                } else {
                    s.clone()
                };
                builder = builder.endpoint(&uri);
                uri
            }
            None => format!(
                "$SPIFFE_ENDPOINT_SOCKET ({})",
                std::env::var("SPIFFE_ENDPOINT_SOCKET").unwrap_or_else(|_| "unset".into())
            ),
        };
        let source = builder
            .build()
            .await
            .with_context(|| format!("SPIFFE Workload API at {shown}"))?;
        // Subscribed before the first read, so that a rotation in between is not missed.
        let mut updates = source.updated();
        let id =
            from_workload(&source).with_context(|| format!("SPIFFE Workload API at {shown}"))?;
        log_new(&id, "Workload API");
        let (tx, rx) = watch::channel(Arc::new(id));
        let task = tokio::spawn(async move {
            // `source` lives in this task: aborting it (drop) shuts the source down.
            loop {
                if let Err(e) = updates.changed().await {
                    tracing::error!(
                        "SPIFFE Workload API source ended: {e}; the SVID no longer rotates"
                    );
                    break;
                }
                match from_workload(&source) {
                    Ok(id) => {
                        log_new(&id, "Workload API");
                        tx.send_replace(Arc::new(id));
                    }
                    Err(e) => {
                        tracing::error!(
                            "SPIFFE Workload API update refused: {e:#}; keeping the current SVID"
                        )
                    }
                }
            }
        });
        Ok(IdentityWatcher { rx, task })
    }
}

/// The default SVID and the bundle of its trust domain, as one coherent snapshot.
fn from_workload(source: &X509Source) -> Result<Identity> {
    let state = source.state();
    let svid = state.svid()?;
    let ctx = state.context()?;
    let td = svid.spiffe_id().trust_domain();
    let bundle = ctx
        .bundle_set()
        .get(td)
        .ok_or_else(|| anyhow!("no bundle for trust domain {td}"))?;
    let der = |c: &spiffe::Certificate| CertificateDer::from(c.as_bytes().to_vec());
    Ok(Identity::from_der(
        svid.cert_chain().iter().map(der).collect(),
        PrivatePkcs8KeyDer::from(svid.private_key().as_bytes().to_vec()),
        bundle.authorities().iter().map(der).collect(),
        Vec::new(),
    )?)
}

/// Changes when any file's content, length or modification time does.
fn fingerprint(src: &FileSource, set: &FileSet) -> u64 {
    let mut h = DefaultHasher::new();
    let paths = [&src.cert, &src.key, &src.bundle]
        .into_iter()
        .chain(src.crls.iter());
    for p in paths {
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    set.cert.hash(&mut h);
    set.key.hash(&mut h);
    set.bundle.hash(&mut h);
    set.crls.hash(&mut h);
    h.finish()
}

fn log_new(id: &Identity, from: &str) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    tracing::info!(
        "SVID {} (serial {}) from {from}, valid until {}",
        id.spiffe_id,
        id.serial,
        fmt_unix(secs(id.not_after))
    );
}
