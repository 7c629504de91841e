//! Mutual TLS on the API's TCP listener, against a real dataplane in a namespace lab:
//! the post-quantum key exchange, every kind of refused client with a clear error,
//! per-RPC authorisation, and SVID rotation (files and the Workload API) without a
//! restart and without dropping open streams.

mod common;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Result;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use tonic::Code;
use x0_identity::{Identity, PqMode, ca};
use x0_lab::{
    Lab,
    lab::API_ADDR,
    netns::{in_netns, spawn_in_netns},
    pki::{OPERATOR, Pki},
};
use x0_proto::dataplane::v1 as pb;
use x0ctl::client::{Connection, Target, connect};

const DAY: Duration = Duration::from_secs(86_400);

/// Runs `f` in r1's namespace on a fresh runtime.
fn in_r1<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
    lab: &Lab,
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f())
    })
    .expect("in r1")
}

/// GetInfo as `target`: the caller the dataplane saw and the TLS details, or the error
/// text x0ctl would print.
async fn get_info(target: Target) -> Result<(String, Connection), String> {
    let conn = connect(&target).await.map_err(|e| format!("{e:#}"))?;
    let info = conn
        .dataplane(1 << 20)
        .get_info(pb::GetInfoRequest {})
        .await
        .map_err(|s| format!("{:#}", x0ctl::client::rpc_error(&s)))?
        .into_inner();
    Ok((info.caller, conn))
}

fn target_of(lab: &Lab, svid: &str, pq: PqMode) -> Target {
    Target {
        pq,
        ..lab.api_target(svid)
    }
}

/// A client that presents any certificate and trusts any server: to show what the
/// server does with certificates x0ctl itself would never send.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshakes with r1's listener presenting `cert`/`key` (or nothing) and returns what
/// the server answered on the first read: its TLS alert.
async fn raw_client(cert_key: Option<(std::path::PathBuf, std::path::PathBuf)>) -> String {
    let provider = x0_identity::crypto_provider(PqMode::Required);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match cert_key {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(&key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(API_ADDR).await.unwrap();
    let name = ServerName::try_from("x0tta6bl4.invalid").unwrap();
    let mut tls = match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => return e.to_string(),
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Err(e)) => e.to_string(),
        other => format!("not refused: {other:?}"),
    }
}

#[test]
fn post_quantum_key_exchange_and_every_bad_client_refused_clearly() {
    let lab = common::lab("line.toml", |_| {});
    let pki = lab.pki();
    let now = SystemTime::now();
    let issue = |name: &str, not_before: SystemTime, validity: Duration, kind: ca::Leaf| {
        pki.issue_with(ca::IssueRequest {
            path: format!("/orchestrator/{name}"),
            out_dir: pki.svid_dir(),
            name: name.into(),
            validity,
            not_before: Some(not_before),
            kind,
            dns_names: Vec::new(),
        })
        .unwrap()
    };
    issue("expired", now - 3 * DAY, DAY, ca::Leaf::Svid);
    issue("early", now + DAY, DAY, ca::Leaf::Svid);
    let revoked = issue(
        "revoked",
        now - Duration::from_secs(60),
        DAY,
        ca::Leaf::Svid,
    );
    let plain = issue(
        "plain",
        now - Duration::from_secs(60),
        DAY,
        ca::Leaf::PlainTls {
            dns: "operator.example".into(),
        },
    );
    // Another trust domain, with an SVID of the same path as our operator's.
    let other = Pki::at(&lab.dir.join("pki-other"));
    ca::init(&other.dir.join("ca"), "other.example", 30 * DAY).unwrap();
    other.issue("/orchestrator/lab", OPERATOR, DAY).unwrap();
    pki.revoke(&revoked.serial).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // the dataplane re-reads the CRL

    let good = target_of(&lab, OPERATOR, PqMode::Required);
    let classical = target_of(&lab, OPERATOR, PqMode::Off);
    let (expired, early, revoked) = (
        target_of(&lab, "expired", PqMode::Required),
        target_of(&lab, "early", PqMode::Required),
        target_of(&lab, "revoked", PqMode::Required),
    );
    let plain_files = (plain.cert_path.clone(), plain.key_path.clone());
    let other_files = other.files(OPERATOR);
    let other_files = (other_files.cert, other_files.key);
    let results = in_r1(&lab, move || async move {
        let (caller, conn) = get_info(good).await.map_err(anyhow::Error::msg)?;
        let tls = conn.tls.lock().unwrap().clone().expect("a TLS connection");
        Ok((
            caller,
            tls,
            get_info(classical).await.err(),
            get_info(expired).await.err(),
            get_info(early).await.err(),
            get_info(revoked).await.err(),
            raw_client(None).await,
            raw_client(Some(other_files)).await,
            raw_client(Some(plain_files)).await,
        ))
    });
    let (caller, tls, classical, expired, early, revoked, no_cert, other_td, plain) = results;
    assert_eq!(caller, "spiffe://lab.x0tta6bl4/orchestrator/lab");
    assert_eq!(tls.group, "X25519MLKEM768", "the negotiated key exchange");
    assert_eq!(tls.server_id, "spiffe://lab.x0tta6bl4/router/r1");

    let classical = classical.expect("pq required refuses a classical client");
    assert!(classical.contains("X25519MLKEM768"), "{classical}");
    let expired = expired.expect("expired refused");
    assert!(
        expired.contains("refused our certificate: expired"),
        "{expired}"
    );
    let early = early.expect("not-yet-valid refused");
    assert!(early.contains("not yet valid"), "{early}");
    let revoked = revoked.expect("revoked refused");
    assert!(revoked.contains("revoked"), "{revoked}");
    assert!(no_cert.contains("CertificateRequired"), "{no_cert}");
    assert!(other_td.contains("UnknownCA"), "{other_td}");
    assert!(x0ctl::client::explain_tls(&other_td).contains("not signed by its trust bundle"));
    assert!(plain.contains("CertificateUnknown"), "{plain}");
    assert!(x0ctl::client::explain_tls(&plain).contains("not a SPIFFE X.509-SVID"));

    // The dataplane says why, for its operator.
    let log = lab.dataplane_log("r1");
    let refusals = log
        .lines()
        .filter(|l| l.contains("API TLS handshake refused"))
        .count();
    assert!(refusals >= 7, "{refusals} refusals logged:\n{log}");
    for why in [
        "expired",
        "Revoked",
        "NoKxGroupsInCommon",
        "no certificates",
    ] {
        assert!(log.contains(why), "the log does not say {why:?}:\n{log}");
    }
}

