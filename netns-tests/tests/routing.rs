//! The other routing stacks the benchmarks compare with, in the diamond lab on the
//! kernel's forwarding: FRR (OSPF with BFD) and babeld converge on the preferred path,
//! carry traffic, and switch to the other path when the preferred link goes dark.

mod common;

use std::time::Duration;

use x0_lab::{faults, routing, traffic};

const H2_NET: &str = "198.18.2.0/24";

fn switches_on_a_black_hole(frr: bool) {
    let lab = common::lab("diamond.toml", |_| {});
    routing::kernel_forwarding(&lab).unwrap();
    if frr {
        routing::start_frr(&lab, 10, &routing::diamond_prefers_r2(true)).unwrap();
    } else {
        routing::start_babeld(&lab, 0.1, &routing::diamond_prefers_r2(false)).unwrap();
    }
    routing::wait_route(&lab, "r1", H2_NET, "198.18.12.2", Duration::from_secs(60)).unwrap();
    let h2 = common::addr(&lab, "h2", false);
    // r1's route out can come before r4's route back: wait for both ways, let the
    // adjacencies settle, then every ping must pass
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(traffic::ping(&lab, "h1", h2, 3).unwrap(), 3);
    faults::drop_ingress_all(&lab, &[("r2", "eth0"), ("r1", "eth1")]).unwrap();
    // the link is dark (r1 reaches r2 only over it); the stack must route around it
    assert_eq!(
        traffic::ping(&lab, "r1", "198.18.12.2".parse().unwrap(), 1).unwrap(),
        0,
        "the black-hole drops the link"
    );
    routing::wait_route(&lab, "r1", H2_NET, "198.18.13.3", Duration::from_secs(5)).unwrap();
    // r4's route back moves too, by the stack's own flooding, a little later than r1's
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(5)).unwrap();
    assert_eq!(traffic::ping(&lab, "h1", h2, 3).unwrap(), 3);
}

#[test]
fn frr_ospf_with_bfd_switches_on_a_black_hole() {
    switches_on_a_black_hole(true);
}

#[test]
fn babeld_switches_on_a_black_hole() {
    switches_on_a_black_hole(false);
}
