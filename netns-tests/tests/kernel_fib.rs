//! The kernel and the fast path hold the same routes (docs/DESIGN.md, "The kernel's FIB"),
//! checked on the diamond lab as an operator would: ping every address, the routers' own
//! traffic, traceroute, tracepath, fragments, IP options, iperf3; and after failovers,
//! restarts and detach, what the kernel holds.

mod common;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use x0_common::Reason;
use x0_dataplane::counters::Counters;
use x0_lab::{
    Lab,
    faults::{self, Failure},
    netns, tools, traffic,
};

const PROTOCOL: u8 = x0_dataplane::kernel_fib::DEFAULT_PROTOCOL;
/// The diamond's BFD detection time: 10 ms x 3.
const DETECT: Duration = Duration::from_millis(30);

fn routers(lab: &Lab) -> Vec<String> {
    lab.topo.routers.iter().map(|r| r.name.clone()).collect()
}

fn wait_h1_h2(lab: &Lab) {
    for v6 in [false, true] {
        let dst = common::addr(lab, "h2", v6);
        if let Err(e) = traffic::wait_reply(lab, "h1", dst, Duration::from_secs(10)) {
            let state: String = routers(lab).iter().map(|r| lab.router_state(r)).collect();
            panic!("h1 does not reach h2 ({dst}): {e}\n{state}");
        }
    }
}

#[test]
fn every_router_address_answers_h1_and_every_router_reaches_h2() {
    let lab = common::lab("diamond.toml", |_| {});
    wait_h1_h2(&lab);
    let mut failed = Vec::new();
    for (router, addr) in common::router_addrs(&lab) {
        if traffic::ping(&lab, "h1", addr, 3).unwrap() == 0 {
            failed.push(format!("h1 -> {router} {addr}"));
        }
    }
    for router in routers(&lab) {
        for v6 in [false, true] {
            let h2 = common::addr(&lab, "h2", v6);
            if traffic::ping(&lab, &router, h2, 3).unwrap() == 0 {
                failed.push(format!("{router} -> h2 {h2}"));
            }
        }
    }
    assert!(failed.is_empty(), "no answer: {failed:?}");
}

/// The hops a traceroute from h1 to h2 must list: r1's, r2's and r4's addresses on the
/// primary path, then h2.
fn primary_path(lab: &Lab, v6: bool) -> Vec<IpAddr> {
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut hops = if v6 {
        vec![a("2001:db8:1::1"), a("2001:db8:12::2"), a("2001:db8:24::4")]
    } else {
        vec![a("198.18.1.1"), a("198.18.12.2"), a("198.18.24.4")]
    };
    hops.push(common::addr(lab, "h2", v6));
    hops
}

fn backup_path(lab: &Lab, v6: bool) -> Vec<IpAddr> {
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut hops = if v6 {
        vec![a("2001:db8:1::1"), a("2001:db8:13::3"), a("2001:db8:34::4")]
    } else {
        vec![a("198.18.1.1"), a("198.18.13.3"), a("198.18.34.4")]
    };
    hops.push(common::addr(lab, "h2", v6));
    hops
}

/// traceroute, fragments (`ping -s 3000`) and IPv4 record-route (`ping -R`) from h1 to h2.
fn check_operator_tools(lab: &Lab, path: &dyn Fn(&Lab, bool) -> Vec<IpAddr>) {
    for v6 in [false, true] {
        let h2 = common::addr(lab, "h2", v6);
        let hops = tools::traceroute(lab, "h1", h2, 6).unwrap();
        let want: Vec<Option<IpAddr>> = path(lab, v6).into_iter().map(Some).collect();
        assert_eq!(
            hops,
            want,
            "traceroute {} h1 -> h2",
            if v6 { "-6" } else { "-4" }
        );
        let before = lab.counters("r1").unwrap();
        let (got, out) = tools::ping_with(lab, "h1", h2, 5, &["-s", "3000"]).unwrap();
        assert_eq!(got, 5, "ping -s 3000 {h2} (fragments):\n{out}");
        // 3 fragments per request and per reply, both ways through r1: forwarded by XDP.
        let forwarded = counter_delta(lab, &before, Reason::ForwardedRoute);
        assert!(
            forwarded >= 30,
            "r1 forwarded {forwarded} frames of the fragmented pings by XDP"
        );
    }
    let h2 = common::addr(lab, "h2", false);
    let before = lab.counters("r1").unwrap();
    let (got, out) = tools::ping_with(lab, "h1", h2, 3, &["-R"]).unwrap();
    assert_eq!(got, 3, "ping -R (IPv4 options):\n{out}");
    assert!(out.contains("RR:"), "no recorded route in:\n{out}");
    // Record route is the kernel's to fill in (RFC 1812 5.2.4).
    let recorded = counter_delta(lab, &before, Reason::PassIpv4Options);
    assert!(
        recorded >= 6,
        "r1 passed {recorded} record-route packets to its kernel"
    );
}

