//! Six routers, two hosts, a brain per router exchanging signed link state over mutual
//! TLS: every router gets the k-disjoint next-hop sets an independent computation on the
//! whole topology expects; a remote link failure and a node failure are repaired with the
//! stream's outage measured; killing a brain changes nothing, and it comes back from disk.

mod common;

use std::time::{Duration, Instant};

use common::six::{ROUTERS, converge, expected, installed, six_with_brains};
use x0_brain::config::Mode;
use x0_lab::{
    Lab,
    faults::{self, Failure},
    traffic,
};

#[test]
fn brains_converge_and_repair_a_remote_link_failure() {
    let lab = six_with_brains();
    let took = converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    eprintln!("initial convergence: {took:?}");
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
    // Every router has several next hops to the far host where the mesh allows.
    let got = installed(&lab, &ROUTERS);
    assert!(got["r1"]["198.18.2.0/24"].len() >= 2, "{got:#?}");

    // r4 - r6 carries h1 -> h2 (r1-r2-r4-r6 is the cheapest) and is not r1's.
    let want = expected(&lab, &[("r4", "r6")], &[]);
    let (report, failed_at, reconverged) = std::thread::scope(|s| {
        let stream = s.spawn(|| traffic::udp_stream(&lab, "h1", "h2", h2, 9200, 40_000, 10_000));
        std::thread::sleep(Duration::from_millis(1000));
        let at = Instant::now();
        faults::fail(&lab, "r4", "r6", Failure::Carrier).unwrap();
        let reconverged = converge(&lab, &want, Duration::from_secs(30));
        (stream.join().unwrap().unwrap(), at, reconverged)
    });
    let _ = failed_at;
    let detection = lab
        .brain_log("r4")
        .lines()
        .any(|l| l.contains("adjacency") && l.contains("neighbor=r6") && l.contains("up=false"));
    assert!(detection, "r4's brain saw r6 go:\n{}", lab.brain_log("r4"));
    eprintln!(
        "remote link failure r4-r6: new paths everywhere after {reconverged:?}; stream: {} of {} lost, outage {:?}",
        report.lost,
        report.sent,
        report.outage()
    );
    assert!(
        report.outage() < Duration::from_millis(500),
        "local failover bridges the gap: {report:?}"
    );
    // The incident is in r1's knowledge base, repaired, with its time to repair.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s: serde_json::Value = serde_json::from_str(
            &lab.x0ctl_at(
                "r1",
                "https://127.0.0.1:7444",
                &["--json", "brain", "status"],
            )
            .unwrap(),
        )
        .unwrap();
        let done = s["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["subject"] == "r4-r6" && i["repaired_unix_ns"].as_u64() > Some(0));
        if done {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no repaired incident for r4-r6: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let incident = status["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subject"] == "r4-r6")
        .unwrap();
    assert_eq!(
        (incident["kind"].as_str(), incident["success"].as_bool()),
        (Some("link-lost"), Some(true))
    );
    let mttr = status["repair_times"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "link-lost")
        .expect("an MTTR");
    eprintln!(
        "r1's knowledge base: link-lost r4-r6 repaired; time to repair p50 {} ms (from r1's detection to its new paths)",
        mttr["p50_ms"]
    );
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
}

