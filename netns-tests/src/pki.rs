//! The lab's trust domain, minted with the same code as `x0ctl ca` (no SPIRE needed):
//! a CA, an SVID per router, and one for the operator driving the lab with x0ctl.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;
use x0_identity::{FileSource, ca};

pub const TRUST_DOMAIN: &str = "lab.x0tta6bl4";
/// The SVID name (files `<name>.pem`/`.key`) x0ctl uses in the lab.
pub const OPERATOR: &str = "operator";
const DAY: Duration = Duration::from_secs(86_400);

/// The DNS name a lab router's SVID carries beside its SPIFFE ID.
pub fn router_dns_name(router: &str) -> String {
    format!("{router}.{TRUST_DOMAIN}")
}

/// `--cert C --key K --bundle B`: how x0ctl, x0-brain and the Python client take an SVID.
pub fn tls_args(files: &FileSource) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for (flag, path) in [
        ("--cert", &files.cert),
        ("--key", &files.key),
        ("--bundle", &files.bundle),
    ] {
        out.push(flag.into());
        out.push(path.as_os_str().to_owned());
    }
    out
}

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// Creates the CA and the operator's SVID (spiffe://lab.x0tta6bl4/orchestrator/lab).
    pub fn create(dir: &Path) -> Result<Self> {
        let pki = Self::at(dir);
        ca::init(&pki.ca_dir(), TRUST_DOMAIN, 365 * DAY)?;
        pki.issue("/orchestrator/lab", OPERATOR, DAY)?;
        Ok(pki)
    }

    /// Issues spiffe://lab.x0tta6bl4<path> as `name`.
    pub fn issue(&self, path: &str, name: &str, validity: Duration) -> Result<ca::Issued> {
        self.issue_with(ca::IssueRequest::svid(
            path,
            &self.dir.join("svid"),
            name,
            validity,
        ))
    }

    /// Issues a router's SVID (spiffe://lab.x0tta6bl4/router/<name>), with the DNS name
    /// `<name>.lab.x0tta6bl4` for clients that check a host name (grpcio, curl).
    pub fn issue_router(&self, name: &str, validity: Duration) -> Result<ca::Issued> {
        let mut req = ca::IssueRequest::svid(
            &format!("/router/{name}"),
            &self.dir.join("svid"),
            name,
            validity,
        );
        req.dns_names = vec![router_dns_name(name)];
        self.issue_with(req)
    }

    /// Issues with every knob (tests: expired, not yet valid, plain TLS).
    pub fn issue_with(&self, req: ca::IssueRequest) -> Result<ca::Issued> {
        ca::issue(&self.ca_dir(), &req)
    }

    pub fn revoke(&self, serial: &str) -> Result<()> {
        ca::revoke(&self.ca_dir(), &ca::RevokeTarget::Serial(serial.into()))
    }

    pub fn svid_dir(&self) -> PathBuf {
        self.dir.join("svid")
    }

    pub fn bundle(&self) -> PathBuf {
        self.ca_dir().join("bundle.pem")
    }

    pub fn crl(&self) -> PathBuf {
        self.ca_dir().join("crl.pem")
    }

    /// The files of SVID `name`, with the lab's bundle and CRL.
    pub fn files(&self, name: &str) -> FileSource {
        FileSource {
            cert: self.svid_dir().join(format!("{name}.pem")),
            key: self.svid_dir().join(format!("{name}.key")),
            bundle: self.bundle(),
            crls: vec![self.crl()],
        }
    }
}
