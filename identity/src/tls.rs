//! rustls configurations for both ends: TLS 1.3 only, both sides present an SVID, both verify
//! the other with `verify_peer`; ALPN h2 (gRPC).

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};
use spiffe::SpiffeId;

use crate::verify::{PeerError, Side, Trust, verify_peer};
use crate::{IdPattern, Identity, IdentityError, PqMode, crypto_provider};

const ALPN_H2: &[u8] = b"h2";

/// Server side: requires a client SVID of our trust domain. Rebuild it when the identity
/// rotates (new key, bundle or CRLs); connections already up keep the old one.
pub fn server_config(id: &Identity, pq: PqMode) -> Result<Arc<ServerConfig>, IdentityError> {
    let verifier = Arc::new(SpiffeClientVerifier {
        trust: id.trust().clone(),
    });
    let mut cfg = ServerConfig::builder_with_provider(crypto_provider(pq))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key().clone_key())?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No session tickets: a resumed session skips certificate verification, and a revocation
    // or a new bundle must apply to the very next connection.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Client side: presents our SVID and accepts a server SVID of our trust domain, and when
/// `expect` is given only one it matches. The server name passed to `connect` is ignored
/// (SVIDs carry no DNS name); an IP address avoids sending SNI.
pub fn client_config(
    id: &Identity,
    pq: PqMode,
    expect: Option<IdPattern>,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let cfg = client_builder(id.trust(), pq, expect)?
        .with_client_auth_cert(id.chain.clone(), id.key().clone_key())?;
    Ok(finish(cfg))
}

/// A client that verifies the server but presents no certificate (servers refuse it: tests).
pub fn client_config_without_cert(
    trust: &Arc<Trust>,
    pq: PqMode,
) -> Result<Arc<ClientConfig>, IdentityError> {
    Ok(finish(
        client_builder(trust, pq, None)?.with_no_client_auth(),
    ))
}

fn client_builder(
    trust: &Arc<Trust>,
    pq: PqMode,
    expect: Option<IdPattern>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, IdentityError> {
    let verifier = Arc::new(SpiffeServerVerifier {
        trust: trust.clone(),
        expect,
    });
    Ok(ClientConfig::builder_with_provider(crypto_provider(pq))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier))
}

fn finish(mut cfg: ClientConfig) -> Arc<ClientConfig> {
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    cfg.resumption = Resumption::disabled();
    Arc::new(cfg)
}

/// The SPIFFE ID in the peer's leaf certificate (verified during the handshake).
pub fn peer_spiffe_id(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe::cert::spiffe_id_from_der(leaf).ok()
}

/// The key exchange group of the handshake, e.g. "X25519MLKEM768", "X25519", "secp256r1".
pub fn negotiated_group_name(conn: &CommonState) -> Option<String> {
    conn.negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
}

fn chain_of<'a>(
    end_entity: &CertificateDer<'a>,
    intermediates: &[CertificateDer<'a>],
) -> Vec<CertificateDer<'a>> {
    let mut chain = Vec::with_capacity(1 + intermediates.len());
    chain.push(end_entity.clone());
    chain.extend(intermediates.iter().cloned());
    chain
}

/// Logs the full reason here (the peer only gets an alert), then hands rustls its error.
fn refuse(side: Side, e: PeerError) -> rustls::Error {
    tracing::warn!("TLS {side:?} refused: {e}");
    e.into()
}

#[derive(Debug)]
struct SpiffeClientVerifier {
    trust: Arc<Trust>,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.trust.anchor_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        verify_peer(&chain, Side::Client, &self.trust, now)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|e| refuse(Side::Client, e))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.trust.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.trust.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algorithms().supported_schemes()
    }
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    trust: Arc<Trust>,
    expect: Option<IdPattern>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        let id = verify_peer(&chain, Side::Server, &self.trust, now)
            .map_err(|e| refuse(Side::Server, e))?;
        match &self.expect {
            Some(pattern) if !pattern.matches(&id) => Err(refuse(
                Side::Server,
                PeerError::NotAllowed {
                    id,
                    pattern: pattern.clone(),
                },
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.trust.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.trust.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algorithms().supported_schemes()
    }
}