#[test]
fn brains_route_around_a_failed_router_and_fail_static_without_brains() {
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    let h2 = common::addr(&lab, "h2", false);

    // Killing a brain changes nothing in the forwarding.
    let before = installed(&lab, &ROUTERS);
    lab.stop_brain("r1", true).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(installed(&lab, &ROUTERS), before);
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
    // Back from disk (its record sequence) without pushing anything.
    let seq_before: u64 = std::fs::read_to_string(lab.dir.join("brain-state/r1/sequence"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let log_len = lab.brain_log("r1").len();
    lab.start_brain("r1", Mode::Enforce).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let log = lab.brain_log("r1")[log_len..].to_string();
    assert!(
        !log.contains("next-hop sets updated"),
        "a restart pushes nothing:\n{log}"
    );
    // Its own record coming back from the neighbours is no reason to originate again.
    let originated = log.matches("originated a link-state record").count();
    assert!(
        originated <= 2,
        "{originated} records originated after the restart:\n{log}"
    );
    let seq_after: u64 = std::fs::read_to_string(lab.dir.join("brain-state/r1/sequence"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(seq_after > seq_before, "the sequence carried on from disk");
    assert_eq!(installed(&lab, &ROUTERS), before);

    // r5 dies: every interface down, its daemons gone.
    lab.stop_brain("r5", true).unwrap();
    lab.kill_dataplane("r5").unwrap();
    for l in lab
        .topo
        .links
        .iter()
        .filter(|l| l.a.node == "r5" || l.b.node == "r5")
    {
        let end = if l.a.node == "r5" { &l.a } else { &l.b };
        x0_lab::netns::exec_ok(&lab.ns("r5"), &["ip", "link", "set", &end.iface, "down"]).unwrap();
    }
    let took = converge(&lab, &expected(&lab, &[], &["r5"]), Duration::from_secs(30));
    eprintln!("router r5 failed: new paths everywhere after {took:?}");
    let got = installed(&lab, &["r1", "r2", "r3", "r4", "r6"]);
    for (r, routes) in &got {
        for (p, via) in routes {
            assert!(
                !via.iter().any(|h| h.contains(".5@") || h.contains("::5@")),
                "{r} still sends {p} to r5: {via:?}\n{}",
                lab.brain_log(r)
            );
        }
    }
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
    let status = lab
        .x0ctl_at("r1", "https://127.0.0.1:7444", &["brain", "status"])
        .unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.contains("router-lost") && l.split_whitespace().any(|w| w == "r5")),
        "{status}"
    );
    // The knowledge base survives a restart of the brain.
    lab.stop_brain("r1", false).unwrap();
    lab.start_brain("r1", Mode::Enforce).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let status = lab
        .x0ctl_at("r1", "https://127.0.0.1:7444", &["brain", "status"])
        .unwrap();
    assert!(
        status.lines().any(|l| l.contains("router-lost")
            && l.split_whitespace().any(|w| w == "r5")
            && l.contains("repaired in")),
        "{status}"
    );
}

#[test]
fn bad_link_state_records_are_rejected_and_counted() {
    use prost::Message;
    use x0_proto::brain::v1::{self as pb, brain_client::BrainClient};
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    let status = |lab: &Lab| -> serde_json::Value {
        serde_json::from_str(
            &lab.x0ctl_at(
                "r1",
                "https://198.18.12.2:7444",
                &["--json", "brain", "status"],
            )
            .unwrap(),
        )
        .unwrap()
    };
    let before = status(&lab);
    assert_eq!(before["router"], "r2");
    assert_eq!(before["routers"].as_array().unwrap().len(), 6, "{before}");
    assert!(
        before["paths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["prefix"] == "198.18.2.0/24")
    );

    // r1's brain, misbehaving: speaking for r3, replaying an old record, sending garbage.
    let files = lab.pki().files("brain-r1");
    let target = x0ctl::client::Target {
        addr: "https://198.18.12.2:7444".into(),
        svid: Some(files.clone()),
        pq: x0_identity::PqMode::Required,
        server_id: None,
    };
    let answers = x0_lab::netns::in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let signer = x0_brain::linkstate::lsp::Signer::from_files(&files)?;
                let conn = x0ctl::client::connect(&target).await?;
                let mut b = BrainClient::new(conn.channel);
                let db = b
                    .get_link_state(pb::GetLinkStateRequest {})
                    .await?
                    .into_inner();
                let held = db
                    .records
                    .iter()
                    .map(|s| pb::LinkStateRecord::decode(s.record.as_ref()).unwrap())
                    .find(|r| r.originator == "r1")
                    .expect("r1's record");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64;
                let mut forged = held.clone();
                forged.originator = "r3".into();
                forged.adjacencies.retain(|a| a.neighbor != "r3");
                forged.originated_unix_ns = now;
                let mut newer = held.clone();
                newer.sequence += 100;
                newer.originated_unix_ns = now;
                let mut older = held.clone();
                older.sequence += 50;
                older.originated_unix_ns = now;
                let mut garbage = signer.sign(&held)?;
                garbage.record = vec![0xde; 64].into();
                let mut out = Vec::new();
                for s in [
                    signer.sign(&forged)?,
                    signer.sign(&newer)?,
                    signer.sign(&older)?,
                    garbage,
                ] {
                    let r = b
                        .flood(pb::FloodRequest { records: vec![s] })
                        .await?
                        .into_inner();
                    out.push(
                        r.rejected
                            .first()
                            .map(|x| x.reason.clone())
                            .unwrap_or_else(|| "accepted".into()),
                    );
                }
                Ok(out)
            })
    })
    .unwrap();
    assert_eq!(answers, ["forged", "accepted", "stale", "malformed"]);
    let after = status(&lab);
    for reason in ["forged", "stale", "malformed"] {
        let (b, a) = (
            before["rejected"][reason].as_u64().unwrap_or(0),
            after["rejected"][reason].as_u64().unwrap_or(0),
        );
        assert!(a > b, "{reason} counted: {before} -> {after}");
    }
    // r1's brain noticed a newer record of its own name and carried on above it.
    std::thread::sleep(Duration::from_secs(2));
    let seq: u64 = std::fs::read_to_string(lab.dir.join("brain-state/r1/sequence"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(seq > 100, "sequence {seq}");
}

#[test]
fn a_flapping_link_is_drained_and_the_mesh_routes_around_it() {
    let lab = six_with_brains();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    // r2 - r4 flaps: four carrier losses in a few seconds.
    for _ in 0..4 {
        faults::fail(&lab, "r2", "r4", Failure::Carrier).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        faults::repair(&lab, "r2", "r4", Failure::Carrier).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    // r2's brain drains it: its cost (11) times 10 in the mesh every brain sees.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s: serde_json::Value = serde_json::from_str(
            &lab.x0ctl_at(
                "r1",
                "https://198.18.12.2:7444",
                &["--json", "brain", "status"],
            )
            .unwrap(),
        )
        .unwrap();
        let drained = s["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "r2-r4 (110)");
        let confirmed = s["incidents"].as_array().unwrap().iter().any(|i| {
            i["kind"] == "link-flapping" && i["subject"] == "r2-r4" && i["success"] == true
        });
        if drained && confirmed {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {s}\n{}",
            lab.brain_log("r2")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status["mapek"].as_str().unwrap().contains("r4"), "{status}");
    let incident = status["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "link-flapping")
        .unwrap();
    assert_eq!(incident["strategy"], "drain-link");

    // Every router routes as the topology with that cost says.
    let text = std::fs::read_to_string(lab.dir.join("topology.toml")).unwrap();
    let mut doc: toml::Value = toml::from_str(&text).unwrap();
    for link in doc["link"].as_array_mut().unwrap() {
        if link["a"]["node"].as_str() == Some("r2") && link["b"]["node"].as_str() == Some("r4") {
            link.as_table_mut()
                .unwrap()
                .insert("cost".into(), toml::Value::Integer(110));
        }
    }
    std::fs::write(
        lab.dir.join("topology.toml"),
        toml::to_string(&doc).unwrap(),
    )
    .unwrap();
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(20));
    let h2 = common::addr(&lab, "h2", false);
    assert_eq!(traffic::ping(&lab, "h1", h2, 5).unwrap(), 5);
}

#[test]
fn an_orchestrator_pushes_a_whole_topology_static_mode() {
    let lab = common::lab("diamond.toml", |_| {});
    lab.start_brain("r1", Mode::Enforce).unwrap();
    let brain = "https://127.0.0.1:7444";
    let status = |lab: &Lab| -> serde_json::Value {
        serde_json::from_str(
            &lab.x0ctl_at("r1", brain, &["--json", "brain", "status"])
                .unwrap(),
        )
        .unwrap()
    };
    // Alone (no other brains), link state knows only r1: nothing to decide, nothing changed.
    std::thread::sleep(Duration::from_secs(4));
    let s = status(&lab);
    assert_eq!(
        (s["source"].as_str(), s["routers"].as_array().unwrap().len()),
        (Some("link-state"), 1),
        "{s}"
    );
    let first_hop = |lab: &Lab| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&lab.x0ctl("r1", &["--json", "route", "list"]).unwrap()).unwrap();
        let r = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == "198.18.2.0/24")
            .unwrap()
            .clone();
        r["next_hops"][0]["gateway"].as_str().unwrap().to_string()
    };
    assert_eq!(first_hop(&lab), "198.18.12.2", "the config's route");

    // The orchestrator's topology: the way through r3 is cheaper.
    let mut doc: toml::Value =
        toml::from_str(&std::fs::read_to_string(lab.dir.join("topology.toml")).unwrap()).unwrap();
    for link in doc["link"].as_array_mut().unwrap() {
        if [&link["a"]["node"], &link["b"]["node"]]
            .iter()
            .any(|n| n.as_str() == Some("r3"))
        {
            link.as_table_mut()
                .unwrap()
                .insert("cost".into(), toml::Value::Integer(5));
        }
    }
    let file = lab.dir.join("orchestrator-topology.toml");
    std::fs::write(&file, toml::to_string(&doc).unwrap()).unwrap();
    let out = lab
        .x0ctl_at(
            "r1",
            brain,
            &["brain", "set-topology", file.to_str().unwrap()],
        )
        .unwrap();
    assert!(out.contains("4 routers, 4 links"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while first_hop(&lab) != "198.18.13.3" {
        assert!(
            Instant::now() < deadline,
            "the static plan was not pushed:\n{}",
            lab.brain_log("r1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bad input changes nothing.
    std::fs::write(&file, "[[router]]\nname = \"elsewhere\"\n").unwrap();
    let err = lab
        .x0ctl_at(
            "r1",
            brain,
            &["brain", "set-topology", file.to_str().unwrap()],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("InvalidArgument") && err.contains("no router named \"r1\""),
        "{err}"
    );
    // Kept across a restart.
    lab.stop_brain("r1", false).unwrap();
    lab.start_brain("r1", Mode::Enforce).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&lab)["source"], "static");
    // Back to link state: routes it cannot decide on stay as they are (fail-static).
    lab.x0ctl_at("r1", brain, &["brain", "set-topology", "--clear"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&lab)["source"], "link-state");
    assert_eq!(first_hop(&lab), "198.18.13.3");
}

/// Costs are measured: with r2 - r4 taken to carry 1 Mbit/s, a stream from h1 to h2
/// across it loads it, r2's brain measures the load from its dataplane's stats stream,
/// advertises a higher cost, and every brain sees it. The round trip to each neighbour's
/// brain is measured too (no delay emulation in this kernel: it is small and does not
/// move the cost, which the hysteresis keeps at the configured one).
#[test]
fn measured_load_raises_the_advertised_cost() {
    let lab = common::lab("six.toml", |t| {
        for l in &mut t.links {
            if l.a.node == "r2" && l.b.node == "r4" {
                l.capacity_mbps = Some(1);
            }
        }
    });
    for r in ROUTERS {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    let status = |router: &str, at: &str| -> serde_json::Value {
        serde_json::from_str(
            &lab.x0ctl_at(router, at, &["--json", "brain", "status"])
                .unwrap(),
        )
        .unwrap()
    };
    // Five probes (a second apart) before the round trip counts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (quiet, q) = loop {
        let quiet = status("r2", "https://198.18.12.2:7444");
        let q = quiet["link_quality"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["neighbor"] == "r4")
            .unwrap()
            .clone();
        if q["rtt_ms"].as_f64().unwrap() > 0.0 {
            break (quiet, q);
        }
        assert!(Instant::now() < deadline, "no latency measured: {quiet}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(q["cost"], 11, "an idle near link keeps its cost: {quiet}");

    // ~1,000 packets/s of 74 bytes on the wire: about 0.6 Mbit/s
    let h2 = common::addr(&lab, "h2", false);
    std::thread::scope(|scope| {
        let stream = scope.spawn(|| traffic::udp_stream(&lab, "h1", "h2", h2, 9100, 12_000, 1_000));
        let deadline = Instant::now() + Duration::from_secs(12);
        let (seen_by_r2, seen_by_r1) = loop {
            let r2 = status("r2", "https://198.18.12.2:7444");
            let r4 = r2["link_quality"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["neighbor"] == "r4")
                .unwrap()
                .clone();
            let r1 = status("r1", "https://198.18.12.2:7444");
            let in_mesh = r1["links"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| {
                    l.as_str()?
                        .strip_prefix("r2-r4 (")?
                        .strip_suffix(')')?
                        .parse::<u32>()
                        .ok()
                })
                .next();
            if r4["cost"].as_u64().unwrap() >= 14 && in_mesh.is_some_and(|c| c >= 14) {
                break (r4, in_mesh.unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "the load did not show: {r4} / mesh cost {in_mesh:?}\n{}",
                lab.brain_log("r2")
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        eprintln!("r2 measures r4's link: {seen_by_r2}; r1's mesh has cost {seen_by_r1}");
        assert!(
            seen_by_r2["utilisation"].as_f64().unwrap() >= 0.1,
            "{seen_by_r2}"
        );
        let report = stream.join().unwrap().unwrap();
        assert!(report.received > 0, "{report:?}");
    });
}

/// A neighbour's brain that keeps flooding forged records is quarantined by policy: r2's
/// brain (allowed to set policy on its dataplane here) puts a deny rule for r1's prefixes
/// and link addresses in front of the operator's rules, confirms it by reading the policy
/// back, and records the incident with its strategy.
#[test]
fn a_brain_flooding_forged_records_is_quarantined_by_policy() {
    use x0_proto::brain::v1::{self as pb, brain_client::BrainClient};
    let lab = common::lab("six.toml", |_| {});
    let mut api = lab.api_config("r2").unwrap();
    api.allow[1].rpcs.push("policy".into());
    lab.set_api_config("r2", &api).unwrap();
    lab.stop_dataplane("r2").unwrap();
    lab.start_dataplane("r2").unwrap();
    lab.wait_ready("r2", Duration::from_secs(20)).unwrap();
    for r in ROUTERS {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    converge(&lab, &expected(&lab, &[], &[]), Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3)); // a quiet baseline for the detector

    // r1's brain speaks for r3, again and again.
    let files = lab.pki().files("brain-r1");
    let target = x0ctl::client::Target {
        addr: "https://198.18.12.2:7444".into(),
        svid: Some(files.clone()),
        pq: x0_identity::PqMode::Required,
        server_id: None,
    };
    let rejected = x0_lab::netns::in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let signer = x0_brain::linkstate::lsp::Signer::from_files(&files)?;
                let conn = x0ctl::client::connect(&target).await?;
                let mut b = BrainClient::new(conn.channel);
                let mut rejected = 0;
                for i in 0..10u64 {
                    let forged = pb::LinkStateRecord {
                        originator: "r3".into(),
                        sequence: 1_000 + i,
                        originated_unix_ns: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)?
                            .as_nanos() as u64,
                        lifetime_s: 60,
                        adjacencies: vec![],
                        prefixes: vec![],
                    };
                    let r = b
                        .flood(pb::FloodRequest {
                            records: vec![signer.sign(&forged)?],
                        })
                        .await?
                        .into_inner();
                    rejected += r.rejected.iter().filter(|x| x.reason == "forged").count();
                }
                anyhow::Ok(rejected)
            })
    })
    .unwrap();
    assert_eq!(rejected, 10);

    let deadline = Instant::now() + Duration::from_secs(15);
    let policy = loop {
        let p: serde_json::Value =
            serde_json::from_str(&lab.x0ctl("r2", &["--json", "policy", "get"]).unwrap()).unwrap();
        let first = p["rules"][0]["from"].as_str().unwrap_or("").to_string();
        if first == "brain-quarantine-r1" {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "r1 not quarantined: {p}\n{}",
            lab.brain_log("r2")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(policy["rules"][0]["action"], "deny", "{policy}");
    let identity = policy["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "brain-quarantine-r1")
        .unwrap()
        .clone();
    let prefixes: Vec<&str> = identity["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(prefixes.contains(&"198.18.1.0/24"), "{identity}");
    assert!(prefixes.contains(&"198.18.12.1/32"), "{identity}");
    let status: serde_json::Value = serde_json::from_str(
        &lab.x0ctl_at(
            "r1",
            "https://198.18.12.2:7444",
            &["--json", "brain", "status"],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        status["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "router-misbehaving"
                && i["subject"] == "r1"
                && i["strategy"] == "quarantine-node"
                && i["success"] == true),
        "{status}"
    );
    assert!(
        status["mapek"].as_str().unwrap().contains("[\"r1\"]"),
        "{status}"
    );
}
