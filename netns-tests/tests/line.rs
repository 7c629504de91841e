//! h1 - r1 - h2 with the kernel's forwarding off in r1: whatever crosses r1 was forwarded
//! by XDP, and r1's counters must account for every packet.

mod common;

use x0_common::Reason;
use x0_lab::{netns, traffic};

#[test]
fn xdp_forwards_ipv4_and_ipv6_both_ways_with_kernel_forwarding_off() {
    forwards_both_ways(true);
}

/// The same with the IPv4 direct table turned off in the config: the map is created with
/// one element and IPv4 lookups probe per prefix length.
#[test]
fn xdp_forwards_both_ways_without_the_ipv4_direct_table() {
    forwards_both_ways(false);
}

fn forwards_both_ways(direct_table: bool) {
    let lab = common::lab("line.toml", |t| {
        t.routers[0].kernel_forwarding = false;
        t.routers[0].fib_fallback = false;
        t.routers[0].ipv4_direct_table = direct_table;
    });
    let direct =
        aya::maps::MapData::from_pin(lab.pin_root("r1").join(x0_common::map_names::V4_DIRECT))
            .unwrap();
    assert_eq!(
        direct.info().unwrap().max_entries() == x0_common::V4_DIRECT_ELEMENTS,
        direct_table,
        "the direct table's size follows the config"
    );
    let r1 = lab.ns("r1");
    assert_eq!(
        netns::exec_ok(&r1, &["sysctl", "-n", "net.ipv4.ip_forward"])
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        netns::exec_ok(&r1, &["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
            .unwrap()
            .trim(),
        "0"
    );

    let before = lab.counters("r1").unwrap();
    let mut expected = 0u64;
    for v6 in [false, true] {
        for (from, to) in [("h1", "h2"), ("h2", "h1")] {
            let dst = common::addr(&lab, to, v6);
            let got = traffic::ping(&lab, from, dst, 20).unwrap();
            assert_eq!(
                got,
                20,
                "ping {from} -> {dst}: {got}/20 replies\n{}",
                lab.dataplane_log("r1")
            );
            expected += 40; // request and reply both cross r1
            let report = traffic::udp_stream(&lab, from, to, dst, 9000, 2000, 4000).unwrap();
            assert_eq!(report.received, 2000, "udp {from} -> {dst}: {report:?}");
            expected += 2000;
        }
    }
    let after = lab.counters("r1").unwrap();
    let forwarded = after.get(Reason::ForwardedRoute) - before.get(Reason::ForwardedRoute);
    assert_eq!(
        forwarded, expected,
        "r1's redirect counter must match the packets sent"
    );
    for r in [
        Reason::ForwardedFib,
        Reason::PassNoNeighbour,
        Reason::PassNoRoute,
        Reason::DropRedirectFailed,
    ] {
        assert_eq!(after.get(r), before.get(r), "{} moved", r.name());
    }
    // Per interface: what came in and was forwarded equals what went out.
    let sum = |f: fn(&x0_dataplane::counters::IfCount) -> u64,
               c: &x0_dataplane::counters::Counters| {
        c.interfaces.values().map(f).sum::<u64>()
    };
    assert_eq!(
        sum(|i| i.tx_packets, &after) - sum(|i| i.tx_packets, &before),
        forwarded,
        "tx per interface adds up to the forwarded total"
    );
}

#[test]
fn ping_through_xdp_shows_the_ttl_decremented_once() {
    let lab = common::lab("line.toml", |t| t.routers[0].kernel_forwarding = false);
    let out = netns::exec_ok(
        &lab.ns("h1"),
        &["ping", "-n", "-c", "1", "-W", "2", "198.18.2.2"],
    )
    .unwrap();
    assert!(
        out.contains("ttl=63"),
        "h2 answers with TTL 64, r1 must make it 63:\n{out}"
    );
    let out = netns::exec_ok(
        &lab.ns("h1"),
        &["ping", "-n", "-c", "1", "-W", "2", "2001:db8:2::2"],
    )
    .unwrap();
    assert!(out.contains("ttl=63"), "hop limit 64 - 1:\n{out}");
}

fn xdp_attached(lab: &x0_lab::Lab, node: &str, iface: &str) -> bool {
    netns::exec_ok(&lab.ns(node), &["ip", "link", "show", "dev", iface])
        .unwrap()
        .contains("xdp")
}

#[test]
fn sigterm_leaves_forwarding_running_and_detach_removes_it() {
    let lab = common::lab("line.toml", |t| t.routers[0].kernel_forwarding = false);
    assert!(xdp_attached(&lab, "r1", "eth1"), "attached while running");
    lab.stop_dataplane("r1").unwrap();
    assert!(
        xdp_attached(&lab, "r1", "eth1"),
        "still attached with the daemon gone"
    );
    assert!(
        lab.pin_root("r1")
            .join(x0_common::map_names::STATS)
            .exists(),
        "maps still pinned"
    );
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(
        traffic::ping(&lab, "h1", h2, 10).unwrap(),
        10,
        "XDP forwards with no daemon (kernel forwarding is off)"
    );
    lab.detach_dataplane("r1").unwrap();
    assert!(
        !xdp_attached(&lab, "r1", "eth1") && !xdp_attached(&lab, "r1", "eth2"),
        "detached"
    );
    assert!(
        !lab.pin_root("r1")
            .join(x0_common::map_names::STATS)
            .exists(),
        "pins removed"
    );
    assert!(
        !lab.pin_root("r1").join("links").exists(),
        "link pins removed"
    );
    assert_eq!(
        traffic::ping(&lab, "h1", h2, 3).unwrap(),
        0,
        "nothing forwards any more"
    );
}

#[test]
fn detach_on_exit_takes_everything_down_on_sigterm() {
    let lab = common::lab("line.toml", |_| {});
    lab.stop_dataplane("r1").unwrap();
    lab.detach_dataplane("r1").unwrap();
    lab.start_dataplane_with("r1", &["--detach-on-exit"])
        .unwrap();
    lab.wait_ready("r1", std::time::Duration::from_secs(10))
        .unwrap();
    assert!(xdp_attached(&lab, "r1", "eth1"));
    lab.stop_dataplane("r1").unwrap();
    assert!(
        !xdp_attached(&lab, "r1", "eth1"),
        "detached on SIGTERM:\n{}",
        lab.dataplane_log("r1")
    );
    assert!(
        !lab.pin_root("r1")
            .join(x0_common::map_names::STATS)
            .exists(),
        "pins removed"
    );
}

#[test]
fn stats_command_prints_the_pinned_counters() {
    let lab = common::lab("line.toml", |_| {});
    assert_eq!(
        traffic::ping(&lab, "h1", common::addr(&lab, "h2", false), 5).unwrap(),
        5
    );
    let bin = x0_lab::lab::default_dataplane_bin().unwrap();
    let pin_root = lab.pin_root("r1");
    let bin = bin.to_str().unwrap();
    let pins = pin_root.to_str().unwrap();
    let json =
        netns::exec_ok(&lab.ns("r1"), &[bin, "stats", "--json", "--pin-root", pins]).unwrap();
    let lib = lab.counters("r1").unwrap();
    let forwarded = lib.get(Reason::ForwardedRoute);
    assert!(forwarded >= 10, "5 pings cross r1 twice each: {forwarded}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let row = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "forwarded_route")
        .unwrap();
    assert_eq!(
        row["packets"].as_u64(),
        Some(forwarded),
        "stats --json shows the same count as the maps: {json}"
    );
    assert!(
        json["nexthops"].as_array().is_some_and(|n| n.len() == 4),
        "four next hops: {json}"
    );
    let table = netns::exec_ok(&lab.ns("r1"), &[bin, "stats", "--pin-root", pins]).unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with("forwarded_route"))
        .expect("a forwarded_route row");
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(forwarded.to_string().as_str()),
        "{table}"
    );
    assert!(
        table.contains("eth1") && table.contains("eth2"),
        "interface names resolved:\n{table}"
    );
}

/// The lab's lossy wire (no netem here): `x0_lossy` swapped into r1's port from h1 drops
/// about the share asked of what crosses it and forwards the rest with r1's own maps;
/// `forward_again` puts r1's program back and nothing is lost.
#[test]
fn a_lossy_port_loses_the_share_asked_and_forwards_the_rest() {
    let lab = common::lab("line.toml", |_| {});
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 2).unwrap(), 2);
    x0_lab::faults::lossy_ingress(&lab, "r1", "eth1", 300_000).unwrap();
    let lossy = traffic::udp_stream(&lab, "h1", "h2", h2, 9300, 5_000, 5_000).unwrap();
    let share = lossy.lost as f64 / lossy.sent as f64;
    assert!(
        (0.25..0.35).contains(&share),
        "30% asked, {share:.3} lost: {lossy:?}"
    );
    x0_lab::faults::forward_again(&lab, "r1", "eth1").unwrap();
    let clean = traffic::udp_stream(&lab, "h1", "h2", h2, 9301, 5_000, 5_000).unwrap();
    assert!(clean.lost * 100 < clean.sent, "{clean:?}");
}