/// How much r1's counter of `reason` grew since `before`.
fn counter_delta(lab: &Lab, before: &Counters, reason: Reason) -> u64 {
    lab.counters("r1").unwrap().get(reason) - before.get(reason)
}

#[test]
fn traceroute_fragments_and_ip_options_cross_the_mesh() {
    let lab = common::lab("diamond.toml", |_| {});
    wait_h1_h2(&lab);
    check_operator_tools(&lab, &primary_path);
}

#[test]
fn tracepath_finds_a_smaller_mtu_and_iperf3_crosses_it() {
    let lab = common::lab("diamond.toml", |_| {});
    let (a, b) = faults::link_ends(&lab, "r2", "r4").unwrap();
    for (node, iface) in [a, b] {
        netns::exec_ok(
            &lab.ns(&node),
            &["ip", "link", "set", &iface, "mtu", "1400"],
        )
        .unwrap();
    }
    wait_h1_h2(&lab);
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        assert_eq!(
            tools::tracepath_pmtu(&lab, "h1", h2).unwrap(),
            1400,
            "tracepath to {h2}"
        );
        let bytes = tools::iperf3_tcp(&lab, ("h1", "h2"), h2, 2, None).unwrap();
        println!("iperf3 TCP h1 -> {h2} over a 1400-byte hop: {bytes} bytes in 2 s");
        assert!(bytes > 1_000_000, "iperf3 to {h2} moved only {bytes} bytes");
    }
}

