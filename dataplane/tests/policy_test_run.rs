//! Zero-trust policy through BPF_PROG_TEST_RUN on the real kernel (needs root): each rule
//! dimension, deny over allow, default actions, rate limits, connection tracking (return
//! traffic, a full table) and a policy change racing a stream of packets.

mod common;
mod fixtures;

use common::{Fixture, HOST_MAC, PORT_A_MAC};
use etherparse::PacketBuilder;
use x0_common::Reason;
use x0_dataplane::{config::Config, policy::CompiledPolicy};

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

const H1: [u8; 4] = [198, 18, 1, 2];
const H2: [u8; 4] = [198, 18, 2, 2];

/// Compiles the `[[identity]]`, `[[rule]]` and interface policy of a config snippet.
fn policy(port_default: &str, body: &str) -> CompiledPolicy {
    let text = format!("[[interface]]\nname = \"lo\"\npolicy = \"{port_default}\"\n{body}");
    Config::parse(&text)
        .unwrap_or_else(|e| panic!("{e:#}\n{text}"))
        .policy()
        .unwrap()
}

const IDENTITIES: &str = r#"
[[identity]]
name = "h1"
id = 101
prefixes = ["198.18.1.0/24"]

[[identity]]
name = "h2"
id = 102
prefixes = ["198.18.2.0/24"]
"#;

/// Installs `p`, after giving h1's subnet a route too (replies go there).
fn install(fx: &mut Fixture, p: &CompiledPolicy) {
    use x0_dataplane::tables::{NextHopSpec, RouteTarget};
    let back = NextHopSpec {
        gateway: "198.18.12.2".parse().unwrap(),
        ifindex: common::PORT_A,
    };
    fx.dp()
        .tables()
        .upsert(
            "198.18.1.0/24".parse().unwrap(),
            RouteTarget::NextHops(vec![back]),
        )
        .unwrap();
    fx.dp()
        .install_policy(p, &|name| (name == "lo").then_some(1))
        .unwrap();
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, PORT_A_MAC)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, b"x")
        .unwrap();
    v
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, syn: bool, ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(HOST_MAC, PORT_A_MAC)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 64240);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

/// Runs `frame` and checks the verdict and the one reason counter that moved.
fn expect(fx: &mut Fixture, what: &str, frame: &[u8], reason: Reason) {
    let before = fx.counters();
    let (action, _) = fx.dp().test_run(frame).unwrap();
    let after = fx.counters();
    let moved: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| after.get(**r) != before.get(**r))
        .map(|r| r.name())
        .collect();
    assert_eq!(moved, vec![reason.name()], "{what}: counters that moved");
    let want = if reason == Reason::ForwardedRoute {
        XDP_REDIRECT
    } else {
        XDP_DROP
    };
    assert_eq!(action, want, "{what}: XDP action");
}

#[test]
fn each_rule_dimension_decides() {
    let mut fx = Fixture::new();
    // Both identities routed through port A (lo).
    let extra = r#"
[[rule]]
from = "h1"
to = "h2"
proto = "udp"
ports = "5000"
action = "allow"

[[rule]]
from = "any"
to = "h2"
proto = "tcp"
ports = "8000-8010"
action = "allow"

[[rule]]
from = "world"
to = "h2"
proto = "icmp"
action = "allow"
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{extra}")));
    expect(
        &mut fx,
        "udp 5000 from h1: allowed",
        &udp(H1, H2, 40000, 5000),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "udp 5001 from h1: port",
        &udp(H1, H2, 40000, 5001),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "tcp 5000 from h1: protocol",
        &tcp(H1, H2, 40000, 5000, true, false),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "udp 5000 to h1: destination",
        &udp(H2, H1, 40000, 5000),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "udp 5000 from world: source",
        &udp([203, 0, 113, 7], H2, 40000, 5000),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "tcp 8005 from anyone: range",
        &tcp([203, 0, 113, 7], H2, 40001, 8005, true, false),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "tcp 8011: past the range",
        &tcp([203, 0, 113, 7], H2, 40002, 8011, true, false),
        Reason::DropDefaultDeny,
    );
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, PORT_A_MAC)
        .ipv4([203, 0, 113, 7], H2, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    expect(&mut fx, "icmp from world", &icmp, Reason::ForwardedRoute);
}

