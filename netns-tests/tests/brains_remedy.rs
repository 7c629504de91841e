//! Remediation in the six-router lab: a lossy link on the primary path (h1 - r1 - r2 - r4 -
//! r6 - h2) is found by the brains at its ends, drained (its cost raised: the mesh routes
//! around it) and restored after the loss ends; the incident is kept across a brain
//! restart and reads as words through x0ctl. A load surge changes nothing; in observe mode
//! the same decision is recorded and nothing changes.

mod common;

use std::time::{Duration, Instant};

use common::six::{ROUTERS, converge, expected, six_with_brains};
use serde_json::Value;
use x0_brain::config::Mode;
use x0_lab::{Lab, faults, traffic};

const BRAIN: &str = "https://127.0.0.1:7444";
/// r2-r4's cost in six.toml, and at least what a drain makes of it (x10 of the measured
/// cost, itself at least the configured one).
const R2_R4: u64 = 11;
const DRAINED: u64 = 110;

fn ctl(lab: &Lab, router: &str, args: &[&str]) -> String {
    lab.x0ctl_at(router, BRAIN, args).unwrap()
}

fn status(lab: &Lab, router: &str) -> Value {
    serde_json::from_str(&ctl(lab, router, &["--json", "brain", "status"])).unwrap()
}

