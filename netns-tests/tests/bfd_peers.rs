//! BFD to a neighbour no route uses (AddBfdPeer / RemoveBfdPeer through x0ctl) on the
//! diamond without routes: both ends add each other and the session comes up; bad peers
//! are refused by field and reason; removing it ends the session.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use x0_lab::Lab;

fn session_state(lab: &Lab, router: &str, peer: &str) -> Option<String> {
    let out = lab.x0ctl(router, &["--json", "bfd", "list"]).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["peer"] == peer)
        .and_then(|s| s["state"].as_str().map(String::from))
}

#[test]
fn bfd_peers_added_through_the_api_come_up_and_go() {
    let lab = common::lab("diamond.toml", |t| *t = t.clone().discovering());
    assert_eq!(
        session_state(&lab, "r1", "198.18.12.2"),
        None,
        "no route, no session"
    );
    let add = |r: &str, a: &str, i: &str| lab.x0ctl(r, &["bfd", "add", a, "--interface", i]);
    assert!(add("r1", "198.18.12.2", "eth1").unwrap().contains("added"));
    assert!(
        add("r1", "198.18.12.2", "eth1")
            .unwrap()
            .contains("already")
    );
    add("r2", "198.18.12.1", "eth0").unwrap();
    let start = Instant::now();
    while session_state(&lab, "r1", "198.18.12.2").as_deref() != Some("Up") {
        assert!(start.elapsed() < Duration::from_secs(5), "r1-r2 BFD not up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        session_state(&lab, "r2", "198.18.12.1").as_deref(),
        Some("Up")
    );

    // Refused, naming what is wrong; nothing changes.
    let err = |r: &str, args: &[&str]| lab.x0ctl(r, args).unwrap_err().to_string();
    let off = err("r1", &["bfd", "add", "198.18.1.2", "--interface", "eth0"]);
    assert!(
        off.contains("FailedPrecondition") && off.contains("BFD is off on eth0"),
        "{off}"
    );
    let unknown = err("r1", &["bfd", "add", "198.18.12.2", "--interface", "eth9"]);
    assert!(
        unknown.contains("InvalidArgument") && unknown.contains("eth9"),
        "{unknown}"
    );
    let bad = err("r1", &["bfd", "add", "nope", "--interface", "eth1"]);
    assert!(
        bad.contains("address") && bad.contains("not an IP address"),
        "{bad}"
    );
    let never = err(
        "r1",
        &["bfd", "remove", "198.18.13.3", "--interface", "eth2"],
    );
    assert!(never.contains("NotFound"), "{never}");
    assert_eq!(session_state(&lab, "r1", "198.18.13.3"), None);

    // Removed: no route holds it, so the session ends (the BFD thread takes the word).
    let remove = ["bfd", "remove", "198.18.12.2", "--interface", "eth1"];
    lab.x0ctl("r1", &remove).unwrap();
    let start = Instant::now();
    while session_state(&lab, "r1", "198.18.12.2").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "session still listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