#[test]
fn deny_wins_over_allow_and_defaults_decide_the_rest() {
    let mut fx = Fixture::new();
    let rules = r#"
[[rule]]
from = "h1"
to = "any"
proto = "udp"
action = "allow"

[[rule]]
from = "h1"
to = "h2"
proto = "udp"
ports = "5000-5010"
action = "deny"
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rules}")));
    expect(
        &mut fx,
        "5005: deny inside the allow",
        &udp(H1, H2, 40000, 5005),
        Reason::DropPolicyDeny,
    );
    expect(
        &mut fx,
        "6000: the allow",
        &udp(H1, H2, 40000, 6000),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "no rule, zero-trust port",
        &udp(H2, H1, 40000, 6000),
        Reason::DropDefaultDeny,
    );
    // The same rules on a transit port: what no rule decides is allowed; denies still deny.
    install(&mut fx, &policy("allow", &format!("{IDENTITIES}{rules}")));
    expect(
        &mut fx,
        "no rule, transit port",
        &udp(H2, H1, 40001, 6000),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "deny on a transit port",
        &udp(H1, H2, 40002, 5005),
        Reason::DropPolicyDeny,
    );
}

#[test]
fn a_rate_limit_lets_the_burst_through_and_drops_the_excess() {
    let mut fx = Fixture::new();
    let rules = r#"
[[rule]]
from = "h1"
to = "h2"
proto = "udp"
ports = "5000"
action = "allow"
rate = { pps = 1, burst = 5 }
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rules}")));
    for i in 0..5 {
        expect(
            &mut fx,
            &format!("burst packet {i}"),
            &udp(H1, H2, 40000, 5000),
            Reason::ForwardedRoute,
        );
    }
    for i in 0..3 {
        expect(
            &mut fx,
            &format!("excess packet {i}"),
            &udp(H1, H2, 40000, 5000),
            Reason::DropRateLimited,
        );
    }
}

#[test]
fn replies_pass_through_conntrack_and_unsolicited_traffic_does_not() {
    let mut fx = Fixture::new();
    let rules = r#"
[[rule]]
from = "h1"
to = "h2"
proto = "tcp"
ports = "443"
action = "allow"
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rules}")));
    expect(
        &mut fx,
        "h1 SYN",
        &tcp(H1, H2, 40000, 443, true, false),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "h2 SYN-ACK (reply)",
        &tcp(H2, H1, 443, 40000, true, true),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "h1 ACK",
        &tcp(H1, H2, 40000, 443, false, true),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "h2 data (reply)",
        &tcp(H2, H1, 443, 40000, false, true),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "h2 opens its own connection",
        &tcp(H2, H1, 443, 40001, true, false),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "h2 to another port of h1",
        &tcp(H2, H1, 40000, 22, true, false),
        Reason::DropDefaultDeny,
    );
}

#[test]
fn a_full_connection_table_keeps_existing_flows_and_refuses_new_ones() {
    let mut fx = Fixture::with_conntrack(4);
    let rules = r#"
[[rule]]
from = "h1"
to = "h2"
proto = "udp"
action = "allow"
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rules}")));
    for port in 0..4 {
        expect(
            &mut fx,
            "filling",
            &udp(H1, H2, 40000 + port, 5000),
            Reason::ForwardedRoute,
        );
    }
    expect(
        &mut fx,
        "a new allowed flow, table full",
        &udp(H1, H2, 41000, 5000),
        Reason::DropConntrackFull,
    );
    expect(
        &mut fx,
        "an existing flow",
        &udp(H1, H2, 40002, 5000),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "its reply",
        &udp(H2, H1, 5000, 40002),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "denied stays denied (no fail-open)",
        &udp(H2, H1, 5000, 41001),
        Reason::DropDefaultDeny,
    );
}

