//! The API under HTTP/2 and TLS abuse (issue 20): while each attack of
//! tests/python/h2_abuse.py runs against r1, a healthy client's GetInfo calls over the Unix
//! socket all succeed, and the server does to the attacker what it must. Latency and memory
//! figures are `x0-bench api-abuse`'s (docs/PERFORMANCE.md).

mod common;

use x0_lab::abuse;

fn attacked(attack: &str, seconds: f64) -> abuse::Report {
    let lab = common::lab("line.toml", |_| {});
    let report = abuse::run(&lab, "r1", attack, seconds).expect("attack");
    let h = &report.healthy;
    assert!(
        h.failed.is_empty() && h.ok > 100,
        "{attack}: the healthy client's calls: {} ok, failed: {:?}",
        h.ok,
        &h.failed[..h.failed.len().min(5)]
    );
    assert!(
        lab.dataplane_running("r1"),
        "{attack}: r1 died:\n{}",
        lab.dataplane_log("r1")
    );
    eprintln!("{attack}: {} (healthy: {} ok)", report.attack, h.ok);
    report
}

#[test]
fn rapid_reset_gets_the_connection_closed() {
    let r = attacked("rapid-reset", 5.0);
    assert!(
        r.attack["connections_closed_by_server"].as_u64() > Some(0),
        "{}",
        r.attack
    );
}

#[test]
fn an_endless_continuation_gets_the_connection_closed() {
    let r = attacked("continuation", 5.0);
    assert!(
        r.attack["connections_closed_by_server"].as_u64() > Some(0),
        "{}",
        r.attack
    );
    // Bounded by the 16 KiB header list (plus what the socket buffers held meanwhile).
    let most = r.attack["most_header_bytes_on_a_connection"].as_u64();
    assert!(most < Some(4 << 20), "{}", r.attack);
}

#[test]
fn streams_beyond_the_limit_are_refused() {
    let r = attacked("streams", 3.0);
    assert_eq!(r.attack["advertised_max_streams"], 256, "{}", r.attack);
    assert_eq!(r.attack["refused"], 1000 - 256, "{}", r.attack);
}

#[test]
fn readers_that_stop_reading_are_closed_by_the_keepalive() {
    // 5 s ping + 5 s unanswered: closed by 10 s (12 s leaves room for the timers' slack).
    let r = attacked("slow-reader", 12.0);
    assert_eq!(r.attack["still_open"], 0, "{}", r.attack);
}

#[test]
fn stalled_tls_handshakes_are_closed_within_10_s() {
    let r = attacked("tls-stall", 14.0);
    assert_eq!(r.attack["closed"], 200, "{}", r.attack);
    let last = r.attack["last_closed_s"].as_f64().expect("closing times");
    assert!(
        last <= 11.0,
        "the last stalled connection closed at {last} s"
    );
}
