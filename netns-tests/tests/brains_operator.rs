//! The six-router lab with a brain beside every router, checked as an operator would check
//! a mesh, with ordinary tools. The config holds only routes to the hosts; every other
//! route (the routers' link subnets, both families) is pushed by the brains over gRPC, and
//! must reach the kernel's FIB as well as the fast path: h1 pings every address of every
//! router and every router reaches both hosts; traceroute lists the routers the brains'
//! paths cross; tracepath finds a smaller MTU in the middle; fragments, IP options and
//! iperf3 cross; after a black-hole on the primary path the same tools follow the new one.
//! An orchestrator in h1 drives r6's API across the mesh, and r1's brain reads the brain of
//! r4, two hops away, over mutual TLS.

mod common;

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use common::six::{Routes, converge, expected, six_with_brains};
use serde_json::Value;
use x0_lab::{
    Lab,
    faults::{self, Failure},
    lab::API_PORT,
    netns,
    pki::TRUST_DOMAIN,
    tools, traffic,
};

/// The lab once every brain has installed what the topology calls for, and h1 reaches h2.
fn converged() -> (Lab, BTreeMap<String, Routes>) {
    let lab = six_with_brains();
    let want = expected(&lab, &[], &[]);
    converge(&lab, &want, Duration::from_secs(30));
    wait_h1_h2(&lab);
    (lab, want)
}

fn wait_h1_h2(lab: &Lab) {
    for v6 in [false, true] {
        let h2 = common::addr(lab, "h2", v6);
        traffic::wait_reply(lab, "h1", h2, Duration::from_secs(10)).expect("h1 reaches h2");
    }
}

/// The node that holds `addr` on one of its links.
fn owner(lab: &Lab, addr: IpAddr) -> String {
    lab.topo
        .links
        .iter()
        .flat_map(|l| [&l.a, &l.b])
        .find(|end| end.addrs.iter().any(|a| a.addr() == addr))
        .map(|end| end.node.clone())
        .unwrap_or_else(|| panic!("no node holds {addr}"))
}

/// The hops traceroute from h1 to h2 must list: h1's gateway, then, following the first
/// next hop of h2's prefix from r1, each router's address on the link it is reached over
/// (its time-exceeded leaves by its route back to h1, which takes the same link), then h2.
fn expected_hops(lab: &Lab, want: &BTreeMap<String, Routes>, v6: bool) -> Vec<Option<IpAddr>> {
    let prefix = common::subnet(lab, "h2", v6).to_string();
    let gateway = common::subnet(lab, "h1", v6);
    let (_, r1) = common::router_addrs(lab)
        .into_iter()
        .find(|(r, a)| r == "r1" && gateway.contains(a))
        .expect("r1's address on h1's link");
    let mut hops = vec![Some(r1)];
    let mut router = "r1".to_string();
    while let Some(via) = want[&router].get(&prefix) {
        let gw: IpAddr = via[0].split('@').next().unwrap().parse().unwrap();
        hops.push(Some(gw));
        router = owner(lab, gw);
        assert!(hops.len() <= 6, "a loop in the expected routes: {hops:?}");
    }
    hops.push(Some(common::addr(lab, "h2", v6)));
    hops
}

#[test]
fn every_router_address_answers_h1_and_every_router_reaches_both_hosts() {
    let (lab, _) = converged();
    let mut failed = Vec::new();
    let addrs = common::router_addrs(&lab);
    assert_eq!(addrs.len(), 40, "20 link ends, two families: {addrs:?}");
    for (router, addr) in addrs {
        if traffic::ping(&lab, "h1", addr, 2).unwrap() == 0 {
            failed.push(format!("h1 -> {router} {addr}"));
        }
    }
    for router in common::six::ROUTERS {
        for (host, v6) in [("h1", false), ("h1", true), ("h2", false), ("h2", true)] {
            let to = common::addr(&lab, host, v6);
            if traffic::ping(&lab, router, to, 2).unwrap() == 0 {
                failed.push(format!("{router} -> {host} {to}"));
            }
        }
    }
    assert!(failed.is_empty(), "no answer: {failed:?}");
}

/// traceroute along the expected path, fragments both ways and IPv4 record-route.
fn check_path(lab: &Lab, want: &BTreeMap<String, Routes>) {
    for v6 in [false, true] {
        let h2 = common::addr(lab, "h2", v6);
        let hops = expected_hops(lab, want, v6);
        let got = tools::traceroute(lab, "h1", h2, 8).unwrap();
        assert_eq!(got, hops, "traceroute {h2}");
        let (got, out) = tools::ping_with(lab, "h1", h2, 3, &["-s", "3000"]).unwrap();
        assert_eq!(got, 3, "ping -s 3000 {h2} (fragments):\n{out}");
    }
    let h2 = common::addr(lab, "h2", false);
    let (got, out) = tools::ping_with(lab, "h1", h2, 3, &["-R"]).unwrap();
    assert_eq!(got, 3, "ping -R:\n{out}");
    assert!(out.contains("RR:"), "no recorded route in:\n{out}");
}

