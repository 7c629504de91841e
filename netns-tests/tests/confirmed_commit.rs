//! Confirmed commits on the diamond: an orchestrator in h1 manages r4 across the mesh and
//! r1, its first hop. A policy on r1 that denies the orchestrator's own new flows cuts it
//! off from r4; not confirmed, r1 undoes it by itself and the orchestrator reaches r4
//! again. A confirmed change stays; a restart in between keeps the deadline; a pending
//! change holds its prefixes; an explicit rollback restores the config file's route.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use x0_lab::{Lab, lab::API_PORT, pki::TRUST_DOMAIN, traffic};

/// r1 on h1's link (its own traffic is delivered, never judged by the policy it enforces).
const R1: &str = "198.18.1.1";
/// r4 on the r2-r4 link, two hops from h1.
const R4: &str = "198.18.24.4";

/// x0ctl in h1 against `router` at `addr`, checking its SPIFFE ID.
fn orchestrator(lab: &Lab, router: &str, addr: &str, args: &[&str]) -> anyhow::Result<String> {
    let id = format!("spiffe://{TRUST_DOMAIN}/router/{router}");
    let url = format!("https://{addr}:{API_PORT}");
    let mut all = vec!["--server-id", id.as_str()];
    all.extend_from_slice(args);
    lab.x0ctl_at("h1", &url, &all)
}

fn r1_json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&orchestrator(lab, "r1", R1, &all).unwrap()).unwrap()
}

fn commits(lab: &Lab) -> Vec<Value> {
    r1_json(lab, &["commit", "list"])
        .as_array()
        .unwrap()
        .clone()
}

/// The policy as set, without its counters and generation.
fn policy(lab: &Lab) -> Value {
    let mut p = r1_json(lab, &["policy", "get"]);
    p.as_object_mut().unwrap().remove("generation");
    p
}

fn lab() -> Lab {
    let lab = common::lab("diamond.toml", |_| {});
    for v6 in [false, true] {
        let h2 = common::addr(&lab, "h2", v6);
        traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(10)).unwrap();
    }
    lab
}

