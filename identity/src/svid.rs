//! Our own identity: an X.509-SVID (chain + key), the trust bundle of its trust domain, CRLs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime,
};
use serde::{Deserialize, Serialize};
use spiffe::{SpiffeId, X509Svid};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::verify::{Side, Trust, TrustError, check_chain, verify_peer};
use crate::{fmt_unix, serial_hex};

/// An SVID kept in files, as SPIRE's `spiffe-helper` or `x0ctl ca issue` write them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key of the leaf.
    pub key: PathBuf,
    /// PEM CA certificates of our trust domain (trust anchors).
    pub bundle: PathBuf,
    /// PEM CRLs (optional; each applies to the certificates its issuer signed).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

/// A validated SVID with what it takes to verify peers. The public fields are what was
/// loaded; `trust()` was derived from `bundle` and `crls` at load time.
pub struct Identity {
    pub spiffe_id: SpiffeId,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub bundle: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    trust: Arc<Trust>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Pem { what: String, reason: String },
    #[error("{what}: not a valid X.509-SVID: {reason}")]
    Svid { what: String, reason: String },
    #[error("{key} does not hold the private key of the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{cert} is not signed by the CA certificates of {bundle}: {reason}")]
    Chain {
        cert: String,
        bundle: String,
        reason: String,
    },
    #[error("{what}: {source}")]
    Trust { what: String, source: TrustError },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The bytes of a `FileSource`, read once (the watcher hashes what it then parses).
pub(crate) struct FileSet {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub bundle: Vec<u8>,
    pub crls: Vec<Vec<u8>>,
}

impl FileSet {
    pub(crate) fn read(src: &FileSource) -> Result<FileSet, IdentityError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| IdentityError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok(FileSet {
            cert: read(&src.cert)?,
            key: read(&src.key)?,
            bundle: read(&src.bundle)?,
            crls: src.crls.iter().map(|p| read(p)).collect::<Result<_, _>>()?,
        })
    }
}

/// Names of the inputs, for error messages (file paths, or "cert", "key"... for PEM strings).
struct Names<'a> {
    cert: &'a str,
    key: &'a str,
    bundle: &'a str,
    crls: Vec<String>,
}

impl Identity {
    /// Loads and validates the files of `src` (see `from_pem`).
    pub fn from_files(src: &FileSource) -> Result<Identity, IdentityError> {
        Self::from_file_set(src, &FileSet::read(src)?)
    }

    /// Validates what was read from `src` (error messages name its files).
    pub(crate) fn from_file_set(
        src: &FileSource,
        set: &FileSet,
    ) -> Result<Identity, IdentityError> {
        let (c, k, b) = (
            src.cert.display().to_string(),
            src.key.display().to_string(),
            src.bundle.display().to_string(),
        );
        let names = Names {
            cert: &c,
            key: &k,
            bundle: &b,
            crls: src.crls.iter().map(|p| p.display().to_string()).collect(),
        };
        let crl_refs: Vec<&[u8]> = set.crls.iter().map(Vec::as_slice).collect();
        Self::load_pem(&set.cert, &set.key, &set.bundle, &crl_refs, &names)
    }

