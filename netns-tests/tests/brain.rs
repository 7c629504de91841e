//! x0-brain against a real dataplane: the plan for a whole topology (static mode) pushed
//! over mutual TLS as the brain's SVID, only the difference, observe changing nothing.

mod common;

use std::process::Command;

use x0_lab::{lab::API_ADDR, pki::tls_args, traffic};

fn brain(lab: &x0_lab::Lab, args: &[&str]) -> String {
    let bin = x0_lab::lab::default_dataplane_bin()
        .unwrap()
        .parent()
        .unwrap()
        .join("x0-brain");
    let files = lab.pki().files("brain-r1");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("r1")])
        .arg(bin)
        .args(args)
        .args([
            "--router",
            "r1",
            "--dataplane",
            &format!("https://{API_ADDR}"),
        ])
        .args(tls_args(&files))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "x0-brain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_brain_pushes_only_the_difference_and_observe_changes_nothing() {
    let lab = common::lab("diamond.toml", |_| {});
    lab.pki()
        .issue(
            "/brain/r1",
            "brain-r1",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    // The orchestrator's view: the path through r3 is cheaper.
    let topo = std::fs::read_to_string(lab.dir.join("topology.toml")).unwrap();
    let mut doc: toml::Value = toml::from_str(&topo).unwrap();
    for link in doc["link"].as_array_mut().unwrap() {
        let ends = [
            link["a"]["node"].as_str().unwrap().to_string(),
            link["b"]["node"].as_str().unwrap().to_string(),
        ];
        if ends.contains(&"r3".to_string()) {
            link.as_table_mut()
                .unwrap()
                .insert("cost".into(), toml::Value::Integer(5));
        }
    }
    let file = lab.dir.join("brain-topology.toml");
    std::fs::write(&file, toml::to_string(&doc).unwrap()).unwrap();
    let file = file.to_str().unwrap();

    // h2's subnets and those of the links r1 is not on (r2-r4, r3-r4), both families.
    let out = brain(&lab, &["push", "--topology", file, "--mode", "observe"]);
    assert!(out.contains("observe: 6 to replace, 0 unchanged"), "{out}");
    let api = lab
        .x0ctl("r1", &["route", "list", "--origin", "api"])
        .unwrap();
    assert!(api.contains("0 routes"), "observe changed nothing: {api}");

    let out = brain(&lab, &["push", "--topology", file, "--mode", "enforce"]);
    assert!(out.contains("enforce: 6 replaced, 0 unchanged"), "{out}");
    let routes: serde_json::Value = serde_json::from_str(
        &lab.x0ctl("r1", &["--json", "route", "list", "--origin", "api"])
            .unwrap(),
    )
    .unwrap();
    let v4 = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "198.18.2.0/24")
        .expect("pushed");
    assert_eq!(
        v4["next_hops"][0]["gateway"], "198.18.13.3",
        "r3 first: {v4}"
    );
    assert_eq!(
        v4["next_hops"][1]["gateway"], "198.18.12.2",
        "r2 as the backup: {v4}"
    );

    let out = brain(&lab, &["push", "--topology", file, "--mode", "enforce"]);
    assert!(
        out.contains("enforce: 0 replaced, 6 unchanged"),
        "only the difference: {out}"
    );

    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 10).unwrap(), 10);
    let log = lab.dataplane_log("r1");
    assert!(
        log.contains("spiffe://lab.x0tta6bl4/brain/r1"),
        "the brain connected with its SVID"
    );
}
