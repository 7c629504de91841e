use std::time::Duration;

use x0_identity::{IdentityWatcher, SourceConfig};

use crate::common::{Lab, wait_until};

const POLL: Duration = Duration::from_millis(50);

#[tokio::test]
async fn files_rotate_and_garbage_is_refused() {
    let lab = Lab::new();
    let first = lab.issue("/router/r1", "svid");
    let watcher = IdentityWatcher::start(SourceConfig::Files(lab.files(&first)), POLL)
        .await
        .unwrap();
    assert_eq!(watcher.current().serial, first.serial);
    let mut rx = watcher.subscribe();

    // A new SVID written over the same files.
    let second = lab.issue("/router/r1", "svid");
    assert_ne!(second.serial, first.serial);
    wait_until("the rotated SVID", || {
        watcher.current().serial == second.serial
    })
    .await;
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().serial, second.serial);

    // A broken certificate file: refused, the current SVID stays.
    std::fs::write(&second.cert_path, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    tokio::time::sleep(POLL * 10).await;
    assert_eq!(watcher.current().serial, second.serial);
    assert!(!rx.has_changed().unwrap());

    // And a good one again is picked up.
    let third = lab.issue("/router/r1", "svid");
    wait_until("the repaired SVID", || {
        watcher.current().serial == third.serial
    })
    .await;
}

#[tokio::test]
async fn start_fails_on_a_broken_set() {
    let lab = Lab::new();
    let a = lab.issue("/router/a", "a");
    let mut files = lab.files(&a);
    files.key = lab.tmp.path().join("no-such.key");
    let err = IdentityWatcher::start(SourceConfig::Files(files), POLL)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no-such.key"), "{err}");
}

#[test]
fn source_config_from_json() {
    let files: SourceConfig = serde_json::from_str(
        r#"{"source":"files","cert":"c.pem","key":"k.pem","bundle":"b.pem","crls":["crl.pem"]}"#,
    )
    .unwrap();
    assert!(matches!(files, SourceConfig::Files(ref f) if f.crls.len() == 1));
    let wl: SourceConfig = serde_json::from_str(r#"{"source":"workload_api"}"#).unwrap();
    assert_eq!(wl, SourceConfig::WorkloadApi { socket: None });
    let err = serde_json::from_str::<SourceConfig>(r#"{"source":"workload_api","sock":"x"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = serde_json::from_str::<SourceConfig>(
        r#"{"source":"files","cert":"c","key":"k","bundle":"b","extra":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
