//! Link-state records: built from what this router sees, signed twice by its brain (ECDSA
//! with the SVID key, ML-DSA-65 with the key the SVID binds), and checked by receivers
//! against the trust bundle before anything else looks at them.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::{rand::SystemRandom, signature as sig};
use ipnet::IpNet;
use prost::Message;
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject};
use x0_identity::{FileSource, Side, Trust, verify_peer};
use x0_proto::brain::v1::{LinkStateRecord, SignedRecord};

/// Bounds on what a record may hold (a malformed or hostile record cannot cost much).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
pub const MAX_ADJACENCIES: usize = 256;
pub const MAX_PREFIXES: usize = 1024;
pub const MAX_CHAIN: usize = 4;
/// Clock skew tolerated for records from the future.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// Why a record was not accepted (the names are the counters' keys).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("stale: sequence {got} is older than {have}")]
    Stale { got: u64, have: u64 },
    #[error("duplicate of the record held")]
    Duplicate,
    #[error("expired")]
    Expired,
    #[error("forged: {0}")]
    Forged(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("too large")]
    TooLarge,
}

impl Reject {
    pub fn name(&self) -> &'static str {
        match self {
            Reject::Stale { .. } => "stale",
            Reject::Duplicate => "duplicate",
            Reject::Expired => "expired",
            Reject::Forged(_) => "forged",
            Reject::Malformed(_) => "malformed",
            Reject::TooLarge => "too-large",
        }
    }
}

/// Signs this brain's records.
pub struct Signer {
    chain: Vec<CertificateDer<'static>>,
    ecdsa: sig::EcdsaKeyPair,
    mldsa: sig::PqdsaKeyPair,
}

impl Signer {
    pub fn from_files(files: &FileSource) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .with_context(|| format!("reading {}", files.cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{}: {e}", files.cert.display()))?;
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(&files.key)
            .map_err(|e| anyhow!("{}: {e}", files.key.display()))?;
        let ecdsa = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_pkcs8_der(),
        )
        .map_err(|e| anyhow!("{}: not an ECDSA P-256 key: {e}", files.key.display()))?;
        let mldsa = x0_identity::mldsa::load(&files.cert)?;
        Ok(Self {
            chain,
            ecdsa,
            mldsa,
        })
    }

    pub fn sign(&self, record: &LinkStateRecord) -> Result<SignedRecord> {
        let bytes = record.encode_to_vec();
        let ecdsa = self
            .ecdsa
            .sign(&SystemRandom::new(), &bytes)
            .map_err(|_| anyhow!("ECDSA signing failed"))?;
        Ok(SignedRecord {
            ecdsa_signature: ecdsa.as_ref().to_vec().into(),
            mldsa_signature: x0_identity::mldsa::sign(&self.mldsa, &bytes)?.into(),
            svid_chain: self.chain.iter().map(|c| c.to_vec().into()).collect(),
            record: bytes.into(),
        })
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A record that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub record: LinkStateRecord,
    pub signed: SignedRecord,
}

impl Verified {
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH
            + Duration::from_nanos(self.record.originated_unix_ns)
            + Duration::from_secs(u64::from(self.record.lifetime_s))
    }
}

