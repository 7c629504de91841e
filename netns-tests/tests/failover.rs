//! Failover on the diamond h1 - r1 - {r2 primary, r3 backup} - r4 - h2, with a UDP stream
//! of 10,000 packets/s from h1 to h2 and failures injected on r1-r2. Bounds here are loose
//! so that they cannot flake; the exact figures come from `x0-bench failover`.

mod common;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use x0_dataplane::counters::NextHopReport;
use x0_lab::{Lab, faults, netns, tools, traffic};

const RATE: u64 = 10_000;

/// diamond.toml runs BFD at 10 ms x 3 between routers.
fn diamond() -> Lab {
    common::lab("diamond.toml", |t| {
        assert!(t.routers.iter().all(|r| r.bfd.is_some()))
    })
}

/// Runs a stream of `secs` seconds from h1 to h2 and calls `during` while it runs.
fn stream_while(lab: &Lab, secs: u64, during: impl FnOnce()) -> traffic::StreamReport {
    let dst = common::addr(lab, "h2", false);
    std::thread::scope(|s| {
        let stream = s.spawn(|| traffic::udp_stream(lab, "h1", "h2", dst, 9100, RATE * secs, RATE));
        during();
        stream.join().unwrap().unwrap()
    })
}

fn r1_nexthop(lab: &Lab, gw: &str) -> NextHopReport {
    let gw: IpAddr = gw.parse().unwrap();
    x0_dataplane::counters::read_nexthops(&lab.pin_root("r1"))
        .unwrap()
        .into_iter()
        .find(|n| n.gateway == gw)
        .unwrap()
}

fn link(lab: &Lab, node: &str, iface: &str, up: bool) {
    netns::exec_ok(
        &lab.ns(node),
        &["ip", "link", "set", iface, if up { "up" } else { "down" }],
    )
    .unwrap();
}

fn wait_bfd_up(lab: &Lab) {
    tools::wait_bfd_all_up(
        lab,
        "r1",
        Duration::from_millis(30),
        Duration::from_secs(10),
    )
    .unwrap();
}

#[test]
fn carrier_loss_switches_to_the_backup_within_milliseconds() {
    let lab = diamond();
    let r = stream_while(&lab, 2, || {
        std::thread::sleep(Duration::from_millis(500));
        link(&lab, "r2", "eth0", false); // r1's eth1 loses carrier
    });
    println!("carrier loss: {r:?}, outage {:?}", r.outage());
    assert!(
        r.outage() < Duration::from_millis(50),
        "outage {:?}: {r:?}\n{}",
        r.outage(),
        lab.dataplane_log("r1")
    );
    assert!(r.received >= r.sent - 500);
    let primary = r1_nexthop(&lab, "198.18.12.2");
    let backup = r1_nexthop(&lab, "198.18.13.3");
    assert!(!primary.live && primary.state == "down", "{primary:?}");
    assert_eq!((primary.switches_from, backup.switches_to), (1, 1));
    assert!(
        backup.packets >= r.received / 2,
        "the backup carried the rest: {backup:?}"
    );
    assert!(lab.dataplane_log("r1").contains("reason=carrier lost"));
}

#[test]
fn silent_black_hole_is_caught_by_bfd() {
    let lab = diamond();
    wait_bfd_up(&lab);
    std::thread::sleep(Duration::from_millis(300)); // fast timers after the Poll/Final
    let r = stream_while(&lab, 2, || {
        std::thread::sleep(Duration::from_millis(500));
        // Both ends stay UP; everything crossing r1-r2 is dropped, both ways.
        faults::drop_ingress_all(&lab, &[("r2", "eth0"), ("r1", "eth1")]).unwrap();
    });
    println!("black-hole: {r:?}, outage {:?}", r.outage());
    let log = lab.dataplane_log("r1");
    assert!(
        r.outage() < Duration::from_millis(100),
        "outage {:?}: {r:?}\n{log}",
        r.outage()
    );
    assert!(log.contains("BFD session down"), "{log}");
    assert!(
        !log.contains("one-way"),
        "both directions were cut: not a one-way failure\n{log}"
    );
    let primary = r1_nexthop(&lab, "198.18.12.2");
    assert!(!primary.live, "{primary:?}");
}

#[test]
fn bfd_over_plain_udp_sockets_catches_the_black_hole_too() {
    let lab = common::lab("diamond.toml", |t| {
        for r in &mut t.routers {
            r.bfd.as_mut().unwrap().transport = "udp".into();
        }
    });
    wait_bfd_up(&lab);
    std::thread::sleep(Duration::from_millis(300));
    let r = stream_while(&lab, 2, || {
        std::thread::sleep(Duration::from_millis(500));
        faults::drop_ingress_all(&lab, &[("r2", "eth0"), ("r1", "eth1")]).unwrap();
    });
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("BFD transport: UDP sockets") && !log.contains("AF_XDP (copy mode)"),
        "{log}"
    );
    assert!(r.outage() < Duration::from_millis(100), "{r:?}");
    assert_eq!(
        lab.counters("r1")
            .unwrap()
            .get(x0_common::Reason::ToBfdSocket),
        0,
        "nothing went to an XSK"
    );
}

