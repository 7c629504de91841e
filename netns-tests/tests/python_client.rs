//! A client in another language: Python's grpcio (from PyPI, in the virtualenv that
//! scripts/setup.sh installs) compiles dataplane.proto at run time and drives a real
//! dataplane over its Unix socket (tests/python/dataplane_client.py). Its JSON summary is
//! checked here, and the route it deleted is checked gone through x0ctl over mutual TLS.
//! Without the virtualenv the test fails (never skips).

mod common;

use std::{path::Path, process::Command};

use serde_json::Value;

#[test]
fn python_grpcio_client_over_unix_socket() {
    let python = common::python();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/python/dataplane_client.py");
    let proto_root = manifest.join("../proto/proto");

    let lab = common::lab("line.toml", |_| {});
    // The mount namespace is shared: r1's socket is reachable from here.
    let out = Command::new(&python)
        .arg(&script)
        .arg(lab.api_socket("r1"))
        .arg(&proto_root)
        .output()
        .expect("run the Python client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed ({}):\n{stderr}\nr1's log:\n{}",
        out.status,
        lab.dataplane_log("r1")
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python client's stdout is not JSON ({e}): {:?}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    assert_eq!(summary["caller"], "unix:uid=0", "{summary}");
    assert_eq!(
        summary["interfaces"],
        serde_json::json!(["eth1", "eth2"]),
        "{summary}"
    );
    assert_eq!(
        summary["added_seen"], true,
        "10.123.0.0/16 via 198.18.2.2@eth2 listed with origin API: {summary}\n{stderr}"
    );
    assert_eq!(summary["invalid_code"], "INVALID_ARGUMENT", "{summary}");
    let message = summary["invalid_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("route.prefix") && message.contains("10.123.0.1/16"),
        "the error names the field and the prefix: {summary}"
    );
    assert_eq!(summary["long_code"], "INVALID_ARGUMENT", "{summary}");
    let long = summary["long_message"].as_str().unwrap_or_default();
    assert!(
        long.starts_with("route.prefix") && long.len() < 200,
        "a 10 kB prefix is refused with a short message: {summary}"
    );
    assert_eq!(summary["deleted"], true, "{summary}\n{stderr}");
    assert_eq!(summary["health"], "SERVING", "{summary}\n{stderr}");

    // From Rust, over the TLS listener: the route is gone, the config's are still there.
    let listed = lab
        .x0ctl("r1", &["route", "list", "--json"])
        .expect("x0ctl route list");
    let routes: Vec<Value> = serde_json::from_str(&listed).expect("x0ctl's JSON");
    let prefixes: Vec<&str> = routes.iter().filter_map(|r| r["prefix"].as_str()).collect();
    assert!(
        !prefixes.contains(&"10.123.0.0/16") && !prefixes.contains(&"10.123.0.1/16"),
        "{prefixes:?}"
    );
    assert!(
        routes.iter().any(|r| r["origin"] == "config"),
        "the config's routes are listed: {listed}"
    );
}
