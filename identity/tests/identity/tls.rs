//! Handshakes over loopback TCP with tokio-rustls.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x0_identity::ca::{self, RevokeTarget};
use x0_identity::{
    IdPattern, PqMode, SpiffeId, client_config, client_config_without_cert, negotiated_group_name,
    peer_spiffe_id, server_config,
};

use crate::common::Lab;

/// What one end saw: the key exchange group and the peer's ID, or the error text.
type End = Result<(Option<String>, Option<SpiffeId>), String>;

/// One connection: the client sends "ping", the server answers "pong". TLS 1.3 clients
/// finish their handshake before the server has checked their certificate, so a refusal of
/// the client shows at the client's first read, as the alert the server sent.
async fn exchange(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> (End, End) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_end = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let seen = (negotiated_group_name(conn), peer_spiffe_id(conn));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok(seen)
    });
    let client_end = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        // Any name: the SPIFFE verifier ignores it (an IP address sends no SNI).
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let seen = (negotiated_group_name(conn), peer_spiffe_id(conn));
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"pong");
        Ok(seen)
    };
    let limit = Duration::from_secs(10);
    let client = tokio::time::timeout(limit, client_end)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(limit, server_end)
        .await
        .expect("server timed out")
        .unwrap();
    eprintln!("server: {server:?}\nclient: {client:?}");
    (server, client)
}

struct Pair {
    lab: Lab,
    server: x0_identity::Identity,
    client: x0_identity::Identity,
}

fn pair() -> Pair {
    let lab = Lab::new();
    let server = lab.identity(&lab.issue("/router/r1", "server"));
    let client = lab.identity(&lab.issue("/ctl/alice", "client"));
    Pair {
        lab,
        server,
        client,
    }
}

fn err(end: &End) -> &str {
    end.as_ref().map(|_| ()).expect_err("expected a refusal")
}

#[tokio::test]
async fn mutual_tls_with_x25519mlkem768() {
    let p = pair();
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Required).unwrap(),
        client_config(
            &p.client,
            PqMode::Required,
            Some("spiffe://mesh.example/router/*".parse().unwrap()),
        )
        .unwrap(),
    )
    .await;
    let (s_group, s_peer) = server.unwrap();
    let (c_group, c_peer) = client.unwrap();
    assert_eq!(s_group.as_deref(), Some("X25519MLKEM768"));
    assert_eq!(c_group.as_deref(), Some("X25519MLKEM768"));
    assert_eq!(s_peer.unwrap(), p.client.spiffe_id);
    assert_eq!(c_peer.unwrap(), p.server.spiffe_id);
}

#[tokio::test]
async fn pq_required_server_refuses_classical_client() {
    let p = pair();
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Required).unwrap(),
        client_config(&p.client, PqMode::Off, None).unwrap(),
    )
    .await;
    assert!(
        err(&server).contains("NoKxGroupsInCommon"),
        "server: {server:?}"
    );
    assert!(
        err(&client).contains("HandshakeFailure"),
        "client: {client:?}"
    );
}

#[tokio::test]
async fn pq_preferred_server_falls_back_to_x25519() {
    let p = pair();
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Preferred).unwrap(),
        client_config(&p.client, PqMode::Off, None).unwrap(),
    )
    .await;
    assert_eq!(server.unwrap().0.as_deref(), Some("X25519"));
    assert_eq!(client.unwrap().0.as_deref(), Some("X25519"));
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let p = pair();
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Required).unwrap(),
        client_config_without_cert(p.client.trust(), PqMode::Required).unwrap(),
    )
    .await;
    assert!(
        err(&server).contains("peer sent no certificates"),
        "server: {server:?}"
    );
    assert!(
        err(&client).contains("received fatal alert: CertificateRequired"),
        "client: {client:?}"
    );
}

#[tokio::test]
async fn expired_client_is_told_so() {
    let p = pair();
    let old = p.lab.identity(&p.lab.issue_expired("/ctl/old", "old"));
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Required).unwrap(),
        client_config(&old, PqMode::Required, None).unwrap(),
    )
    .await;
    assert!(
        err(&server).contains("certificate expired"),
        "server: {server:?}"
    );
    assert!(
        err(&client).contains("received fatal alert: CertificateExpired"),
        "client: {client:?}"
    );
}

#[tokio::test]
async fn revoked_client_is_told_so() {
    let p = pair();
    let bad = p.lab.identity(&p.lab.issue("/ctl/mallory", "mallory"));
    ca::revoke(&p.lab.ca_dir(), &RevokeTarget::Serial(bad.serial.clone())).unwrap();
    // The server reloads its identity files, CRL included.
    let server_id = p.lab.identity(&p.lab.issue("/router/r1", "server"));
    let (server, client) = exchange(
        server_config(&server_id, PqMode::Required).unwrap(),
        client_config(&bad, PqMode::Required, None).unwrap(),
    )
    .await;
    assert!(err(&server).contains("Revoked"), "server: {server:?}");
    assert!(
        err(&client).contains("received fatal alert: CertificateRevoked"),
        "client: {client:?}"
    );
}

#[tokio::test]
async fn client_refuses_server_outside_its_pattern() {
    let p = pair();
    let want: IdPattern = "spiffe://mesh.example/brain/*".parse().unwrap();
    let (server, client) = exchange(
        server_config(&p.server, PqMode::Required).unwrap(),
        client_config(&p.client, PqMode::Required, Some(want)).unwrap(),
    )
    .await;
    assert!(
        err(&client).contains("ApplicationVerificationFailure"),
        "client: {client:?}"
    );
    assert!(
        err(&server).contains("received fatal alert: AccessDenied"),
        "server: {server:?}"
    );
}

#[tokio::test]
async fn client_refuses_server_of_another_trust_domain() {
    let p = pair();
    let other = Lab::with_trust_domain("other.example");
    let stranger = other.identity(&other.issue("/router/r1", "stranger"));
    let (server, client) = exchange(
        server_config(&stranger, PqMode::Required).unwrap(),
        client_config(&p.client, PqMode::Required, None).unwrap(),
    )
    .await;
    assert!(err(&client).contains("UnknownIssuer"), "client: {client:?}");
    assert!(
        err(&server).contains("received fatal alert: UnknownCA"),
        "server: {server:?}"
    );
}
