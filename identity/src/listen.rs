//! The listeners of x0tta6bl4's gRPC servers (dataplane, brain): a Unix socket (file permissions; the peer's credentials logged) and
//! TCP with mutual TLS (SPIFFE SVIDs, TLS 1.3, X25519MLKEM768). Each accepted connection
//! carries a `Peer` that the guard and the handlers read from the request's extensions.

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use crate::{Identity, IdentityWatcher, PqMode};
use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch},
};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// On the Unix socket, with its credentials.
    Local { uid: u32, pid: i32 },
    /// Over mutual TLS, with its verified SPIFFE ID.
    Spiffe(spiffe::SpiffeId),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Local { uid, .. } => write!(f, "unix:uid={uid}"),
            Caller::Spiffe(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub caller: Caller,
    pub remote: Option<SocketAddr>,
    /// The TLS key-exchange group (empty on the Unix socket).
    pub group: String,
}

/// A connection of either listener.
pub enum Conn {
    Unix(UnixStream, Peer),
    /// The sender is dropped with the connection: its watcher (`cut`) then stops.
    Tls(Box<TlsStream<TcpStream>>, Peer, oneshot::Sender<()>),
}

impl Connected for Conn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        match self {
            Conn::Unix(_, p) | Conn::Tls(_, p, _) => p.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, ..) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, ..) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, ..) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, ..) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type Incoming = tokio_stream::wrappers::ReceiverStream<std::io::Result<Conn>>;

/// Binds the Unix socket (replacing a stale one) with `mode`, and yields its connections.
pub fn unix(path: &Path, mode: u32) -> Result<Incoming> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale API socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "API socket accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (uid, pid) = match stream.peer_cred() {
                Ok(c) => (c.uid(), c.pid().unwrap_or(0)),
                Err(e) => {
                    tracing::warn!(error = %e, "SO_PEERCRED failed; connection refused");
                    continue;
                }
            };
            tracing::info!(uid, pid, "API connection on the Unix socket");
            let peer = Peer {
                caller: Caller::Local { uid, pid },
                remote: None,
                group: String::new(),
            };
            if tx.send(Ok(Conn::Unix(stream, peer))).await.is_err() {
                return;
            }
        }
    });
    Ok(Incoming::new(rx))
}

/// Listens on `addr` and yields connections whose TLS handshake succeeded. The server
/// config follows the identity: a rotated SVID, bundle or CRL applies to the next
/// handshake, and established connections (and their streams) carry on.
pub async fn tls(
    addr: std::net::SocketAddr,
    identity: IdentityWatcher,
    pq: PqMode,
) -> Result<(Incoming, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let config = Arc::new(std::sync::RwLock::new(server_config(
        &identity.current(),
        pq,
    )?));
    let mut updates: watch::Receiver<Arc<Identity>> = identity.subscribe();
    let identities = identity.subscribe();
    let follow = config.clone();
    tokio::spawn(async move {
        let _keep = identity; // the watcher runs as long as the listener
        while updates.changed().await.is_ok() {
            let id = updates.borrow_and_update().clone();
            match server_config(&id, pq) {
                Ok(c) => {
                    *follow.write().expect("tls config lock") = c;
                    tracing::info!(spiffe_id = %id.spiffe_id, "API TLS: new SVID/bundle in use for new connections");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "API TLS: new identity refused; the previous one stays")
                }
            }
        }
    });
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "API TCP accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor =
                tokio_rustls::TlsAcceptor::from(config.read().expect("tls config lock").clone());
            let (tx, identities) = (tx.clone(), identities.clone());
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::warn!(%remote, error = %e, "API TLS handshake refused");
                        }
                        Err(_) => return tracing::warn!(%remote, "API TLS handshake timed out"),
                    };
                let (_, conn) = tls.get_ref();
                let Some(id) = crate::peer_spiffe_id(conn) else {
                    return tracing::warn!(%remote, "API TLS: no SPIFFE ID after the handshake");
                };
                let group = crate::negotiated_group_name(conn).unwrap_or_default();
                tracing::info!(%remote, spiffe_id = %id, group, "API connection over mutual TLS");
                let peer = Peer {
                    caller: Caller::Spiffe(id),
                    remote: Some(remote),
                    group,
                };
                let Some(closed) = watch_peer(&tls, remote, identities) else {
                    return tracing::warn!(%remote, "API TLS: cannot watch the connection; refused");
                };
                let _ = tx.send(Ok(Conn::Tls(Box::new(tls), peer, closed))).await;
            });
        }
    });
    Ok((Incoming::new(rx), local))
}

/// Starts the watcher that closes the connection if its client stops verifying; returns
/// the sender the connection holds (None if the socket cannot be duplicated).
fn watch_peer(
    tls: &TlsStream<TcpStream>,
    remote: SocketAddr,
    identities: watch::Receiver<Arc<Identity>>,
) -> Option<oneshot::Sender<()>> {
    use std::os::fd::AsFd;
    let (tcp, conn) = tls.get_ref();
    let chain = conn.peer_certificates()?.to_vec();
    let socket = tcp.as_fd().try_clone_to_owned().ok()?;
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(crate::cut::cut_when_refused(crate::cut::Watch {
        chain,
        remote,
        socket,
        identities,
        closed,
    }));
    Some(closed_tx)
}

fn server_config(id: &Identity, pq: PqMode) -> Result<Arc<rustls::ServerConfig>> {
    crate::server_config(id, pq).context("building the TLS server config")
}