#[test]
fn traceroute_tracepath_fragments_and_iperf3_follow_the_brains_paths() {
    let (lab, want) = converged();
    let primary = expected_hops(&lab, &want, false);
    assert!(
        primary.contains(&Some("198.18.24.4".parse().unwrap())),
        "h1 -> h2 crosses r2 - r4 (the cheapest way): {primary:?}"
    );
    check_path(&lab, &want);

    // A silent failure of r2 - r4: BFD fails it, the brains route around it, and the
    // kernels follow (r2's own route to h2 leaves r4).
    faults::fail(&lab, "r2", "r4", Failure::Blackhole).unwrap();
    let want = expected(&lab, &[("r2", "r4")], &[]);
    let took = converge(&lab, &want, Duration::from_secs(30));
    println!("black-hole on r2 - r4: the brains' new paths everywhere after {took:?}");
    let h2 = common::addr(&lab, "h2", false);
    let first: IpAddr = want["r2"][&common::subnet(&lab, "h2", false).to_string()][0]
        .split('@')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(tools::kernel_gateway(&lab, "r2", h2).unwrap(), Some(first));
    wait_h1_h2(&lab);
    check_path(&lab, &want);

    // A smaller MTU in the middle of the new path (after the failure: iperf3 loads the
    // links it crosses, and the brains measure load into their costs, which the expected
    // routes, from the topology's costs, would not follow).
    let routers: Vec<String> = expected_hops(&lab, &want, false)
        .iter()
        .skip(1)
        .filter_map(|h| Some(owner(&lab, (*h)?)))
        .filter(|n| lab.topo.is_router(n))
        .collect();
    let (a, b) = faults::link_ends(&lab, &routers[0], &routers[1]).unwrap();
    for (node, iface) in [a, b] {
        netns::exec_ok(
            &lab.ns(&node),
            &["ip", "link", "set", &iface, "mtu", "1400"],
        )
        .unwrap();
    }
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        let pmtu = tools::tracepath_pmtu(&lab, "h1", h2).unwrap();
        assert_eq!(pmtu, 1400, "tracepath to {h2} across {routers:?}");
        // IPv6 routers never fragment: a request and a reply may each cost a Packet Too
        // Big before the hosts know the path's MTU; IPv4's are fragmented again.
        let (got, out) = tools::ping_with(&lab, "h1", h2, 5, &["-s", "3000"]).unwrap();
        let least = if v6 { 3 } else { 5 };
        assert!(got >= least, "ping -s 3000 {h2} at MTU 1400:\n{out}");
    }
    // At 50 Mbit/s, 5 % of the links' capacity: below what moves a measured cost, so both
    // streams take the path checked above.
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        let bytes = tools::iperf3_tcp(&lab, ("h1", "h2"), h2, 2, Some("50M")).unwrap();
        println!("iperf3 TCP h1 -> {h2} across {routers:?} at MTU 1400: {bytes} bytes in 2 s");
        assert!(bytes > 1_000_000, "iperf3 to {h2} moved only {bytes} bytes");
    }
    assert_eq!(
        tools::tracepath_pmtu(&lab, "h1", h2).unwrap(),
        1400,
        "the same path"
    );
}

/// r6's addresses on its two links, three hops from h1 either way.
const R6: [&str; 2] = ["198.18.46.6", "[2001:db8:56::6]"];

fn x0ctl_to_r6(lab: &Lab, addr: &str, args: &[&str]) -> anyhow::Result<String> {
    let id = format!("spiffe://{TRUST_DOMAIN}/router/r6");
    let mut all = vec!["--server-id", id.as_str()];
    all.extend_from_slice(args);
    lab.x0ctl_at("h1", &format!("https://{addr}:{API_PORT}"), &all)
}

#[test]
fn an_orchestrator_in_h1_drives_r6_and_r1s_brain_reads_r4s_across_the_mesh() {
    let (lab, want) = converged();
    for addr in R6 {
        let listed = x0ctl_to_r6(&lab, addr, &["--json", "route", "list"]).unwrap();
        let routes: Vec<Value> = serde_json::from_str(&listed).unwrap();
        let pushed = routes
            .iter()
            .filter(|r| want["r6"].contains_key(r["prefix"].as_str().unwrap()))
            .count();
        assert_eq!(
            pushed,
            want["r6"].len(),
            "{addr}: the brain's routes in {listed}"
        );
    }
    let (v4, v6) = (R6[0], R6[1]);
    let route = "203.0.113.0/24";
    x0ctl_to_r6(
        &lab,
        v4,
        &["route", "add", route, "--via", "198.18.2.2@eth0"],
    )
    .unwrap();
    let before = x0ctl_to_r6(&lab, v6, &["route", "list"]).unwrap();
    assert!(before.contains(route), "{before}");
    let bad = x0ctl_to_r6(
        &lab,
        v6,
        &["route", "add", route, "--via", "198.18.99.1@eth0"],
    );
    assert!(bad.is_err(), "a second add of {route} is refused");
    assert_eq!(x0ctl_to_r6(&lab, v4, &["route", "list"]).unwrap(), before);
    let kernel = netns::exec_ok(&lab.ns("r6"), &["ip", "route", "show", route]).unwrap();
    assert!(
        kernel.contains("via 198.18.2.2 dev eth0"),
        "r6's kernel: {kernel}"
    );
    x0ctl_to_r6(&lab, v4, &["route", "del", route]).unwrap();
    assert!(
        !x0ctl_to_r6(&lab, v6, &["route", "list"])
            .unwrap()
            .contains(route)
    );

    // r1's brain, with its own SVID, reads r4's brain two hops away (r1 - r2 - r4).
    let r4 = format!("spiffe://{TRUST_DOMAIN}/brain/r4");
    let url = "https://198.18.46.4:7444";
    let args = ["--server-id", r4.as_str(), "--json", "brain", "status"];
    let status: Value =
        serde_json::from_str(&lab.x0ctl_as("r1", "brain-r1", url, &args).unwrap()).unwrap();
    assert_eq!(status["router"], "r4");
    assert_eq!(status["routers"].as_array().unwrap().len(), 6, "{status}");
    let wrong = format!("spiffe://{TRUST_DOMAIN}/brain/r5");
    let refused = lab.x0ctl_as(
        "r1",
        "brain-r1",
        url,
        &["--server-id", &wrong, "brain", "status"],
    );
    assert!(refused.is_err(), "r1's brain took r4's for r5's");
}
