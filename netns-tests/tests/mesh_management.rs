//! Managing routers across the mesh: an orchestrator in h1 reaches the mutual-TLS API of
//! the farthest router of the diamond (r4) through r1 and r2, with x0ctl (checking r4's
//! SPIFFE ID) and with Python's grpcio (checking the DNS name r4's SVID carries beside it:
//! grpcio checks host names, not SPIFFE IDs). Without the kernel's copy of the routes, r4's
//! answers had no way back.

mod common;

use std::{path::Path, process::Command};

use serde_json::Value;
use x0_lab::{
    Lab,
    lab::API_PORT,
    pki::{OPERATOR, TRUST_DOMAIN, router_dns_name, tls_args},
    traffic,
};

/// r4's addresses on the r2-r4 link, two hops from h1.
const R4: [&str; 2] = ["198.18.24.4", "[2001:db8:24::4]"];

fn url(addr: &str) -> String {
    format!("https://{addr}:{API_PORT}")
}

fn x0ctl_to_r4(lab: &Lab, addr: &str, args: &[&str]) -> anyhow::Result<String> {
    let id = format!("spiffe://{TRUST_DOMAIN}/router/r4");
    let mut all = vec!["--server-id", id.as_str()];
    all.extend_from_slice(args);
    lab.x0ctl_at("h1", &url(addr), &all)
}

fn wait_mesh(lab: &Lab) {
    for v6 in [false, true] {
        let h2 = common::addr(lab, "h2", v6);
        traffic::wait_reply(lab, "h1", h2, std::time::Duration::from_secs(10)).unwrap();
    }
}

#[test]
fn x0ctl_in_h1_drives_r4s_api_across_the_mesh() {
    let lab = common::lab("diamond.toml", |_| {});
    wait_mesh(&lab);
    for addr in R4 {
        let listed = x0ctl_to_r4(&lab, addr, &["--json", "route", "list"]).unwrap();
        let routes: Vec<Value> = serde_json::from_str(&listed).unwrap();
        let configured = lab.topo.router("r4").unwrap().routes.len();
        assert!(routes.len() >= configured, "{addr}: {listed}");
    }
    let (v4, v6) = (R4[0], R4[1]);
    x0ctl_to_r4(
        &lab,
        v4,
        &["route", "add", "203.0.113.0/24", "--via", "198.18.2.2@eth2"],
    )
    .unwrap();
    let before = x0ctl_to_r4(&lab, v6, &["route", "list"]).unwrap();
    assert!(before.contains("203.0.113.0/24"), "{before}");
    // A bad request (a host route's bits set) is refused and changes nothing.
    let bad = x0ctl_to_r4(
        &lab,
        v4,
        &["route", "add", "203.0.114.1/24", "--via", "198.18.2.2@eth2"],
    );
    let e = bad.expect_err("host bits set").to_string();
    assert!(e.contains("203.0.114.1/24"), "{e}");
    assert_eq!(x0ctl_to_r4(&lab, v6, &["route", "list"]).unwrap(), before);
    // A client that expects another router refuses r4.
    let r3 = format!("spiffe://{TRUST_DOMAIN}/router/r3");
    let wrong = lab.x0ctl_at("h1", &url(v4), &["--server-id", &r3, "route", "list"]);
    assert!(wrong.is_err(), "x0ctl accepted r4 as r3");
}

/// The Python client in h1 against r4 at `addr`, expecting the server name `name`.
fn python_client(lab: &Lab, addr: &str, name: &str) -> std::process::Output {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = lab.pki().files(OPERATOR);
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1")])
        .arg(common::python())
        .arg(manifest.join("tests/python/dataplane_client.py"))
        .arg(format!("{addr}:{API_PORT}"))
        .arg(manifest.join("../proto/proto"))
        .args(tls_args(&files))
        .args(["--server-name", name])
        .output()
        .expect("run the Python client")
}

#[test]
fn a_python_grpcio_client_in_h1_drives_r4_over_mutual_tls() {
    let lab = common::lab("diamond.toml", |_| {});
    wait_mesh(&lab);
    for addr in R4 {
        let out = python_client(&lab, addr, &router_dns_name("r4"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{addr}: {stderr}\n{}",
            lab.dataplane_log("r4")
        );
        let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!(
            summary["caller"],
            format!("spiffe://{TRUST_DOMAIN}/orchestrator/lab")
        );
        assert_eq!(summary["added_seen"], true, "{summary}");
        assert_eq!(summary["invalid_code"], "INVALID_ARGUMENT", "{summary}");
        assert_eq!(summary["deleted"], true, "{summary}");
        assert_eq!(summary["health"], "SERVING", "{summary}");
    }
    // Expecting r3, the client refuses r4's certificate.
    let out = python_client(&lab, R4[0], &router_dns_name("r3"));
    assert!(!out.status.success(), "grpcio accepted r4 as r3");
}
