//! The small-router map profile (`[maps] profile = "small"`): r1 of the line lab forwards
//! with maps sized for a router with little memory, the kernel charges it a fraction of
//! the default's, and its capacity is what the API enforces and reports.

mod common;

use std::time::Duration;

use serde_json::Value;
use x0_dataplane::map_sizes::{MapsConfig, Profile};
use x0_lab::{Lab, traffic};

/// Every BPF map's charge (fdinfo memlock) of the process, MiB, each map once.
fn maps_memlock_mib(pid: i32) -> f64 {
    let fdinfo = format!("/proc/{pid}/fdinfo");
    let by_map = x0_dataplane::metrics::maps::memlock_by_map(std::path::Path::new(&fdinfo));
    assert!(!by_map.is_empty(), "no BPF maps open in process {pid}");
    by_map.values().sum::<u64>() as f64 / (1024.0 * 1024.0)
}

fn lab(maps: MapsConfig) -> Lab {
    let lab = common::lab("line.toml", |t| t.routers[0].maps = maps);
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
    }
    lab
}

#[test]
fn a_small_router_forwards_with_a_fraction_of_the_maps_and_its_capacity_holds() {
    let default = lab(MapsConfig::default());
    let pid = default.pid("r1").unwrap().as_raw();
    let default_mib = maps_memlock_mib(pid);
    drop(default);
    let small = lab(MapsConfig {
        profile: Profile::Small,
        routes_v4: Some(100),
        ..Default::default()
    });
    let pid = small.pid("r1").unwrap().as_raw();
    let small_mib = maps_memlock_mib(pid);
    println!("maps memlock: default {default_mib:.1} MiB, small {small_mib:.1} MiB");
    assert!(small_mib < 48.0, "small profile: {small_mib:.1} MiB");
    assert!(
        default_mib > 3.0 * small_mib,
        "default {default_mib:.1} MiB"
    );
    // Both families forward (the IPv4 lookups without the direct table).
    for v6 in [false, true] {
        let h2 = common::addr(&small, "h2", v6);
        assert_eq!(traffic::ping(&small, "h1", h2, 3).unwrap(), 3);
    }
    let info: Value =
        serde_json::from_str(&small.x0ctl("r1", &["--json", "info"]).unwrap()).unwrap();
    assert_eq!(info["route_capacity"], 100 + 8_192, "{info}");
    // The IPv4 table holds 100: the routes there now and `room` more; one more than that
    // is refused whole, exactly that many fit.
    let listed: Value =
        serde_json::from_str(&small.x0ctl("r1", &["--json", "route", "list"]).unwrap()).unwrap();
    let v4 = (listed.as_array().unwrap().iter())
        .filter(|r| !r["prefix"].as_str().unwrap().contains(':'))
        .count();
    let room = 100 - v4;
    let batch = |n: usize| {
        let lines: String = (0..n)
            .map(|i| format!("add 10.{}.{}.0/24 198.18.2.2@eth2\n", i / 256, i % 256))
            .collect();
        let file = small.file("r1", "batch.txt");
        std::fs::write(&file, lines).unwrap();
        small.x0ctl("r1", &["route", "batch", file.to_str().unwrap()])
    };
    let full = batch(room + 1).unwrap_err().to_string();
    assert!(
        full.contains("ResourceExhausted") && full.contains("hold 100"),
        "{full}"
    );
    batch(room).unwrap();
}