/// Checks a record: size, form, the SVID chain against the bundle (expiry, revocation,
/// trust domain), that the SVID is the originator's brain, both signatures, and its age.
pub fn verify(signed: &SignedRecord, trust: &Trust, now: SystemTime) -> Result<Verified, Reject> {
    if signed.record.len() > MAX_RECORD_BYTES || signed.svid_chain.len() > MAX_CHAIN {
        return Err(Reject::TooLarge);
    }
    let record = LinkStateRecord::decode(signed.record.as_ref())
        .map_err(|e| Reject::Malformed(e.to_string()))?;
    check_form(&record)?;
    let chain: Vec<CertificateDer<'_>> = signed
        .svid_chain
        .iter()
        .map(|c| CertificateDer::from(c.as_ref()))
        .collect();
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let id = verify_peer(
        &chain,
        Side::Client,
        trust,
        UnixTime::since_unix_epoch(since_epoch),
    )
    .map_err(|e| Reject::Forged(format!("SVID: {e}")))?;
    let want = format!("/brain/{}", record.originator);
    if id.path() != want {
        return Err(Reject::Forged(format!(
            "{id} may not speak for router {:?}",
            record.originator
        )));
    }
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| Reject::Forged(format!("SVID: {e:?}")))?;
    leaf.verify_signature(
        webpki::aws_lc_rs::ECDSA_P256_SHA256,
        &signed.record,
        &signed.ecdsa_signature,
    )
    .map_err(|_| Reject::Forged("the ECDSA signature does not match".into()))?;
    let pq = x0_identity::mldsa::public_key_of(&chain[0])
        .map_err(|e| Reject::Forged(format!("SVID: {e}")))?
        .ok_or_else(|| Reject::Forged("the SVID binds no ML-DSA-65 key".into()))?;
    if !x0_identity::mldsa::verify(&pq, &signed.record, &signed.mldsa_signature) {
        return Err(Reject::Forged(
            "the ML-DSA-65 signature does not match".into(),
        ));
    }
    let v = Verified {
        record,
        signed: signed.clone(),
    };
    if v.expires() <= now {
        return Err(Reject::Expired);
    }
    if v.record.originated_unix_ns > unix_ns(now + MAX_SKEW) {
        return Err(Reject::Malformed("originated in the future".into()));
    }
    Ok(v)
}

