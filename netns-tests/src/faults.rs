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

fn fault_pin(lab: &Lab, node: &str, iface: &str) -> PathBuf {
    lab.dir
        .join("bpf")
        .join("faults")
        .join(format!("{node}-{iface}"))
}

/// Makes `iface` of `node` drop every frame it receives, from now on. Returns the moment
/// the drop program took over (loading it beforehand takes a while).
pub fn drop_ingress(lab: &Lab, node: &str, iface: &str) -> Result<std::time::SystemTime> {
    let ns = lab.ns(node);
    let router_link = lab.pin_root(node).join("links").join(iface);
    let fault_dir = lab.dir.join("bpf").join("faults");
    let fault = fault_pin(lab, node, iface);
    let iface = iface.to_string();
    netns::in_netns(&ns, move || -> Result<std::time::SystemTime> {
        std::fs::create_dir_all(&fault_dir)?;
        // The object's maps go to a directory of their own: nothing is shared with routers.
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&fault_dir)
            .load(x0_dataplane::XDP_OBJECT)
            .context("loading x0_drop")?;
        let prog: &mut Xdp = ebpf
            .program_mut(program_names::DROP)
            .context("x0_drop")?
            .try_into()?;
        prog.load()?;
        let at;
        if router_link.exists() {
            let link = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(&router_link)?))?;
            at = std::time::SystemTime::now();
            let id = prog.attach_to_link(link).context("swapping in x0_drop")?;
            let _ = FdLink::try_from(prog.take_link(id)?)?; // the pin keeps it
        } else {
            let index = nix::net::if_::if_nametoindex(iface.as_str())?;
            at = std::time::SystemTime::now();
            let id = prog.attach_to_if_index(index, XdpMode::Driver)?;
            FdLink::try_from(prog.take_link(id)?)?.pin(&fault)?;
        }
        Ok(at)
    })
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
