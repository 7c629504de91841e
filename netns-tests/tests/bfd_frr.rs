//! x0-dataplane's BFD against a standard implementation: FRR's bfdd in a neighbour namespace.

mod common;

use std::time::{Duration, Instant};

use x0_dataplane::config::{BfdDefaults, BfdOverride, BfdPeerConfig};
use x0_lab::{faults, frr::Bfdd, report::log_time};

#[test]
fn a_session_with_frr_bfdd_comes_up_and_goes_down_within_the_detect_time() {
    let lab = common::lab("line.toml", |t| {
        let r1 = &mut t.routers[0];
        r1.bfd = Some(BfdDefaults::default()); // 10 ms x 3
        r1.bfd_peers = vec![BfdPeerConfig {
            address: "198.18.2.2".parse().unwrap(),
            settings: BfdOverride::default(),
        }];
    });
    let bfdd = Bfdd::start(&lab, "h2", &[("198.18.2.1", "198.18.2.2")], 10).unwrap();
    let start = Instant::now();
    loop {
        let peers = bfdd.peers().unwrap_or_default();
        if lab
            .dataplane_log("r1")
            .contains("peer=198.18.2.2 iface=eth2 from=Init to=Up")
            || lab
                .dataplane_log("r1")
                .contains("peer=198.18.2.2 iface=eth2 from=Down to=Up")
        {
            // bfdd reaches Up when our Up arrives, a packet interval after ours: ask again.
            let agreed = Instant::now();
            let mut peers = peers;
            while !peers.to_lowercase().contains("up") && agreed.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(20));
                peers = bfdd.peers().unwrap_or_default();
            }
            assert!(peers.to_lowercase().contains("up"), "bfdd agrees:\n{peers}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no session:\n{}\n{peers}\n{}",
            lab.dataplane_log("r1"),
            bfdd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // the Poll/Final to 10 ms timers
    // bfdd's packets no longer reach r1.
    let cut = faults::drop_ingress(&lab, "r1", "eth2").unwrap();
    let start = Instant::now();
    let down = loop {
        if let Some(t) = log_time(
            &lab.dataplane_log("r1"),
            &["peer=198.18.2.2", "to=Down"],
            cut,
        ) {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "never went down:\n{}",
            lab.dataplane_log("r1")
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let detect = down.duration_since(cut).unwrap_or_default();
    println!(
        "x0-dataplane declared bfdd down {detect:?} after its packets stopped (detect time 30 ms)"
    );
    assert!(
        detect < Duration::from_millis(60),
        "took {detect:?}:\n{}",
        lab.dataplane_log("r1")
    );
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("BFD on this interface runs over AF_XDP")
            && log.contains("BFD packets are leaving through AF_XDP"),
        "bfdd talked to our AF_XDP sockets: {log}"
    );
    assert!(
        lab.dataplane_log("r1")
            .contains("diag=ControlDetectionExpired"),
        "{}",
        lab.dataplane_log("r1")
    );
}
