//! Silent failures for the lab: an interface that stays UP but drops everything it
//! receives. Done in XDP (the only place that sees frames before x0-dataplane's own program):
//! on a router port, the program in x0-dataplane's pinned bpf_link is swapped for `x0_drop`
//! (atomically, as a restart would); on any other interface `x0_drop` is attached anew.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::{
    EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use x0_common::program_names;

use crate::{Lab, netns};

/// A loader for one of the object's stand-alone programs (`x0_drop`, the benchmark's
/// `x0_gen`): the object's maps go to a directory of their own (nothing is shared with
/// routers) and are made tiny, so that creating them (a 262,144-entry connection table
/// and the 64 MiB IPv4 direct table among them) does not stall the machine while a test
/// measures it: a full-size object made BFD miss its 30 ms detection time on every link.
pub fn small_loader(dir: &std::path::Path) -> EbpfLoader<'_> {
    use x0_common::map_names as m;
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(dir);
    // Every map but the ring buffer, whose size must be a power-of-two number of pages
    // (the IPv4 direct table alone is 64 MiB).
    for name in m::ALL.into_iter().filter(|n| *n != m::DROPS) {
        loader.map_max_entries(name, 1);
    }
    loader
}

fn fault_pin(lab: &Lab, node: &str, iface: &str) -> PathBuf {
    lab.dir
        .join("bpf")
        .join("faults")
        .join(format!("{node}-{iface}"))
}

/// Makes `iface` of `node` drop every frame it receives, from now on. Returns the moment
/// the drop program took over (loading it beforehand takes a while).
pub fn drop_ingress(lab: &Lab, node: &str, iface: &str) -> Result<std::time::SystemTime> {
    drop_ingress_all(lab, &[(node, iface)])
}

/// Like `drop_ingress` on several interfaces at (nearly) the same instant: the program is
/// loaded first, then swapped into every router port one after the other.
pub fn drop_ingress_all(lab: &Lab, ends: &[(&str, &str)]) -> Result<std::time::SystemTime> {
    let fault_dir = lab.dir.join("bpf").join("faults");
    std::fs::create_dir_all(&fault_dir)?;
    let mut ebpf = small_loader(&fault_dir)
        .load(x0_dataplane::XDP_OBJECT)
        .context("loading x0_drop")?;
    let prog: &mut Xdp = ebpf
        .program_mut(program_names::DROP)
        .context("x0_drop")?
        .try_into()?;
    prog.load()?;
    let (routers, others): (Vec<_>, Vec<_>) = ends
        .iter()
        .partition(|(node, iface)| lab.pin_root(node).join("links").join(iface).exists());
    let links = routers
        .iter()
        .map(|(node, iface)| {
            let pin = lab.pin_root(node).join("links").join(iface);
            Ok(XdpLink::try_from(FdLink::from(PinnedLink::from_pin(
                &pin,
            )?))?)
        })
        .collect::<Result<Vec<_>>>()?;
    // The kernel's XDP dispatcher is rebuilt (~10 ms) the first time a program is
    // attached; do that on a spare veth first, so that the swaps below land microseconds
    // apart and both ends fail together.
    let warm_ns = format!("{}-warm", lab.name);
    let _ = netns::ip(&["netns", "del", &warm_ns]);
    netns::ip(&["netns", "add", &warm_ns])?;
    let warmed = (|| -> Result<()> {
        netns::ip(&[
            "-n", &warm_ns, "link", "add", "w0", "type", "veth", "peer", "name", "w1",
        ])?;
        netns::ip(&["-n", &warm_ns, "link", "set", "w0", "up"])?;
        let file = std::fs::File::open(format!("/run/netns/{warm_ns}"))?;
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let index = nix::net::if_::if_nametoindex("w0")?;
                prog.attach_to_if_index(index, XdpMode::Driver)?;
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("warm-up thread panicked"))?
        })
    })();
    let at = std::time::SystemTime::now();
    let swapped = (|| -> Result<()> {
        warmed?;
        for link in links {
            let id = prog.attach_to_link(link).context("swapping in x0_drop")?;
            let _ = FdLink::try_from(prog.take_link(id)?)?; // the router's pin keeps it
        }
        Ok(())
    })();
    let _ = netns::ip(&["netns", "del", &warm_ns]);
    swapped?;
    for (node, iface) in others {
        // A fresh attachment needs the interface's namespace (ifindex), so its own program.
        let (fault, dir, iface) = (
            fault_pin(lab, node, iface),
            fault_dir.clone(),
            iface.to_string(),
        );
        netns::in_netns(&lab.ns(node), move || -> Result<()> {
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(&dir)
                .load(x0_dataplane::XDP_OBJECT)?;
            let prog: &mut Xdp = ebpf
                .program_mut(program_names::DROP)
                .context("x0_drop")?
                .try_into()?;
            prog.load()?;
            let index = nix::net::if_::if_nametoindex(iface.as_str())?;
            let id = prog.attach_to_if_index(index, XdpMode::Driver)?;
            FdLink::try_from(prog.take_link(id)?)?.pin(&fault)?;
            Ok(())
        })?;
    }
    Ok(at)
}

