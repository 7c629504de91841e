//! A lab certificate authority (rcgen) so that test benches need no SPIRE: `x0ctl ca
//! init|issue|revoke` and the tests. One directory holds it:
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem` | the CA certificate (P-256, pathlen 0, URI SAN spiffe://<td>) |
//! | `ca.key` | its PKCS#8 key, mode 0600 |
//! | `bundle.pem` | the trust bundle to hand to workloads (= ca.pem) |
//! | `crl.pem` | the CA's CRL, re-signed on every revocation |
//! | `ca.json` | state: trust domain, next serial, CRL number, every certificate issued |
//!
//! Every file is written to a temporary name and renamed, so a watcher never reads half a
//! file; an advisory lock (`.lock`) serialises concurrent `issue`/`revoke`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::serial_hex;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const BUNDLE: &str = "bundle.pem";
pub const CRL: &str = "crl.pem";
pub const STATE: &str = "ca.json";
const LOCK: &str = ".lock";

/// How long a CRL says it is current (`nextUpdate`); verifiers here do not enforce it.
const CRL_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Certificates start a minute in the past: clocks of a bench are never exactly equal.
const BACKDATE: Duration = Duration::from_secs(60);

/// The CA's state file (`ca.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaState {
    pub trust_domain: String,
    pub next_serial: u64,
    pub crl_number: u64,
    pub issued: Vec<IssuedRecord>,
}

/// One certificate issued; times are Unix seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuedRecord {
    /// Lower-case hex, as `Identity::serial` and `x0ctl ca revoke` spell it.
    pub serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// DNS name of a non-SPIFFE test certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    pub not_after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// What to put in the leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// An X.509-SVID: one URI SAN, CA=false, digitalSignature, serverAuth + clientAuth.
    Svid,
    /// A plain TLS certificate with a DNS name and no SPIFFE ID (tests: must be refused).
    PlainTls { dns: String },
}

#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// SPIFFE ID path, e.g. "/router/r1" for spiffe://<td>/router/r1.
    pub path: String,
    pub out_dir: PathBuf,
    /// Files `<name>.pem` (certificate) and `<name>.key` (PKCS#8 key, mode 0600).
    pub name: String,
    pub validity: Duration,
    /// Default: now (less a minute). Tests set it to mint expired or not-yet-valid SVIDs.
    pub not_before: Option<SystemTime>,
    pub kind: Leaf,
    /// DNS names an SVID carries beside its SPIFFE ID (the X509-SVID spec allows them):
    /// clients that check a host name, not a SPIFFE ID (grpcio, curl), check one of these.
    pub dns_names: Vec<String>,
}

impl IssueRequest {
    /// An SVID for `path`, valid from now for `validity`, written to `out_dir/<name>.{pem,key}`.
    pub fn svid(path: &str, out_dir: &Path, name: &str, validity: Duration) -> IssueRequest {
        IssueRequest {
            path: path.to_string(),
            out_dir: out_dir.to_path_buf(),
            name: name.to_string(),
            validity,
            not_before: None,
            kind: Leaf::Svid,
            dns_names: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Lower-case hex.
    pub serial: String,
    /// None for `Leaf::PlainTls`.
    pub spiffe_id: Option<SpiffeId>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub not_after: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// Hex, as `Issued::serial` (leading zeros and a `0x` prefix are ignored).
    Serial(String),
    /// A PEM certificate file issued by this CA.
    Cert(PathBuf),
}

/// Creates a CA for `trust_domain` in `dir`; refuses to overwrite an existing one.
pub fn init(dir: &Path, trust_domain: &str, validity: Duration) -> Result<()> {
    let td = TrustDomain::new(trust_domain)
        .map_err(|e| anyhow!("invalid trust domain {trust_domain:?}: {e}"))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = lock(dir)?;
    for f in [CA_CERT, CA_KEY, BUNDLE, CRL, STATE] {
        if dir.join(f).exists() {
            bail!(
                "{} already holds a CA ({f} exists): refusing to overwrite it",
                dir.display()
            );
        }
    }
    let now = SystemTime::now();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("x0tta6bl4 lab CA {td}"));
    params.subject_alt_names = vec![SanType::URI(td.id_string().try_into()?)];
    // Signs leaves only: no intermediate can be made below it.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from(1u64));
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + validity).into();
    let cert = params.self_signed(&key)?;

