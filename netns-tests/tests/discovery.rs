//! A mesh that builds itself (docs/DISCOVERY.md): the diamond with no routes in any
//! dataplane config and no neighbours or prefixes in the brains' (`Topology::discovering`),
//! beside a static neighbour; routers joining, leaving gracefully and dying; hellos that
//! prove nothing refused, backed off, or never heard (hop limit).

mod common;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use serde_json::Value;
use x0_brain::config::{Mode, NeighborConfig};
use x0_lab::{
    Lab,
    lab::BRAIN_METRICS,
    netns, prometheus, tools,
    traffic::{self, wait_reply},
};

const BRAIN: &str = "https://127.0.0.1:7444";

fn diamond() -> Lab {
    common::lab("diamond.toml", |t| *t = t.clone().discovering())
}

fn status(lab: &Lab, router: &str) -> Value {
    let out = lab
        .x0ctl_at(router, BRAIN, &["--json", "brain", "status"])
        .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The mesh links `router`'s brain plans over, as "a-b (cost)".
fn links(lab: &Lab, router: &str) -> Vec<String> {
    let s = status(lab, router);
    let links = s["links"].as_array().cloned().unwrap_or_default();
    links
        .iter()
        .filter_map(|l| l.as_str().map(String::from))
        .collect()
}

fn has_link(links: &[String], a: &str, b: &str) -> bool {
    links
        .iter()
        .any(|l| l.starts_with(&format!("{a}-{b} ")) || l.starts_with(&format!("{b}-{a} ")))
}

/// A counter of `router`'s brain with exactly these labels (0 if absent).
fn counter(lab: &Lab, router: &str, name: &str, labels: &str) -> u64 {
    let text = prometheus::scrape(lab, router, BRAIN_METRICS).unwrap();
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Polls `ok` every 50 ms until it holds (the time it took) or `within` passes (panics
/// with `what` and the router's brain log).
fn wait_until(
    lab: &Lab,
    router: &str,
    what: &str,
    within: Duration,
    ok: impl Fn() -> bool,
) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < within,
            "{what} not within {within:?}\n{}",
            lab.brain_log(router)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// h1 gets an answer from h2 (IPv4) within `within`.
fn h1_reaches_h2(lab: &Lab, within: Duration) {
    wait_reply(lab, "h1", common::addr(lab, "h2", false), within).unwrap();
}

/// Every host reaches every address of every router and the other host, both families.
fn all_reachable(lab: &Lab, within: Duration) {
    let mut targets = common::router_addrs(lab);
    for v6 in [false, true] {
        targets.push(("h2".into(), common::addr(lab, "h2", v6)));
    }
    for (node, a) in targets {
        wait_reply(lab, "h1", a, within).unwrap_or_else(|e| panic!("{node} {a}: {e}"));
    }
    wait_reply(lab, "h2", common::addr(lab, "h1", true), within).unwrap();
}

#[test]
fn a_mesh_of_minimal_configs_assembles_itself_beside_a_static_neighbour() {
    let lab = diamond();
    for r in ["r1", "r2", "r3", "r4"] {
        assert!(lab.dataplane_config(r).unwrap().routes.is_empty());
    }
    let start = Instant::now();
    // r1 keeps r2 as a static neighbour (mixed mesh); everyone else is found by hellos.
    lab.start_brain_with("r1", Mode::Enforce, |c| {
        c.neighbors = vec![NeighborConfig {
            router: "r2".into(),
            interface: "eth1".into(),
            addrs: vec![
                "198.18.12.2".parse().unwrap(),
                "2001:db8:12::2".parse().unwrap(),
            ],
            cost: 10,
            capacity_mbps: 1000,
            brain: "198.18.12.2:7444".into(),
        }];
    })
    .unwrap();
    for r in ["r2", "r3", "r4"] {
        lab.start_brain(r, Mode::Enforce).unwrap();
        let config = std::fs::read_to_string(lab.file(&format!("brain-{r}"), "toml")).unwrap();
        assert!(
            !config.contains("[[neighbor]]") && config.contains("[discovery]"),
            "{config}"
        );
    }
    h1_reaches_h2(&lab, Duration::from_secs(15));
    println!(
        "h1 reached h2 {:?} after the brains started",
        start.elapsed()
    );
    all_reachable(&lab, Duration::from_secs(5));
    let hops = tools::traceroute(&lab, "h1", common::addr(&lab, "h2", false), 6).unwrap();
    assert_eq!(hops.len(), 4, "{hops:?}");
    assert_eq!(hops[0], Some("198.18.1.1".parse::<IpAddr>().unwrap()));
    let s = status(&lab, "r1");
    assert_eq!(s["routers"].as_array().map(|a| a.len()), Some(4), "{s:#}");
    // r1 verifies only r3 (r2 is static: its hellos are counted and left alone); r4 both.
    // r4 started last: its second neighbour may say hello after h1 already reaches h2.
    let up = |r: &str| counter(&lab, r, "x0_brain_discovered_total", "change=\"up\"");
    wait_until(
        &lab,
        "r4",
        "r1 and r4 verify theirs",
        Duration::from_secs(5),
        || up("r1") == 1 && up("r4") == 2,
    );
    assert!(
        counter(
            &lab,
            "r1",
            "x0_brain_hellos_refused_total",
            "reason=\"ours\""
        ) >= 1
    );
    assert_eq!(
        counter(&lab, "r4", "x0_brain_verifications_total", "outcome=\"ok\""),
        2
    );
    assert_eq!(up("r1"), 1, "the static neighbour is never discovered");
}

#[test]
fn routers_join_leave_gracefully_and_die() {
    let lab = diamond();
    for r in ["r1", "r2", "r3"] {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    let h2 = common::addr(&lab, "h2", false);
    wait_until(
        &lab,
        "r1",
        "r1 learns r2 and r3",
        Duration::from_secs(10),
        || {
            let l = links(&lab, "r1");
            has_link(&l, "r1", "r2") && has_link(&l, "r1", "r3")
        },
    );
    assert_eq!(
        traffic::ping(&lab, "h1", h2, 1).unwrap(),
        0,
        "r4 has not joined yet"
    );

    // Join: r4's brain starts; h1 reaches h2 through it.
    let joined = Instant::now();
    lab.start_brain("r4", Mode::Enforce).unwrap();
    wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
    println!(
        "join: h1 reached h2 {:?} after r4's brain started",
        joined.elapsed()
    );

    // Graceful leave: r1 drops r2 at once, and traffic keeps flowing through r3.
    lab.stop_brain("r2", false).unwrap();
    let gone = wait_until(&lab, "r1", "r2's goodbye", Duration::from_secs(2), || {
        counter(&lab, "r1", "x0_brain_discovered_total", "change=\"down\"") == 1
    });
    println!("leave: r1 dropped r2 {gone:?} after its brain was stopped");
    wait_until(
        &lab,
        "r1",
        "r2 out of r1's mesh",
        Duration::from_secs(2),
        || !has_link(&links(&lab, "r1"), "r1", "r2"),
    );
    wait_reply(&lab, "h1", h2, Duration::from_secs(3)).unwrap();

    // Rejoin, then r3 dies (dataplane and brain, kill -9): BFD routes around it at once,
    // and r1 drops it within the hold time (3.5 s of 1 s hellos, and a tick).
    lab.start_brain("r2", Mode::Enforce).unwrap();
    wait_until(&lab, "r1", "r2 back", Duration::from_secs(10), || {
        has_link(&links(&lab, "r1"), "r1", "r2")
    });
    all_reachable(&lab, Duration::from_secs(5));
    lab.stop_brain("r3", true).unwrap();
    lab.kill_dataplane("r3").unwrap();
    let died = Instant::now();
    wait_reply(&lab, "h1", h2, Duration::from_secs(1)).unwrap();
    let dropped = wait_until(&lab, "r1", "r3 dropped", Duration::from_secs(6), || {
        counter(&lab, "r1", "x0_brain_discovered_total", "change=\"down\"") == 2
    });
    assert!(
        died.elapsed() >= Duration::from_millis(2500),
        "dropped before the hold time: {dropped:?}"
    );
    println!("death: r1 dropped r3 {:?} after it died", died.elapsed());
    wait_until(
        &lab,
        "r1",
        "r3 out of r1's mesh",
        Duration::from_secs(2),
        || !has_link(&links(&lab, "r1"), "r1", "r3"),
    );
}

/// A hello the test forges: who it names, where it says its brain is, its addresses,
/// and the hop limit it is sent with.
struct Forged<'a> {
    router: &'a str,
    brain: &'a str,
    addrs: &'a [&'a str],
    hops: u32,
}

/// The chaos soak found it: a brain killed long enough for its neighbours to route around
/// it came back to BFD sessions its neighbours no longer ran (they had no route through
/// it) and stayed apart for good. Now each brain holds BFD to its neighbours (AddBfdPeer)
/// whatever the routes.
#[test]
fn a_brain_back_after_its_neighbours_routed_around_it_rejoins() {
    let lab = diamond();
    for r in ["r1", "r2", "r3", "r4"] {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    h1_reaches_h2(&lab, Duration::from_secs(15));
    lab.stop_brain("r2", true).unwrap();
    wait_until(&lab, "r1", "r2 dropped", Duration::from_secs(8), || {
        !has_link(&links(&lab, "r1"), "r1", "r2")
    });
    // Long enough for r1 and r4 to plan without r2 and push it.
    std::thread::sleep(Duration::from_secs(2));
    lab.start_brain("r2", Mode::Enforce).unwrap();
    let back = wait_until(
        &lab,
        "r1",
        "r1-r2 back in r1's mesh",
        Duration::from_secs(10),
        || {
            let l = links(&lab, "r1");
            has_link(&l, "r1", "r2") && has_link(&l, "r2", "r4")
        },
    );
    println!("r2 back in the mesh {back:?} after its brain restarted");
    all_reachable(&lab, Duration::from_secs(5));
}

/// Sends `count` forged hellos every 200 ms from r2's side of the r1-r2 link.
fn send_hellos(lab: &Lab, f: Forged, count: u32) {
    let Forged {
        router,
        brain,
        addrs,
        hops,
    } = f;
    let iface = "eth0";
    let script = format!(
        r#"
import socket, time
def varint(n):
    out = b""
    while True:
        b, n = n & 0x7f, n >> 7
        out += bytes([b | 0x80]) if n else bytes([b])
        if not n: return out
def text(num, s): return bytes([num << 3 | 2]) + varint(len(s)) + s.encode()
def number(num, v): return bytes([num << 3]) + varint(v)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, {hops})
idx = socket.if_nametoindex("{iface}")
for seq in range(1, {count} + 1):
    msg = number(1, 1) + text(2, "{router}") + text(3, "{brain}")
    msg += b"".join(text(4, a) for a in {addrs:?}) + number(5, 1000) + number(6, seq)
    s.sendto(msg, ("ff02::114", 7446, 0, idx))
    time.sleep(0.2)
"#
    );
    netns::exec_ok(&lab.ns("r2"), &["python3", "-c", &script]).unwrap();
}

#[test]
fn hellos_that_prove_nothing_are_refused_backed_off_or_never_heard() {
    let lab = diamond();
    for r in ["r1", "r2"] {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    wait_until(
        &lab,
        "r1",
        "r1 verifies r2",
        Duration::from_secs(10),
        || counter(&lab, "r1", "x0_brain_verifications_total", "outcome=\"ok\"") == 1,
    );
    let tls = || {
        counter(
            &lab,
            "r1",
            "x0_brain_verifications_total",
            "outcome=\"tls\"",
        )
    };
    // From r2's side of the link, a hello that names r9 and points at r2's real brain:
    // its SVID says r2, so the handshake fails, and retries back off: at 0, 1, 3 and 7 s,
    // then (15 s) it has been silent for its hold time (6 + 3.5 s) and is forgotten.
    let liar = Instant::now();
    send_hellos(
        &lab,
        Forged {
            router: "r9",
            brain: "198.18.12.2:7444",
            addrs: &["198.18.12.2"],
            hops: 255,
        },
        30,
    );
    std::thread::sleep(Duration::from_secs(11).saturating_sub(liar.elapsed()));
    let failed = tls();
    assert_eq!(failed, 4, "failed verifications in {:?}", liar.elapsed());
    // Hop limit 254: routed here, so not from the link: refused before any handshake.
    let refused = |why: &str| {
        counter(
            &lab,
            "r1",
            "x0_brain_hellos_refused_total",
            &format!("reason=\"{why}\""),
        )
    };
    let (hop_limit, addresses) = (refused("hop-limit"), refused("addresses"));
    send_hellos(
        &lab,
        Forged {
            router: "r8",
            brain: "198.18.12.2:7444",
            addrs: &["198.18.12.2"],
            hops: 254,
        },
        5,
    );
    // Addresses of another link: refused too.
    send_hellos(
        &lab,
        Forged {
            router: "r7",
            brain: "198.18.99.2:7444",
            addrs: &["198.18.99.2"],
            hops: 255,
        },
        3,
    );
    assert_eq!(refused("hop-limit") - hop_limit, 5);
    assert_eq!(refused("addresses") - addresses, 3);
    assert_eq!(tls(), failed, "no handshake for r8 or r7, and r9 forgotten");
    let s = status(&lab, "r1");
    let routers = s["routers"].to_string();
    assert!(!routers.contains("r9") && !routers.contains("r8"), "{s:#}");
    assert_eq!(
        counter(&lab, "r1", "x0_brain_discovered_total", "change=\"up\""),
        1
    );
}
