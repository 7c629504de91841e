//! The six-router lab with a brain beside every router (topologies/six.toml), and what
//! the brains should have installed, computed here from the topology file itself.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use x0_brain::{config::Mode, linkstate::mesh::Mesh, paths::plan::plan};
use x0_lab::Lab;

pub const ROUTERS: [&str; 6] = ["r1", "r2", "r3", "r4", "r5", "r6"];

pub type Routes = BTreeMap<String, Vec<String>>;

/// What every router should have, computed here from the topology file itself, without
/// the failed links and routers.
pub fn expected(
    lab: &Lab,
    failed_links: &[(&str, &str)],
    failed_routers: &[&str],
) -> BTreeMap<String, Routes> {
    let text = std::fs::read_to_string(lab.dir.join("topology.toml")).unwrap();
    let mut mesh = Mesh::parse(&text).unwrap();
    let name = |i: usize| mesh.names[i].clone();
    mesh.graph.links.retain(|&(a, b, _)| {
        let (a, b) = (name(a), name(b));
        !failed_links
            .iter()
            .any(|(x, y)| (a == *x && b == *y) || (a == *y && b == *x))
            && !failed_routers.contains(&a.as_str())
            && !failed_routers.contains(&b.as_str())
    });
    ROUTERS
        .iter()
        .filter(|r| !failed_routers.contains(r))
        .map(|r| {
            let me = mesh.index(r).unwrap();
            let routes = mesh
                .routes(me, &plan(&mesh.graph, me, 3))
                .into_iter()
                .map(|(p, via)| {
                    (
                        p.to_string(),
                        via.iter().map(|(g, i)| format!("{g}@{i}")).collect(),
                    )
                })
                .collect();
            (r.to_string(), routes)
        })
        .collect()
}

/// The routes in force on each router (the brains' and the config's; not local ones).
pub fn installed(lab: &Lab, routers: &[&str]) -> BTreeMap<String, Routes> {
    routers
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(&lab.x0ctl(r, &["--json", "route", "list"]).unwrap()).unwrap();
            let routes = v
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["origin"] != "local")
                .map(|r| {
                    let via = r["next_hops"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| {
                            format!(
                                "{}@{}",
                                n["gateway"].as_str().unwrap(),
                                n["interface"].as_str().unwrap()
                            )
                        })
                        .collect();
                    (r["prefix"].as_str().unwrap().to_string(), via)
                })
                .collect();
            (r.to_string(), routes)
        })
        .collect()
}

/// Waits until the installed routes are the expected ones, three polls in a row (so a
/// passing state does not count); returns how long until the first of them.
pub fn converge(lab: &Lab, want: &BTreeMap<String, Routes>, within: Duration) -> Duration {
    let start = Instant::now();
    let routers: Vec<&str> = want.keys().map(String::as_str).collect();
    let mut first: Option<Duration> = None;
    let mut streak = 0;
    loop {
        let got = installed(lab, &routers);
        // A router keeps routes it can no longer decide on (fail-static): compare what it should have.
        let matches = want
            .iter()
            .all(|(r, routes)| routes.iter().all(|(p, via)| got[r].get(p) == Some(via)));
        if matches {
            first.get_or_insert(start.elapsed());
            streak += 1;
            if streak == 3 {
                return first.expect("set");
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        first = None;
        streak = 0;
        assert!(
            start.elapsed() < within,
            "no convergence in {within:?}\nwant {want:#?}\ngot {got:#?}\nr1's brain:\n{}",
            lab.brain_log("r1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn six_with_brains() -> Lab {
    let lab = super::lab("six.toml", |_| {});
    for r in ROUTERS {
        lab.start_brain(r, Mode::Enforce).unwrap();
    }
    lab
}
