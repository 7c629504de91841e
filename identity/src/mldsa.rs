//! ML-DSA-65 (FIPS 204) keys bound to SVIDs: `x0ctl ca issue` mints one with every SVID
//! and puts its public key in a non-critical certificate extension, so that anyone who
//! verifies the SVID against the trust bundle also gets the post-quantum key it vouches
//! for. The private key sits beside the SVID's (`<name>.mldsa.key`, PKCS#8 DER).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::signature::{self, KeyPair, PqdsaKeyPair, UnparsedPublicKey};

/// The extension's OID, under a private arc (1.3.6.1.4.1.59999: x0tta6bl4, unregistered;
/// .1.1: ML-DSA-65 public key). Its value is an OCTET STRING with the raw public key.
pub const OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 1, 1];

pub fn generate() -> Result<PqdsaKeyPair> {
    PqdsaKeyPair::generate(&signature::ML_DSA_65_SIGNING)
        .map_err(|_| anyhow!("ML-DSA-65 key generation failed"))
}

pub fn to_pkcs8(pair: &PqdsaKeyPair) -> Result<Vec<u8>> {
    Ok(pair
        .to_pkcs8v1()
        .map_err(|_| anyhow!("ML-DSA-65 key encoding failed"))?
        .as_ref()
        .to_vec())
}

/// Where the ML-DSA key of the SVID at `cert` lives.
pub fn key_path(cert: &Path) -> PathBuf {
    cert.with_extension("mldsa.key")
}

pub fn load(cert: &Path) -> Result<PqdsaKeyPair> {
    let path = key_path(cert);
    let der = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    PqdsaKeyPair::from_pkcs8(&signature::ML_DSA_65_SIGNING, &der)
        .map_err(|_| anyhow!("{}: not an ML-DSA-65 PKCS#8 key", path.display()))
}

/// The certificate extension carrying `pair`'s public key.
pub fn extension(pair: &PqdsaKeyPair) -> Result<rcgen::CustomExtension> {
    let public = pair.public_key().as_ref().to_vec();
    let mut der = vec![0x04]; // OCTET STRING
    der.extend(der_length(public.len()));
    der.extend(public);
    let mut ext = rcgen::CustomExtension::from_oid_content(OID, der);
    ext.set_criticality(false);
    Ok(ext)
}

fn der_length(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// The ML-DSA-65 public key a certificate vouches for (None: it has none).
pub fn public_key_of(cert_der: &[u8]) -> Result<Option<Vec<u8>>> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| anyhow!("certificate: {e}"))?;
    let oid = x509_parser::oid_registry::Oid::from(OID).map_err(|_| anyhow!("bad OID"))?;
    let Some(ext) = cert.extensions().iter().find(|e| e.oid == oid) else {
        return Ok(None);
    };
    let v = ext.value;
    let (len, start) = match v.get(1) {
        Some(&l) if l < 0x80 => (l as usize, 2),
        Some(0x81) => (*v.get(2).unwrap_or(&0) as usize, 3),
        Some(0x82) => (
            ((*v.get(2).unwrap_or(&0) as usize) << 8) | *v.get(3).unwrap_or(&0) as usize,
            4,
        ),
        _ => return Err(anyhow!("ML-DSA extension: malformed")),
    };
    if v.first() != Some(&0x04) || v.len() != start + len {
        return Err(anyhow!("ML-DSA extension: not an OCTET STRING"));
    }
    Ok(Some(v[start..].to_vec()))
}

pub fn sign(pair: &PqdsaKeyPair, msg: &[u8]) -> Result<Vec<u8>> {
    let mut sig = vec![0u8; signature::ML_DSA_65_SIGNING.signature_len()];
    let n = pair
        .sign(msg, &mut sig)
        .map_err(|_| anyhow!("ML-DSA-65 signing failed"))?;
    sig.truncate(n);
    Ok(sig)
}

pub fn verify(public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ML_DSA_65, public)
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_svid_vouches_for_its_ml_dsa_key() {
        let dir = tempfile::tempdir().unwrap();
        crate::ca::init(
            &dir.path().join("ca"),
            "mesh.example",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let issued = crate::ca::issue(
            &dir.path().join("ca"),
            &crate::ca::IssueRequest::svid(
                "/brain/r1",
                dir.path(),
                "b1",
                std::time::Duration::from_secs(3600),
            ),
        )
        .unwrap();
        let pem = std::fs::read(&issued.cert_path).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let public = public_key_of(&der).unwrap().expect("the extension");
        let pair = load(&issued.cert_path).unwrap();
        assert_eq!(public, pair.public_key().as_ref());
        let sig = sign(&pair, b"record").unwrap();
        assert!(verify(&public, b"record", &sig));
        assert!(!verify(&public, b"forged", &sig));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.59999.1.1")
            .unwrap();
        assert!(!ext.critical, "non-critical: other verifiers ignore it");
    }
}