/// A stream of packets while the policy flips between two versions whose identities and
/// rules only make sense together: a packet that mixed them would fall to the default.
#[test]
fn no_packet_sees_a_mixed_policy() {
    let mut fx = Fixture::new();
    let p1 = policy(
        "deny",
        &format!(
            "{IDENTITIES}\n[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\naction = \"allow\"\n"
        ),
    );
    let moved = IDENTITIES.replace("id = 101", "id = 201");
    let p2 = policy(
        "deny",
        &format!(
            "{moved}\n[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\naction = \"deny\"\n"
        ),
    );
    install(&mut fx, &p1);
    let dp = fx.dp.take().unwrap();
    let dp = std::sync::Mutex::new(dp);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Packets judged so far: each version waits for one (the lock is not fair, and one
    // run saw every packet judged under p1 alone).
    let judged = std::sync::atomic::AtomicU64::new(0);
    let (mut allowed, mut denied, mut mixed) = (0, 0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..400 {
                let p = if i % 2 == 0 { &p2 } else { &p1 };
                dp.lock()
                    .unwrap()
                    .install_policy(p, &|n| (n == "lo").then_some(1))
                    .unwrap();
                let (seen, since) = (
                    judged.load(std::sync::atomic::Ordering::Relaxed),
                    std::time::Instant::now(),
                );
                while judged.load(std::sync::atomic::Ordering::Relaxed) == seen {
                    assert!(since.elapsed().as_secs() < 10, "no packet judged");
                    std::thread::yield_now();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut sport = 1024u16;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            sport = sport.wrapping_add(1).max(1024); // a new flow each time: always judged
            let frame = udp(H1, H2, sport, 5000);
            let before = dp.lock().unwrap().counters().unwrap();
            let (_, _) = dp.lock().unwrap().test_run(&frame).unwrap();
            let after = dp.lock().unwrap().counters().unwrap();
            let d = |r: Reason| after.get(r) - before.get(r);
            allowed += d(Reason::ForwardedRoute);
            denied += d(Reason::DropPolicyDeny);
            mixed += d(Reason::DropDefaultDeny);
            judged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    fx.dp = Some(dp.into_inner().unwrap());
    println!("allowed {allowed}, denied {denied}, mixed {mixed}");
    assert_eq!(
        mixed, 0,
        "a packet saw identities of one version and rules of the other"
    );
    assert!(
        allowed > 0 && denied > 0,
        "both versions were in force at some point"
    );
}

#[test]
fn invalid_policies_are_refused_with_the_field_named() {
    let base = IDENTITIES.to_string();
    let cases = [
        (
            "[[rule]]\nfrom = \"h9\"\nto = \"h2\"\naction = \"allow\"\n",
            "rule[0].from",
        ),
        (
            "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"sctpx\"\naction = \"allow\"\n",
            "rule[0].proto",
        ),
        (
            "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\nports = \"6000-5000\"\naction = \"allow\"\n",
            "rule[0].ports",
        ),
        (
            "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\naction = \"maybe\"\n",
            "rule[0].action",
        ),
        (
            "[[identity]]\nname = \"h3\"\nid = 103\nprefixes = [\"198.18.3.1/24\"]\n",
            "identity[2].prefixes[0]",
        ),
        (
            "[[identity]]\nname = \"h3\"\nid = 101\nprefixes = [\"198.18.3.0/24\"]\n",
            "identity[2].id",
        ),
        (
            "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\naction = \"allow\"\nrate = { pps = 0, burst = 1 }\n",
            "rule[0].rate.pps",
        ),
    ];
    for (snippet, field) in cases {
        let text = format!("{base}{snippet}");
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains(field), "{snippet}: {err}");
    }
    let _ = fixtures::cases; // the shared fixtures module is compiled here too
}

/// The daemon's sweep removes the flows whose idle timeout has passed from both families'
/// connection tables (IPv4 flows have a table of their own) and leaves the others.
#[test]
fn the_sweep_expires_idle_flows_of_both_families() {
    use aya::maps::{HashMap, Map, MapData};
    use x0_common::{
        map_names::{CONNTRACK, CONNTRACK_V4},
        policy::{CtEntry, CtKey, CtKey4},
    };
    let mut fx = Fixture::new();
    // h1 -> h2 by rule, the IPv6 flow by the port's default.
    let rules = "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\naction = \"allow\"\n";
    install(&mut fx, &policy("allow", &format!("{IDENTITIES}{rules}")));
    for port in [40000, 40001] {
        expect(
            &mut fx,
            "IPv4",
            &udp(H1, H2, port, 5000),
            Reason::ForwardedRoute,
        );
    }
    let v6 = |host: u8| {
        let mut a = [0u8; 16];
        a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, host]);
        a[15] = 2;
        a
    };
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, PORT_A_MAC)
        .ipv6(v6(1), v6(2), 64)
        .udp(4000, 5000)
        .write(&mut frame, b"x")
        .unwrap();
    expect(&mut fx, "IPv6", &frame, Reason::ForwardedRoute);

    let open = |name: &str| Map::HashMap(MapData::from_pin(fx.pin_root.join(name)).unwrap());
    let mut ct4: HashMap<_, CtKey4, CtEntry> = HashMap::try_from(open(CONNTRACK_V4)).unwrap();
    let mut ct6: HashMap<_, CtKey, CtEntry> = HashMap::try_from(open(CONNTRACK)).unwrap();
    assert_eq!((ct4.keys().count(), ct6.keys().count()), (2, 1));
    // Idle since boot: the flow of port 40000 and the IPv6 flow.
    let idle = CtEntry {
        last_ns: 1,
        ..Default::default()
    };
    let old4 = ct4
        .keys()
        .flatten()
        .find(|k| k.port_a == 40000 || k.port_b == 40000);
    ct4.insert(old4.expect("the port 40000 flow"), idle, 0)
        .unwrap();
    let old6 = ct6.keys().flatten().next().expect("the IPv6 flow");
    ct6.insert(old6, idle, 0).unwrap();

    let removed = x0_dataplane::policy::expire_flows(&fx.pin_root).unwrap();
    assert_eq!(removed, 2);
    let left: Vec<CtKey4> = ct4.keys().flatten().collect();
    assert_eq!(left.len(), 1);
    assert!(
        left[0].port_a == 40001 || left[0].port_b == 40001,
        "{left:?}"
    );
    assert_eq!(ct6.keys().count(), 0);
}

