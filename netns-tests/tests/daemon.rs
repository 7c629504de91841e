//! x0-dataplane as a process in a lab router: refusing bad configs without touching the
//! kernel, and following the kernel's neighbour table.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use x0_lab::{lab::default_dataplane_bin, netns, traffic};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_config_naming_a_missing_interface_is_refused_and_nothing_is_attached() {
    let lab = common::lab("line.toml", |_| {});
    lab.stop_dataplane("r1").unwrap();
    lab.detach_dataplane("r1").unwrap();
    let pin_root = lab.pin_root("r1");
    let config = lab.dir.join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "pin_root = {:?}\n[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth7\"\n",
            pin_root
        ),
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("r1")])
        .arg(default_dataplane_bin().unwrap())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail");
    assert!(
        stderr.contains("interface[1].name") && stderr.contains("eth7"),
        "error names the field: {stderr}"
    );
    let link = netns::exec_ok(&lab.ns("r1"), &["ip", "link", "show", "dev", "eth1"]).unwrap();
    assert!(!link.contains("xdp"), "nothing attached:\n{link}");
    assert!(
        !pin_root.join(x0_common::map_names::STATS).exists(),
        "nothing pinned"
    );

    // A syntax error is refused by `check` too, naming the key.
    std::fs::write(&config, "fib_fallback = maybe\n").unwrap();
    let out = Command::new(default_dataplane_bin().unwrap())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fib_fallback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_neighbour_mac_change_reaches_the_next_hop() {
    let lab = common::lab("line.toml", |t| t.routers[0].kernel_forwarding = false);
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
    // h2 gets a new MAC, and r1's kernel learns it (as from a gratuitous ARP).
    let new_mac = "02:00:00:00:99:02";
    netns::exec_ok(
        &lab.ns("h2"),
        &["ip", "link", "set", "eth0", "address", new_mac],
    )
    .unwrap();
    netns::exec_ok(
        &lab.ns("r1"),
        &[
            "ip",
            "neigh",
            "replace",
            "198.18.2.2",
            "lladdr",
            new_mac,
            "dev",
            "eth2",
            "nud",
            "reachable",
        ],
    )
    .unwrap();
    wait_for(
        "the daemon to take the new MAC",
        Duration::from_secs(5),
        || lab.dataplane_log("r1").contains(&format!("mac={new_mac}")),
    );
    // With the old MAC h2 would discard every frame (not addressed to it); the kernel
    // cannot help, its forwarding is off.
    assert_eq!(
        traffic::ping(&lab, "h1", h2, 10).unwrap(),
        10,
        "{}",
        lab.dataplane_log("r1")
    );
}

#[test]
fn flushed_neighbours_are_resolved_again_by_the_daemon() {
    let lab = common::lab("line.toml", |t| t.routers[0].kernel_forwarding = false);
    let r1 = lab.ns("r1");
    netns::exec_ok(&r1, &["ip", "neigh", "flush", "dev", "eth2"]).unwrap();
    netns::exec_ok(&r1, &["ip", "-6", "neigh", "flush", "dev", "eth2"]).unwrap();
    wait_for(
        "198.18.2.2 and 2001:db8:2::2 to be resolved again",
        Duration::from_secs(5),
        || {
            let v4 =
                netns::exec_ok(&r1, &["ip", "neigh", "show", "198.18.2.2", "dev", "eth2"]).unwrap();
            let v6 = netns::exec_ok(
                &r1,
                &["ip", "-6", "neigh", "show", "2001:db8:2::2", "dev", "eth2"],
            )
            .unwrap();
            v4.contains("lladdr") && v6.contains("lladdr")
        },
    );
    for v6 in [false, true] {
        let dst = common::addr(&lab, "h2", v6);
        assert_eq!(traffic::ping(&lab, "h1", dst, 5).unwrap(), 5);
    }
}
