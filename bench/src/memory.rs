//! Memory: peak RSS of x0-dataplane holding 1M routes (through the API) and a policy of
//! 10,000 rules, beside the same daemon idle and beside what the kernel's FIB takes for
//! the same routes; peak RSS of x0-brain planning a 1,000-router mesh, beside the six
//! routers of the lab.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result, ensure};
use x0_lab::{Lab, Topology, lab::default_dataplane_bin, netns};
use x0_proto::dataplane::v1::{self as pb, route_operation::Op};
use x0ctl::client::{Target, connect};

use crate::{
    memory_idle::status_mib,
    report::{Row, Table},
};

/// Kernel memory figures (kB) from /proc/meminfo.
fn meminfo(key: &str) -> Result<f64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{key} in /proc/meminfo"))
}

/// What the kernel charges for every BPF map that process `pid` holds open (the
/// `memlock` of each map's fdinfo, each map once): preallocated maps included, which the
/// slab growth does not see (the 64 MiB IPv4 direct table, the connection tables).
pub(crate) fn maps_memlock_mib(pid: i32) -> Result<f64> {
    let by_map =
        x0_dataplane::metrics::maps::memlock_by_map(Path::new(&format!("/proc/{pid}/fdinfo")));
    ensure!(!by_map.is_empty(), "no BPF maps open in process {pid}");
    Ok(by_map.values().sum::<u64>() as f64 / (1024.0 * 1024.0))
}

fn prefix(i: u32) -> String {
    // 16.0.0.0 upwards, /24s: distinct, unicast, out of the lab's 198.18/15
    let a = (16u32 << 24) + (i << 8);
    format!("{}.{}.{}.0/24", a >> 24, (a >> 16) & 255, (a >> 8) & 255)
}

pub(crate) async fn load_dataplane(target: Target, routes: u32, rules: usize) -> Result<()> {
    let conn = connect(&target).await?;
    let mut dp = conn.dataplane(64 << 20);
    let via = ["198.18.2.2@eth2".to_string(), "198.18.1.2@eth1".to_string()];
    let ops = (0..routes).map(move |i| pb::RouteOperation {
        op: Some(Op::Add(
            x0ctl::routes::route(&prefix(i), &via).expect("GATEWAY@INTERFACE"),
        )),
    });
    let r = dp.batch_routes(tokio_stream::iter(ops)).await?.into_inner();
    ensure!(r.added == u64::from(routes), "added {}", r.added);
    let identities = (0..1000u32)
        .map(|i| pb::Identity {
            name: format!("id{i}"),
            id: i + 1,
            prefixes: vec![format!("10.{}.{}.0/24", i / 256, i % 256)],
        })
        .collect();
    let rules = (0..rules)
        .map(|i| pb::Rule {
            from: format!("id{}", i % 1000),
            to: format!("id{}", (i / 1000 + 1 + i % 1000) % 1000),
            proto: "udp".into(),
            ports: (1000 + i % 5000).to_string(),
            action: "allow".into(),
            ..Default::default()
        })
        .collect();
    dp.set_policy(pb::SetPolicyRequest {
        policy: Some(pb::Policy {
            identities,
            rules,
            enabled: true,
            ..Default::default()
        }),
        confirm_within_s: 0,
    })
    .await?;
    Ok(())
}

