//! BFD conformance (RFC 5880 6.8.1-6.8.7, RFC 5881) against a scripted peer in h2
//! (x0_lab::bfd_script): r1's dataplane runs a session to it at 10 ms x 3, and each test
//! bends what the peer sends and checks what the dataplane does, as the cases of
//! commercial conformance suites and VPP's BFD tests do.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use x0_dataplane::config::{BfdDefaults, BfdPeerConfig};
use x0_lab::{
    Lab,
    bfd_script::{ADMIN_DOWN, DOWN, INIT, PEER_DISC, Pkt, Received, ScriptedPeer, UP},
};

const MS: Duration = Duration::from_millis(1);

/// The line lab with r1 running BFD (10 ms x 3) to the scripted peer at h2.
fn lab_with_peer() -> (Lab, ScriptedPeer) {
    let lab = common::lab("line.toml", |t| {
        let r1 = &mut t.routers[0];
        r1.bfd = Some(BfdDefaults::default());
        r1.bfd_peers = vec![BfdPeerConfig {
            address: "198.18.2.2".parse().unwrap(),
            settings: Default::default(),
        }];
    });
    let peer = ScriptedPeer::start(
        &lab.ns("h2"),
        "198.18.2.2".parse().unwrap(),
        "198.18.2.1".parse().unwrap(),
    )
    .expect("scripted peer");
    (lab, peer)
}

/// `lab_with_peer`, with the session Up and its fast timers agreed.
fn session_up() -> (Lab, ScriptedPeer) {
    let (lab, peer) = lab_with_peer();
    let up = peer.wait_for(
        Instant::now() - Duration::from_secs(60),
        10 * 1000 * MS,
        |p| p.state == UP,
    );
    assert!(up.is_some(), "no session: {:?}", &peer.received());
    // Past the Poll that announces the fast timers.
    std::thread::sleep(200 * MS);
    (lab, peer)
}

/// r1's BFD counters and its one session (x0ctl --json bfd list).
fn bfd_list(lab: &Lab) -> Value {
    serde_json::from_str(&lab.x0ctl("r1", &["--json", "bfd", "list"]).unwrap()).unwrap()
}

fn counter(lab: &Lab, name: &str) -> u64 {
    bfd_list(lab)["counters"][name].as_u64().unwrap()
}

