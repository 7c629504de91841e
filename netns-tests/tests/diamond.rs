//! Diamond h1 - r1 - {r2, r3} - r4 - h2 where r1 has no route of its own: the kernel FIB
//! has one, and XDP forwards through bpf_fib_lookup.

mod common;

use x0_common::Reason;
use x0_lab::traffic;

#[test]
fn fib_fallback_forwards_routes_that_only_the_kernel_has() {
    let lab = common::lab("diamond.toml", |t| {
        let r1 = t.routers.iter_mut().find(|r| r.name == "r1").unwrap();
        r1.routes.clear();
        r1.fib_fallback = true;
        r1.kernel_forwarding = true; // bpf_fib_lookup refuses to answer without it
        r1.kernel_routes = vec![
            "198.18.2.0/24 via 198.18.12.2".into(),
            "2001:db8:2::/64 via 2001:db8:12::2".into(),
        ];
    });
    // Warm up: the kernel resolves the neighbours the FIB answer needs.
    for v6 in [false, true] {
        let dst = common::addr(&lab, "h2", v6);
        assert!(
            traffic::ping(&lab, "h1", dst, 3).unwrap() >= 1,
            "no path to {dst}\n{}",
            lab.dataplane_log("r1")
        );
    }
    let before = lab.counters("r1").unwrap();
    let mut expected = 0;
    for v6 in [false, true] {
        let dst = common::addr(&lab, "h2", v6);
        assert_eq!(traffic::ping(&lab, "h1", dst, 20).unwrap(), 20);
        expected += 40;
        let report = traffic::udp_stream(&lab, "h1", "h2", dst, 9001, 2000, 4000).unwrap();
        assert_eq!(report.received, 2000, "{report:?}");
        expected += 2000;
    }
    let after = lab.counters("r1").unwrap();
    assert_eq!(
        after.get(Reason::ForwardedFib) - before.get(Reason::ForwardedFib),
        expected,
        "every packet crossing r1 went through bpf_fib_lookup"
    );
    assert_eq!(
        after.get(Reason::ForwardedRoute),
        before.get(Reason::ForwardedRoute),
        "r1 has no routes of its own"
    );
    // r2 and r4 forwarded the same packets from their own routes.
    let r4 = lab.counters("r4").unwrap();
    assert!(
        r4.get(Reason::ForwardedRoute) >= expected,
        "r4 forwarded {}",
        r4.get(Reason::ForwardedRoute)
    );
}

#[test]
fn diamond_forwards_end_to_end_over_the_primary_path() {
    let lab = common::lab("diamond.toml", |_| {});
    let (r2_before, r3_before) = (lab.counters("r2").unwrap(), lab.counters("r3").unwrap());
    let report = traffic::udp_stream(
        &lab,
        "h1",
        "h2",
        common::addr(&lab, "h2", false),
        9002,
        3000,
        5000,
    )
    .unwrap();
    assert_eq!(report.received, 3000, "{report:?}");
    let r2 = lab.counters("r2").unwrap().get(Reason::ForwardedRoute)
        - r2_before.get(Reason::ForwardedRoute);
    let r3 = lab.counters("r3").unwrap().get(Reason::ForwardedRoute)
        - r3_before.get(Reason::ForwardedRoute);
    assert_eq!(
        (r2, r3),
        (3000, 0),
        "the first next hop (r2) carries the stream"
    );
}
