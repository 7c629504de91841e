use std::os::unix::fs::PermissionsExt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x0_identity::ca::{self, RevokeTarget};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::{HOUR, Lab, TD};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_issue_and_parse_back_with_spiffe() {
    let lab = Lab::new();
    let issued = lab.issue("/router/r1", "r1");
    assert_eq!(
        issued.spiffe_id.as_ref().unwrap().to_string(),
        "spiffe://mesh.example/router/r1"
    );
    let cert = CertificateDer::from_pem_file(&issued.cert_path).unwrap();
    let key = PrivateKeyDer::from_pem_file(&issued.key_path).unwrap();
    let svid = spiffe::X509Svid::parse_from_der(&cert, key.secret_der()).unwrap();
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://mesh.example/router/r1"
    );

    let (_, x509) = X509Certificate::from_der(&cert).unwrap();
    let sans = &x509
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(sans.len(), 1, "exactly one SAN: {sans:?}");
    assert!(!x509.is_ca());
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    assert_eq!(mode(&issued.key_path), 0o600);
    assert_eq!(mode(&lab.ca_dir().join(ca::CA_KEY)), 0o600);
    let state = ca::load_state(&lab.ca_dir()).unwrap();
    assert_eq!(state.trust_domain, TD);
    assert_eq!(state.issued.len(), 1);
    assert_eq!(state.issued[0].serial, issued.serial);
    assert_eq!(
        state.issued[0].spiffe_id.as_deref(),
        Some("spiffe://mesh.example/router/r1")
    );
    // Serials count up.
    let second = lab.issue("/router/r2", "r2");
    assert_ne!(second.serial, issued.serial);
}

#[test]
fn init_refuses_to_overwrite() {
    let lab = Lab::new();
    let before = std::fs::read(lab.ca_dir().join(ca::CA_KEY)).unwrap();
    let err = ca::init(&lab.ca_dir(), TD, HOUR).unwrap_err().to_string();
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(lab.ca_dir().join(ca::CA_KEY)).unwrap(),
        before
    );
}

#[test]
fn issue_refuses_bad_requests() {
    let lab = Lab::new();
    let err = ca::issue(&lab.ca_dir(), &lab.request("router/r1", "x")).unwrap_err();
    assert!(err.to_string().contains("must start with /"), "{err}");
    let err = ca::issue(&lab.ca_dir(), &lab.request("/router//r1", "x")).unwrap_err();
    assert!(err.to_string().contains("invalid SPIFFE ID path"), "{err}");
    let err = ca::issue(&lab.ca_dir(), &lab.request("/r", "../x")).unwrap_err();
    assert!(err.to_string().contains("invalid file name"), "{err}");
    let nowhere = lab.tmp.path().join("nothing");
    let err = ca::issue(&nowhere, &lab.request("/r", "x")).unwrap_err();
    assert!(format!("{err:#}").contains("ca.json"), "{err:#}");
}

fn crl(lab: &Lab) -> webpki::CertRevocationList<'static> {
    let der = CertificateRevocationListDer::from_pem_file(lab.ca_dir().join(ca::CRL)).unwrap();
    webpki::OwnedCertRevocationList::from_der(&der)
        .unwrap()
        .into()
}

fn raw_serial(path: &std::path::Path) -> Vec<u8> {
    let cert = CertificateDer::from_pem_file(path).unwrap();
    let (_, x509) = X509Certificate::from_der(&cert).unwrap();
    x509.raw_serial().to_vec()
}

#[test]
fn revoke_puts_the_serial_in_the_crl() {
    let lab = Lab::new();
    let a = lab.issue("/router/a", "a");
    let b = lab.issue("/router/b", "b");
    assert!(
        crl(&lab)
            .find_serial(&raw_serial(&a.cert_path))
            .unwrap()
            .is_none()
    );

    ca::revoke(&lab.ca_dir(), &RevokeTarget::Serial(a.serial.clone())).unwrap();
    let list = crl(&lab);
    assert!(
        list.find_serial(&raw_serial(&a.cert_path))
            .unwrap()
            .is_some()
    );
    assert!(
        list.find_serial(&raw_serial(&b.cert_path))
            .unwrap()
            .is_none()
    );

    // By certificate file; both stay listed, and the CRL number went up twice.
    ca::revoke(&lab.ca_dir(), &RevokeTarget::Cert(b.cert_path.clone())).unwrap();
    let list = crl(&lab);
    assert!(
        list.find_serial(&raw_serial(&a.cert_path))
            .unwrap()
            .is_some()
    );
    assert!(
        list.find_serial(&raw_serial(&b.cert_path))
            .unwrap()
            .is_some()
    );
    let state = ca::load_state(&lab.ca_dir()).unwrap();
    assert_eq!(state.crl_number, 3);
    assert!(state.issued.iter().all(|r| r.revoked_at.is_some()));

    let err = ca::revoke(&lab.ca_dir(), &RevokeTarget::Serial("7f7f".into())).unwrap_err();
    assert!(
        err.to_string().contains("was not issued by this CA"),
        "{err}"
    );
    let other = Lab::with_trust_domain("other.example");
    let foreign = other.issue("/x", "x");
    let err = ca::revoke(&lab.ca_dir(), &RevokeTarget::Cert(foreign.cert_path)).unwrap_err();
    assert!(
        err.to_string().contains("was not issued by the CA"),
        "{err}"
    );
}
