//! The fast path on crafted frames, through BPF_PROG_TEST_RUN on the real kernel
//! (needs root). Frames and expectations live in fixtures.rs.

mod common;
mod fixtures;

use common::{Fixture, PORT_A, PORT_A_MAC, PORT_MTU};
use fixtures::{Expect, cases, udp4, udp4_forwarded};
use x0_common::Reason;
use x0_dataplane::{netlink::Link, tables::RouteTarget};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// Runs one frame and checks the verdict, that exactly the expected reason counter moved
/// by one packet and the frame's length, and the output frame for redirects.
fn check(fx: &mut Fixture, name: &str, frame: &[u8], expect: &Expect) {
    let before = fx.counters();
    let (action, out) = fx
        .dp()
        .test_run(frame)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let after = fx.counters();
    let (want_action, reason) = match expect {
        Expect::Redirect { reason, .. } => (XDP_REDIRECT, *reason),
        Expect::Pass(r) => (XDP_PASS, *r),
        Expect::Drop(r) => (XDP_DROP, *r),
    };
    assert_eq!(
        action,
        want_action,
        "{name}: XDP action (reason counters: {:?})",
        moved(&before, &after)
    );
    for &r in Reason::ALL {
        let d_pkts = after.get(r) - before.get(r);
        let d_bytes = after.reasons[r as usize].bytes - before.reasons[r as usize].bytes;
        if r == reason {
            assert_eq!(
                (d_pkts, d_bytes),
                (1, frame.len() as u64),
                "{name}: counter {}",
                r.name()
            );
        } else {
            assert_eq!(d_pkts, 0, "{name}: counter {} moved too", r.name());
        }
    }
    match expect {
        Expect::Redirect {
            frame: want,
            ifindex,
            ..
        } => {
            assert_eq!(hex(&out), hex(want), "{name}: forwarded frame");
            let tx = after.interfaces[ifindex].tx_packets
                - before.interfaces.get(ifindex).map_or(0, |i| i.tx_packets);
            assert_eq!(tx, 1, "{name}: tx counter of ifindex {ifindex}");
        }
        _ => assert_eq!(
            hex(&out),
            hex(frame),
            "{name}: a passed or dropped frame is unchanged"
        ),
    }
}

fn moved(
    a: &x0_dataplane::counters::Counters,
    b: &x0_dataplane::counters::Counters,
) -> Vec<&'static str> {
    Reason::ALL
        .iter()
        .filter(|&&r| b.get(r) != a.get(r))
        .map(|r| r.name())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_fixture_gives_its_verdict_counter_and_frame() {
    let mut fx = Fixture::new();
    let cases = cases();
    assert!(cases.len() > 60, "fixtures went missing");
    for c in &cases {
        check(&mut fx, &c.name, &c.frame, &c.expect);
    }
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_kernel_test_runner() {
    // BPF_PROG_TEST_RUN rejects XDP input below ETH_HLEN (EINVAL), so lengths 0..14 cannot
    // reach the program this way; the program's own check (drop_malformed_l2) is the
    // defence for real frames. Lengths 14.. are covered by the fixtures.
    let fx = Fixture::new();
    let frame = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, b"");
    for len in 0..14 {
        assert!(
            fx.dp.as_ref().unwrap().test_run(&frame[..len]).is_err(),
            "length {len} was accepted"
        );
    }
}

#[test]
fn checksum_update_equals_full_recomputation_for_many_headers() {
    let mut fx = Fixture::new();
    let build = |i: u32, forwarded: bool| {
        let ttl = 2 + (i % 254) as u8;
        let src = [198, 18, 1, (i % 251) as u8];
        let dst = [198, 18, 2, (i * 7 % 253) as u8];
        let payload = (i as u16).to_be_bytes();
        let f = if forwarded {
            udp4_forwarded(src, dst, ttl, &payload)
        } else {
            udp4(src, dst, ttl, &payload)
        };
        fixtures::patch_ipv4(f, |h| h[4..6].copy_from_slice(&(i as u16).to_be_bytes()))
    };
    // Varied headers, plus the ones whose checksum before or after is 0x0000: the corner
    // RFC 1624 equation 3 exists for.
    let mut ids: Vec<u32> = (0..600).collect();
    let corner_after = (0..65536)
        .find(|&i| build(i, true)[24..26] == [0, 0])
        .expect("a corner id");
    let corner_before = (0..65536)
        .find(|&i| build(i, false)[24..26] == [0, 0])
        .expect("a corner id");
    ids.extend([corner_after, corner_before]);
    for i in ids {
        let (frame, want) = (build(i, false), build(i, true));
        let (action, out) = fx.dp().test_run(&frame).unwrap();
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(hex(&out[24..26]), hex(&want[24..26]), "checksum for id {i}");
        assert_eq!(out, want);
    }
}

