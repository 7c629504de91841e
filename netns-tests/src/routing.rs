//! What a user would otherwise run, in the same lab, for side-by-side benchmarks: the
//! kernel's own forwarding driven by FRR (zebra, ospfd and bfdd: OSPF with BFD and fast
//! hellos) or by babeld. Both run in every router namespace with their files in the lab
//! directory, and stop with the lab (their pid files are the lab's).

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Lab, netns};

const FRR: &str = "/usr/lib/frr";

/// The router-facing interfaces of `router`, its host-facing ones, and their subnets.
fn ports(lab: &Lab, router: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut routers, mut host_ifaces, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    for end in lab.topo.ifaces_of(router) {
        let peer = lab.topo.peer_of(router, &end.iface);
        if peer.is_some_and(|p| lab.topo.is_router(&p.node)) {
            routers.push(end.iface.clone());
        } else {
            host_ifaces.push(end.iface.clone());
            hosts.extend(
                end.addrs
                    .iter()
                    .filter(|a| a.addr().is_ipv4())
                    .map(|a| a.trunc().to_string()),
            );
        }
    }
    (routers, host_ifaces, hosts)
}

/// Stops every router's x0-dataplane and takes its programs off: the kernel forwards.
pub fn kernel_forwarding(lab: &Lab) -> Result<()> {
    for r in &lab.topo.routers {
        lab.stop_dataplane(&r.name)?;
        lab.detach_dataplane(&r.name)?;
        netns::exec_ok(
            &lab.ns(&r.name),
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        )?;
    }
    Ok(())
}

