//! A mutual-TLS connection lasts only as long as its client's certificate would still be
//! accepted: when a new CRL revokes it, a new bundle no longer chains it, or it expires, the
//! connection is shut down (its open streams end with it). Checked on every identity update
//! (the files or the Workload API) and at the certificate's notAfter.

use std::{
    net::Shutdown,
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{oneshot, watch};

use crate::{Identity, Side, verify_peer};

/// Watches one connection; the connection drops `_closed`'s sender when it ends.
pub(crate) struct Watch {
    pub chain: Vec<CertificateDer<'static>>,
    pub remote: std::net::SocketAddr,
    /// A duplicate of the connection's socket: shutting it down ends the connection.
    pub socket: OwnedFd,
    pub identities: watch::Receiver<Arc<Identity>>,
    pub closed: oneshot::Receiver<()>,
}

/// Runs until the connection ends, or shuts it down when its peer stops verifying.
pub(crate) async fn cut_when_refused(mut w: Watch) {
    let left = until_not_after(&w.chain);
    let expiry = async move {
        match left {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let reason = loop {
        tokio::select! {
            _ = &mut w.closed => return,
            _ = &mut expiry => break "its certificate expired".to_string(),
            changed = w.identities.changed() => {
                if changed.is_err() {
                    return;
                }
                let id = w.identities.borrow_and_update().clone();
                if let Err(e) = verify_peer(&w.chain, Side::Client, id.trust(), UnixTime::now()) {
                    break e.to_string();
                }
            }
        }
    };
    tracing::warn!(remote = %w.remote, %reason, "API TLS: connection closed, its peer is no longer accepted");
    let _ = std::net::TcpStream::from(w.socket).shutdown(Shutdown::Both);
}

/// How long until just past the leaf's notAfter (None if it cannot be read, which a
/// verified chain rules out).
fn until_not_after(chain: &[CertificateDer<'_>]) -> Option<Duration> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let not_after = chain
        .first()
        .and_then(|der| X509Certificate::from_der(der).ok())
        .map(|(_, c)| c.validity().not_after.timestamp());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    not_after.map(|t| Duration::from_secs((t - now).max(0) as u64 + 1))
}