/// Flows that share a flow cache slot are told apart by their whole key: a flow the
/// policy denies is not passed because an allowed flow sits in its slot.
#[test]
fn a_flow_in_an_allowed_flows_cache_slot_is_still_judged() {
    use x0_common::policy::CtKey4;
    let mut fx = Fixture::new();
    let rule = "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\nports = \"5000\"\naction = \"allow\"\n";
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rule}")));
    // h1's address is the lower: it is end A of both flows.
    let slot = |sport: u16, dport: u16| {
        CtKey4 {
            addr_a: H1,
            addr_b: H2,
            port_a: sport,
            port_b: dport,
            proto: 17,
            _pad: [0; 3],
        }
        .cache_slot()
    };
    let taken = slot(40000, 5000);
    let sport = (1..=u16::MAX)
        .find(|&p| slot(p, 5001) == taken)
        .expect("a port pair in the allowed flow's slot");
    for i in 0..3 {
        expect(
            &mut fx,
            &format!("allowed flow, packet {i}"),
            &udp(H1, H2, 40000, 5000),
            Reason::ForwardedRoute,
        );
    }
    expect(
        &mut fx,
        "denied flow in the same slot",
        &udp(H1, H2, sport, 5001),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "allowed flow again",
        &udp(H1, H2, 40000, 5000),
        Reason::ForwardedRoute,
    );
}

