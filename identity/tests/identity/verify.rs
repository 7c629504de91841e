use rustls::pki_types::UnixTime;
use x0_identity::ca::{self, RevokeTarget};
use x0_identity::{PeerError, Side, Trust, TrustDomain, verify_peer};

use crate::common::Lab;

#[test]
fn valid_svid_gives_its_id() {
    let lab = Lab::new();
    let server = lab.identity(&lab.issue("/router/r1", "server"));
    let client = lab.identity(&lab.issue("/ctl/alice", "client"));
    for side in [Side::Client, Side::Server] {
        let id = verify_peer(&client.chain, side, server.trust(), UnixTime::now()).unwrap();
        assert_eq!(id.to_string(), "spiffe://mesh.example/ctl/alice");
    }
}

#[test]
fn no_certificate() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let err = verify_peer(&[], Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::NoCertificate), "{err}");
}

#[test]
fn expired() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let old = lab.identity(&lab.issue_expired("/router/old", "old"));
    let err = verify_peer(&old.chain, Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::Expired { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("spiffe://mesh.example/router/old") && msg.contains("expired at"),
        "{msg}"
    );
}

#[test]
fn not_yet_valid() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let early = lab.identity(&lab.issue_future("/router/early", "early"));
    let err = verify_peer(&early.chain, Side::Server, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("is not valid before"), "{err}");
}

#[test]
fn revoked() {
    let lab = Lab::new();
    let peer = lab.identity(&lab.issue("/router/bad", "bad"));
    ca::revoke(&lab.ca_dir(), &RevokeTarget::Serial(peer.serial.clone())).unwrap();
    // Loaded after the revocation: our CRL lists it.
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    assert_eq!(us.trust().crl_count(), 1);
    let err = verify_peer(&peer.chain, Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::Revoked { .. }), "{err}");
    // Unrevoked peers of the same CA still pass with that CRL.
    let good = lab.identity(&lab.issue("/router/good", "good"));
    verify_peer(&good.chain, Side::Client, us.trust(), UnixTime::now()).unwrap();
}

#[test]
fn other_trust_domain_ca() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let other = Lab::with_trust_domain("other.example");
    let stranger = other.identity(&other.issue("/router/r1", "stranger"));
    let err = verify_peer(&stranger.chain, Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::UnknownIssuer { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the certificate of spiffe://other.example/router/r1 is not signed by trust domain \
         mesh.example's bundle"
    );
}

#[test]
fn our_ca_but_another_trust_domain_expected() {
    // A bundle that (wrongly) signs for our trust domain is configured for another one.
    let lab = Lab::new();
    let peer = lab.identity(&lab.issue("/router/r1", "peer"));
    let trust = Trust::new(
        TrustDomain::new("other.example").unwrap(),
        &peer.bundle,
        &[],
    )
    .unwrap();
    let err = verify_peer(&peer.chain, Side::Client, &trust, UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::WrongTrustDomain { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "spiffe://mesh.example/router/r1 is not in trust domain other.example"
    );
}

#[test]
fn plain_tls_certificate_from_our_ca() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let plain = lab.issue_plain("router.example", "plain");
    let chain = vec![rustls::pki_types::pem::PemObject::from_pem_file(&plain.cert_path).unwrap()];
    let err = verify_peer(&chain, Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, PeerError::NotSpiffe(_)), "{err}");
    assert!(err.to_string().contains("SPIFFE ID"), "{err}");
}

#[test]
fn peer_errors_map_to_tls_alert_errors() {
    use rustls::CertificateError as C;
    let e: rustls::Error = PeerError::Revoked { peer: "x".into() }.into();
    assert_eq!(e, rustls::Error::InvalidCertificate(C::Revoked));
    let e: rustls::Error = PeerError::UnknownIssuer {
        peer: "x".into(),
        trust_domain: "y".into(),
    }
    .into();
    assert_eq!(e, rustls::Error::InvalidCertificate(C::UnknownIssuer));
    let e: rustls::Error = PeerError::NoCertificate.into();
    assert_eq!(e, rustls::Error::NoCertificatesPresented);
    let e: rustls::Error = PeerError::NotSpiffe("no URI SAN".into()).into();
    assert!(e.to_string().contains("no URI SAN"), "{e}");
}