/// Makes router port `iface` of `node` lose `per_million` of the frames it receives, unseen
/// and uncounted (a bad wire); the rest is forwarded as usual, by the same maps. Returns
/// when the loss began. `forward_again` ends it.
pub fn lossy_ingress(
    lab: &Lab,
    node: &str,
    iface: &str,
    per_million: u32,
) -> Result<std::time::SystemTime> {
    impaired_ingress(lab, node, iface, per_million, 0)
}

/// Makes router port `iface` of `node` take at most `bytes_per_s` (a policer: what comes
/// faster is dropped, as a full queue drops its tail), the congested end of a link (this
/// kernel has no netem, and XDP-redirected frames meet no qdisc). `forward_again` ends it.
pub fn congested_ingress(
    lab: &Lab,
    node: &str,
    iface: &str,
    bytes_per_s: u64,
) -> Result<std::time::SystemTime> {
    impaired_ingress(lab, node, iface, 0, bytes_per_s)
}

fn impaired_ingress(
    lab: &Lab,
    node: &str,
    iface: &str,
    per_million: u32,
    bytes_per_s: u64,
) -> Result<std::time::SystemTime> {
    let root = lab.pin_root(node);
    if !root.join("links").join(iface).exists() {
        return impaired_bare(lab, node, iface, per_million, bytes_per_s);
    }
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&root);
    let mut ebpf = load_lossy(loader, &per_million, &bytes_per_s)
        .context("loading x0_lossy with the router's maps")?;
    let forward = x0_dataplane::explain::pinned_forward(&root)?;
    let mut next: aya::maps::ProgramArray<_> = ebpf
        .take_map(program_names::LOSSY_NEXT)
        .context("x0_lossy's next-program map")?
        .try_into()?;
    next.set(0, forward.fd()?, 0)?;
    let prog: &mut Xdp = ebpf
        .program_mut(program_names::LOSSY)
        .expect("loaded")
        .try_into()?;
    let at = swap_into(prog, &root, iface)?;
    // The program and its map stay with the link once `ebpf` is gone.
    Ok(at)
}

/// `x0_lossy` loaded by `loader` with its loss and rate patched in.
fn load_lossy<'a>(
    mut loader: EbpfLoader<'a>,
    per_million: &'a u32,
    bytes_per_s: &'a u64,
) -> Result<aya::Ebpf> {
    loader
        .override_global(program_names::LOSS_PER_MILLION, per_million, true)
        .override_global(program_names::RATE_BYTES_PER_S, bytes_per_s, true);
    let mut ebpf = loader.load(x0_dataplane::XDP_OBJECT)?;
    let prog: &mut Xdp = ebpf
        .program_mut(program_names::LOSSY)
        .context("x0_lossy")?
        .try_into()?;
    prog.load()?;
    Ok(ebpf)
}

/// An interface without a router program (the kernel forwards: the FRR and babeld
/// benchmarks): `x0_lossy` alone in its XDP hook, passing what it keeps to the kernel (its
/// next-program map stays empty). `forward_again` takes it off.
fn impaired_bare(
    lab: &Lab,
    node: &str,
    iface: &str,
    per_million: u32,
    bytes_per_s: u64,
) -> Result<std::time::SystemTime> {
    let fault_dir = lab.dir.join("bpf").join("faults");
    std::fs::create_dir_all(&fault_dir)?;
    let (fault, iface) = (fault_pin(lab, node, iface), iface.to_string());
    let _ = remove(&fault);
    netns::in_netns(&lab.ns(node), move || -> Result<std::time::SystemTime> {
        let mut ebpf = load_lossy(small_loader(&fault_dir), &per_million, &bytes_per_s)?;
        let prog: &mut Xdp = ebpf
            .program_mut(program_names::LOSSY)
            .expect("loaded")
            .try_into()?;
        let index = nix::net::if_::if_nametoindex(iface.as_str())?;
        let at = std::time::SystemTime::now();
        let id = prog.attach_to_if_index(index, XdpMode::Driver)?;
        FdLink::try_from(prog.take_link(id)?)?.pin(&fault)?;
        Ok(at)
    })
}

/// Puts the router's own `x0_forward` back into `iface`'s link (ends a lossy or black-holed
/// port without restarting the dataplane); on an interface without one, takes the fault's
/// program off.
pub fn forward_again(lab: &Lab, node: &str, iface: &str) -> Result<()> {
    let root = lab.pin_root(node);
    if !root.join("links").join(iface).exists() {
        return restore(lab, node, iface);
    }
    let mut prog = x0_dataplane::explain::pinned_forward(&root)?;
    swap_into(&mut prog, &root, iface).map(|_| ())
}

