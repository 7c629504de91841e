//! Peer verification shared by both ends of a connection: the chain must lead to our trust
//! bundle (with CRLs), the leaf must be an X.509-SVID, and its ID must be in our trust domain.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use rustls::{CertificateError, DistinguishedName, OtherError};
use spiffe::{SpiffeId, TrustDomain};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::IdPattern;
use crate::fmt_unix;

/// The role the verified peer plays, which decides the extended key usage it must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The peer is a TLS client (clientAuth).
    Client,
    /// The peer is a TLS server (serverAuth).
    Server,
}

/// What a peer is checked against: our trust domain's CA certificates and CRLs, parsed once.
pub struct Trust {
    trust_domain: TrustDomain,
    anchors: Vec<TrustAnchor<'static>>,
    /// Each anchor's pathLenConstraint (webpki does not apply a trust anchor's own).
    path_lens: Vec<Option<u32>>,
    subjects: Vec<DistinguishedName>,
    crls: Vec<CertRevocationList<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the trust bundle holds no CA certificate")]
    NoAnchors,
    #[error("certificate #{index} of the trust bundle is not a usable CA certificate: {reason}")]
    Anchor { index: usize, reason: String },
    #[error("CRL #{index} cannot be parsed: {reason}")]
    Crl { index: usize, reason: String },
}