    let state = CaState {
        trust_domain: td.to_string(),
        next_serial: 2,
        crl_number: 1,
        issued: Vec::new(),
    };
    let issuer = Issuer::new(params, key);
    write_atomic(
        &dir.join(CA_KEY),
        issuer.key().serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    write_atomic(&dir.join(BUNDLE), cert.pem().as_bytes(), 0o644)?;
    write_crl(dir, &issuer, &state, now)?;
    write_state(dir, &state)?;
    Ok(())
}

/// Signs a new leaf (ECDSA P-256) and records it in ca.json.
pub fn issue(dir: &Path, req: &IssueRequest) -> Result<Issued> {
    if req.name.is_empty() || req.name.contains('/') {
        bail!(
            "invalid file name {:?}: one path component, please",
            req.name
        );
    }
    let _lock = lock_ca(dir)?;
    let (issuer, mut state) = load(dir)?;
    let now = SystemTime::now();
    let not_before = req.not_before.unwrap_or(now - BACKDATE);
    let not_after = req.not_before.unwrap_or(now) + req.validity;
    let serial = state.next_serial;

    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from(serial));
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let (spiffe_id, dns) = match &req.kind {
        Leaf::Svid => {
            if !req.path.starts_with('/') || req.path.len() < 2 {
                bail!(
                    "SPIFFE ID path {:?} must start with / and name a workload",
                    req.path
                );
            }
            let id = SpiffeId::new(format!("spiffe://{}{}", state.trust_domain, req.path))
                .map_err(|e| anyhow!("invalid SPIFFE ID path {:?}: {e}", req.path))?;
            params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
            for name in &req.dns_names {
                let dns = name
                    .as_str()
                    .try_into()
                    .map_err(|e| anyhow!("DNS name {name:?}: {e}"))?;
                params.subject_alt_names.push(SanType::DnsName(dns));
            }
            params.distinguished_name = dn(&req.name);
            (Some(id), None)
        }
        Leaf::PlainTls { dns } => {
            params.subject_alt_names = vec![SanType::DnsName(dns.as_str().try_into()?)];
            params.distinguished_name = dn(dns);
            (None, Some(dns.clone()))
        }
    };
    // Every SVID gets an ML-DSA-65 key too, its public half bound into the certificate,
    // for post-quantum signatures (link-state records).
    let mldsa = match req.kind {
        Leaf::Svid => {
            let pair = crate::mldsa::generate()?;
            params
                .custom_extensions
                .push(crate::mldsa::extension(&pair)?);
            Some(pair)
        }
        Leaf::PlainTls { .. } => None,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;

    fs::create_dir_all(&req.out_dir)
        .with_context(|| format!("cannot create {}", req.out_dir.display()))?;
    let key_path = req.out_dir.join(format!("{}.key", req.name));
    let cert_path = req.out_dir.join(format!("{}.pem", req.name));
    // Key first: a watcher that sees the new key with the old certificate refuses the pair
    // and retries; it never uses a certificate with a key that does not match.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    if let Some(pair) = &mldsa {
        let path = crate::mldsa::key_path(&cert_path);
        write_atomic(&path, &crate::mldsa::to_pkcs8(pair)?, 0o600)?;
    }
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;

    let serial_hex = serial_hex(&serial.to_be_bytes());
    state.issued.push(IssuedRecord {
        serial: serial_hex.clone(),
        spiffe_id: spiffe_id.as_ref().map(|i| i.to_string()),
        dns,
        not_after: unix(not_after),
        revoked_at: None,
    });
    state.next_serial += 1;
    write_state(dir, &state)?;
    Ok(Issued {
        serial: serial_hex,
        spiffe_id,
        cert_path,
        key_path,
        not_after,
    })
}

