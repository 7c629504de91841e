//! Connecting to a dataplane: `unix:///path` or `https://host:port` with our SVID files.
//! Errors say what failed: the address, the socket, or which certificate check.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
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
                let tcp = tokio::net::TcpStream::connect(&hostport)
                    .await
                    .map_err(|e| anyhow!("connecting to {hostport}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                // SVIDs carry no DNS name: the verifier checks the SPIFFE ID instead.
                let name = rustls::pki_types::ServerName::try_from("x0tta6bl4.invalid")
                    .expect("valid name");
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "TLS handshake with {hostport}: {}",
                            explain_tls(&e.to_string())
                        )
                    })?;
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
                Ok::<_, anyhow::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| anyhow!("{}", chain(&e)))?;
    Ok(Connection {
        channel,
        tls: tls_info,
    })
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
            "the server refused our certificate: it has expired",
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
