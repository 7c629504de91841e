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
