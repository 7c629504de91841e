//! x0-dataplane under a service manager, with the test playing systemd's part: the
//! notification socket (Type=notify) gets READY=1 once forwarding is up, watchdog pings at
//! half the period, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM; logs
//! lose their timestamps when stderr is the journal and come as JSON lines on request.

mod common;

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use x0_lab::{Lab, traffic};

/// Messages until one contains `want` (or the wait is over); returns all of them.
fn until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        sock.set_read_timeout(Some(
            within
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = msg.lines().any(|l| l == want);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no {want} within {within:?}; got {got:?}");
}

fn signal(lab: &Lab, router: &str, sig: Signal) {
    let pid = lab.pid(router).expect("running");
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[test]
fn the_dataplane_speaks_systemds_notify_protocol() {
    let lab = common::lab("line.toml", |_| {});
    let h2 = common::addr(&lab, "h2", false);
    lab.stop_dataplane("r1").unwrap();
    let path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let path = path.to_string_lossy().into_owned();
    // A 300 ms watchdog: pings every 150 ms.
    let envs = [
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", "300000"),
    ];
    lab.start_dataplane_env("r1", &[], &envs).unwrap();
    let ready = until(&sock, "READY=1", Duration::from_secs(15));
    let last = ready.last().unwrap();
    assert!(last.contains("STATUS=forwarding on 2 interfaces"), "{last}");
    // Ready means forwarding: the ready file is there and h1 reaches h2 at once.
    assert!(lab.file("r1", "ready").exists());
    traffic::wait_reply(&lab, "h1", h2, Duration::from_millis(500)).unwrap();

    let start = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        until(&sock, "WATCHDOG=1", Duration::from_secs(1));
        pings += 1;
    }
    let each = start.elapsed() / pings;
    assert!(
        each < Duration::from_millis(250),
        "a ping every {each:?} for a 300 ms watchdog"
    );

    signal(&lab, "r1", Signal::SIGHUP);
    let seen = until(&sock, "RELOADING=1", Duration::from_secs(5));
    assert!(!seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    until(&sock, "READY=1", Duration::from_secs(5));

    signal(&lab, "r1", Signal::SIGTERM);
    until(&sock, "STOPPING=1", Duration::from_secs(5));
}

#[test]
fn logs_suit_the_journal_and_log_shippers() {
    let lab = common::lab("line.toml", |_| {});
    for (envs, json) in [
        (vec![("JOURNAL_STREAM", "8:12345")], false),
        (vec![("X0_LOG_FORMAT", "json")], true),
    ] {
        lab.stop_dataplane("r1").unwrap();
        let _ = std::fs::remove_file(lab.file("r1", "log"));
        lab.start_dataplane_env("r1", &[], &envs).unwrap();
        lab.wait_ready("r1", Duration::from_secs(15)).unwrap();
        let log = lab.dataplane_log("r1");
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{log}");
        for line in lines {
            if json {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
            } else {
                // The journal stamps lines itself: they start with the level.
                let level = line.split_whitespace().next().unwrap_or("");
                assert!(
                    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                    "{line}"
                );
                assert!(level != "ERROR", "a restart logs no error: {line}");
            }
        }
    }
}
