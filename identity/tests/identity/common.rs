use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use x0_identity::ca::{self, IssueRequest, Issued, Leaf};
use x0_identity::{FileSource, Identity};

pub const TD: &str = "mesh.example";
pub const HOUR: Duration = Duration::from_secs(3600);

/// A lab CA in a temporary directory; SVIDs go to `<tmp>/svids`.
pub struct Lab {
    pub tmp: TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with_trust_domain(TD)
    }

    pub fn with_trust_domain(td: &str) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        ca::init(&tmp.path().join("ca"), td, 24 * HOUR).unwrap();
        Lab { tmp }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.tmp.path().join("svids")
    }

    pub fn request(&self, path: &str, name: &str) -> IssueRequest {
        IssueRequest::svid(path, &self.out_dir(), name, HOUR)
    }

    pub fn issue(&self, path: &str, name: &str) -> Issued {
        ca::issue(&self.ca_dir(), &self.request(path, name)).unwrap()
    }

    pub fn issue_expired(&self, path: &str, name: &str) -> Issued {
        let mut req = self.request(path, name);
        req.not_before = Some(SystemTime::now() - 2 * HOUR);
        ca::issue(&self.ca_dir(), &req).unwrap()
    }

    pub fn issue_future(&self, path: &str, name: &str) -> Issued {
        let mut req = self.request(path, name);
        req.not_before = Some(SystemTime::now() + HOUR);
        ca::issue(&self.ca_dir(), &req).unwrap()
    }

    pub fn issue_plain(&self, dns: &str, name: &str) -> Issued {
        let mut req = self.request("/unused", name);
        req.kind = Leaf::PlainTls {
            dns: dns.to_string(),
        };
        ca::issue(&self.ca_dir(), &req).unwrap()
    }

    pub fn files(&self, issued: &Issued) -> FileSource {
        FileSource {
            cert: issued.cert_path.clone(),
            key: issued.key_path.clone(),
            bundle: self.ca_dir().join(ca::BUNDLE),
            crls: vec![self.ca_dir().join(ca::CRL)],
        }
    }

    /// Loads `issued` with the CA's current bundle and CRL.
    pub fn identity(&self, issued: &Issued) -> Identity {
        Identity::from_files(&self.files(issued)).unwrap()
    }
}

/// Polls `cond` every 20 ms for up to 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