#[test]
fn packets_over_the_egress_mtu_go_to_the_kernel() {
    let mut fx = Fixture::new();
    let big = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, &[0u8; 200]);
    let small = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, &[0u8; 20]);
    fx.dp()
        .add_port(&Link {
            ifindex: PORT_A,
            name: "lo".into(),
            mac: PORT_A_MAC,
            mtu: 100,
            up: true,
        })
        .unwrap();
    check(
        &mut fx,
        "228-byte packet, MTU 100",
        &big,
        &Expect::Pass(Reason::PassTooBig),
    );
    let (action, _) = fx.dp().test_run(&small).unwrap();
    assert_eq!(action, XDP_REDIRECT, "a 48-byte packet still fits");
    fx.dp()
        .add_port(&Link {
            ifindex: PORT_A,
            name: "lo".into(),
            mac: PORT_A_MAC,
            mtu: PORT_MTU,
            up: true,
        })
        .unwrap();
    let (action, _) = fx.dp().test_run(&big).unwrap();
    assert_eq!(action, XDP_REDIRECT, "MTU raised again");
}

#[test]
fn route_changes_take_effect_and_removed_routes_stop_matching() {
    let mut fx = Fixture::new();
    let frame = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, b"x");
    check(
        &mut fx,
        "before",
        &frame,
        &Expect::Redirect {
            ifindex: PORT_A,
            frame: udp4_forwarded([198, 18, 1, 2], [198, 18, 2, 2], 64, b"x"),
            reason: Reason::ForwardedRoute,
        },
    );
    fx.dp()
        .tables()
        .remove("198.18.2.0/24".parse().unwrap())
        .unwrap();
    check(
        &mut fx,
        "after removal",
        &frame,
        &Expect::Pass(Reason::PassNoRoute),
    );
    // A more specific local route wins over the covering forward route.
    fx.dp()
        .tables()
        .upsert("198.18.2.0/24".parse().unwrap(), RouteTarget::Local)
        .unwrap();
    check(
        &mut fx,
        "replaced by a local route",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );
}