/// Swaps `prog` into the router's pinned link on `iface`; when it took over.
fn swap_into(prog: &mut Xdp, root: &Path, iface: &str) -> Result<std::time::SystemTime> {
    let pin = root.join("links").join(iface);
    let link = XdpLink::try_from(FdLink::from(
        PinnedLink::from_pin(&pin).with_context(|| format!("{}", pin.display()))?,
    ))?;
    let at = std::time::SystemTime::now();
    let id = prog.attach_to_link(link).context("swapping the program")?;
    let _ = FdLink::try_from(prog.take_link(id)?)?; // the router's pin keeps it
    Ok(at)
}

/// Ends a `drop_ingress` on an interface that had no router program. (On a router port,
/// restart its dataplane: the new daemon puts its own program back into the link.)
pub fn restore(lab: &Lab, node: &str, iface: &str) -> Result<()> {
    let fault = fault_pin(lab, node, iface);
    remove(&fault)
}

fn remove(p: &Path) -> Result<()> {
    std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))
}

/// The kinds of failure the lab injects on a link between two routers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Failure {
    /// `ip link set down` on the far end: the near end loses carrier.
    Carrier,
    /// Both ends stay UP and drop everything they receive.
    Blackhole,
}

/// The two ends (node, interface) of the link between routers `a` and `b`.
pub fn link_ends(lab: &Lab, a: &str, b: &str) -> Result<((String, String), (String, String))> {
    lab.topo
        .links
        .iter()
        .find_map(|l| {
            if l.a.node == a && l.b.node == b {
                Some((
                    (l.a.node.clone(), l.a.iface.clone()),
                    (l.b.node.clone(), l.b.iface.clone()),
                ))
            } else if l.a.node == b && l.b.node == a {
                Some((
                    (l.b.node.clone(), l.b.iface.clone()),
                    (l.a.node.clone(), l.a.iface.clone()),
                ))
            } else {
                None
            }
        })
        .with_context(|| format!("no link between {a} and {b}"))
}

/// Fails the link between `a` and `b` as seen from `a`. Returns when the failure began.
pub fn fail(lab: &Lab, a: &str, b: &str, kind: Failure) -> Result<std::time::SystemTime> {
    let (near, far) = link_ends(lab, a, b)?;
    match kind {
        Failure::Carrier => {
            let at = std::time::SystemTime::now();
            netns::exec_ok(&lab.ns(&far.0), &["ip", "link", "set", &far.1, "down"])?;
            Ok(at)
        }
        Failure::Blackhole => drop_ingress_all(lab, &[(&far.0, &far.1), (&near.0, &near.1)]),
    }
}

/// Undoes `fail`: the far end comes up again, or both routers' dataplanes are restarted
/// (hitlessly), which puts their own program back into the links.
pub fn repair(lab: &Lab, a: &str, b: &str, kind: Failure) -> Result<()> {
    let (near, far) = link_ends(lab, a, b)?;
    match kind {
        Failure::Carrier => {
            netns::exec_ok(&lab.ns(&far.0), &["ip", "link", "set", &far.1, "up"]).map(|_| ())
        }
        Failure::Blackhole => {
            // Loading the programs (the verifier) took over 10 s once in the 40-router
            // soak, with 80 daemons on two cores.
            for node in [&near.0, &far.0] {
                lab.stop_dataplane(node)?;
                lab.start_dataplane(node)?;
                lab.wait_ready(node, std::time::Duration::from_secs(30))?;
            }
            Ok(())
        }
    }
}

/// Puts the processes of `pid_files` (a router's daemons) in a CPU cgroup with 3 % of one
/// CPU (or takes them out again): cgroup v1's cpu controller where mounted, else v2's
/// cpu.max. Traffic the kernel or XDP forwards runs in softirq, outside any cgroup: this
/// starves the router's control plane (and AF_XDP BFD), not its forwarding.
pub fn starve(lab: &Lab, router: &str, pid_files: &[PathBuf], on: bool) -> Result<()> {
    let pids: Vec<String> = pid_files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .collect();
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    let (root, group) = if v1.join("cpu.cfs_quota_us").exists() {
        (
            v1.to_path_buf(),
            v1.join(format!("x0lab-{}-{router}", lab.name)),
        )
    } else {
        let v2 = PathBuf::from("/sys/fs/cgroup");
        (v2.clone(), v2.join(format!("x0lab-{}-{router}", lab.name)))
    };
    let into = if on { &group } else { &root };
    if on {
        std::fs::create_dir_all(&group).with_context(|| format!("{}", group.display()))?;
        if root == v1 {
            std::fs::write(group.join("cpu.cfs_period_us"), "100000")?;
            std::fs::write(group.join("cpu.cfs_quota_us"), "3000")?;
            // Real-time threads (BFD's) may only join a group with real-time time of its own.
            std::fs::write(group.join("cpu.rt_runtime_us"), "30000")
                .context("cpu.rt_runtime_us")?;
        } else {
            std::fs::write(group.join("cpu.max"), "3000 100000")?;
        }
    }
    for pid in &pids {
        std::fs::write(into.join("cgroup.procs"), pid)
            .with_context(|| format!("moving {pid} to {}", into.display()))?;
    }
    if !on {
        let _ = std::fs::remove_dir(&group);
    }
    Ok(())
}