/// Gaps between the dataplane's periodic packets (Finals left out) that arrived within
/// [from, to].
fn gaps(rx: &[Received], from: Instant, to: Instant) -> Vec<Duration> {
    let times: Vec<Instant> = rx
        .iter()
        .filter(|(t, p)| *t >= from && *t <= to && !p.final_)
        .map(|(t, _)| *t)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Goes down by the detection timer: the dataplane's next packets say Down, diag 1.
fn assert_detection_expired(peer: &ScriptedPeer, since: Instant, what: &str) {
    let down = peer.wait_for(since, 1000 * MS, |p| p.state == DOWN);
    let (_, p) = down.unwrap_or_else(|| panic!("{what}: the session stayed Up"));
    assert_eq!(p.diag, 1, "{what}: Control Detection Time Expired");
}

#[test]
fn the_three_way_handshake_then_a_poll_for_the_fast_timers() {
    let (_lab, peer) = lab_with_peer();
    // The peer listens only, for 2.5 s: the dataplane sends Down, Your Discriminator 0,
    // no faster than once a second less 25 % jitter (6.8.3, slow start).
    peer.set(|s| s.silent = true);
    std::thread::sleep(2500 * MS);
    let rx = peer.received();
    assert!(rx.len() >= 2, "{rx:?}");
    assert!(
        rx.iter().all(|(_, p)| p.state == DOWN && p.your_disc == 0),
        "{rx:?}"
    );
    let slow = gaps(&rx, rx[0].0, Instant::now());
    assert!(slow.iter().all(|g| *g >= 700 * MS), "{slow:?}");
    peer.set(|s| s.silent = false);
    assert!(
        peer.wait_for(Instant::now(), 3000 * MS, |p| p.state == UP)
            .is_some()
    );
    std::thread::sleep(200 * MS);
    let rx = peer.received();
    let states: Vec<u8> = rx.iter().map(|(_, p)| p.state).collect();
    let first_up = states.iter().position(|s| *s == UP).unwrap();
    // Down (or Init) until the peer says Init or Up: only then Up (6.8.6).
    assert!(states[..first_up].iter().all(|s| *s == DOWN || *s == INIT));
    let peer_init = peer
        .sent()
        .into_iter()
        .find(|(_, p)| p.state == INIT || p.state == UP)
        .expect("the peer left Down")
        .0;
    assert!(peer_init < rx[first_up].0, "Up before the peer said Init");
    assert!(rx[first_up..].iter().all(|(_, p)| p.your_disc == PEER_DISC));
    // Up announces its new interval with a Poll; once the Final came, no more Polls.
    assert!(
        rx[first_up].1.poll,
        "the first Up carries Poll: {:?}",
        rx[first_up]
    );
    let fast = gaps(&rx, rx[first_up].0 + 50 * MS, Instant::now());
    assert!(rx.last().is_some_and(|(_, p)| !p.poll));
    let m = median(fast);
    assert!(m >= 7 * MS && m <= 12 * MS, "median gap {m:?}");
}

#[test]
fn a_poll_is_answered_at_once_and_the_peers_required_min_rx_sets_our_interval() {
    let (_lab, peer) = session_up();
    // Bands that tell the four intervals apart: 75 % (jitter) less a little, to 125 % (a
    // busy host delays packets; each next one is timed from the last).
    for rx_ms in [50u32, 200, 20, 10] {
        let (lo, hi) = (rx_ms * 70 / 100, rx_ms * 125 / 100);
        let start = Instant::now();
        peer.set(|s| {
            s.required_min_rx_us = rx_ms * 1000;
            s.poll = true;
        });
        let fin = peer.wait_for(start, 500 * MS, |p| p.final_);
        let (t, _) = fin.unwrap_or_else(|| panic!("no Final to the Poll for {rx_ms} ms"));
        // The Final goes out at once, not at the next interval (200 ms before the third).
        let poll_sent = peer
            .sent()
            .into_iter()
            .find(|(t, p)| *t >= start && p.poll)
            .expect("the Poll was sent")
            .0;
        assert!(t - poll_sent < 25 * MS, "Final after {:?}", t - poll_sent);
        std::thread::sleep(Duration::from_millis(rx_ms as u64 * 12));
        let g = gaps(&peer.received(), t + 2 * rx_ms * MS, Instant::now());
        let m = median(g.clone());
        assert!(
            m >= lo * MS && m <= hi * MS,
            "required min rx {rx_ms} ms: median gap {m:?} ({} gaps)",
            g.len()
        );
    }
}

#[test]
fn the_detection_time_is_the_peers_multiplier_times_its_interval() {
    let (lab, peer) = session_up();
    peer.set(|s| {
        s.mult = 5;
        s.desired_min_tx_us = 100_000;
        s.interval = 100 * MS;
        s.poll = true;
    });
    std::thread::sleep(600 * MS);
    let session = &bfd_list(&lab)["sessions"][0];
    assert_eq!(session["detection_time_us"], 500_000, "{session}");
    peer.set(|s| s.silent = true);
    let last = peer.sent().last().unwrap().0;
    let down = peer.wait_for(last, 2000 * MS, |p| p.state == DOWN);
    let (t, p) = down.expect("the session went down");
    assert_eq!(p.diag, 1, "Control Detection Time Expired");
    let after = t - last;
    assert!(
        after >= 495 * MS && after <= 700 * MS,
        "down {after:?} after the last packet (5 x 100 ms)"
    );
}

#[test]
fn admin_down_from_the_peer_takes_the_session_down_with_neighbor_signaled_down() {
    let (lab, peer) = session_up();
    let start = Instant::now();
    peer.set(|s| s.state = Some(ADMIN_DOWN));
    let (_, p) = peer
        .wait_for(start, 500 * MS, |p| p.state == DOWN)
        .expect("the session went down");
    assert_eq!(p.diag, 3, "Neighbor Signaled Session Down");
    assert!(lab.dataplane_log("r1").contains("AdminDown"), "logged");
    // Back: the peer's next Down restarts the handshake.
    let back = Instant::now();
    peer.set(|s| s.state = None);
    assert!(peer.wait_for(back, 5000 * MS, |p| p.state == UP).is_some());
}

/// Packets the dataplane must discard keep nothing alive: the session expires, and the
/// counter that names the reason grows.
fn discarded_while_up(bend: impl Fn(&mut x0_lab::bfd_script::Script), counter_name: &str) {
    let (lab, peer) = session_up();
    let before = counter(&lab, counter_name);
    let start = Instant::now();
    peer.set(bend);
    assert_detection_expired(&peer, start, counter_name);
    let after = counter(&lab, counter_name);
    // 10 ms apart over a 30 ms detection time: two or three discarded by the time it expired.
    assert!(after >= before + 2, "{counter_name}: {before} -> {after}");
    let valid_before = counter(&lab, "rx_valid");
    std::thread::sleep(200 * MS);
    assert_eq!(
        counter(&lab, "rx_valid"),
        valid_before,
        "none counted valid"
    );
}

#[test]
fn a_zero_your_discriminator_in_state_up_is_discarded() {
    // Up with Your Discriminator 0, whatever the dataplane says meanwhile.
    discarded_while_up(
        |s| {
            s.your_disc = Some(0);
            s.state = Some(UP);
        },
        "rx_malformed",
    );
}

#[test]
fn a_wrong_your_discriminator_is_discarded() {
    discarded_while_up(|s| s.your_disc = Some(0xdead_beef), "rx_no_session");
}

#[test]
fn the_authentication_bit_without_authentication_configured_is_discarded() {
    discarded_while_up(|s| s.auth = true, "rx_malformed");
}

#[test]
fn a_ttl_below_255_is_discarded() {
    discarded_while_up(|s| s.ttl = 254, "rx_bad_ttl");
}

#[test]
fn a_peer_in_demand_mode_gets_no_periodic_packets_but_its_polls_are_answered() {
    let (_lab, peer) = session_up();
    peer.set(|s| s.demand = true);
    std::thread::sleep(100 * MS);
    let quiet_from = Instant::now();
    std::thread::sleep(500 * MS);
    let during: Vec<Pkt> = peer
        .received()
        .into_iter()
        .filter(|(t, _)| *t >= quiet_from)
        .map(|(_, p)| p)
        .collect();
    assert!(during.is_empty(), "sent in Demand mode: {during:?}");
    let poll = Instant::now();
    peer.set(|s| s.poll = true);
    let (_, f) = peer
        .wait_for(poll, 200 * MS, |p| p.final_)
        .expect("the Poll is answered in Demand mode");
    assert_eq!(f.state, UP);
    let resumed = Instant::now();
    peer.set(|s| s.demand = false);
    std::thread::sleep(200 * MS);
    let g = gaps(&peer.received(), resumed + 20 * MS, Instant::now());
    assert!(g.len() >= 10, "periodic again: {} gaps", g.len());
}