/// What this process has resident of BPF maps it memory-mapped, KiB (smaps).
fn mapped_bpf_kib() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_map = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-'))
        {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map && let Some(v) = line.strip_prefix("Rss:") {
            kib += v.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    kib
}

/// A default route rewrites all 16M words of the 64 MiB direct table, a window at a time:
/// at most a few windows are mapped (not the table: a whole mapping is resident), none
/// after `release_mappings`, and the table still answers.
#[test]
fn the_direct_table_is_mapped_a_window_at_a_time_and_released() {
    let mut fx = Fixture::new();
    let everything = "0.0.0.0/0".parse().unwrap();
    fx.dp()
        .tables()
        .upsert(everything, RouteTarget::Local)
        .unwrap();
    let mapped = fx.dp().tables().mapped_windows();
    assert!((1..=16).contains(&mapped), "{mapped} windows mapped");
    let resident = mapped_bpf_kib();
    assert!(resident <= 16 * 1024, "{resident} KiB of maps resident");
    fx.dp().tables().release_mappings();
    assert_eq!(fx.dp().tables().mapped_windows(), 0);
    assert_eq!(mapped_bpf_kib(), 0);
    let frame = udp4([198, 18, 1, 2], [203, 0, 113, 9], 64, b"x");
    check(
        &mut fx,
        "default route",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );
    let word = fx.dp().tables().v4_direct().word([203, 0, 113, 9]).unwrap();
    assert_eq!(word.prefix_len(), Some(0));
}

/// IPv4 longest-prefix match through the exact maps and the probe filter, with few and
/// with many prefix lengths in use: the most specific route wins, and removing it hands
/// the destination to the next one.
#[test]
fn the_longest_prefix_wins_through_the_exact_maps_with_any_number_of_lengths() {
    let mut fx = Fixture::new();
    let frame = udp4([198, 18, 1, 2], [198, 18, 2, 77], 64, b"x");
    let forwarded = Expect::Redirect {
        ifindex: PORT_A,
        frame: udp4_forwarded([198, 18, 1, 2], [198, 18, 2, 77], 64, b"x"),
        reason: Reason::ForwardedRoute,
    };
    let lengths = |fx: &mut Fixture| fx.dp().tables().v4_lookup_lengths().unwrap();
    fn t(fx: &mut Fixture) -> &mut x0_dataplane::tables::Tables {
        fx.dp().tables()
    }
    t(&mut fx)
        .upsert("198.18.0.0/16".parse().unwrap(), RouteTarget::Local)
        .unwrap();
    assert_eq!(lengths(&mut fx), Some(vec![32, 24, 16]));
    check(&mut fx, "/24 over /16, exact", &frame, &forwarded);
    t(&mut fx)
        .upsert("198.18.2.77/32".parse().unwrap(), RouteTarget::Local)
        .unwrap();
    check(
        &mut fx,
        "/32 over /24, exact",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );

    // Lengths /9../31 besides (the /25../31 ones inside 198.18.2.0/24, so that the probes
    // for 198.18.2.77 that the filter lets through all miss): 24 lengths in all.
    let extra: Vec<ipnet::IpNet> = (9..=23)
        .map(|l| format!("10.0.0.0/{l}").parse().unwrap())
        .chain((25..=31).map(|l| format!("198.18.2.128/{l}").parse().unwrap()))
        .collect();
    for p in &extra {
        t(&mut fx).upsert(*p, RouteTarget::Local).unwrap();
    }
    let all = lengths(&mut fx).expect("exact maps");
    assert_eq!(all.len(), 24, "{all:?}");
    assert!(
        all.windows(2).all(|w| w[0] > w[1]),
        "longest first: {all:?}"
    );
    check(
        &mut fx,
        "/32 over /24, 24 lengths",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );
    t(&mut fx)
        .remove("198.18.2.77/32".parse().unwrap())
        .unwrap();
    check(
        &mut fx,
        "/24 once /32 is gone, 24 lengths",
        &frame,
        &forwarded,
    );
    // The other routes longer than /24 in that /24 are still found.
    check(
        &mut fx,
        "/31 in the same /24 once the /32 is gone",
        &udp4([198, 18, 1, 2], [198, 18, 2, 129], 64, b"x"),
        &Expect::Pass(Reason::PassLocal),
    );
    assert!(
        !t(&mut fx)
            .v4_filter()
            .may_hold(32, [198, 18, 2, 77])
            .unwrap(),
        "the deleted /32's filter bit is cleared"
    );

    for p in &extra {
        t(&mut fx).remove(*p).unwrap();
    }
    assert_eq!(
        lengths(&mut fx),
        Some(vec![32, 24, 16]),
        "the local /32 of the fixture remains"
    );
    check(&mut fx, "/24, exact again", &frame, &forwarded);
    t(&mut fx).remove("198.18.2.0/24".parse().unwrap()).unwrap();
    check(
        &mut fx,
        "/16 once /24 is gone",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );
    t(&mut fx).remove("198.18.0.0/16".parse().unwrap()).unwrap();
    check(
        &mut fx,
        "nothing left",
        &frame,
        &Expect::Pass(Reason::PassNoRoute),
    );
}

/// IPv4 lookups against a reference longest-prefix match, with the direct table and with
/// it turned off (every length probed through the filter and the exact map): routes of
/// every length from /0 to /32 (overlapping, in 10.0.0.0/14 and around it), added, replaced
/// and removed at random; after each round, random destinations and each route's own
/// address must get the outcome of the longest matching route (local, forwarded,
/// unresolved next hop, no route), and (with the table) each /24's word must name the
/// longest route up to /24 and say whether longer ones lie inside. At the end, no word of
/// the region keeps anything.
#[test]
fn random_route_churn_agrees_with_a_reference_longest_prefix_match() {
    let mut on = Fixture::new();
    assert!(on.dp().tables().v4_direct().enabled());
    churn(on);
    let mut off = Fixture::with_sizes(&[(x0_common::map_names::V4_DIRECT, 1)]);
    assert!(!off.dp().tables().v4_direct().enabled());
    churn(off);
}

fn churn(mut fx: Fixture) {
    use std::collections::BTreeMap;
    use x0_dataplane::tables::NextHopSpec;
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Local,
        Forwarded,
        Unresolved,
    }
    let target = |k: Kind| match k {
        Kind::Local => RouteTarget::Local,
        Kind::Forwarded | Kind::Unresolved => RouteTarget::NextHops(vec![NextHopSpec {
            gateway: if k == Kind::Forwarded {
                "198.18.12.2"
            } else {
                "198.18.12.9"
            }
            .parse()
            .unwrap(),
            ifindex: PORT_A,
        }]),
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % u64::from(n)) as u32
    };
    const BASE: u32 = 10 << 24; // 10.0.0.0/14: 1,024 /24s
    let random_net = |rand: &mut dyn FnMut(u32) -> u32| {
        const LENGTHS: [u8; 16] = [0, 6, 8, 12, 14, 16, 18, 20, 22, 23, 24, 24, 25, 28, 30, 32];
        let len = LENGTHS[rand(16) as usize];
        let addr = std::net::Ipv4Addr::from(BASE + rand(1 << 18));
        ipnet::Ipv4Net::new(addr, len).unwrap().trunc()
    };
    let direct = fx.dp().tables().v4_direct().enabled();
    let mut reference: BTreeMap<ipnet::Ipv4Net, Kind> = BTreeMap::new();
    let kinds = [Kind::Local, Kind::Forwarded, Kind::Unresolved];
    let longest = |r: &BTreeMap<ipnet::Ipv4Net, Kind>, a: u32, max: u8| {
        (0..=max).rev().find_map(|len| {
            let net = ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc();
            r.get(&net).map(|k| (len, *k))
        })
    };
    for round in 0..6 {
        for _ in 0..60 {
            let net = random_net(&mut rand);
            let kind = kinds[rand(3) as usize];
            fx.dp()
                .tables()
                .upsert(ipnet::IpNet::V4(net), target(kind))
                .unwrap();
            reference.insert(net, kind);
        }
        let n_remove = if round == 5 { reference.len() } else { 25 };
        for _ in 0..n_remove {
            let nets: Vec<_> = reference.keys().copied().collect();
            let net = nets[rand(nets.len() as u32) as usize];
            fx.dp().tables().remove(ipnet::IpNet::V4(net)).unwrap();
            reference.remove(&net);
        }
        let mut dsts: Vec<u32> = (0..100).map(|_| BASE + rand(1 << 18)).collect();
        dsts.extend(
            reference
                .keys()
                .map(|n| u32::from(n.addr()))
                .filter(|a| a >> 24 == 10),
        );
        for a in dsts {
            let d = a.to_be_bytes();
            let name = format!("round {round}, {}", std::net::Ipv4Addr::from(a));
            let expect = match longest(&reference, a, 32).map(|(_, k)| k) {
                None => Expect::Pass(Reason::PassNoRoute),
                Some(Kind::Local) => Expect::Pass(Reason::PassLocal),
                Some(Kind::Unresolved) => Expect::Pass(Reason::PassNoNeighbour),
                Some(Kind::Forwarded) => Expect::Redirect {
                    ifindex: PORT_A,
                    frame: udp4_forwarded([198, 18, 1, 2], d, 64, b"x"),
                    reason: Reason::ForwardedRoute,
                },
            };
            check(&mut fx, &name, &udp4([198, 18, 1, 2], d, 64, b"x"), &expect);
            if !direct {
                continue;
            }
            let word = fx.dp().tables().v4_direct().word(d).unwrap();
            let up_to_24 = longest(&reference, a, 24).map(|(len, _)| len);
            let longer = reference
                .keys()
                .any(|n| n.prefix_len() > 24 && u32::from(n.addr()) >> 8 == a >> 8);
            assert_eq!(
                (word.prefix_len(), word.longer()),
                (up_to_24, longer),
                "{name}: the /24's word"
            );
        }
    }
    assert!(reference.is_empty());
    let t = fx.dp().tables();
    for i in 0..1024u32 {
        let w = t.v4_direct().word((BASE + (i << 8)).to_be_bytes()).unwrap();
        assert_eq!(w.0, 0, "/24 number {i} of 10.0.0.0/14 keeps {w:?}");
    }
}