/// A 1,000-router mesh in the lab's topology format (random geometric, degree ~5), one
/// host subnet per router.
fn big_mesh(n: usize) -> String {
    let g = x0_brain::paths::testgraph::random_geometric(n, 5.0, 42);
    let mut out = String::new();
    for r in 0..n {
        let _ = writeln!(out, "[[router]]\nname = \"r{r}\"\n");
    }
    let mut port = vec![0u32; n];
    for (i, &(a, b, c)) in g.links.iter().enumerate() {
        let base = (100u32 << 24) + (64 << 16) + 4 * i as u32; // 100.64.0.0/10, /30 each
        let ip = |x: u32| {
            format!(
                "{}.{}.{}.{}",
                x >> 24,
                (x >> 16) & 255,
                (x >> 8) & 255,
                x & 255
            )
        };
        port[a] += 1;
        port[b] += 1;
        let _ = writeln!(
            out,
            "[[link]]\ncost = {c}\na = {{ node = \"r{a}\", iface = \"eth{}\", addrs = [\"{}/30\"] }}\n\
             b = {{ node = \"r{b}\", iface = \"eth{}\", addrs = [\"{}/30\"] }}\n",
            port[a],
            ip(base + 1),
            port[b],
            ip(base + 2)
        );
    }
    for r in 0..n {
        let _ = writeln!(
            out,
            "[[link]]\na = {{ node = \"r{r}\", iface = \"eth0\", addrs = [\"10.{}.{}.1/24\"] }}\n\
             b = {{ node = \"h{r}\", iface = \"eth0\", addrs = [\"10.{}.{}.2/24\"] }}\n",
            r / 256,
            r % 256,
            r / 256,
            r % 256
        );
    }
    out
}

/// Peak RSS (MiB) of `x0-brain plan` on a topology file, by GNU time.
fn brain_plan_peak(brain: &Path, topology: &Path, router: &str) -> Result<f64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(brain)
        .args(["plan", "--router", router, "--topology"])
        .arg(topology)
        .output()
        .context("running /usr/bin/time x0-brain plan (apt install time)")?;
    ensure!(
        out.status.success(),
        "x0-brain plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time's %M")?;
    Ok(kb / 1024.0)
}