/// Fails r2 (both its links, `kind`) and checks that r1's and r4's kernels follow their
/// fast paths onto r3 and that the operator's tools cross the backup path.
fn failover_moves_the_kernel_route(kind: Failure) {
    let lab = common::lab("diamond.toml", |_| {});
    wait_h1_h2(&lab);
    let h2 = common::addr(&lab, "h2", false);
    let h1 = common::addr(&lab, "h1", false);
    let r2 = "198.18.12.2".parse().unwrap();
    assert_eq!(tools::kernel_gateway(&lab, "r1", h2).unwrap(), Some(r2));
    // Every session, IPv6's too: one still coming up when r2 fails would never go down.
    for router in ["r1", "r4"] {
        tools::wait_bfd_all_up(&lab, router, DETECT, Duration::from_secs(10)).unwrap();
    }
    let wall = faults::fail(&lab, "r1", "r2", kind).unwrap();
    // The moment the failure began, on the monotonic clock.
    let began = Instant::now() - wall.elapsed().unwrap_or_default();
    let r3 = "198.18.13.3".parse().unwrap();
    let took = tools::wait_kernel_gateway(&lab, "r1", h2, r3, began, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.dataplane_log("r1")));
    println!("{kind:?}: r1's kernel routes h2 via r3 {took:?} after the failure began");
    // The daemon logs the move just after making it.
    let logged = Instant::now();
    let line = loop {
        let log = lab.dataplane_log("r1");
        if let Some(l) = log.lines().find(|l| l.contains("followed the fast path")) {
            break l.to_string();
        }
        assert!(
            logged.elapsed() < Duration::from_secs(2),
            "no move logged:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("{kind:?}: r1's log: {line}");
    // r2's other link, so that r4 sends h1's traffic through r3 too.
    faults::fail(&lab, "r4", "r2", kind).unwrap();
    let r3_far = "198.18.34.3".parse().unwrap();
    let since = Instant::now();
    tools::wait_kernel_gateway(&lab, "r4", h1, r3_far, since, Duration::from_secs(2)).unwrap();
    wait_h1_h2(&lab);
    check_operator_tools(&lab, &backup_path);
    let (got, _) = tools::ping_with(&lab, "r1", h2, 3, &[]).unwrap();
    assert_eq!(got, 3, "r1's own ping to h2 over the backup");
}

#[test]
fn the_kernel_follows_a_carrier_loss_failover() {
    failover_moves_the_kernel_route(Failure::Carrier);
}

#[test]
fn the_kernel_follows_a_black_hole_failover() {
    failover_moves_the_kernel_route(Failure::Blackhole);
}

/// Our routes in r1's kernel, sorted, as `ip route` prints them.
fn ours(lab: &Lab) -> (Vec<String>, Vec<String>) {
    let (mut routes, mut nexthops) = tools::kernel_routes_of(lab, "r1", PROTOCOL).unwrap();
    routes.sort();
    nexthops.sort();
    (routes, nexthops)
}

#[test]
fn restarts_adopt_and_detach_removes_exactly_our_routes() {
    let lab = common::lab("diamond.toml", |_| {});
    let ns = lab.ns("r1");
    // Another daemon's route (protocol static) for a prefix of ours, and one of its own.
    netns::exec_ok(
        &ns,
        &[
            "ip",
            "route",
            "add",
            "198.18.2.0/24",
            "via",
            "198.18.13.3",
            "proto",
            "static",
            "metric",
            "900",
        ],
    )
    .unwrap();
    netns::exec_ok(
        &ns,
        &[
            "ip",
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.18.13.3",
            "proto",
            "static",
        ],
    )
    .unwrap();
    let configured = lab.topo.router("r1").unwrap().routes.len();
    let before = ours(&lab);
    assert_eq!(
        before.0.len(),
        configured,
        "one kernel route per route: {:?}",
        before.0
    );
    lab.kill_dataplane("r1").unwrap();
    lab.start_dataplane("r1").unwrap();
    lab.wait_ready("r1", Duration::from_secs(10)).unwrap();
    assert_eq!(
        ours(&lab),
        before,
        "a restart after kill -9 changes nothing in the kernel"
    );
    assert!(
        lab.dataplane_log("r1").contains("written=0 removed=0"),
        "nothing rewritten"
    );
    lab.stop_dataplane("r1").unwrap();
    lab.detach_dataplane("r1").unwrap();
    assert_eq!(ours(&lab), (vec![], vec![]), "detach leaves none of ours");
    let others = netns::exec_ok(&ns, &["ip", "route", "show", "proto", "static"]).unwrap();
    assert!(
        others.contains("198.18.2.0/24") && others.contains("203.0.113.0/24"),
        "{others}"
    );
}

#[test]
fn routes_changed_over_the_api_reach_the_kernel() {
    let lab = common::lab("diamond.toml", |_| {});
    let route = "203.0.113.0/24";
    lab.x0ctl("r1", &["route", "add", route, "--via", "198.18.13.3@eth2"])
        .unwrap();
    let shown = |lab: &Lab| {
        let out = netns::exec_ok(
            &lab.ns("r1"),
            &["ip", "route", "show", "proto", "250", route],
        )
        .unwrap();
        out.trim().to_string()
    };
    let out = shown(&lab);
    assert!(out.contains("via 198.18.13.3 dev eth2"), "kernel: {out:?}");
    let refused = lab.x0ctl("r1", &["route", "add", route, "--via", "198.18.13.3@eth2"]);
    assert!(
        refused.is_err(),
        "a second add of the same prefix is refused"
    );
    assert_eq!(shown(&lab), out, "the refused request changed nothing");
    lab.x0ctl("r1", &["route", "del", route]).unwrap();
    assert_eq!(
        shown(&lab),
        "",
        "deleted from the kernel with the fast path"
    );
}

/// r1 of the line lab with kernel forwarding off at start, its h2 link at MTU 1400, and the
/// dataplane's `[host] forwarding` as given.
fn line_without_forwarding(forwarding: x0_dataplane::host::Action) -> Lab {
    let lab = common::lab("line.toml", |t| {
        let r1 = t.routers.iter_mut().find(|r| r.name == "r1").unwrap();
        r1.kernel_forwarding = false;
        r1.host = Some(x0_dataplane::host::HostConfig {
            forwarding,
            ..Default::default()
        });
    });
    for (node, iface) in [("r1", "eth2"), ("h2", "eth0")] {
        netns::exec_ok(&lab.ns(node), &["ip", "link", "set", iface, "mtu", "1400"]).unwrap();
    }
    lab
}

#[test]
fn with_forwarding_fixed_the_kernel_answers_traceroute_pmtu_and_fragments() {
    let lab = line_without_forwarding(x0_dataplane::host::Action::Fix);
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("ip_forward 0 -> 1"),
        "the daemon says what it set:\n{log}"
    );
    let fwd = netns::exec_ok(&lab.ns("r1"), &["sysctl", "-n", "net.ipv4.ip_forward"]).unwrap();
    assert_eq!(fwd.trim(), "1");
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
        let r1 = common::addr(&lab, "r1", v6);
        let hops = tools::traceroute(&lab, "h1", h2, 4).unwrap();
        assert_eq!(hops, vec![Some(r1), Some(h2)], "traceroute to {h2}");
        // PMTU discovery: DF set (IPv6 never fragments in flight), 1450 bytes > 1400.
        let (got, out) = tools::ping_with(&lab, "h1", h2, 2, &["-M", "do", "-s", "1450"]).unwrap();
        assert_eq!(got, 0, "{out}");
        let said = if v6 {
            "Packet too big: mtu=1400"
        } else {
            "Frag needed and DF set (mtu = 1400)"
        };
        assert!(out.contains(said), "no {said:?} from r1:\n{out}");
        let (got, out) = tools::ping_with(&lab, "h1", h2, 3, &["-s", "3000"]).unwrap();
        assert_eq!(got, 3, "fragments to {h2}:\n{out}");
    }
    let h2 = common::addr(&lab, "h2", false);
    let (got, out) = tools::ping_with(&lab, "h1", h2, 3, &["-R"]).unwrap();
    assert_eq!(got, 3, "ping -R:\n{out}");
}