    /// Validates an SVID given as PEM: `cert` (chain, leaf first), `key` (PKCS#8), `bundle`
    /// (CA certificates), `crls` (each one or more CRLs).
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        bundle: &[u8],
        crls: &[&[u8]],
    ) -> Result<Identity, IdentityError> {
        let names = Names {
            cert: "cert",
            key: "key",
            bundle: "bundle",
            crls: (0..crls.len()).map(|i| format!("crl #{i}")).collect(),
        };
        Self::load_pem(cert, key, bundle, crls, &names)
    }

    fn load_pem(
        cert: &[u8],
        key: &[u8],
        bundle: &[u8],
        crls: &[&[u8]],
        names: &Names<'_>,
    ) -> Result<Identity, IdentityError> {
        let chain = certs(cert, names.cert)?;
        let key = match PrivateKeyDer::from_pem_slice(key) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k,
            Ok(_) => {
                return Err(pem_err(
                    names.key,
                    "the key must be PKCS#8 (-----BEGIN PRIVATE KEY-----)",
                ));
            }
            Err(e) => return Err(pem_err(names.key, &format!("no private key: {e}"))),
        };
        let bundle = certs(bundle, names.bundle)?;
        let mut crl_ders = Vec::new();
        for (pem, name) in crls.iter().zip(&names.crls) {
            let before = crl_ders.len();
            for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
                crl_ders.push(crl.map_err(|e| pem_err(name, &format!("bad PEM: {e}")))?);
            }
            if crl_ders.len() == before {
                return Err(pem_err(name, "no X509 CRL block"));
            }
        }
        Self::build(chain, key, bundle, crl_ders, names)
    }

    /// Validates an SVID given as DER (as the Workload API delivers it).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivatePkcs8KeyDer<'static>,
        bundle: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Identity, IdentityError> {
        let names = Names {
            cert: "SVID",
            key: "SVID key",
            bundle: "bundle",
            crls: (0..crls.len()).map(|i| format!("crl #{i}")).collect(),
        };
        Self::build(chain, key, bundle, crls, &names)
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivatePkcs8KeyDer<'static>,
        bundle: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        names: &Names<'_>,
    ) -> Result<Identity, IdentityError> {
        let svid_err = |reason: String| IdentityError::Svid {
            what: names.cert.to_string(),
            reason,
        };
        // The spiffe crate's X.509-SVID rules: one URI SAN, not a CA, digitalSignature...
        let chain_der: Vec<u8> = chain.iter().flat_map(|c| c.iter().copied()).collect();
        let svid = X509Svid::parse_from_der(&chain_der, key.secret_pkcs8_der())
            .map_err(|e| svid_err(e.to_string()))?;
        let spiffe_id = svid.spiffe_id().clone();
        let (_, leaf) =
            X509Certificate::from_der(&chain[0]).map_err(|e| svid_err(e.to_string()))?;
        let time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        let not_before = time(leaf.validity().not_before.timestamp());
        let not_after = time(leaf.validity().not_after.timestamp());
        let serial = serial_hex(leaf.raw_serial());

        let key = PrivateKeyDer::Pkcs8(key);
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(IdentityError::KeyMismatch {
                    cert: names.cert.to_string(),
                    key: names.key.to_string(),
                });
            }
            Err(e) => return Err(pem_err(names.key, &format!("unusable private key: {e}"))),
        }

        let trust = Trust::new(spiffe_id.trust_domain().clone(), &bundle, &crls).map_err(|e| {
            let what = match &e {
                TrustError::Crl { index, .. } => names.crls.get(*index).map(String::as_str),
                _ => None,
            };
            IdentityError::Trust {
                what: what.unwrap_or(names.bundle).to_string(),
                source: e,
            }
        })?;
        // Our SVID must chain to our own bundle (checked inside its validity period: an
        // expired SVID still loads, so that the peer's refusal can be observed and logged).
        let inside = UnixTime::since_unix_epoch(
            not_before.duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(1),
        );
        check_chain(&chain, &trust, inside).map_err(|reason| IdentityError::Chain {
            cert: names.cert.to_string(),
            bundle: names.bundle.to_string(),
            reason,
        })?;
        if let Err(e) = verify_peer(&chain, Side::Server, &trust, UnixTime::now()) {
            tracing::warn!(spiffe_id = %spiffe_id, "{}: peers will refuse this SVID: {e}", names.cert);
        }
        Ok(Identity {
            spiffe_id,
            chain,
            key,
            bundle,
            crls,
            not_before,
            not_after,
            serial,
            trust: Arc::new(trust),
        })
    }

    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// Our trust domain's anchors and CRLs, for `verify_peer`.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            spiffe_id: self.spiffe_id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            bundle: self.bundle.clone(),
            crls: self.crls.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            serial: self.serial.clone(),
            trust: self.trust.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("serial", &self.serial)
            .field("chain", &self.chain.len())
            .field("bundle", &self.bundle.len())
            .field("crls", &self.crls.len())
            .field("not_after", &fmt_unix(secs(self.not_after)))
            .finish_non_exhaustive()
    }
}

fn pem_err(what: &str, reason: &str) -> IdentityError {
    IdentityError::Pem {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, &format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(what, "no CERTIFICATE block"));
    }
    Ok(certs)
}
