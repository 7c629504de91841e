//! Connecting to a dataplane: `unix:///path` or `https://host:port` with our SVID files.
//! Errors say what failed: the address, the socket, or which certificate check.

use std::{
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::{Channel, Endpoint, Uri};
use x0_identity::{FileSource, IdPattern, Identity, PqMode};
use x0_proto::dataplane::v1::dataplane_client::DataplaneClient;

/// How to reach a dataplane and who we are.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub svid: Option<FileSource>,
    pub pq: PqMode,
    /// Accept only a server whose SPIFFE ID matches (default: any of our trust domain).
    pub server_id: Option<IdPattern>,
}

/// What the TLS handshake settled, for `x0ctl health`.
#[derive(Clone, Debug, Default)]
pub struct TlsInfo {
    pub server_id: String,
    pub group: String,
    /// The server's leaf certificate (DER): tells a rotated SVID from the previous one.
    pub server_cert: Vec<u8>,
}

pub struct Connection {
    pub channel: Channel,
    pub tls: Arc<Mutex<Option<TlsInfo>>>,
}

impl Connection {
    pub fn dataplane(&self, max_message: usize) -> DataplaneClient<Channel> {
        DataplaneClient::new(self.channel.clone())
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message)
    }
}

pub async fn connect(t: &Target) -> Result<Connection> {
    let tls_info = Arc::new(Mutex::new(None));
    if let Some(path) = t.addr.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        if !path.exists() {
            bail!(
                "{}: no such socket (is x0-dataplane running with api.unix_socket?)",
                path.display()
            );
        }
        let channel = Endpoint::from_static("http://unix.socket")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(&path)
                        .await
                        .map_err(|e| anyhow!("connecting to {}: {e}", path.display()))?;
                    Ok::<_, anyhow::Error>(TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| anyhow!("{}", chain(&e)))?;
        return Ok(Connection {
            channel,
            tls: tls_info,
        });
    }
    let Some(hostport) = t.addr.strip_prefix("https://") else {
        bail!(
            "--addr {:?}: use unix:///path/to/socket or https://host:port",
            t.addr
        );
    };
    let hostport = hostport.trim_end_matches('/').to_string();
    let svid = t
        .svid
        .as_ref()
        .ok_or_else(|| anyhow!("https:// needs our SVID: --cert, --key and --bundle"))?;
    let identity = Identity::from_files(svid).context("loading our SVID")?;
    let config = x0_identity::client_config(&identity, t.pq, t.server_id.clone())
        .context("building the TLS client config")?;
    let info = tls_info.clone();
    let channel = Endpoint::from_shared(format!("http://{hostport}"))
        .map_err(|e| anyhow!("--addr {:?}: {e}", t.addr))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (config, hostport, info) = (config.clone(), hostport.clone(), info.clone());
            async move {
                // A dropped SYN is retried by the kernel for two minutes: say so sooner.
                let tcp = tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(&hostport))
                    .await
                    .map_err(|_| {
                        anyhow!("connecting to {hostport}: no answer within {CONNECT_WAIT:?}")
                    })?
                    .map_err(|e| anyhow!("connecting to {hostport}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                // SVIDs carry no DNS name: the verifier checks the SPIFFE ID instead.
                let name = rustls::pki_types::ServerName::try_from("x0tta6bl4.invalid")
                    .expect("valid name");
                let mut tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "TLS handshake with {hostport}: {}",
                            explain_tls(&e.to_string())
                        )
                    })?;
                // In TLS 1.3 the server judges our certificate after our handshake is
                // done: wait for its first bytes (HTTP/2 SETTINGS, sent at once) or its
                // alert, so that a refusal is reported as such and not as a broken pipe.
                let mut first = vec![0u8; 16 * 1024];
                let n = match tokio::time::timeout(VERDICT_WAIT, tls.read(&mut first)).await {
                    Ok(Ok(0)) => {
                        return Err(anyhow!(
                            "{hostport} closed the connection after the TLS handshake"
                        ));
                    }
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        return Err(anyhow!(
                            "TLS handshake with {hostport}: {}",
                            explain_tls(&e.to_string())
                        ));
                    }
                    Err(_) => 0,
                };
                first.truncate(n);
                let (_, conn) = tls.get_ref();
                *info.lock().expect("tls info lock") = Some(TlsInfo {
                    server_id: x0_identity::peer_spiffe_id(conn)
                        .map(|i| i.to_string())
                        .unwrap_or_default(),
                    group: x0_identity::negotiated_group_name(conn).unwrap_or_default(),
                    server_cert: conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec())
                        .unwrap_or_default(),
                });
                Ok::<_, anyhow::Error>(TokioIo::new(Primed {
                    first,
                    pos: 0,
                    inner: tls,
                }))
            }
        }))
        .await
        .map_err(|e| anyhow!("{}", chain(&e)))?;
    Ok(Connection {
        channel,
        tls: tls_info,
    })
}

