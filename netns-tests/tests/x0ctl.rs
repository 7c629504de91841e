//! The operator's CLI against real dataplanes: routes programmed with `x0ctl` over mutual
//! TLS steer real traffic, BFD sessions and events show up, and failures say what failed.

mod common;

use std::time::Duration;

use x0_lab::traffic;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Forwarded packets of r1's next hop with this gateway.
fn forwarded_via(lab: &x0_lab::Lab, gateway: &str) -> u64 {
    let nhs = json(&lab.x0ctl("r1", &["--json", "nexthop", "list"]).unwrap());
    nhs.as_array()
        .unwrap()
        .iter()
        .find(|n| n["gateway"] == gateway)
        .and_then(|n| n["packets"].as_u64())
        .unwrap_or_else(|| panic!("no next hop {gateway}: {nhs}"))
}

/// r1's route to h2 as the config has it: r2 first, r3 behind.
fn h2_via_r2_first(lab: &x0_lab::Lab) {
    lab.x0ctl(
        "r1",
        &[
            "route",
            "replace",
            "198.18.2.0/24",
            "--via",
            "198.18.12.2@eth1",
            "--via",
            "198.18.13.3@eth2",
        ],
    )
    .unwrap();
}

#[test]
fn routes_programmed_with_x0ctl_over_mtls_steer_traffic() {
    let lab = common::lab("diamond.toml", |_| {});
    let h2 = common::addr(&lab, "h2", false);

    let health = json(&lab.x0ctl("r1", &["--json", "health"]).unwrap());
    assert_eq!(health["status"], "SERVING");
    assert_eq!(health["key_exchange"], "X25519MLKEM768");
    assert_eq!(
        health["server_spiffe_id"],
        "spiffe://lab.x0tta6bl4/router/r1"
    );

    // BFD to both neighbours is up (the diamond runs BFD at 10 ms x 3).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bfd = json(&lab.x0ctl("r1", &["--json", "bfd", "list"]).unwrap());
        let up = bfd["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "Up")
            .count();
        if up >= 2 {
            assert!(!bfd["transport"].as_str().unwrap().is_empty());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "BFD never came up: {bfd}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The config prefers r2 for h2's subnet; x0ctl makes r3 the primary.
    let before_r3 = forwarded_via(&lab, "198.18.13.3");
    let out = lab
        .x0ctl(
            "r1",
            &[
                "route",
                "replace",
                "198.18.2.0/24",
                "--via",
                "198.18.13.3@eth2",
                "--via",
                "198.18.12.2@eth1",
            ],
        )
        .unwrap();
    assert!(out.contains("replaced 198.18.2.0/24"), "{out}");
    assert_eq!(traffic::ping(&lab, "h1", h2, 20).unwrap(), 20);
    assert!(
        forwarded_via(&lab, "198.18.13.3") >= before_r3 + 20,
        "the pings went through r3"
    );
    let routes = json(
        &lab.x0ctl("r1", &["--json", "route", "list", "--origin", "api"])
            .unwrap(),
    );
    assert_eq!(routes[0]["prefix"], "198.18.2.0/24");
    assert_eq!(routes[0]["next_hops"][0]["gateway"], "198.18.13.3");

    // A batch file, all or nothing.
    let file = lab.dir.join("batch.txt");
    std::fs::write(&file, "add 10.50.0.0/16 198.18.12.2@eth1 198.18.13.3@eth2\nadd 10.51.0.0/16 via 198.18.13.3@eth2\n").unwrap();
    let out = json(
        &lab.x0ctl("r1", &["--json", "route", "batch", file.to_str().unwrap()])
            .unwrap(),
    );
    assert_eq!(out["added"], 2);
    std::fs::write(&file, "del 10.50.0.0/16\ndel 10.52.0.0/16\n").unwrap();
    let err = lab
        .x0ctl("r1", &["route", "batch", file.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NotFound") && err.contains("operations[1].delete"),
        "{err}"
    );
    let routes = lab
        .x0ctl("r1", &["route", "list", "--origin", "api"])
        .unwrap();
    assert!(
        routes.contains("10.50.0.0/16") && routes.contains("3 routes"),
        "{routes}"
    );

    // Back to the config's order with a del of the API's route and a replace.
    h2_via_r2_first(&lab);
    let before_r2 = forwarded_via(&lab, "198.18.12.2");
    assert_eq!(traffic::ping(&lab, "h1", h2, 10).unwrap(), 10);
    assert!(forwarded_via(&lab, "198.18.12.2") >= before_r2 + 10);

    // The same operations refused for bad input, in words.
    let err = lab
        .x0ctl(
            "r1",
            &["route", "add", "10.60.0.1/16", "--via", "198.18.12.2@eth1"],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("InvalidArgument")
            && err.contains("route.prefix")
            && err.contains("host bits"),
        "{err}"
    );
    let err = lab
        .x0ctl(
            "r1",
            &["route", "add", "10.60.0.0/16", "--via", "198.18.12.2"],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("GATEWAY@INTERFACE"), "{err}");

    // Events: the history holds the BFD sessions coming up.
    let events = lab
        .x0ctl("r1", &["--json", "events", "--history", "--count", "1"])
        .unwrap();
    assert!(events.contains("\"kind\""), "{events}");
}

#[test]
fn x0ctl_says_what_failed() {
    let lab = common::lab("line.toml", |_| {});
    lab.stop_dataplane("r1").unwrap();
    let err = lab.x0ctl("r1", &["info"]).unwrap_err().to_string();
    assert!(
        err.contains("connecting to 127.0.0.1:7443") && err.contains("refused"),
        "{err}"
    );
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("x0ctl");
    let out = std::process::Command::new(&bin)
        .args(["--addr", "unix:///nonexistent/x0.sock", "info"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/x0.sock: no such socket"),
        "{err}"
    );
    let out = std::process::Command::new(&bin)
        .args(["--addr", "https://127.0.0.1:1", "info"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs our SVID"), "{err}");
}

/// A next hop that no route uses any more is deleted; made again later, it must take its
/// neighbour's MAC from the kernel's table (no netlink event comes: the neighbour did not
/// change) and carry traffic again. Before, it stayed unresolved and its traffic went to
/// the backup for good (x0-bench gray found it: a drained link, restored, carried nothing).
#[test]
fn a_next_hop_made_again_takes_the_known_neighbour_and_forwards() {
    let lab = common::lab("diamond.toml", |_| {});
    let h2 = common::addr(&lab, "h2", false);
    let routes = json(&lab.x0ctl("r1", &["--json", "route", "list"]).unwrap());
    // Every route through r2 loses it (a route with nothing else goes).
    for r in routes.as_array().unwrap() {
        let hops: Vec<String> = r["next_hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                format!(
                    "{}@{}",
                    h["gateway"].as_str().unwrap(),
                    h["interface"].as_str().unwrap()
                )
            })
            .collect();
        if !hops.iter().any(|h| h.starts_with("198.18.12.2@")) {
            continue;
        }
        let prefix = r["prefix"].as_str().unwrap();
        let rest: Vec<&String> = hops
            .iter()
            .filter(|h| !h.starts_with("198.18.12.2@"))
            .collect();
        let mut args = vec!["route", "replace", prefix];
        for h in &rest {
            args.extend(["--via", h.as_str()]);
        }
        if rest.is_empty() {
            args = vec!["route", "del", prefix];
        }
        lab.x0ctl("r1", &args).unwrap();
    }
    let nhs = lab.x0ctl("r1", &["nexthop", "list"]).unwrap();
    assert!(
        !nhs.contains("198.18.12.2 "),
        "r2's next hop is gone:\n{nhs}"
    );
    // r2 first again: a new next hop for a neighbour the kernel has known all along.
    h2_via_r2_first(&lab);
    // The resolution retry runs every second.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(traffic::ping(&lab, "h1", h2, 20).unwrap(), 20);
    let via_r2 = forwarded_via(&lab, "198.18.12.2");
    assert!(
        via_r2 >= 20,
        "the pings went through r3, not r2 ({via_r2} via r2)"
    );
}