pub(crate) fn daemon_dir(lab: &Lab, what: &str, router: &str) -> Result<PathBuf> {
    let dir = lab.dir.join(format!("{what}-{router}"));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// BIRD 2 on every router, speaking babel on the router links (hellos every `hello_s`),
/// its connected subnets exported, routes into the kernel: the same job as babeld's.
pub fn start_bird(lab: &Lab, hello_s: f64) -> Result<()> {
    if which("bird").is_none() {
        bail!("bird is missing: install the Debian package bird2 (scripts/setup.sh does)");
    }
    for (n, r) in lab.topo.routers.iter().enumerate() {
        let (links, host_ifaces, _) = ports(lab, &r.name);
        let dir = daemon_dir(lab, "bird", &r.name)?;
        let quoted = |v: &[String]| {
            v.iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut all = links.clone();
        all.extend(host_ifaces);
        let hello_ms = (hello_s * 1000.0).round() as u32;
        let conf = format!(
            "router id 10.255.0.{};\n\
             protocol device {{ }}\n\
             protocol direct {{ ipv4; interface {}; }}\n\
             protocol kernel {{ ipv4 {{ export where source = RTS_BABEL; }}; }}\n\
             protocol babel {{\n  ipv4 {{ import all; export where source ~ [ RTS_DEVICE, RTS_BABEL ]; }};\n  \
             interface {} {{ type wired; hello interval {hello_ms} ms; }};\n}}\n",
            n + 1,
            quoted(&all),
            quoted(&links),
        );
        fs::write(dir.join("bird.conf"), conf)?;
        let d = dir.to_string_lossy().into_owned();
        netns::exec_ok(
            &lab.ns(&r.name),
            &[
                "bird",
                "-c",
                &format!("{d}/bird.conf"),
                "-s",
                &format!("{d}/bird.ctl"),
                "-P",
                &format!("{d}/bird.pid"),
            ],
        )
        .with_context(|| format!("starting bird in {}", r.name))?;
    }
    Ok(())
}

/// FRR on every router: OSPF on the router links (point-to-point, hellos every 100 ms,
/// dead after 1 s, SPF and LSAs without delay), BFD at `bfd_ms` x 3 on each adjacency,
/// host subnets as passive interfaces; zebra programs the kernel. `cost(router, iface)` gives OSPF costs.
pub fn start_frr(lab: &Lab, bfd_ms: u32, cost: &dyn Fn(&str, &str) -> u32) -> Result<()> {
    if !std::path::Path::new(&format!("{FRR}/ospfd")).exists() {
        bail!("{FRR}/ospfd is missing: install the Debian package frr (scripts/setup.sh does)");
    }
    for (i, r) in lab.topo.routers.iter().enumerate() {
        let (links, host_ifaces, _) = ports(lab, &r.name);
        let dir = daemon_dir(lab, "frr", &r.name)?;
        let mut ospf = format!(
            "hostname {name}\nlog file {dir}/ospfd.log\nlog timestamp precision 3\nrouter ospf\n ospf router-id 10.255.0.{id}\n timers throttle spf 0 10 200\n timers throttle lsa all 0\n timers lsa min-arrival 0\n!\n",
            name = r.name,
            id = i + 1,
            dir = dir.display()
        );
        // Host subnets as passive stub networks, not redistributed: external routes are
        // recomputed on a fixed 1 s timer (ospfd's ASE calculation), intra-area ones at once.
        for h in &host_ifaces {
            ospf.push_str(&format!(
                "interface {h}\n ip ospf area 0\n ip ospf passive\n!\n"
            ));
        }
        for l in &links {
            ospf.push_str(&format!(
                "interface {l}\n ip ospf area 0\n ip ospf network point-to-point\n ip ospf dead-interval minimal hello-multiplier 10\n ip ospf cost {}\n ip ospf bfd\n ip ospf bfd profile fast\n!\n",
                cost(&r.name, l)
            ));
        }
        fs::write(dir.join("ospfd.conf"), ospf)?;
        fs::write(
            dir.join("bfdd.conf"),
            format!(
                "log file {}/bfdd.log\nlog timestamp precision 3\nbfd\n profile fast\n  receive-interval {bfd_ms}\n  transmit-interval {bfd_ms}\n  detect-multiplier 3\n !\n!\n",
                dir.display()
            ),
        )?;
        fs::write(dir.join("zebra.conf"), format!("hostname {}\n", r.name))?;
        netns::run(Command::new("chown").args(["-R", "frr:frr"]).arg(&dir))?;
        let d = dir.to_string_lossy().into_owned();
        let ns = lab.ns(&r.name);
        for daemon in ["zebra", "bfdd", "ospfd"] {
            netns::exec_ok(
                &ns,
                &[
                    &format!("{FRR}/{daemon}"),
                    "-d",
                    "-f",
                    &format!("{d}/{daemon}.conf"),
                    "-i",
                    &format!("{d}/{daemon}.pid"),
                    "--vty_socket",
                    &d,
                    "-z",
                    &format!("{d}/zserv.api"),
                ],
            )
            .with_context(|| format!("starting {daemon} in {}", r.name))?;
            if daemon == "zebra" {
                // the others connect to zebra's socket
                let deadline = Instant::now() + Duration::from_secs(5);
                while !dir.join("zserv.api").exists() {
                    if Instant::now() > deadline {
                        bail!("zebra in {} did not open its socket", r.name);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    Ok(())
}

/// babeld on every router: the router links as wired interfaces with `hello_s` between
/// hellos, host subnets redistributed; it programs the kernel. `cost(router, iface)`
/// gives each interface's rxcost.
pub fn start_babeld(lab: &Lab, hello_s: f64, cost: &dyn Fn(&str, &str) -> u32) -> Result<()> {
    for r in &lab.topo.routers {
        start_babeld_on(lab, &r.name, hello_s, cost)?;
    }
    Ok(())
}

/// babeld on one router (a router joining a running babel mesh).
pub fn start_babeld_on(
    lab: &Lab,
    router: &str,
    hello_s: f64,
    cost: &dyn Fn(&str, &str) -> u32,
) -> Result<()> {
    if which("babeld").is_none() {
        bail!("babeld is missing: install the Debian package babeld (scripts/setup.sh does)");
    }
    let (links, _, subnets) = ports(lab, router);
    let dir = daemon_dir(lab, "babeld", router)?;
    // No metric smoothing (default half-life 4 s): route choice follows the metric at
    // once, babeld's fastest setting for converging and for failing over.
    let mut conf = String::from("smoothing-half-life 0\n");
    for s in &subnets {
        // connected routes are proto kernel (2)
        conf.push_str(&format!("redistribute ip {s} proto 2 allow\n"));
    }
    conf.push_str("redistribute local deny\nredistribute deny\n");
    for l in &links {
        conf.push_str(&format!(
            "interface {l} type wired hello-interval {hello_s} rxcost {}\n",
            cost(router, l)
        ));
    }
    fs::write(dir.join("babeld.conf"), conf)?;
    let d = dir.to_string_lossy().into_owned();
    netns::exec_ok(
        &lab.ns(router),
        &[
            "babeld",
            "-D",
            "-c",
            &format!("{d}/babeld.conf"),
            "-I",
            &format!("{d}/babeld.pid"),
            "-L",
            &format!("{d}/babeld.log"),
            "-S",
            &format!("{d}/babeld.state"),
        ],
    )
    .with_context(|| format!("starting babeld in {router}"))?;
    Ok(())
}

pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Costs that make r1 of the diamond lab prefer r2 over r3, for FRR (`frr`: r1's own
/// outgoing OSPF cost) or babeld (both ends' rxcost: a babel link costs what the far end
/// advertises).
pub fn diamond_prefers_r2(frr: bool) -> impl Fn(&str, &str) -> u32 {
    move |router, iface| {
        let r1_r3 =
            (router, iface) == ("r1", "eth2") || (!frr && (router, iface) == ("r3", "eth0"));
        match (frr, r1_r3) {
            (true, true) => 20,
            (true, false) => 10,
            (false, true) => 256,
            (false, false) => 96,
        }
    }
}

/// Waits until `router`'s kernel routes `prefix` through `gateway` (and only it).
pub fn wait_route(
    lab: &Lab,
    router: &str,
    prefix: &str,
    gateway: &str,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let out = netns::exec_ok(&lab.ns(router), &["ip", "-4", "route", "show", prefix])?;
        if out.contains(&format!("via {gateway} ")) && !out.contains("nexthop") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{router} has no route {prefix} via {gateway} after {within:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