/// How long a TCP connection may take to open.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long a new connection waits for the server's first bytes or alert.
const VERDICT_WAIT: Duration = Duration::from_secs(3);

/// A stream whose first bytes were already read (the server's verdict on our certificate).
struct Primed<S> {
    first: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Primed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.first.len() {
            let n = buf.remaining().min(self.first.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.first[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Primed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Every route of the dataplane (`origin`: only those; Unspecified: all), from the
/// ListRoutes stream's chunks.
pub async fn list_routes(
    dp: &mut DataplaneClient<Channel>,
    origin: x0_proto::dataplane::v1::RouteOrigin,
) -> Result<Vec<x0_proto::dataplane::v1::Route>, tonic::Status> {
    use tokio_stream::StreamExt;
    let mut stream = dp
        .list_routes(x0_proto::dataplane::v1::ListRoutesRequest {
            origin: origin as i32,
        })
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        all.extend(chunk?.routes);
    }
    Ok(all)
}

/// An error and its causes on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Adds what a TLS failure means for the operator.
pub fn explain_tls(msg: &str) -> String {
    const ALERTS: &[(&str, &str)] = &[
        (
            "CertificateExpired",
            "the server refused our certificate: expired or not yet valid",
        ),
        (
            "CertificateUnknown",
            "the server refused our certificate: not a SPIFFE X.509-SVID it accepts",
        ),
        (
            "CertificateRevoked",
            "the server refused our certificate: it is revoked (CRL)",
        ),
        (
            "UnknownCA",
            "the server refused our certificate: not signed by its trust bundle (another trust domain?)",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate (SVID) and we sent none",
        ),
        (
            "BadCertificate",
            "the server refused our certificate: it is not a valid SPIFFE X.509-SVID",
        ),
        (
            "UnsupportedCertificate",
            "the server refused our certificate: not a usable SPIFFE X.509-SVID",
        ),
        ("AccessDenied", "the server refused our SPIFFE ID"),
        (
            "HandshakeFailure",
            "no common TLS parameters (with pq = \"required\" both ends must do X25519MLKEM768)",
        ),
        (
            "peer is incompatible",
            "no common key-exchange group (with pq = \"required\" both ends must do X25519MLKEM768)",
        ),
        (
            "invalid peer certificate: Expired",
            "the server's certificate has expired",
        ),
        (
            "invalid peer certificate: Revoked",
            "the server's certificate is revoked (CRL)",
        ),
        (
            "invalid peer certificate: UnknownIssuer",
            "the server's certificate is not signed by our trust bundle",
        ),
        (
            "invalid peer certificate",
            "the server's certificate failed our checks",
        ),
    ];
    match ALERTS.iter().find(|(k, _)| msg.contains(k)) {
        Some((_, meaning)) => format!("{meaning} ({msg})"),
        None => msg.to_string(),
    }
}

/// An RPC's failure for people: the status, and what a transport failure means.
pub fn rpc_error(s: &tonic::Status) -> anyhow::Error {
    let mut msg = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = std::error::Error::source(s) {
        msg = format!("{msg}: {}", chain(src));
    }
    anyhow!("{}", explain_tls(&msg))
}
