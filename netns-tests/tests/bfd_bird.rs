//! x0-dataplane's BFD against a second independent implementation beside FRR's bfdd:
//! BIRD 2's BFD protocol in h2. The session comes up, every one of 20 link cuts is
//! detected, and 100 live timer changes on BIRD's side bring no false Down. Detection
//! times against the goal (multiplier x interval + 10 ms) are `x0-bench bfd-interop`'s.

mod common;

use std::time::{Duration, Instant, SystemTime};

use x0_dataplane::config::{BfdDefaults, BfdPeerConfig};
use x0_lab::bird_bfd::{BirdBfd, kill_and_detect, wait_log};

#[test]
fn a_session_with_bird_survives_20_cuts_and_100_timer_changes() {
    let lab = common::lab("line.toml", |t| {
        let r1 = &mut t.routers[0];
        r1.bfd = Some(BfdDefaults::default()); // 10 ms x 3
        r1.bfd_peers = vec![BfdPeerConfig {
            address: "198.18.2.2".parse().unwrap(),
            settings: Default::default(),
        }];
    });
    let bird = BirdBfd::start(&lab, "h2", "eth0", "198.18.2.1", 10).unwrap();
    let up = wait_log(
        &lab,
        "r1",
        &["peer=198.18.2.2", "to=Up"],
        SystemTime::UNIX_EPOCH,
        Duration::from_secs(15),
    );
    assert!(up.is_some(), "no session:\n{}", bird.log());
    let start = Instant::now();
    while !bird.is_up() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            bird.sessions()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let detect: Vec<Duration> = (0..20)
        .map(|i| {
            kill_and_detect(&lab, "r1", "eth2", "198.18.2.2")
                .unwrap_or_else(|e| panic!("cut {i}: {e:#}\n{}", lab.dataplane_log("r1")))
        })
        .collect();
    println!("detection after each cut: {detect:?}");
    // Far below BIRD's own slow timers (1 s): the 10 ms x 3 session is what detected it.
    assert!(
        detect.iter().all(|d| *d < Duration::from_millis(300)),
        "{detect:?}"
    );

    std::thread::sleep(Duration::from_millis(500)); // the Poll to fast timers
    let calm = SystemTime::now();
    for i in 0..100 {
        bird.set_interval(if i % 2 == 0 { 20 } else { 10 }).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let false_downs = wait_log(
        &lab,
        "r1",
        &["peer=198.18.2.2", "to=Down"],
        calm,
        Duration::from_millis(1),
    );
    assert!(
        false_downs.is_none(),
        "a Down while timers changed:\n{}",
        lab.dataplane_log("r1")
    );
    assert!(bird.is_up(), "BIRD's side: {:?}", bird.sessions());
    // The changes were negotiated: r1's detection time follows BIRD's interval x 3.
    for (ms, want) in [(20, 60_000), (10, 30_000)] {
        bird.set_interval(ms).unwrap();
        let start = Instant::now();
        while detection_us(&lab) != want {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{ms} ms: {}",
                detection_us(&lab)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn detection_us(lab: &x0_lab::Lab) -> u64 {
    let out = lab.x0ctl("r1", &["--json", "bfd", "list"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["sessions"][0]["detection_time_us"]
        .as_u64()
        .unwrap_or_default()
}