/// Writes a policy file in r1's lab directory; its path.
fn policy_file(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.file("r1", name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// New flows from h1 (r1's eth0) denied: the orchestrator's own connections to r4.
const DENY_H1: &str = "[[default]]\ninterface = \"eth0\"\naction = \"deny\"\n";

#[test]
fn an_unconfirmed_policy_that_cuts_the_orchestrator_off_undoes_itself() {
    let lab = lab();
    assert!(orchestrator(&lab, "r4", R4, &["info"]).is_ok());
    let before = policy(&lab);
    let file = policy_file(&lab, "deny.toml", DENY_H1);
    let set = r1_json(&lab, &["policy", "set", &file, "--confirm-within", "12"]);
    let made = Instant::now();
    let id = set["commit"].as_u64().unwrap();
    assert!(id > 0, "{set}");
    // Cut off: a new connection to r4 gets no answer (r1 drops its SYN).
    let cut = orchestrator(&lab, "r4", R4, &["info"]).expect_err("r4 still reachable");
    assert!(cut.to_string().contains("no answer"), "{cut:#}");
    assert!(made.elapsed() < Duration::from_secs(12), "checked too late");
    let pending = commits(&lab);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["id"], id);
    assert_eq!(pending[0]["kind"], "policy");
    let by = pending[0]["by"].as_str().unwrap();
    assert!(
        by.starts_with("spiffe://") && by.contains("/orchestrator/"),
        "{by}"
    );
    // Nobody confirms: r1 rolls back by itself, and the orchestrator reaches r4 again.
    while orchestrator(&lab, "r4", R4, &["info"]).is_err() {
        assert!(
            made.elapsed() < Duration::from_secs(30),
            "r4 still unreachable"
        );
    }
    assert!(
        made.elapsed() >= Duration::from_secs(12),
        "rolled back before the deadline"
    );
    assert_eq!(policy(&lab), before);
    assert!(commits(&lab).is_empty());
    assert!(
        lab.dataplane_log("r1")
            .contains("not confirmed in time: rolled back")
    );
}

#[test]
fn a_confirmed_commit_stays_and_a_restart_keeps_the_deadline() {
    let lab = lab();
    let before = policy(&lab);
    // A pending batch holds its prefix; confirmed, it stays.
    let batch = policy_file(
        &lab,
        "batch.txt",
        "add 203.0.113.0/24 via 198.18.12.2@eth1\n",
    );
    let made = r1_json(&lab, &["route", "batch", &batch, "--confirm-within", "60"]);
    let id = made["commit"].as_u64().unwrap();
    let held = orchestrator(&lab, "r1", R1, &["route", "del", "203.0.113.0/24"])
        .expect_err("a held prefix changed");
    assert!(held.to_string().contains("FailedPrecondition"), "{held:#}");
    assert!(
        held.to_string().contains(&format!("pending commit {id}")),
        "{held:#}"
    );
    orchestrator(&lab, "r1", R1, &["commit", "confirm", &id.to_string()]).unwrap();
    assert!(commits(&lab).is_empty());
    let again = orchestrator(&lab, "r1", R1, &["commit", "confirm", &id.to_string()]);
    assert!(again.unwrap_err().to_string().contains("NotFound"));
    let routes = orchestrator(&lab, "r1", R1, &["route", "list"]).unwrap();
    assert!(routes.contains("203.0.113.0/24"), "{routes}");

    // A pending policy survives a restart with its deadline, and is rolled back after it.
    let deny_r2 = "[[default]]\ninterface = \"eth1\"\naction = \"deny\"\n";
    let file = policy_file(&lab, "other.toml", deny_r2);
    let set = r1_json(&lab, &["policy", "set", &file, "--confirm-within", "8"]);
    let deadline = commits(&lab)[0]["deadline_unix_ns"].clone();
    assert_ne!(policy(&lab), before);
    lab.stop_dataplane("r1").unwrap();
    lab.start_dataplane("r1").unwrap();
    lab.wait_ready("r1", Duration::from_secs(10)).unwrap();
    let after = commits(&lab);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], set["commit"]);
    assert_eq!(after[0]["deadline_unix_ns"], deadline);
    let wait = Instant::now();
    while !commits(&lab).is_empty() {
        assert!(
            wait.elapsed() < Duration::from_secs(20),
            "never rolled back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(policy(&lab), before);
}

#[test]
fn a_rollback_restores_what_the_batch_replaced_and_removed() {
    let lab = lab();
    let routes = || {
        let v = r1_json(&lab, &["route", "list"]);
        v.as_array().unwrap().clone()
    };
    let before = routes();
    // Replace a route of r1's config file, delete another, add a new one.
    let batch = policy_file(
        &lab,
        "batch.txt",
        "replace 198.18.2.0/24 via 198.18.13.3@eth2\n\
         del 198.18.34.0/24\n\
         add 203.0.113.0/24 via 198.18.12.2@eth1\n",
    );
    let made = r1_json(&lab, &["route", "batch", &batch, "--confirm-within", "60"]);
    assert_ne!(routes(), before);
    let id = made["commit"].as_u64().unwrap().to_string();
    orchestrator(&lab, "r1", R1, &["commit", "rollback", &id]).unwrap();
    assert_eq!(routes(), before, "the config's routes, origin and all");
    assert!(commits(&lab).is_empty());
    // Bad input changes nothing: a deadline beyond a day, a commit that is not pending.
    let long = orchestrator(
        &lab,
        "r1",
        R1,
        &["route", "batch", &batch, "--confirm-within", "86401"],
    )
    .unwrap_err();
    assert!(long.to_string().contains("confirm_within_s"), "{long:#}");
    assert_eq!(routes(), before);
    let none = orchestrator(&lab, "r1", R1, &["commit", "rollback", "999"]).unwrap_err();
    assert!(none.to_string().contains("not pending"), "{none:#}");
}
