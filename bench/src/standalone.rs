//! The XDP object loaded on its own for one of its stand-alone programs (the generator's
//! `x0_gen`, the redirect ceiling's `x0_redirect`), outside any router.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::programs::Xdp;

/// The XDP object loaded for one of its stand-alone programs: its maps tiny and pinned in
/// a directory of their own (the object pins by name; inside `ip netns exec` that is a
/// private bpffs), removed when this is dropped.
pub struct Standalone {
    pub ebpf: aya::Ebpf,
    pins: PathBuf,
}

impl Standalone {
    /// `tag` names the pin directory (with the process id).
    pub fn load(tag: &str) -> Result<Self> {
        Self::load_with_globals(tag, &[])
    }

    /// Like `load`, with the object's u32 globals set first.
    pub fn load_with_globals(tag: &str, globals: &[(&str, u32)]) -> Result<Self> {
        let pins = PathBuf::from(format!("/sys/fs/bpf/x0-{tag}-{}", std::process::id()));
        x0_dataplane::bpffs::prepare(&pins)?;
        let mut loader = x0_lab::faults::small_loader(&pins);
        for (name, value) in globals {
            loader.override_global(name, value, true);
        }
        match loader.load(x0_dataplane::XDP_OBJECT) {
            Ok(ebpf) => Ok(Self { ebpf, pins }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pins);
                Err(e).context("loading the XDP object")
            }
        }
    }

    /// Puts `ifindex` (of the caller's namespace) into the object's egress port map, where
    /// `x0_redirect` may send.
    pub fn add_port(&mut self, ifindex: u32) -> Result<()> {
        let mut ports: aya::maps::DevMapHash<_> = self
            .ebpf
            .map_mut(x0_common::map_names::TX_PORTS)
            .context("the port map")?
            .try_into()?;
        ports.insert(ifindex, ifindex, None, 0)?;
        Ok(())
    }

    /// The named XDP program, verified and loaded (the first time).
    pub fn program(&mut self, name: &str) -> Result<&mut Xdp> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("{name} missing from the XDP object"))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().with_context(|| format!("verifying {name}"))?;
        }
        Ok(prog)
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}