#[test]
fn with_forwarding_left_off_the_daemon_warns_and_changes_nothing() {
    let lab = line_without_forwarding(x0_dataplane::host::Action::Leave);
    let log = lab.dataplane_log("r1");
    let line = log
        .lines()
        .find(|l| l.contains("host: "))
        .expect("the host line");
    assert!(
        line.contains("WARN") && line.contains("ip_forward at 0"),
        "{line}"
    );
    let fwd = netns::exec_ok(&lab.ns("r1"), &["sysctl", "-n", "net.ipv4.ip_forward"]).unwrap();
    assert_eq!(fwd.trim(), "0");
    // The fast path still forwards; what needs the kernel's forwarding (an ICMP error for
    // transit traffic) does not come, as documented.
    let h2 = common::addr(&lab, "h2", false);
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
    let hops = tools::traceroute(&lab, "h1", h2, 2).unwrap();
    assert_eq!(
        hops[0], None,
        "without forwarding r1 sends no time-exceeded: {hops:?}"
    );
}

/// Time-exceeded answers r1 of the line lab gives to 20 datagrams with TTL 1, each from
/// another address of h1 (20 peers: the kernel's per-peer limit lets each through, so only
/// the router's token bucket, `[host] icmp_errors`, limits them).
fn time_exceeded_answers(icmp_errors: Option<x0_dataplane::host::IcmpRate>) -> usize {
    let lab = common::lab("line.toml", |t| {
        let r1 = t.routers.iter_mut().find(|r| r.name == "r1").unwrap();
        r1.host = Some(x0_dataplane::host::HostConfig {
            icmp_errors,
            ..Default::default()
        });
    });
    let sources: Vec<IpAddr> = (100..120)
        .map(|i| format!("198.18.1.{i}").parse().unwrap())
        .collect();
    for s in &sources {
        let addr = format!("{s}/24");
        netns::exec_ok(&lab.ns("h1"), &["ip", "addr", "add", &addr, "dev", "eth0"]).unwrap();
    }
    let h2 = common::addr(&lab, "h2", false);
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
    let r1 = common::addr(&lab, "r1", false);
    let answers = tools::time_exceeded_for(&lab, "h1", &sources, h2).unwrap();
    assert!(
        answers.iter().all(|a| a.is_none() || *a == Some(r1)),
        "only r1 answers: {answers:?}"
    );
    answers.iter().filter(|a| a.is_some()).count()
}

#[test]
fn icmp_errors_follow_the_routers_token_bucket() {
    let all = time_exceeded_answers(None);
    assert_eq!(
        all, 20,
        "the kernel's default bucket (1000/s, burst 50) answers all 20"
    );
    let limited = time_exceeded_answers(Some(x0_dataplane::host::IcmpRate {
        per_sec: 1,
        burst: 1,
    }));
    // The kernel draws 0 to 2 credits per error at random (CVE-2020-25705): with one
    // credit, k answers need k - 1 draws of 0 in a row, so more than 10 has odds of 3^-10.
    println!("time exceeded for 20 sources at once: {all} by default, {limited} at 1/s burst 1");
    assert!(
        (1..=10).contains(&limited),
        "{limited} answers at 1/s, burst 1"
    );
}