fn check_form(r: &LinkStateRecord) -> Result<(), Reject> {
    let bad = |m: String| Err(Reject::Malformed(m));
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !name_ok(&r.originator) {
        return bad(format!("originator {:?}", r.originator));
    }
    if !(10..=3600).contains(&r.lifetime_s) {
        return bad(format!("lifetime_s {}", r.lifetime_s));
    }
    if r.sequence == 0 {
        return bad("sequence 0".into());
    }
    if r.adjacencies.len() > MAX_ADJACENCIES || r.prefixes.len() > MAX_PREFIXES {
        return Err(Reject::TooLarge);
    }
    for (i, a) in r.adjacencies.iter().enumerate() {
        if !name_ok(&a.neighbor) || a.neighbor == r.originator {
            return bad(format!("adjacencies[{i}].neighbor {:?}", a.neighbor));
        }
        if a.cost == 0 {
            return bad(format!("adjacencies[{i}].cost 0"));
        }
        if a.neighbor_addrs
            .iter()
            .any(|s| s.parse::<IpAddr>().is_err())
            || a.interface.is_empty()
            || a.interface.len() > 15
        {
            return bad(format!("adjacencies[{i}]: addresses or interface"));
        }
    }
    for (i, p) in r.prefixes.iter().enumerate() {
        match p.parse::<IpNet>() {
            Ok(n) if n.trunc() == n => {}
            _ => return bad(format!("prefixes[{i}] {p:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use x0_identity::{Identity, ca};
    use x0_proto::brain::v1::Adjacency;

    pub struct Pki {
        pub dir: tempfile::TempDir,
        pub trust: std::sync::Arc<Trust>,
    }

    pub fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        ca::init(&ca_dir, "mesh.example", Duration::from_secs(86_400)).unwrap();
        issue(dir.path(), "/brain/r1", "r1");
        let id = Identity::from_files(&files(dir.path(), "r1")).unwrap();
        Pki {
            trust: id.trust().clone(),
            dir,
        }
    }

    pub fn issue(dir: &std::path::Path, path: &str, name: &str) {
        ca::issue(
            &dir.join("ca"),
            &ca::IssueRequest::svid(path, dir, name, Duration::from_secs(3600)),
        )
        .unwrap();
    }

    pub fn files(dir: &std::path::Path, name: &str) -> FileSource {
        FileSource {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            bundle: dir.join("ca/bundle.pem"),
            crls: vec![],
        }
    }

    pub fn record(originator: &str, sequence: u64) -> LinkStateRecord {
        LinkStateRecord {
            originator: originator.into(),
            sequence,
            originated_unix_ns: unix_ns(SystemTime::now()),
            lifetime_s: 60,
            adjacencies: vec![Adjacency {
                neighbor: "r2".into(),
                cost: 10,
                interface: "eth1".into(),
                neighbor_addrs: vec!["198.18.12.2".into()],
            }],
            prefixes: vec!["198.18.1.0/24".into()],
        }
    }

    #[test]
    fn signed_records_verify_and_tampering_is_caught() {
        let p = pki();
        let signer = Signer::from_files(&files(p.dir.path(), "r1")).unwrap();
        let signed = signer.sign(&record("r1", 1)).unwrap();
        let v = verify(&signed, &p.trust, SystemTime::now()).unwrap();
        assert_eq!(v.record.originator, "r1");

        // A neighbour changing the adjacencies breaks both signatures.
        let mut forged = signed.clone();
        let mut r = record("r1", 1);
        r.adjacencies[0].cost = 1;
        forged.record = r.encode_to_vec().into();
        assert!(
            matches!(verify(&forged, &p.trust, SystemTime::now()), Err(Reject::Forged(m)) if m.contains("ECDSA"))
        );
        // Only the ML-DSA signature wrong: still refused.
        let mut half = signed.clone();
        let mut sig = half.mldsa_signature.to_vec();
        sig[10] ^= 1;
        half.mldsa_signature = sig.into();
        assert!(
            matches!(verify(&half, &p.trust, SystemTime::now()), Err(Reject::Forged(m)) if m.contains("ML-DSA"))
        );
        // Signed by r1's brain but claiming to be r2: forged.
        let mut claim = record("r2", 1);
        claim.adjacencies[0].neighbor = "r1".into();
        let other = signer.sign(&claim).unwrap();
        assert!(
            matches!(verify(&other, &p.trust, SystemTime::now()), Err(Reject::Forged(m)) if m.contains("may not speak for"))
        );
        // Not a brain's SVID (a router's): forged.
        issue(p.dir.path(), "/router/r3", "router-r3");
        let router = Signer::from_files(&files(p.dir.path(), "router-r3")).unwrap();
        let mut r3 = record("r3", 1);
        r3.adjacencies[0].neighbor = "r1".into();
        let r = verify(&router.sign(&r3).unwrap(), &p.trust, SystemTime::now());
        assert!(
            matches!(&r, Err(Reject::Forged(m)) if m.contains("may not speak for")),
            "{r:?}"
        );
        // Garbage and nonsense fields: malformed.
        let mut garbage = signed.clone();
        garbage.record = vec![0xff; 40].into();
        assert!(matches!(
            verify(&garbage, &p.trust, SystemTime::now()),
            Err(Reject::Malformed(_))
        ));
        let mut bad = record("r1", 1);
        bad.prefixes = vec!["198.18.1.1/24".into()];
        assert!(matches!(
            verify(&signer.sign(&bad).unwrap(), &p.trust, SystemTime::now()),
            Err(Reject::Malformed(_))
        ));
        // Too old.
        let later = SystemTime::now() + Duration::from_secs(120);
        assert_eq!(verify(&signed, &p.trust, later), Err(Reject::Expired));
    }

    #[test]
    fn another_trust_domain_cannot_sign() {
        let p = pki();
        let other = tempfile::tempdir().unwrap();
        ca::init(
            &other.path().join("ca"),
            "evil.example",
            Duration::from_secs(86_400),
        )
        .unwrap();
        issue(other.path(), "/brain/r1", "r1");
        let signer = Signer::from_files(&files(other.path(), "r1")).unwrap();
        let r = verify(
            &signer.sign(&record("r1", 1)).unwrap(),
            &p.trust,
            SystemTime::now(),
        );
        assert!(
            matches!(&r, Err(Reject::Forged(m)) if m.contains("SVID")),
            "{r:?}"
        );
    }
}