#[test]
fn acceptable_ca_names_are_whole_der_names() {
    // OpenSSL-based clients (grpcio, curl) decode each name of the CertificateRequest as a
    // DER Name and give up the handshake when the outer SEQUENCE is missing.
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let pem = std::fs::read(lab.ca_dir().join(ca::BUNDLE)).unwrap();
    let ca_subjects: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(&pem)
        .map(|p| {
            let p = p.unwrap();
            let cert = p.parse_x509().unwrap();
            cert.subject().as_raw().to_vec()
        })
        .collect();
    let sent: Vec<Vec<u8>> = us
        .trust()
        .anchor_subjects()
        .iter()
        .map(|n| n.as_ref().to_vec())
        .collect();
    assert!(!sent.is_empty());
    for name in &sent {
        assert_eq!(name[0], 0x30, "a Name is a SEQUENCE");
        use x509_parser::prelude::FromDer;
        let (rest, _) = x509_parser::x509::X509Name::from_der(name).expect("a DER Name");
        assert!(rest.is_empty());
    }
    assert_eq!(
        sent, ca_subjects,
        "the CA certificates' subjects, byte for byte"
    );
}

/// rcgen parameters of an X.509-SVID leaf (as `ca::issue` makes them) for `uri`.
fn svid_params(uri: &str) -> rcgen::CertificateParams {
    use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![Ku::DigitalSignature, Ku::KeyAgreement];
    p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
    p.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    p
}

fn ca_params(td: &str, path_len: Option<u8>) -> rcgen::CertificateParams {
    use rcgen::KeyUsagePurpose as Ku;
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(match path_len {
        Some(n) => rcgen::BasicConstraints::Constrained(n),
        None => rcgen::BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    p.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://{td}").try_into().unwrap(),
    )];
    p
}

/// [leaf, intermediate] for spiffe://mesh.example/router/sub: an intermediate CA signed by
/// `root`, and a leaf signed by it.
fn chain_through_an_intermediate(
    root: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let key = rcgen::KeyPair::generate().unwrap();
    let inter_params = ca_params("mesh.example", None);
    let inter = inter_params.signed_by(&key, root).unwrap();
    let inter_issuer = rcgen::Issuer::new(inter_params, key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = svid_params("spiffe://mesh.example/router/sub")
        .signed_by(&leaf_key, &inter_issuer)
        .unwrap();
    vec![leaf.der().clone(), inter.der().clone()]
}

#[test]
fn an_intermediate_under_a_leaves_only_ca_is_refused() {
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    // The lab CA (pathlen 0) signs an intermediate CA, which signs a valid SVID.
    let chain = chain_through_an_intermediate(&lab_issuer(&lab));
    let err = verify_peer(&chain, Side::Client, us.trust(), UnixTime::now()).unwrap_err();
    assert!(err.to_string().contains("pathLenConstraint"), "{err}");

    // The same chain under a CA without a path length is accepted: the refusal above is
    // the constraint's, nothing else's.
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_params = ca_params("mesh.example", None);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, root_key);
    let trust = Trust::new(
        TrustDomain::new("mesh.example").unwrap(),
        &[root.der().clone()],
        &[],
    )
    .unwrap();
    let chain = chain_through_an_intermediate(&root_issuer);
    let id = verify_peer(&chain, Side::Client, &trust, UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), "spiffe://mesh.example/router/sub");
}

/// The lab CA's issuer (to sign what `ca::issue` would refuse to).
fn lab_issuer(lab: &Lab) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let pem = std::fs::read_to_string(lab.ca_dir().join(ca::CA_CERT)).unwrap();
    let key = std::fs::read_to_string(lab.ca_dir().join(ca::CA_KEY)).unwrap();
    rcgen::Issuer::from_ca_cert_pem(&pem, rcgen::KeyPair::from_pem(&key).unwrap()).unwrap()
}

#[test]
fn a_trust_domain_in_capitals_is_the_same_trust_domain_and_paths_keep_their_case() {
    // SPIFFE-ID 2.1: the trust domain is the URI's host, case-insensitive (RFC 3986 3.2.2);
    // the spiffe crate keeps it in lowercase. The path is case-sensitive.
    assert_eq!(
        TrustDomain::new("MESH.Example").unwrap().as_str(),
        "mesh.example"
    );
    let lab = Lab::new();
    let us = lab.identity(&lab.issue("/router/r1", "us"));
    let leaf = svid_params("spiffe://MESH.example/Router/R9")
        .signed_by(&rcgen::KeyPair::generate().unwrap(), &lab_issuer(&lab))
        .unwrap();
    let id = verify_peer(
        &[leaf.der().clone()],
        Side::Client,
        us.trust(),
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(id.to_string(), "spiffe://mesh.example/Router/R9");
    // Allow-lists: capitals in the trust domain match, in the path they do not.
    let m = |p: &str| p.parse::<x0_identity::IdPattern>().unwrap().matches(&id);
    assert!(m("spiffe://Mesh.Example/Router/R9"));
    assert!(m("spiffe://mesh.example/Router/*"));
    assert!(!m("spiffe://mesh.example/router/r9"));
    assert!(!m("spiffe://mesh.example/router/*"));
}