/// Routes longer than /24 share hashed filter bits: of two host routes on one bit,
/// deleting one leaves the other found; deleting both clears the bit.
#[test]
fn a_shared_filter_bit_stays_while_another_route_holds_it() {
    use x0_common::v4_filter_bit;
    let mut fx = Fixture::new();
    let a = [198, 18, 2, 77];
    let b = (u32::from_be_bytes([11, 0, 0, 0])..)
        .map(u32::to_be_bytes)
        .find(|b| v4_filter_bit(32, *b) == v4_filter_bit(32, a))
        .expect("a colliding address");
    assert!(b[0] < 100, "found in plain unicast space: {b:?}");
    let host = |x: [u8; 4]| -> ipnet::IpNet {
        format!("{}/32", std::net::Ipv4Addr::from(x))
            .parse()
            .unwrap()
    };
    fn t(fx: &mut Fixture) -> &mut x0_dataplane::tables::Tables {
        fx.dp().tables()
    }
    // b's /8 forwards through the fixture's neighbour; b itself is local.
    t(&mut fx)
        .upsert(
            format!("{}.0.0.0/8", b[0]).parse().unwrap(),
            RouteTarget::NextHops(vec![x0_dataplane::tables::NextHopSpec {
                gateway: "198.18.12.2".parse().unwrap(),
                ifindex: PORT_A,
            }]),
        )
        .unwrap();
    t(&mut fx).upsert(host(a), RouteTarget::Local).unwrap();
    t(&mut fx).upsert(host(b), RouteTarget::Local).unwrap();
    let frame = udp4([198, 18, 1, 2], b, 64, b"x");
    check(&mut fx, "b's /32", &frame, &Expect::Pass(Reason::PassLocal));
    t(&mut fx).remove(host(a)).unwrap();
    check(
        &mut fx,
        "b's /32 after a's went",
        &frame,
        &Expect::Pass(Reason::PassLocal),
    );
    assert!(t(&mut fx).v4_filter().may_hold(32, b).unwrap());
    t(&mut fx).remove(host(b)).unwrap();
    assert!(
        !t(&mut fx).v4_filter().may_hold(32, b).unwrap(),
        "no route holds the bit"
    );
    check(
        &mut fx,
        "b's /8 once both /32s went",
        &frame,
        &Expect::Redirect {
            ifindex: PORT_A,
            frame: udp4_forwarded([198, 18, 1, 2], b, 64, b"x"),
            reason: Reason::ForwardedRoute,
        },
    );
}