/// Marks a certificate revoked and re-signs crl.pem with every revoked serial (idempotent).
pub fn revoke(dir: &Path, target: &RevokeTarget) -> Result<()> {
    let _lock = lock_ca(dir)?;
    let (issuer, mut state) = load(dir)?;
    let serial = match target {
        RevokeTarget::Serial(s) => {
            let s = s.trim().trim_start_matches("0x").to_ascii_lowercase();
            let bytes =
                hex_decode(&s).ok_or_else(|| anyhow!("{s:?} is not a hex serial number"))?;
            serial_hex(&bytes)
        }
        RevokeTarget::Cert(path) => {
            let pem = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let der = CertificateDer::from_pem_slice(&pem)
                .map_err(|e| anyhow!("{}: no certificate: {e}", path.display()))?;
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| anyhow!("{}: cannot parse the certificate: {e}", path.display()))?;
            let ca_pem = fs::read(dir.join(CA_CERT))?;
            let ca_der = CertificateDer::from_pem_slice(&ca_pem)?;
            let (_, ca) = X509Certificate::from_der(&ca_der)
                .map_err(|e| anyhow!("{}: {e}", dir.join(CA_CERT).display()))?;
            if cert.issuer().as_raw() != ca.subject().as_raw() {
                bail!(
                    "{} was not issued by the CA in {}",
                    path.display(),
                    dir.display()
                );
            }
            serial_hex(cert.raw_serial())
        }
    };
    let now = SystemTime::now();
    let record = state
        .issued
        .iter_mut()
        .find(|r| r.serial == serial)
        .ok_or_else(|| anyhow!("serial {serial} was not issued by this CA (see {STATE})"))?;
    record.revoked_at.get_or_insert(unix(now));
    state.crl_number += 1;
    // State first: it is the truth; running revoke again re-signs a CRL lost in between.
    write_state(dir, &state)?;
    write_crl(dir, &issuer, &state, now)
}

/// Reads ca.json.
pub fn load_state(dir: &Path) -> Result<CaState> {
    let path = dir.join(STATE);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (no CA there? run `ca init`)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid CA state", path.display()))
}

fn load(dir: &Path) -> Result<(Issuer<'static, KeyPair>, CaState)> {
    let state = load_state(dir)?;
    let read = |f: &str| {
        fs::read_to_string(dir.join(f))
            .with_context(|| format!("cannot read {}", dir.join(f).display()))
    };
    let key = KeyPair::from_pem(&read(CA_KEY)?)
        .map_err(|e| anyhow!("{}: {e}", dir.join(CA_KEY).display()))?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, key)
        .map_err(|e| anyhow!("{}: {e}", dir.join(CA_CERT).display()))?;
    Ok((issuer, state))
}

fn write_crl(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    state: &CaState,
    now: SystemTime,
) -> Result<()> {
    let revoked_certs = state
        .issued
        .iter()
        .filter_map(|r| {
            let at = r.revoked_at?;
            Some(RevokedCertParams {
                serial_number: SerialNumber::from(hex_decode(&r.serial)?),
                revocation_time: (UNIX_EPOCH + Duration::from_secs(at)).into(),
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect();
    let crl = CertificateRevocationListParams {
        this_update: (now - BACKDATE).into(),
        next_update: (now + CRL_VALIDITY).into(),
        crl_number: SerialNumber::from(state.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)?;
    write_atomic(&dir.join(CRL), crl.pem()?.as_bytes(), 0o644)
}

fn write_state(dir: &Path, state: &CaState) -> Result<()> {
    let mut json = serde_json::to_string_pretty(state)?;
    json.push('\n');
    write_atomic(&dir.join(STATE), json.as_bytes(), 0o644)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "x0tta6bl4");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// `lock` for an existing CA.
fn lock_ca(dir: &Path) -> Result<File> {
    if !dir.join(STATE).is_file() {
        bail!(
            "no CA in {} (no {STATE}): create one with `ca init`",
            dir.display()
        );
    }
    lock(dir)
}

/// Holds the CA directory's advisory lock until dropped.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

/// Writes `path` whole or not at all: a temporary file in the same directory, then rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        // A leftover from a crash would keep its old mode.
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", path.display())
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.is_ascii() {
        return None;
    }
    let padded = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect()
}