/// The per-CPU flow cache in front of the IPv4 connection table passes a flow's packets
/// as the table would, and leaves the table in charge of what it tracks: the first reply
/// still reaches the table (the flow is marked replied) and from then on the cache
/// answers both directions, a FIN reaches the table (the flow is marked closing), the entry's time is refreshed at least every
/// FLOW_CACHE_REVALIDATE_NS while packets flow, every packet counts for its rule, and a
/// new policy re-judges cached flows.
#[test]
fn the_flow_cache_leaves_replies_fins_and_time_to_the_connection_table() {
    use aya::maps::{HashMap, Map, MapData};
    use x0_common::{
        map_names::CONNTRACK_V4,
        policy::{CT_F_FIN_A, CT_F_REPLIED, CtEntry, CtKey4, FLOW_CACHE_REVALIDATE_NS},
    };
    // The cache is per CPU: one CPU's, so that what it answers is known.
    let mut cpu = nix::sched::CpuSet::new();
    cpu.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu).unwrap();
    let mut fx = Fixture::new();
    const UDP_RULE: &str = "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"udp\"\nports = \"5000\"\naction = \"allow\"\n";
    const TCP_RULE: &str = "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"tcp\"\nports = \"443\"\naction = \"allow\"\n";
    let both = format!("{IDENTITIES}{UDP_RULE}{TCP_RULE}");
    install(&mut fx, &policy("deny", &both));
    let ct4: HashMap<_, CtKey4, CtEntry> = HashMap::try_from(Map::HashMap(
        MapData::from_pin(fx.pin_root.join(CONNTRACK_V4)).unwrap(),
    ))
    .unwrap();
    let entry = |port: u16| -> CtEntry {
        ct4.iter()
            .flatten()
            .find(|(k, _)| k.port_a == port || k.port_b == port)
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("no flow of port {port}"))
    };
    // UDP: opened, then cached by its second packet; the reply reaches the table.
    for i in 0..3 {
        expect(
            &mut fx,
            &format!("h1 udp {i}"),
            &udp(H1, H2, 40000, 5000),
            Reason::ForwardedRoute,
        );
    }
    assert_eq!(entry(40000).flags & CT_F_REPLIED, 0);
    expect(
        &mut fx,
        "h2 reply",
        &udp(H2, H1, 5000, 40000),
        Reason::ForwardedRoute,
    );
    assert_ne!(
        entry(40000).flags & CT_F_REPLIED,
        0,
        "the reply is recorded"
    );
    // From now on the cache answers both directions: the table's time stays.
    let answered = entry(40000).last_ns;
    for i in 0..3 {
        expect(
            &mut fx,
            &format!("h1 udp, cached {i}"),
            &udp(H1, H2, 40000, 5000),
            Reason::ForwardedRoute,
        );
        expect(
            &mut fx,
            &format!("h2 reply, cached {i}"),
            &udp(H2, H1, 5000, 40000),
            Reason::ForwardedRoute,
        );
    }
    assert_eq!(
        entry(40000).last_ns,
        answered,
        "both directions answered by the cache"
    );
    // The table's time moves while cached packets flow.
    let first = entry(40000).last_ns;
    let wait = std::time::Duration::from_nanos(FLOW_CACHE_REVALIDATE_NS + 200_000_000);
    let until = std::time::Instant::now() + wait;
    let mut later_packets = 0;
    while std::time::Instant::now() < until {
        later_packets += 1;
        expect(
            &mut fx,
            "h1 udp, later",
            &udp(H1, H2, 40000, 5000),
            Reason::ForwardedRoute,
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let later = entry(40000).last_ns;
    assert!(
        later - first >= FLOW_CACHE_REVALIDATE_NS,
        "entry time moved {} ms in {wait:?}",
        (later - first) / 1_000_000
    );
    // TCP: handshake, data from h1 (cached), then h1's FIN reaches the table.
    let seg = |from_h1: bool, syn: bool, ack: bool| {
        if from_h1 {
            tcp(H1, H2, 40001, 443, syn, ack)
        } else {
            tcp(H2, H1, 443, 40001, syn, ack)
        }
    };
    expect(
        &mut fx,
        "SYN",
        &seg(true, true, false),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "SYN-ACK",
        &seg(false, true, true),
        Reason::ForwardedRoute,
    );
    for i in 0..3 {
        expect(
            &mut fx,
            &format!("ACK {i}"),
            &seg(true, false, true),
            Reason::ForwardedRoute,
        );
    }
    assert_eq!(entry(40001).flags & CT_F_FIN_A, 0);
    let mut fin = seg(true, false, true);
    fin[14 + 20 + 13] |= 0x01; // FIN (the frame's TCP checksum is not checked here)
    expect(&mut fx, "FIN", &fin, Reason::ForwardedRoute);
    assert_ne!(
        entry(40001).flags & (CT_F_FIN_A | x0_common::policy::CT_F_FIN_B),
        0,
        "the FIN is recorded"
    );
    // Every allowed packet counted for its rule, cached or not.
    let hits = x0_dataplane::counters::read_rule_hits(&fx.pin_root).unwrap();
    let udp_packets = hits.get(&1).copied().unwrap_or(0);
    assert_eq!(udp_packets, 3 + 1 + 6 + later_packets, "udp rule");
    assert_eq!(hits.get(&2).copied(), Some(5 + 1), "tcp rule: {hits:?}");
    // A new policy without the UDP rule, right after the cache took the flow again (so
    // that its entry is fresh): the cached flow is judged again and dropped.
    let seen = entry(40000).last_ns;
    let until = std::time::Instant::now() + 2 * wait;
    while entry(40000).last_ns == seen {
        assert!(std::time::Instant::now() < until, "no revalidation");
        let _ = fx.dp().test_run(&udp(H1, H2, 40000, 5000)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{TCP_RULE}")));
    assert!(
        started.elapsed() < wait / 2,
        "installed within the cache's time"
    );
    expect(
        &mut fx,
        "h1 udp after the rule went",
        &udp(H1, H2, 40000, 5000),
        Reason::DropDefaultDeny,
    );
}

/// `frame` (IPv4) as a fragment of datagram `id`: offset in 8-byte units, more to come.
fn fragment(frame: Vec<u8>, id: u16, offset: u16, more: bool) -> Vec<u8> {
    let flags_offset = offset | if more { 0x2000 } else { 0 };
    fixtures::patch_ipv4(frame, |h| {
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    })
}

#[test]
fn later_fragments_are_judged_as_their_first_fragments_flow() {
    let mut fx = Fixture::new();
    let rules = r#"
[[rule]]
from = "h1"
to = "h2"
proto = "udp"
ports = "5000"
action = "allow"
"#;
    install(&mut fx, &policy("deny", &format!("{IDENTITIES}{rules}")));
    // Every later fragment's payload begins with bytes that read as an allowed UDP header
    // (ports 4000 -> 5000): a fast path that took ports from them would let them through.
    let allowed_looking = || udp(H1, H2, 4000, 5000);
    expect(
        &mut fx,
        "first fragment to the allowed port",
        &fragment(udp(H1, H2, 4000, 5000), 77, 0, true),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "its later fragment",
        &fragment(allowed_looking(), 77, 185, false),
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "a later fragment whose first fragment never came",
        &fragment(allowed_looking(), 78, 185, false),
        Reason::DropFragmentUnknown,
    );
    expect(
        &mut fx,
        "first fragment to a denied port",
        &fragment(udp(H1, H2, 4000, 22), 79, 0, true),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "its later fragment, judged with port 22",
        &fragment(allowed_looking(), 79, 185, false),
        Reason::DropDefaultDeny,
    );
    expect(
        &mut fx,
        "a first fragment too short for its ports (RFC 1858 tiny fragment)",
        &{
            let mut f = fragment(udp(H1, H2, 4000, 5000), 80, 0, true);
            f.truncate(14 + 20 + 2);
            fixtures::patch_ipv4(f, |h| h[2..4].copy_from_slice(&22u16.to_be_bytes()))
        },
        Reason::DropMalformedL4,
    );
}

#[test]
fn an_ipv6_later_fragment_without_its_first_is_dropped_under_policy() {
    let mut fx = Fixture::new();
    // Allowed by default; one rule, so that policy is on.
    let rules = "[[rule]]\nfrom = \"h1\"\nto = \"h2\"\nproto = \"tcp\"\nports = \"23\"\naction = \"deny\"\n";
    install(&mut fx, &policy("allow", &format!("{IDENTITIES}{rules}")));
    let to_router = (HOST_MAC, PORT_A_MAC);
    let h1 = fixtures::ip6("2001:db8:1::2");
    let h2 = fixtures::ip6("2001:db8:2::2");
    let plain = fixtures::udp6(h1, h2, 64, to_router);
    let later = fixtures::with_ext6(&plain, 44, &[0, 0, 0, 0xb9, 0, 0, 0, 9]);
    expect(
        &mut fx,
        "ipv6 later fragment, first never seen",
        &later,
        Reason::DropFragmentUnknown,
    );
    let first = fixtures::with_ext6(&plain, 44, &[0, 0, 0, 1, 0, 0, 0, 9]);
    expect(
        &mut fx,
        "its first fragment",
        &first,
        Reason::ForwardedRoute,
    );
    expect(
        &mut fx,
        "the later fragment again",
        &later,
        Reason::ForwardedRoute,
    );
}