/// A route the kernel refuses to store (its map full; here a small map, in production
/// memory) leaves no trace, whichever of the two IPv4 maps refuses it: not in the other
/// map, no filter bit, no next hop kept, the table as it was, the routes before it still
/// forwarding.
#[test]
fn a_route_the_kernel_refuses_leaves_the_maps_as_they_were() {
    use x0_common::map_names::{ROUTES_V4, ROUTES_V4_EXACT};
    let fixture_v4 = Fixture::new().dp().tables().route_counts().0 as u32;
    for map in [ROUTES_V4_EXACT, ROUTES_V4] {
        let mut fx = Fixture::with_sizes(&[(map, fixture_v4 + 2)]);
        let t = fx.dp().tables();
        for p in ["10.0.1.0/24", "10.0.2.0/24"] {
            t.upsert(p.parse().unwrap(), RouteTarget::Local).unwrap();
        }
        let (routes, nexthops) = (t.route_count(), t.nexthops().count());
        let refused = t.upsert(
            "10.0.9.0/24".parse().unwrap(),
            RouteTarget::NextHops(vec![x0_dataplane::tables::NextHopSpec {
                gateway: "198.18.12.99".parse().unwrap(),
                ifindex: PORT_A,
            }]),
        );
        assert!(
            matches!(refused, Err(x0_dataplane::tables::TableError::Map(..))),
            "{map} full: {refused:?}"
        );
        assert_eq!(t.route_count(), routes, "{map}");
        assert_eq!(
            t.nexthops().count(),
            nexthops,
            "{map}: the new next hop is let go"
        );
        assert!(!t.v4_filter().may_hold(24, [10, 0, 9, 0]).unwrap(), "{map}");
        assert_eq!(
            t.v4_direct().word([10, 0, 9, 0]).unwrap().route(),
            None,
            "{map}: in the direct table"
        );
        let exact: aya::maps::HashMap<_, x0_common::V4ExactKey, x0_common::Route> =
            aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
                aya::maps::MapData::from_pin(fx.pin_root.join(ROUTES_V4_EXACT)).unwrap(),
            ))
            .unwrap();
        let key = x0_common::V4ExactKey::masked(24, [10, 0, 9, 0]);
        assert!(exact.get(&key, 0).is_err(), "{map}: left in the exact map");
        let to = |d: [u8; 4]| udp4([198, 18, 1, 2], d, 64, b"x");
        check(
            &mut fx,
            map,
            &to([10, 0, 9, 1]),
            &Expect::Pass(Reason::PassNoRoute),
        );
        check(
            &mut fx,
            map,
            &to([10, 0, 2, 1]),
            &Expect::Pass(Reason::PassLocal),
        );
    }
}