fn incidents(lab: &Lab, router: &str) -> Vec<Value> {
    let out = ctl(lab, router, &["--json", "brain", "incidents"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {out}"))
        .clone()
}

/// None while the brain does not answer.
fn try_incidents(lab: &Lab, router: &str) -> Option<Vec<Value>> {
    let out = lab
        .x0ctl_at(router, BRAIN, &["--json", "brain", "incidents"])
        .ok()?;
    serde_json::from_str::<Value>(&out)
        .ok()?
        .as_array()
        .cloned()
}

/// Polls until `ok` gives something (or panics with `what` and the last status).
fn wait_for<T>(lab: &Lab, router: &str, what: &str, secs: u64, ok: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{router}: {what}: {:#}\n{}",
            status(lab, router),
            lab.brain_log(router)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The cost `router` advertises for its link to `neighbor`.
fn cost(lab: &Lab, router: &str, neighbor: &str) -> u64 {
    let s = status(lab, router);
    let l = s["link_quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["neighbor"] == neighbor);
    l.unwrap()["cost"].as_u64().unwrap()
}

/// r1's first next hop towards h2.
fn r1_first_hop(lab: &Lab) -> String {
    let s = status(lab, "r1");
    let p = s["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["prefix"] == "198.18.2.0/24");
    p.unwrap()["next_hops"][0].as_str().unwrap().to_string()
}

fn lossy(lab: &Lab, per_million: u32) {
    faults::lossy_ingress(lab, "r2", "eth3", per_million).unwrap();
    faults::lossy_ingress(lab, "r4", "eth1", per_million).unwrap();
}

fn repaired(lab: &Lab) {
    faults::forward_again(lab, "r2", "eth3").unwrap();
    faults::forward_again(lab, "r4", "eth1").unwrap();
}

/// The share of a 2 s, 500 packets/s stream from h1 to h2 that was lost.
fn stream_loss(lab: &Lab) -> f64 {
    let h2 = lab.topo.addr_of("h2", false).unwrap();
    let r = traffic::udp_stream(lab, "h1", "h2", h2, 9600, 1000, 500).unwrap();
    r.lost as f64 / 1000.0
}

/// The brains' routes in force (all of them enforce), r1 on the primary path, and calm
/// intervals for the brains' analysis to compare against.
fn calm(lab: &Lab) {
    converge(lab, &expected(lab, &[], &[]), Duration::from_secs(30));
    settle(lab);
}

/// r1 on the primary path, then the calm intervals.
fn settle(lab: &Lab) {
    wait_for(lab, "r1", "the primary path via r2", 30, || {
        (r1_first_hop(lab) == "198.18.12.2@eth1").then_some(())
    });
    std::thread::sleep(Duration::from_secs(8));
}

#[test]
fn a_lossy_link_is_drained_traffic_moves_off_it_and_it_is_restored() {
    let lab = six_with_brains();
    calm(&lab);
    lossy(&lab, 100_000);
    // 10 % each way: BFD at 10 ms x 3 also goes down now and then (three in a row lost),
    // so the cause is a lossy link or a flapping one; either is drained.
    let found = |r: &str| {
        incidents(&lab, r).into_iter().find(|i| {
            (i["kind"] == "link-lossy" || i["kind"] == "link-down") && i["subject"] == "r2-r4"
        })
    };
    let incident = wait_for(&lab, "r4", "an incident on r2-r4, repaired", 20, || {
        found("r4").filter(|i| i["success"] == true)
    });
    assert_eq!(incident["causes"][0]["element"], "r2-r4", "{incident:#}");
    let ttr = incident["time_to_repair_ms"].as_u64().unwrap();
    assert!(ttr < 10_000, "{incident:#}");
    // Both ends found it; the mesh holds the drained cost once (the higher end's).
    wait_for(&lab, "r2", "r2 sees it too", 10, || found("r2"));
    assert!(
        cost(&lab, "r4", "r2") >= DRAINED,
        "{:#}",
        status(&lab, "r4")
    );
    wait_for(&lab, "r1", "the path around r2-r4", 10, || {
        (r1_first_hop(&lab) == "198.18.13.3@eth2").then_some(())
    });
    let loss = stream_loss(&lab);
    assert!(
        loss < 0.01,
        "the stream still crosses the lossy link: {loss}"
    );
    // The operator's view, in words.
    let id = incident["id"].as_u64().unwrap().to_string();
    let words = ctl(&lab, "r4", &["brain", "incident", &id]);
    for w in ["r2-r4", "BFD loss", "drained", "the mesh routes around it"] {
        assert!(words.contains(w), "{w:?} not in:\n{words}");
    }
    // The loss ends: after the hold-down the link is trusted again.
    repaired(&lab);
    wait_for(&lab, "r4", "r2-r4 restored", 40, || {
        found("r4").filter(|i| i["restored_unix_ns"].as_u64() > Some(0))
    });
    // The monitor's measured loss is a 30 s mean: the configured cost comes back after it.
    wait_for(&lab, "r4", "the configured cost back", 45, || {
        (cost(&lab, "r4", "r2") == R2_R4).then_some(())
    });
    wait_for(&lab, "r1", "the primary path back", 15, || {
        (r1_first_hop(&lab) == "198.18.12.2@eth1").then_some(())
    });
    // The incident survives a restart of the brain (the knowledge base is on disk).
    lab.stop_brain("r4", true).unwrap();
    lab.start_brain("r4", Mode::Enforce).unwrap();
    let again = wait_for(&lab, "r4", "the incident after a restart", 20, || {
        try_incidents(&lab, "r4")?
            .into_iter()
            .find(|i| i["id"] == incident["id"])
    });
    assert_eq!(again["id"], incident["id"]);
    assert_eq!(again["evidence"], incident["evidence"]);
}

#[test]
fn a_surge_changes_nothing_and_observe_mode_only_records_the_decision() {
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    // r2 and r4, the lossy link's ends, observe (their routes stay as they are).
    for r in ["r2", "r4"] {
        lab.stop_brain(r, false).unwrap();
        lab.start_brain(r, Mode::Observe).unwrap();
    }
    settle(&lab);
    // A legitimate load across the primary path: no incident anywhere.
    let h2 = lab.topo.addr_of("h2", false).unwrap();
    let since = x0_brain::linkstate::state::unix_ns(std::time::SystemTime::now());
    let bytes = x0_lab::tools::iperf3_tcp(&lab, ("h1", "h2"), h2, 8, None).unwrap();
    assert!(bytes > 10_000_000, "a surge of only {bytes} bytes");
    std::thread::sleep(Duration::from_secs(3));
    for r in ROUTERS {
        let found: Vec<Value> = incidents(&lab, r)
            .into_iter()
            .filter(|i| i["detected_unix_ns"].as_u64() >= Some(since))
            .collect();
        assert!(found.is_empty(), "{r} after a surge: {found:#?}");
    }
    // Observe mode: the same finding and decision, recorded; nothing drained.
    lossy(&lab, 100_000);
    // Found by subject: on 2 busy cores BFD on another link may go down now and then too
    // (a true incident of its own, seen once on r4-r6 while a build ran beside the lab).
    let incident = wait_for(&lab, "r4", "an observed incident on r2-r4", 20, || {
        incidents(&lab, "r4").into_iter().find(|i| {
            i["subject"] == "r2-r4" && (i["kind"] == "link-lossy" || i["kind"] == "link-down")
        })
    });
    assert_eq!(incident["strategy"], "drain-link");
    let outcome = incident["outcome"][0].as_str().unwrap();
    assert!(
        outcome.starts_with("observe mode: would drain"),
        "{incident:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    // Under 10 % loss BFD (10 ms x 3) loses three in a row now and then, and while the
    // link is down r1 routes around it: that is BFD, not a drain (r1's first hop is no
    // sign either way). What observe mode must not do is drain: neither end advertises a
    // drained cost, and the mesh as r1 sees it holds none.
    for (end, other) in [("r4", "r2"), ("r2", "r4")] {
        assert!(cost(&lab, end, other) < DRAINED, "{:#}", status(&lab, end));
    }
    let mesh = status(&lab, "r1")["links"].clone();
    let r2_r4 = mesh.as_array().unwrap().iter().filter_map(|l| l.as_str());
    for l in r2_r4.filter(|l| l.starts_with("r2-r4 ")) {
        let c: u64 = l
            .trim_start_matches("r2-r4 (")
            .trim_end_matches(')')
            .parse()
            .unwrap();
        assert!(c < DRAINED, "r1's mesh has a drained r2-r4: {l}");
    }
    repaired(&lab);
}
