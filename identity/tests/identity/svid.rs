use x0_identity::{FileSource, Identity, IdentityError};

use crate::common::Lab;

#[test]
fn loads_files_with_their_metadata() {
    let lab = Lab::new();
    let issued = lab.issue("/router/r1", "r1");
    let id = lab.identity(&issued);
    assert_eq!(id.spiffe_id.to_string(), "spiffe://mesh.example/router/r1");
    assert_eq!(id.serial, issued.serial);
    assert_eq!(id.chain.len(), 1);
    assert_eq!(id.bundle.len(), 1);
    assert_eq!(id.crls.len(), 1);
    let skew = id
        .not_after
        .duration_since(issued.not_after)
        .unwrap_or_default();
    assert!(
        skew.as_secs() < 2,
        "not_after {:?} vs {:?}",
        id.not_after,
        issued.not_after
    );
    assert_eq!(id.trust().trust_domain().as_str(), "mesh.example");
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let lab = Lab::new();
    let a = lab.issue("/router/a", "a");
    let b = lab.issue("/router/b", "b");

    let mixed = FileSource {
        key: b.key_path.clone(),
        ..lab.files(&a)
    };
    let err = Identity::from_files(&mixed).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("b.key"), "{err}");

    let garbage = lab.tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = Identity::from_files(&FileSource {
        cert: garbage.clone(),
        ..lab.files(&a)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("garbage.pem: no CERTIFICATE block"),
        "{err}"
    );

    let missing = lab.tmp.path().join("missing.pem");
    let err = Identity::from_files(&FileSource {
        bundle: missing,
        ..lab.files(&a)
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot read") && err.to_string().contains("missing.pem"),
        "{err}"
    );

    // A certificate that is not an SVID.
    let plain = lab.issue_plain("router.example", "plain");
    let err = Identity::from_files(&lab.files(&plain)).unwrap_err();
    assert!(err.to_string().contains("not a valid X.509-SVID"), "{err}");

    // Our SVID with another trust domain's bundle.
    let other = Lab::with_trust_domain("other.example");
    let err = Identity::from_files(&FileSource {
        bundle: other.ca_dir().join(x0_identity::ca::BUNDLE),
        crls: vec![],
        ..lab.files(&a)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("is not signed by the CA certificates of"),
        "{err}"
    );
}

#[test]
fn file_source_rejects_unknown_fields() {
    let ok: FileSource =
        serde_json::from_str(r#"{"cert":"c.pem","key":"k.pem","bundle":"b.pem"}"#).unwrap();
    assert!(ok.crls.is_empty());
    let err = serde_json::from_str::<FileSource>(
        r#"{"cert":"c.pem","key":"k.pem","bundle":"b.pem","crl":"x"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `crl`"), "{err}");
}
