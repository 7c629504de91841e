//! Making sure the pin directory lives on a bpffs, and cleaning it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

fn is_bpffs(p: &Path) -> bool {
    statfs(p)
        .map(|s| s.filesystem_type() == BPF_FS_MAGIC)
        .unwrap_or(false)
}

/// Creates `pin_root`, mounting a bpffs first if it would not be on one: at /sys/fs/bpf
/// when the pin root is below it, at the pin root itself otherwise.
pub fn prepare(pin_root: &Path) -> Result<()> {
    let existing: PathBuf = pin_root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .into();
    if !is_bpffs(&existing) {
        let sys_bpf = Path::new("/sys/fs/bpf");
        let mount_at = if pin_root.starts_with(sys_bpf) {
            sys_bpf
        } else {
            pin_root
        };
        fs::create_dir_all(mount_at).with_context(|| format!("creating {}", mount_at.display()))?;
        if !is_bpffs(mount_at) {
            tracing::info!(at = %mount_at.display(), "mounting bpffs");
            mount(
                Some("bpf"),
                mount_at,
                Some("bpf"),
                MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("mounting bpffs at {}", mount_at.display()))?;
        }
    }
    fs::create_dir_all(pin_root).with_context(|| format!("creating {}", pin_root.display()))?;
    Ok(())
}

/// Removes the pins in `pin_root` and the directory itself if empty afterwards.
pub fn remove_pins(pin_root: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let p = pin_root.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing pin {}", p.display())),
        }
    }
    let _ = fs::remove_dir(pin_root);
    Ok(())
}

/// Opens the map pinned as `name` under `pin_root`, typed.
pub fn open_pinned<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    pin_root: &Path,
    name: &str,
) -> Result<T> {
    let p = pin_root.join(name);
    let data = aya::maps::MapData::from_pin(&p).with_context(|| {
        format!(
            "opening {} (is x0-dataplane running, or was it detached?)",
            p.display()
        )
    })?;
    let map =
        aya::maps::Map::from_map_data(data).with_context(|| format!("reading {}", p.display()))?;
    T::try_from(map).with_context(|| format!("{} has an unexpected type", p.display()))
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock of `bpf_ktime_get_coarse_ns`, which stamps
/// neighbours' frames, flows and token buckets.
pub fn coarse_now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