/// The lab's congested wire: `x0_lossy` with a rate polices r1's port from h1. A stream at
/// twice the rate loses about half; one well under it loses (almost) nothing; and
/// `forward_again` lifts the limit.
#[test]
fn a_congested_port_lets_through_its_rate_and_drops_what_comes_faster() {
    let lab = common::lab("line.toml", |_| {});
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 2).unwrap(), 2);
    // 32-byte datagrams are 74-byte frames: 5,000 a second are 370,000 bytes a second.
    x0_lab::faults::congested_ingress(&lab, "r1", "eth1", 185_000).unwrap();
    let over = traffic::udp_stream(&lab, "h1", "h2", h2, 9302, 5_000, 5_000).unwrap();
    let share = over.lost as f64 / over.sent as f64;
    assert!(
        (0.35..0.6).contains(&share),
        "twice the rate offered, {share:.3} lost: {over:?}"
    );
    let under = traffic::udp_stream(&lab, "h1", "h2", h2, 9303, 2_000, 1_000).unwrap();
    assert!(under.lost * 50 < under.sent, "{under:?}");
    // TCP to the router itself (how the incidents fill a congested link) fits the rate:
    // 1,250,000 bytes a second, and with it little of a stream beside it gets through.
    x0_lab::faults::forward_again(&lab, "r1", "eth1").unwrap();
    x0_lab::faults::congested_ingress(&lab, "r1", "eth1", 1_250_000).unwrap();
    let r1 = common::addr(&lab, "r1", false);
    let bytes = x0_lab::tools::iperf3_tcp(&lab, ("h1", "r1"), r1, 3, None).unwrap();
    assert!(
        (1_500_000..4_500_000).contains(&bytes),
        "{bytes} bytes in 3 s through 1.25 MB/s"
    );
    x0_lab::faults::forward_again(&lab, "r1", "eth1").unwrap();
    let clean = traffic::udp_stream(&lab, "h1", "h2", h2, 9304, 5_000, 5_000).unwrap();
    assert!(clean.lost * 100 < clean.sent, "{clean:?}");
}