/// A restarted dataplane rebuilds the probe filter and the direct table from the routes it
/// adopts: bits and words that an older version's pins or a crash left missing come back
/// (else those routes would be skipped), and those of routes that are gone are cleared.
#[test]
fn a_restart_rebuilds_the_probe_filter_and_direct_table_from_the_routes() {
    use x0_common::{
        V4_FILTER_WORDS,
        map_names::{V4_DIRECT, V4_FILTER},
        v4_filter_bit,
    };
    use x0_dataplane::Dataplane;
    let pin_root = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/x0-test-restart-{}",
        std::process::id()
    ));
    let mut dp = Dataplane::load(&pin_root).unwrap();
    for p in ["10.0.1.0/24", "10.0.1.7/32"] {
        dp.tables()
            .upsert(p.parse().unwrap(), RouteTarget::Local)
            .unwrap();
    }
    dp.shutdown(false).unwrap(); // maps stay pinned, as for a hitless restart
    // Damage the pinned filter: the routes' words emptied, a bit for no route set.
    let mut filter: aya::maps::Array<_, u64> = aya::maps::Array::try_from(aya::maps::Map::Array(
        aya::maps::MapData::from_pin(pin_root.join(V4_FILTER)).unwrap(),
    ))
    .unwrap();
    for (len, a) in [(24, [10, 0, 1, 0]), (32, [10, 0, 1, 7])] {
        filter.set(v4_filter_bit(len, a) / 64, 0, 0).unwrap();
    }
    let stale = v4_filter_bit(24, [10, 0, 2, 0]);
    assert!(stale / 64 < V4_FILTER_WORDS);
    filter.set(stale / 64, 1 << (stale % 64), 0).unwrap();
    // And the direct table: the /24's word emptied, a word for no route written.
    let mut direct: aya::maps::Array<_, u64> = aya::maps::Array::try_from(aya::maps::Map::Array(
        aya::maps::MapData::from_pin(pin_root.join(V4_DIRECT)).unwrap(),
    ))
    .unwrap();
    let element = |a: [u8; 4]| x0_common::V4Direct::index(a) / 2;
    let local = x0_common::Route {
        nexthop_set: 0,
        flags: x0_common::ROUTE_F_LOCAL,
    };
    direct.set(element([10, 0, 1, 0]), 0, 0).unwrap();
    let forged = x0_common::V4Direct(0).with_route(24, &local).0;
    direct
        .set(element([10, 0, 2, 0]), u64::from(forged) * 0x1_0000_0001, 0)
        .unwrap();

    let mut dp = Dataplane::load(&pin_root).unwrap();
    let f = dp.tables().v4_filter();
    assert!(f.may_hold(24, [10, 0, 1, 0]).unwrap() && f.may_hold(32, [10, 0, 1, 7]).unwrap());
    assert!(
        !f.may_hold(24, [10, 0, 2, 0]).unwrap(),
        "a bit of no route is cleared"
    );
    let w = dp.tables().v4_direct().word([10, 0, 1, 0]).unwrap();
    assert_eq!((w.prefix_len(), w.longer()), (Some(24), true));
    assert_eq!(
        dp.tables().v4_direct().word([10, 0, 2, 0]).unwrap().route(),
        None
    );
    let counter = |dp: &Dataplane, r| dp.counters().unwrap().get(r);
    let before = counter(&dp, Reason::PassLocal);
    for d in [[10, 0, 1, 7], [10, 0, 1, 8]] {
        dp.test_run(&udp4([198, 18, 1, 2], d, 64, b"x")).unwrap();
    }
    let found = counter(&dp, Reason::PassLocal) - before;
    let before = counter(&dp, Reason::PassNoRoute);
    dp.test_run(&udp4([198, 18, 1, 2], [10, 0, 2, 1], 64, b"x"))
        .unwrap();
    let forged_found = counter(&dp, Reason::PassNoRoute) - before == 0;
    dp.shutdown(true).unwrap();
    let _ = std::fs::remove_dir_all(&pin_root);
    assert_eq!(
        found, 2,
        "the /32 and the /24 (both local) are found after the restart"
    );
    assert!(!forged_found, "a word of no route is cleared");
}