impl Trust {
    /// `bundle`: the trust domain's CA certificates (trust anchors); `crls`: DER CRLs, each
    /// applied to the certificates its issuer signed.
    pub fn new(
        trust_domain: TrustDomain,
        bundle: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Trust, TrustError> {
        if bundle.is_empty() {
            return Err(TrustError::NoAnchors);
        }
        let anchors = bundle
            .iter()
            .enumerate()
            .map(|(index, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| TrustError::Anchor {
                        index,
                        reason: format!("{e:?}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path_lens = bundle
            .iter()
            .enumerate()
            .map(|(index, der)| {
                anchor_path_len(der).map_err(|reason| TrustError::Anchor { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let subjects = anchors
            .iter()
            // webpki keeps a name without its outer SEQUENCE; the CertificateRequest must carry
            // whole DER Names (RFC 8446 4.2.4), or OpenSSL-based clients (grpcio, curl) fail to
            // decode them.
            .map(|a| DistinguishedName::in_sequence(&a.subject))
            .collect();
        let crls = crls
            .iter()
            .enumerate()
            .map(|(index, der)| {
                OwnedCertRevocationList::from_der(der)
                    .map(CertRevocationList::from)
                    .map_err(|e| TrustError::Crl {
                        index,
                        reason: format!("{e:?}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust {
            trust_domain,
            anchors,
            path_lens,
            subjects,
            crls,
            algs: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Subjects of the trust anchors (the CA hints a server sends with its certificate request).
    pub fn anchor_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    /// Refuses a verified path with more intermediates than its anchor's pathLenConstraint
    /// allows (RFC 5280 4.2.1.9): a lab CA says "leaves only" with pathlen 0.
    fn check_path_len(&self, path: &webpki::VerifiedPath<'_>) -> Result<(), String> {
        let anchor = path.anchor();
        let index = self
            .anchors
            .iter()
            .position(|a| {
                a.subject == anchor.subject
                    && a.subject_public_key_info == anchor.subject_public_key_info
            })
            .ok_or("the verified path ends at an unknown anchor")?;
        let intermediates = path.intermediate_certificates().count();
        match self.path_lens[index] {
            Some(max) if intermediates > max as usize => Err(format!(
                "the chain holds {intermediates} intermediate CA(s); the trust domain's CA \
                 allows {max} (pathLenConstraint)"
            )),
            _ => Ok(()),
        }
    }

    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    pub(crate) fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algs
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// Why a peer was refused. `peer` is the SPIFFE ID the certificate claims, when it has one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("the peer sent no certificate")]
    NoCertificate,
    #[error("the certificate of {peer} expired at {} (now {})", fmt_unix(*not_after), fmt_unix(*now))]
    Expired {
        peer: String,
        not_after: u64,
        now: u64,
    },
    #[error("the certificate of {peer} is not valid before {} (now {})", fmt_unix(*not_before), fmt_unix(*now))]
    NotYetValid {
        peer: String,
        not_before: u64,
        now: u64,
    },
    #[error("the certificate of {peer} is revoked by a CRL of its issuer")]
    Revoked { peer: String },
    #[error("the certificate of {peer} is not signed by trust domain {trust_domain}'s bundle")]
    UnknownIssuer { peer: String, trust_domain: String },
    #[error("the certificate of {peer} does not allow use as a TLS {side:?} (extended key usage)")]
    WrongUsage { peer: String, side: Side },
    #[error("not a SPIFFE X.509-SVID: {0}")]
    NotSpiffe(String),
    #[error("{got} is not in trust domain {want}")]
    WrongTrustDomain { got: SpiffeId, want: TrustDomain },
    #[error("{id} is not allowed here (expected {pattern})")]
    NotAllowed { id: SpiffeId, pattern: IdPattern },
    #[error("{0}")]
    Other(String),
}

/// The error rustls reports locally and turns into the alert the peer receives
/// (CertificateExpired, CertificateRevoked, UnknownCA, AccessDenied, ...).
impl From<PeerError> for rustls::Error {
    fn from(e: PeerError) -> Self {
        let secs = |s: u64| UnixTime::since_unix_epoch(Duration::from_secs(s));
        let cert = match e {
            PeerError::NoCertificate => return rustls::Error::NoCertificatesPresented,
            PeerError::Expired { not_after, now, .. } => CertificateError::ExpiredContext {
                time: secs(now),
                not_after: secs(not_after),
            },
            PeerError::NotYetValid {
                not_before, now, ..
            } => CertificateError::NotValidYetContext {
                time: secs(now),
                not_before: secs(not_before),
            },
            PeerError::Revoked { .. } => CertificateError::Revoked,
            PeerError::UnknownIssuer { .. } => CertificateError::UnknownIssuer,
            PeerError::WrongUsage { .. } => CertificateError::InvalidPurpose,
            // A valid certificate of someone we do not talk to: access_denied.
            PeerError::WrongTrustDomain { .. } | PeerError::NotAllowed { .. } => {
                CertificateError::ApplicationVerificationFailure
            }
            // certificate_unknown, keeping our reason in the local error.
            e @ (PeerError::NotSpiffe(_) | PeerError::Other(_)) => {
                CertificateError::Other(OtherError(Arc::new(e)))
            }
        };
        rustls::Error::InvalidCertificate(cert)
    }
}

/// Verifies a peer's chain (leaf first) for `side` against `trust` at `now` and returns its
/// SPIFFE ID.
///
/// Order: chain to an anchor of the bundle (validity, EKU, CRLs over the whole chain; a
/// certificate whose issuer published no CRL passes), then the X.509-SVID leaf rules (exactly
/// one URI SAN, a spiffe:// ID with a path, CA=false, digitalSignature, no keyCertSign or
/// cRLSign), then the trust domain.
pub fn verify_peer(
    chain: &[CertificateDer<'_>],
    side: Side,
    trust: &Trust,
    now: UnixTime,
) -> Result<SpiffeId, PeerError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(PeerError::NoCertificate);
    };
    let peer = || describe(leaf);
    let ee = EndEntityCert::try_from(leaf)
        .map_err(|e| PeerError::Other(format!("malformed peer certificate: {e}")))?;
    let crls: Vec<&CertRevocationList<'_>> = trust.crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Allow)
            // A lab CA re-signs its CRL only when it revokes: a CRL past its nextUpdate still
            // lists what was revoked, which is better than refusing everyone.
            .with_expiration_policy(ExpirationPolicy::Ignore)
            .build()
    });
    let usage = match side {
        Side::Client => KeyUsage::client_auth(),
        Side::Server => KeyUsage::server_auth(),
    };
    let path = ee
        .verify_for_usage(
            trust.algs.all,
            &trust.anchors,
            intermediates,
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| chain_error(e, peer(), trust, side))?;
    trust
        .check_path_len(&path)
        .map_err(|e| PeerError::Other(format!("certificate chain of {} rejected: {e}", peer())))?;
    let id = svid_leaf_id(leaf).map_err(PeerError::NotSpiffe)?;
    if id.trust_domain() != &trust.trust_domain {
        return Err(PeerError::WrongTrustDomain {
            got: id,
            want: trust.trust_domain.clone(),
        });
    }
    Ok(id)
}

/// webpki's refusal of a chain, as the peer error it stands for.
fn chain_error(e: webpki::Error, peer: String, trust: &Trust, side: Side) -> PeerError {
    match e {
        webpki::Error::CertExpired { time, not_after } => PeerError::Expired {
            peer,
            not_after: not_after.as_secs(),
            now: time.as_secs(),
        },
        webpki::Error::CertNotValidYet { time, not_before } => PeerError::NotYetValid {
            peer,
            not_before: not_before.as_secs(),
            now: time.as_secs(),
        },
        webpki::Error::CertRevoked => PeerError::Revoked { peer },
        webpki::Error::UnknownIssuer => PeerError::UnknownIssuer {
            peer,
            trust_domain: trust.trust_domain.to_string(),
        },
        webpki::Error::CaUsedAsEndEntity => {
            PeerError::NotSpiffe("the leaf certificate is a CA certificate".into())
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => PeerError::WrongUsage { peer, side },
        other => PeerError::Other(format!("certificate chain of {peer} rejected: {other}")),
    }
}

/// A bundle certificate's pathLenConstraint (None: no limit).
fn anchor_path_len(der: &[u8]) -> Result<Option<u32>, String> {
    let (_, x509) = X509Certificate::from_der(der).map_err(|e| format!("{e}"))?;
    match x509.basic_constraints() {
        Ok(Some(bc)) => Ok(bc.value.path_len_constraint),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("unparseable basicConstraints: {e}")),
    }
}

/// The X.509-SVID leaf rules (SPIFFE X509-SVID spec, sections 4 and 5), as the spiffe crate
/// applies them to our own SVID.
pub(crate) fn svid_leaf_id(der: &[u8]) -> Result<SpiffeId, String> {
    let id = spiffe::cert::spiffe_id_from_der(der).map_err(|e| match e {
        spiffe::cert::error::CertificateError::MissingX509Extension(_) => {
            "no subjectAltName (an SVID carries its SPIFFE ID as its one URI SAN)".to_string()
        }
        e => e.to_string(),
    })?;
    if id.path().is_empty() {
        return Err(format!("{id} is a trust domain ID, not a workload ID"));
    }
    let (_, x509) =
        X509Certificate::from_der(der).map_err(|e| format!("cannot parse the certificate: {e}"))?;
    match x509.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => return Err("the leaf certificate is a CA".into()),
        Ok(Some(_)) => {}
        Ok(None) => return Err("the leaf has no basicConstraints extension".into()),
        Err(e) => return Err(format!("unparseable basicConstraints: {e}")),
    }
    match x509.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            Err("the leaf's key usage lacks digitalSignature".into())
        }
        Ok(Some(ku)) if ku.value.key_cert_sign() || ku.value.crl_sign() => {
            Err("the leaf's key usage allows keyCertSign or cRLSign".into())
        }
        Ok(Some(_)) => Ok(id),
        Ok(None) => Err("the leaf has no keyUsage extension".into()),
        Err(e) => Err(format!("unparseable keyUsage: {e}")),
    }
}

/// The peer as named in messages: the SPIFFE ID it claims, if any.
fn describe(leaf: &CertificateDer<'_>) -> String {
    match spiffe::cert::spiffe_id_from_der(leaf) {
        Ok(id) => id.to_string(),
        Err(_) => "a peer without SPIFFE ID".into(),
    }
}

/// Checks only that `chain` leads to an anchor of `trust` at `at` (any key usage, no CRLs):
/// used on our own SVID at load time.
pub(crate) fn check_chain(
    chain: &[CertificateDer<'_>],
    trust: &Trust,
    at: UnixTime,
) -> Result<(), String> {
    struct AnyUsage;
    impl webpki::ExtendedKeyUsageValidator for AnyUsage {
        fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
            Ok(())
        }
    }
    let (leaf, intermediates) = chain.split_first().ok_or("empty chain")?;
    let ee = EndEntityCert::try_from(leaf).map_err(|e| format!("{e}"))?;
    let path = ee
        .verify_for_usage(
            trust.algs.all,
            &trust.anchors,
            intermediates,
            at,
            AnyUsage,
            None,
            None,
        )
        .map_err(|e| format!("{e}"))?;
    trust.check_path_len(&path)
}