#[test]
fn bfd_runs_over_af_xdp_in_both_directions() {
    let lab = diamond();
    wait_bfd_up(&lab);
    let start = Instant::now();
    while !lab
        .dataplane_log("r1")
        .contains("BFD packets are leaving through AF_XDP")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no AF_XDP transmission:\n{}",
            lab.dataplane_log("r1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("BFD on this interface runs over AF_XDP (copy mode) iface=eth1"),
        "{log}"
    );
    // At 10 ms per session, the XDP program hands hundreds of packets to the XSKs a second.
    while lab
        .counters("r1")
        .unwrap()
        .get(x0_common::Reason::ToBfdSocket)
        < 100
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the XDP program did not feed the XSKs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_one_way_failure_is_told_apart_by_passive_liveness() {
    let lab = diamond();
    wait_bfd_up(&lab);
    std::thread::sleep(Duration::from_millis(300));
    // r1 -> r2 is dropped; r2 -> r1 still works (r2's BFD packets keep arriving).
    faults::drop_ingress(&lab, "r2", "eth0").unwrap();
    // The IPv4 next hop's own record (the IPv6 session to r2 goes down too, at its own time).
    let start = Instant::now();
    while r1_nexthop(&lab, "198.18.12.2").live {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{}",
            lab.dataplane_log("r1")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = lab.dataplane_log("r1");
    let line = log
        .lines()
        .find(|l| l.contains("next hop state nexthop=198.18.12.2") && l.contains("to=down"))
        .unwrap_or_else(|| panic!("no state change logged:\n{log}"));
    assert!(line.contains("one-way failure"), "{line}");
}

#[test]
fn recovery_waits_for_the_hold_down_and_loses_nothing() {
    let lab = diamond();
    wait_bfd_up(&lab);
    link(&lab, "r2", "eth0", false);
    std::thread::sleep(Duration::from_millis(300));
    let before = r1_nexthop(&lab, "198.18.12.2").packets;
    let mut back_after = None;
    let r = stream_while(&lab, 6, || {
        std::thread::sleep(Duration::from_millis(500));
        link(&lab, "r2", "eth0", true);
        let up = Instant::now();
        while up.elapsed() < Duration::from_millis(5000) {
            if back_after.is_none() && r1_nexthop(&lab, "198.18.12.2").packets > before {
                back_after = Some(up.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let back = back_after
        .unwrap_or_else(|| panic!("traffic never returned to r2\n{}", lab.dataplane_log("r1")));
    println!("recovery: back on r2 {back:?} after the link came up; {r:?}");
    assert!(
        back >= Duration::from_millis(1900),
        "returned after {back:?}, before the 2 s hold-down"
    );
    assert_eq!(r.lost, 0, "no loss when switching back: {r:?}");
}

#[test]
fn a_flapping_link_does_not_make_traffic_oscillate() {
    let lab = diamond();
    wait_bfd_up(&lab);
    let r = stream_while(&lab, 7, || {
        std::thread::sleep(Duration::from_millis(500));
        // Every 200 ms for 5 s.
        for i in 0..25 {
            link(&lab, "r2", "eth0", i % 2 == 1);
            std::thread::sleep(Duration::from_millis(200));
        }
        link(&lab, "r2", "eth0", true);
    });
    let primary = r1_nexthop(&lab, "198.18.12.2");
    println!("flapping: {r:?}; primary {primary:?}");
    assert_eq!(
        primary.switches_from, 1,
        "left the primary once: {primary:?}"
    );
    assert_eq!(
        primary.switches_to, 0,
        "never went back while flapping: {primary:?}"
    );
    assert!(r.outage() < Duration::from_millis(50), "{r:?}");
}

/// SIGTERM leaves r2's fast path forwarding and its sessions say AdminDown first: r1 keeps
/// sending through r2 while r2's next daemon starts and its BFD session comes up again.
#[test]
fn a_transit_router_restarting_moves_no_traffic() {
    let lab = diamond();
    wait_bfd_up(&lab);
    std::thread::sleep(Duration::from_millis(300)); // fast timers after the Poll/Final
    let r = stream_while(&lab, 3, || {
        std::thread::sleep(Duration::from_millis(500));
        lab.stop_dataplane("r2").unwrap();
        lab.start_dataplane("r2").unwrap();
        lab.wait_ready("r2", Duration::from_secs(10)).unwrap();
    });
    println!("restart of r2: {r:?}");
    let log = lab.dataplane_log("r1");
    assert!(log.contains("said AdminDown"), "{log}");
    assert_eq!(r.lost, 0, "{r:?}\n{log}");
    let primary = r1_nexthop(&lab, "198.18.12.2");
    assert!(primary.live && primary.switches_from == 0, "{primary:?}");
    wait_bfd_up(&lab);
}

/// A peer's AdminDown is believed for the grace (10 s) only: a router that stays away is
/// routed around then, as after any failure.
#[test]
fn a_router_that_said_admin_down_and_stays_away_is_routed_around_after_the_grace() {
    let lab = diamond();
    wait_bfd_up(&lab);
    lab.stop_dataplane("r2").unwrap();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let primary = r1_nexthop(&lab, "198.18.12.2");
    assert!(primary.live, "within the grace: {primary:?}");
    while r1_nexthop(&lab, "198.18.12.2").live {
        assert!(stopped.elapsed() < Duration::from_secs(13), "still live");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = lab.dataplane_log("r1");
    assert!(log.contains("is not back after"), "{log}");
    assert!(r1_nexthop(&lab, "198.18.13.3").live);
}

#[test]
fn kill_9_and_restart_loses_no_packet() {
    let lab = diamond();
    let r = stream_while(&lab, 3, || {
        std::thread::sleep(Duration::from_millis(800));
        lab.kill_dataplane("r1").unwrap();
        lab.start_dataplane("r1").unwrap();
        lab.wait_ready("r1", Duration::from_secs(10)).unwrap();
    });
    println!("restart: {r:?}");
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("replaced the program in the existing link (hitless)"),
        "{log}"
    );
    assert!(log.contains("adopted the routes"), "{log}");
    assert_eq!(r.lost, 0, "{r:?}");
}