#[test]
fn fib_fallback_asks_the_kernel_when_on() {
    let mut fx = Fixture::new();
    // 203.0.113.0/24 is in no route map; with the fallback on the kernel FIB decides
    // (this namespace has no such route: not forwarded).
    let frame = udp4([198, 18, 1, 2], [203, 0, 113, 9], 64, b"x");
    check(
        &mut fx,
        "fallback off",
        &frame,
        &Expect::Pass(Reason::PassNoRoute),
    );
    fx.dp().set_fib_fallback(true).unwrap();
    check(
        &mut fx,
        "fallback on",
        &frame,
        &Expect::Pass(Reason::PassFibNotForwarded),
    );
}

/// Next hops in preference order: the fast path takes the first live one with a MAC.
#[test]
fn a_dead_primary_moves_traffic_to_the_backup_with_one_write() {
    use x0_common::NextHopHealth;
    use x0_dataplane::tables::NextHopSpec;
    const BACKUP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb, 0x03];
    let mut fx = Fixture::new();
    let gw = |s: &str| NextHopSpec {
        gateway: s.parse().unwrap(),
        ifindex: PORT_A,
    };
    let t = fx.dp().tables();
    // Two routes share the same primary and backup.
    for prefix in ["198.18.2.0/24", "198.18.3.0/24"] {
        t.upsert(
            prefix.parse().unwrap(),
            RouteTarget::NextHops(vec![gw("198.18.12.2"), gw("198.18.12.3")]),
        )
        .unwrap();
    }
    t.set_neighbour(PORT_A, "198.18.12.3".parse().unwrap(), Some(BACKUP_MAC))
        .unwrap();
    let primary = t
        .nexthops()
        .find(|n| n.spec == gw("198.18.12.2"))
        .unwrap()
        .id;
    let backup = t
        .nexthops()
        .find(|n| n.spec == gw("198.18.12.3"))
        .unwrap()
        .id;
    let via = |mac: [u8; 6], dst: [u8; 4]| {
        let mut f = udp4_forwarded([198, 18, 1, 2], dst, 64, b"x");
        f[..6].copy_from_slice(&mac);
        f
    };
    for dst in [[198, 18, 2, 2], [198, 18, 3, 3]] {
        let frame = udp4([198, 18, 1, 2], dst, 64, b"x");
        check(
            &mut fx,
            "primary",
            &frame,
            &Expect::Redirect {
                ifindex: PORT_A,
                frame: via(common::NEIGH_MAC, dst),
                reason: Reason::ForwardedRoute,
            },
        );
    }
    // One write: the primary is dead for every route that uses it.
    fx.dp()
        .tables()
        .apply_health(primary, false, &NextHopHealth::default())
        .unwrap();
    for dst in [[198, 18, 2, 2], [198, 18, 3, 3]] {
        let frame = udp4([198, 18, 1, 2], dst, 64, b"x");
        check(
            &mut fx,
            "backup",
            &frame,
            &Expect::Redirect {
                ifindex: PORT_A,
                frame: via(BACKUP_MAC, dst),
                reason: Reason::ForwardedRoute,
            },
        );
    }
    // Both dead: the kernel decides.
    fx.dp()
        .tables()
        .apply_health(backup, false, &NextHopHealth::default())
        .unwrap();
    check(
        &mut fx,
        "none live",
        &udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, b"x"),
        &Expect::Pass(Reason::PassNoLiveNexthop),
    );
    // A live primary without a MAC is skipped for a live backup that has one.
    fx.dp()
        .tables()
        .apply_health(backup, true, &NextHopHealth::default())
        .unwrap();
    fx.dp()
        .tables()
        .apply_health(primary, true, &NextHopHealth::default())
        .unwrap();
    fx.dp()
        .tables()
        .set_neighbour(PORT_A, "198.18.12.2".parse().unwrap(), None)
        .unwrap();
    let dst = [198, 18, 2, 2];
    check(
        &mut fx,
        "primary unresolved",
        &udp4([198, 18, 1, 2], dst, 64, b"x"),
        &Expect::Redirect {
            ifindex: PORT_A,
            frame: via(BACKUP_MAC, dst),
            reason: Reason::ForwardedRoute,
        },
    );
    // Per-next-hop counters moved with the traffic.
    let stats = fx.dp().nexthop_counters().unwrap();
    assert_eq!(
        stats[&primary].packets, 2,
        "two packets went via the primary"
    );
    assert_eq!(stats[&backup].packets, 3, "three via the backup");
}

