//! `x0ctl ca`: a lab trust domain from the command line.

use std::process::Command;

fn x0ctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_x0ctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ca_init_issue_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca = ca.to_str().unwrap();
    let out = dir.path().join("svid");
    let out = out.to_str().unwrap();

    let (ok, stdout, _) = x0ctl(&["ca", "init", "--dir", ca, "--trust-domain", "mesh.example"]);
    assert!(ok && stdout.contains("spiffe://mesh.example"), "{stdout}");
    let (ok, _, stderr) = x0ctl(&["ca", "init", "--dir", ca, "--trust-domain", "mesh.example"]);
    assert!(
        !ok && !stderr.is_empty(),
        "a second init must refuse: {stderr}"
    );

    let (ok, stdout, stderr) = x0ctl(&[
        "ca",
        "issue",
        "--dir",
        ca,
        "--path",
        "/brain/r1",
        "--out",
        out,
        "--name",
        "b1",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("spiffe://mesh.example/brain/r1 serial "),
        "{stdout}"
    );
    let serial = stdout.split_whitespace().nth(2).unwrap().to_string();
    let files = x0_identity::FileSource {
        cert: dir.path().join("svid/b1.pem"),
        key: dir.path().join("svid/b1.key"),
        bundle: dir.path().join("ca/bundle.pem"),
        crls: vec![],
    };
    let id = x0_identity::Identity::from_files(&files).unwrap();
    assert_eq!(id.spiffe_id.to_string(), "spiffe://mesh.example/brain/r1");
    assert_eq!(id.serial, serial);

    let crl_before = std::fs::read(dir.path().join("ca/crl.pem")).unwrap();
    let (ok, _, stderr) = x0ctl(&["ca", "revoke", "--dir", ca, "--serial", &serial]);
    assert!(ok, "{stderr}");
    assert_ne!(
        std::fs::read(dir.path().join("ca/crl.pem")).unwrap(),
        crl_before,
        "the CRL was re-signed"
    );
    let state = std::fs::read_to_string(dir.path().join("ca/ca.json")).unwrap();
    assert!(state.contains("revoked"), "{state}");

    let (ok, _, stderr) = x0ctl(&[
        "ca", "issue", "--dir", ca, "--path", "no-slash", "--out", out, "--name", "bad",
    ]);
    assert!(!ok && !stderr.is_empty());
}