pub fn run(quick: bool) -> Result<Vec<Table>> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (namespaces, XDP)"
    );
    let routes: u32 = if quick { 100_000 } else { 1_000_000 };
    let rules = 10_000;
    let reps = if quick { 1 } else { 2 };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/line.toml");
    let (mut idle, mut loaded, mut maps, mut fib, mut all_maps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Kernel memory that grows with map entries (BPF_F_NO_PREALLOC hash elements and LPM
    // trie nodes come from slab caches; per-CPU values from the per-CPU allocator).
    let kernel_kb = || -> Result<f64> { Ok(meminfo("Slab")? + meminfo("Percpu")?) };
    for rep in 0..reps {
        eprintln!(
            "  memory: dataplane with {routes} routes and {rules} rules, run {}/{reps}",
            rep + 1
        );
        let lab = Lab::up(
            &format!("x0m{}", std::process::id() % 100_000),
            Topology::from_file(&path)?,
            default_dataplane_bin()?,
        )?;
        let pid = lab.pid("r1").context("r1's dataplane pid")?.as_raw();
        idle.push(status_mib(pid, "VmRSS")?);
        let target = Target {
            addr: format!("unix://{}", lab.api_socket("r1").display()),
            svid: None,
            pq: x0_identity::PqMode::Required,
            server_id: None,
        };
        let before = kernel_kb()?;
        netns::in_netns(&lab.ns("r1"), move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(load_dataplane(target, routes, rules))
        })?;
        loaded.push(status_mib(pid, "VmHWM")?);
        maps.push((kernel_kb()? - before) / 1024.0);
        all_maps.push(maps_memlock_mib(pid)?);
        // The kernel's FIB for the same routes, in the same namespace (slab growth).
        let file = lab.dir.join("fib.batch");
        let text: String = (0..routes)
            .map(|i| format!("route add {} via 198.18.2.2\n", prefix(i)))
            .collect();
        std::fs::write(&file, text)?;
        let before = meminfo("Slab")?;
        netns::exec_ok(
            &lab.ns("r1"),
            &["ip", "-batch", file.to_str().expect("utf-8")],
        )?;
        fib.push((meminfo("Slab")? - before) / 1024.0);
        drop(lab);
    }
    let peak_samples = loaded.clone();
    let dataplane = Table {
        id: "memory-dataplane".into(),
        title: format!("Memory: x0-dataplane with {routes} routes and {rules} rules"),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench memory{}",
            if quick { " --quick" } else { "" }
        ),
        about: format!(
            "RSS of r1's x0-dataplane in the line lab: idle after start (VmRSS, baseline), \
             then its peak (VmHWM) after {routes} IPv4 /24 routes (two next hops each) in one `BatchRoutes` \
             stream and a policy of {rules} rules among 1,000 identities (`SetPolicy`), both \
             through the Unix-socket API. Beside it, what the kernel's FIB takes for the same \
             routes (`ip -batch` in the same namespace; growth of the kernel's slab). The BPF \
             maps' entries are kernel memory, not in the daemon's RSS: their row is the growth \
             of the kernel's slab and per-CPU memory while the routes and rules went in, \
             measured as the FIB's is (maps preallocated at start are in neither); the \
             last row is every map's whole charge as the kernel accounts it (fdinfo \
             memlock), preallocated ones included."
        ),
        unit: "MiB".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("x0-dataplane, idle (baseline)", idle).baseline(),
            Row::new(
                format!("x0-dataplane, {routes} routes + {rules} rules (peak)"),
                loaded,
            ),
            Row::new(
                format!(
                    "x0tta6bl4 maps, {routes} routes + {rules} rules (kernel slab + per-CPU growth)"
                ),
                maps,
            ),
            Row::new(format!("kernel FIB, {routes} routes (slab growth)"), fib),
            Row::new(
                format!("x0tta6bl4 maps, {routes} routes + {rules} rules (all maps, memlock)"),
                all_maps,
            ),
        ],
        goal: format!("peak with {routes} routes and {rules} rules <= 300 MiB"),
        verdict: {
            let peak = Row::new("", peak_samples).median();
            format!(
                "{peak:.0} MiB: {}",
                if peak <= 300.0 { "met" } else { "not met" }
            )
        },
        notes: if quick {
            vec!["--quick: 100,000 routes instead of 1,000,000".into()]
        } else {
            vec![]
        },
    };

    eprintln!("  memory: x0-brain plan on 6 and 1,000 routers");
    let brain = std::env::current_exe()?
        .parent()
        .map(|d| d.join("x0-brain"))
        .filter(|p| p.exists())
        .context(
            "x0-brain not found next to x0-bench (cargo build --release --workspace --bins)",
        )?;
    let big = std::env::temp_dir().join(format!("x0-bench-mesh-{}.toml", std::process::id()));
    std::fs::write(&big, big_mesh(1000))?;
    let six = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-tests/topologies/six.toml");
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        small.push(brain_plan_peak(&brain, &six, "r1")?);
        large.push(brain_plan_peak(&brain, &big, "r0")?);
    }
    let _ = std::fs::remove_file(&big);
    let brain = Table {
        id: "memory-brain".into(),
        title: "Memory: x0-brain on a 1,000-router mesh".into(),
        command: format!(
            "cargo build --release --workspace --bins && ./target/release/x0-bench memory{}",
            if quick { " --quick" } else { "" }
        ),
        about: "Peak RSS (GNU time's %M) of `x0-brain plan --topology FILE`: parse the mesh, \
                k = 3 disjoint paths to every router, LFA checks, next-hop sets, printed. The \
                1,000-router mesh is the disjoint-path benchmark's random geometric graph \
                (seed 42, degree ~5) with a host subnet per router; baseline: the lab's six \
                routers. 3 runs."
            .into(),
        unit: "MiB".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("x0-brain plan, six routers (baseline)", small).baseline(),
            Row::new("x0-brain plan, 1,000 routers", large),
        ],
        goal: String::new(),
        verdict: String::new(),
        notes: vec![],
    };
    Ok(vec![
        crate::memory_idle::run(quick)?,
        dataplane,
        crate::memory_profile::run(quick)?,
        brain,
    ])
}