/// Passive liveness: a frame whose source is a tracked neighbour stamps its time; other
/// sources stamp nothing.
#[test]
fn frames_from_a_neighbour_stamp_its_last_seen_time() {
    use x0_dataplane::tables::NextHopSpec;
    let mut fx = Fixture::new();
    let spec = NextHopSpec {
        gateway: "198.18.12.2".parse().unwrap(),
        ifindex: PORT_A,
    };
    assert_eq!(
        fx.dp().tables_ref().neighbour_last_seen(&spec),
        None,
        "nothing seen yet"
    );
    let mut from_host = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, b"x");
    fx.dp().test_run(&from_host).unwrap();
    assert_eq!(
        fx.dp().tables_ref().neighbour_last_seen(&spec),
        None,
        "a frame from another MAC"
    );
    from_host[6..12].copy_from_slice(&common::NEIGH_MAC);
    let stamp = |fx: &mut Fixture| {
        fx.dp().test_run(&from_host).unwrap();
        let ago = fx.dp().tables_ref().neighbour_last_seen(&spec);
        ago.expect("stamped")
    };
    let ago = stamp(&mut fx);
    assert!(ago < std::time::Duration::from_millis(100), "{ago:?}");
    // The program caches the clock per CPU per jiffy: a later frame must stamp a later
    // time, not the cached one.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let ago = stamp(&mut fx);
    assert!(
        ago < std::time::Duration::from_millis(100),
        "stamped with a stale clock: {ago:?} ago"
    );
}

/// Drops outside policy are sampled too: a malformed frame shows up in the drop stream
/// with its interface and reason.
#[test]
fn a_malformed_frame_reaches_the_drop_stream() {
    let mut fx = Fixture::new();
    let mut frame = udp4([198, 18, 1, 2], [198, 18, 2, 2], 64, b"x");
    frame[24] ^= 0x01; // bad IPv4 header checksum
    let (action, _) = fx.dp().test_run(&frame).unwrap();
    assert_eq!(action, XDP_DROP);
    let pin_root = fx.pin_root.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = x0_dataplane::explain::monitor_drops(&pin_root, 1, &mut out)
            .map(|()| String::from_utf8(out).unwrap());
        let _ = tx.send(r);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("an event within 5 s")
        .unwrap();
    assert!(
        line.starts_with("drop drop_malformed_l3 rule=0 ifindex=1"),
        "{line}"
    );
}

/// A hitless restart into a build with a new reason finds the reason counters pinned by
/// the older build, one entry short (aya reuses a pin whatever its size): the counters
/// still read, the missing reason as zero, and frames are still counted.
#[test]
fn reason_counters_pinned_by_an_older_build_with_fewer_reasons_still_read() {
    use x0_common::map_names;
    assert!(nix::unistd::Uid::effective().is_root(), "needs root");
    let pin_root =
        std::path::PathBuf::from(format!("/sys/fs/bpf/x0-test-older-{}", std::process::id()));
    std::fs::create_dir_all(&pin_root).unwrap();
    let older =
        aya::maps::PerCpuArray::<_, x0_common::Counter>::create(Reason::ALL.len() as u32 - 1, 0)
            .unwrap();
    older.pin(pin_root.join(map_names::STATS)).unwrap();
    let mut dp = x0_dataplane::Dataplane::load(&pin_root).expect("load over the older pin");
    dp.add_port(&Link {
        ifindex: PORT_A,
        name: "lo".into(),
        mac: PORT_A_MAC,
        mtu: PORT_MTU,
        up: true,
    })
    .unwrap();
    let (action, _) = dp
        .test_run(&udp4([198, 18, 1, 2], [192, 0, 2, 1], 64, b"x"))
        .unwrap();
    assert_eq!(action, XDP_PASS);
    let c = dp.counters().expect("counters read from the older map");
    assert_eq!(c.reasons.len(), Reason::ALL.len());
    assert_eq!(c.get(Reason::PassNoRoute), 1, "counted as before");
    let last = *Reason::ALL.last().unwrap();
    assert_eq!(
        c.get(last),
        0,
        "the reason the older map lacks reads as zero"
    );
    dp.shutdown(true).unwrap();
    let _ = x0_dataplane::bpffs::remove_pins(&pin_root, &map_names::ALL);
    let _ = std::fs::remove_dir_all(&pin_root);
}