#[test]
fn each_rpc_is_authorised_by_spiffe_id() {
    let lab = common::lab("line.toml", |_| {});
    let pki = lab.pki();
    pki.issue("/brain/r9", "brain", DAY).unwrap();
    pki.issue("/intruder/x", "intruder", DAY).unwrap();
    let (brain, intruder) = (
        target_of(&lab, "brain", PqMode::Required),
        target_of(&lab, "intruder", PqMode::Required),
    );
    in_r1(&lab, move || async move {
        let conn = connect(&brain).await?;
        let mut dp = conn.dataplane(1 << 20);
        // Brains may program routes and read...
        dp.add_route(pb::AddRouteRequest {
            route: Some(pb::Route {
                prefix: "10.99.0.0/16".into(),
                next_hops: vec![pb::NextHop {
                    gateway: "198.18.2.2".into(),
                    interface: "eth2".into(),
                }],
                origin: 0,
            }),
        })
        .await?;
        dp.get_stats(pb::GetStatsRequest {
            include_zero: false,
        })
        .await?;
        // ... but not set policy.
        let e = dp
            .set_policy(pb::SetPolicyRequest {
                policy: Some(pb::Policy::default()),
                confirm_within_s: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(
            e.message()
                .contains("spiffe://lab.x0tta6bl4/brain/r9 may not call SetPolicy"),
            "{}",
            e.message()
        );
        // An SVID of the trust domain with no entry in the table gets nothing.
        let conn = connect(&intruder).await?;
        let e = conn
            .dataplane(1 << 20)
            .get_info(pb::GetInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        // Health checks are open to every authenticated caller.
        let mut h = tonic_health::pb::health_client::HealthClient::new(conn.channel.clone());
        h.check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
        Ok(())
    });
    let log = lab.dataplane_log("r1");
    assert!(
        log.lines().any(|l| l.contains("permission denied")
            && l.contains("spiffe://lab.x0tta6bl4/intruder/x")
            && l.contains("GetInfo")),
        "the denial is logged with the SPIFFE ID and RPC:\n{log}"
    );
}

/// Connects anew until the server presents `want` (or the deadline passes).
async fn wait_for_server_cert(target: &Target, want: &[u8]) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, conn) = get_info(target.clone()).await.map_err(anyhow::Error::msg)?;
        let seen = conn.tls.lock().unwrap().clone().expect("tls").server_cert;
        if seen == want {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the server never presented the new SVID"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn leaf_der(files: &x0_identity::FileSource) -> Vec<u8> {
    Identity::from_files(files).unwrap().chain[0].to_vec()
}

#[test]
fn svid_rotation_on_disk_keeps_open_streams() {
    let lab = common::lab("line.toml", |_| {});
    let pki = lab.pki();
    let target = target_of(&lab, OPERATOR, PqMode::Required);
    // An event stream opened before the rotation...
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stream_target = target.clone();
    let watcher = spawn_in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let conn = connect(&stream_target).await?;
                let mut events = conn
                    .dataplane(1 << 20)
                    .watch_events(pb::WatchEventsRequest {
                        include_history: false,
                    })
                    .await?
                    .into_inner();
                let old_cert = conn.tls.lock().unwrap().clone().expect("tls").server_cert;
                ready_tx.send(old_cert).unwrap();
                loop {
                    let e = tokio::time::timeout(Duration::from_secs(20), events.next())
                        .await?
                        .expect("the stream stays open")?;
                    if let Some(pb::event::Kind::Link(l)) = e.kind {
                        return Ok(l);
                    }
                }
            })
    })
    .unwrap();
    let old_cert = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("stream open");
    // ... the router's SVID re-issued in place ...
    pki.issue("/router/r1", "r1", DAY).unwrap();
    let new_cert = leaf_der(&pki.files("r1"));
    assert_ne!(old_cert, new_cert);
    let t = target.clone();
    in_r1(&lab, move || async move {
        wait_for_server_cert(&t, &new_cert).await
    });
    // ... and the old stream still delivers.
    x0_lab::netns::exec_ok(&lab.ns("r1"), &["ip", "link", "set", "eth2", "down"]).unwrap();
    let link = watcher
        .join()
        .unwrap()
        .expect("an event on the stream opened before the rotation");
    assert_eq!((link.interface.as_str(), link.up), ("eth2", false));
    assert!(lab.dataplane_running("r1"), "no restart");
}

