use std::time::Duration;

use x0_identity::{IdentityWatcher, SourceConfig, WorkloadServer};

use crate::common::{Lab, wait_until};

#[tokio::test]
async fn workload_api_delivers_and_rotates() {
    let lab = Lab::new();
    let first = lab.identity(&lab.issue("/router/r1", "first"));
    let socket = lab.tmp.path().join("agent.sock");
    let server = WorkloadServer::start(&socket, &first).await.unwrap();
    assert_eq!(server.endpoint(), format!("unix:{}", socket.display()));

    let cfg = SourceConfig::WorkloadApi {
        socket: Some(server.endpoint()),
    };
    let watcher = IdentityWatcher::start(cfg, Duration::from_secs(1))
        .await
        .unwrap();
    let got = watcher.current();
    assert_eq!(got.spiffe_id, first.spiffe_id);
    assert_eq!(got.serial, first.serial);
    assert_eq!(got.bundle, first.bundle);
    assert!(got.crls.is_empty(), "the Workload API has no CRLs");

    // A plain path works as well.
    let by_path = IdentityWatcher::start(
        SourceConfig::WorkloadApi {
            socket: Some(socket.display().to_string()),
        },
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(by_path.current().serial, first.serial);

    let second = lab.identity(&lab.issue("/router/r1", "second"));
    server.set(&second);
    wait_until("the rotated SVID", || {
        watcher.current().serial == second.serial
    })
    .await;
    wait_until("the rotated SVID (path)", || {
        by_path.current().serial == second.serial
    })
    .await;

    // Invalid material (a key that does not match) is refused; the SVID stays.
    let third = lab.identity(&lab.issue("/router/r1", "third"));
    server.rotate(&third.chain, second.key().secret_der(), &third.bundle);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(watcher.current().serial, second.serial);
}