/// A client revoked while its connection is open loses the connection (and its open stream)
/// once the dataplane reads the new CRL; another client's connection carries on.
#[test]
fn a_client_revoked_while_connected_is_cut_off() {
    let lab = common::lab("line.toml", |_| {});
    let pki = lab.pki();
    let doomed = pki.issue("/orchestrator/doomed", "doomed", DAY).unwrap();
    let stream_of = |svid: &str| {
        let target = target_of(&lab, svid, PqMode::Required);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = spawn_in_netns(&lab.ns("r1"), move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async move {
                    let conn = connect(&target).await?;
                    let mut stats = conn
                        .dataplane(1 << 20)
                        .watch_stats(pb::WatchStatsRequest {
                            interval_ms: 100,
                            include_zero: false,
                        })
                        .await?
                        .into_inner();
                    stats.next().await.expect("a first sample")?;
                    ready_tx.send(()).unwrap();
                    // Samples until the stream ends: (samples, how it ended).
                    let mut n = 0;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
                    while tokio::time::Instant::now() < deadline {
                        match tokio::time::timeout(Duration::from_secs(2), stats.next()).await {
                            Ok(Some(Ok(_))) => n += 1,
                            Ok(Some(Err(e))) => return Ok((n, format!("error: {e}"))),
                            Ok(None) => return Ok((n, "ended".into())),
                            Err(_) => return Ok((n, "stalled".into())),
                        }
                    }
                    Ok::<_, anyhow::Error>((n, "open".to_string()))
                })
        })
        .unwrap();
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("stream open");
        handle
    };
    let revoked_stream = stream_of("doomed");
    let other_stream = stream_of(OPERATOR);
    pki.revoke(&doomed.serial).unwrap();
    let (_, how) = revoked_stream.join().unwrap().unwrap();
    assert!(
        how.starts_with("error"),
        "the revoked client's stream: {how}"
    );
    let (samples, how) = other_stream.join().unwrap().unwrap();
    assert_eq!(how, "open", "the other client's stream");
    assert!(samples >= 40, "{samples} samples in 8 s at 100 ms");
    assert!(
        lab.dataplane_log("r1").contains("no longer accepted"),
        "the cut is logged"
    );
    let refused = in_r1(&lab, {
        let t = target_of(&lab, "doomed", PqMode::Required);
        move || async move { Ok(get_info(t).await.err()) }
    });
    assert!(
        refused.is_some_and(|e| e.contains("revoked")),
        "a new connection is refused"
    );
}

#[test]
fn workload_api_supplies_and_rotates_the_svid() {
    let lab = common::lab("line.toml", |_| {});
    let pki = lab.pki();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let socket = lab.dir.join("spire-agent.sock");
    let first = Identity::from_files(&pki.files("r1")).unwrap();
    let server = rt
        .block_on(x0_identity::WorkloadServer::start(&socket, &first))
        .unwrap();
    let mut api = lab.api_config("r1").unwrap();
    api.tls = Some(x0_dataplane::api::config::TlsConfig {
        cert: None,
        key: None,
        bundle: None,
        crls: vec![],
        workload_api: Some(server.endpoint()),
        reload_ms: 100,
    });
    lab.set_api_config("r1", &api).unwrap();
    lab.stop_dataplane("r1").unwrap();
    lab.start_dataplane("r1").unwrap();
    lab.wait_ready("r1", Duration::from_secs(30)).unwrap();
    assert!(lab.dataplane_log("r1").contains("API identity"));

    let target = target_of(&lab, OPERATOR, PqMode::Required);
    let want = first.chain[0].to_vec();
    let t = target.clone();
    in_r1(&lab, move || async move {
        wait_for_server_cert(&t, &want).await
    });

    // SPIRE rotates: the Workload API streams a new SVID; new connections get it.
    pki.issue("/router/r1", "r1-next", DAY).unwrap();
    let next = Identity::from_files(&pki.files("r1-next")).unwrap();
    server.set(&next);
    let want = next.chain[0].to_vec();
    in_r1(&lab, move || async move {
        wait_for_server_cert(&target, &want).await
    });
    drop(server);
}
