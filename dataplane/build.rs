//! Builds the XDP programs (xdp/programs) with the pinned nightly for the BPF target and
//! hands the object to the crate as `$OUT_DIR/x0-xdp`.
//!
//! Not aya-build: it runs `cargo build --package` inside *this* workspace, which would make
//! the eBPF crate (rust-version 1.97, nightly only) a member of the stable workspace.
use std::{env, path::PathBuf, process::Command};

const TOOLCHAIN: &str = "nightly-2026-05-19";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let xdp = manifest.join("../xdp/programs");
    let common = manifest.join("../xdp/common");
    for p in [
        xdp.join("src"),
        xdp.join("Cargo.toml"),
        xdp.join(".cargo/config.toml"),
        common.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // One target dir for every profile of the outer build, so core is built once.
    let target_dir = manifest.join("../target/xdp");

    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        TOOLCHAIN,
        "cargo",
        "build",
        "--release",
        "--target-dir",
    ])
    .arg(&target_dir)
    .current_dir(&xdp);
    // The outer cargo's settings are for the host build, not for this one.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run rustup to build the XDP programs ({e}); run ./scripts/setup.sh")
    });
    assert!(
        status.success(),
        "building the XDP programs failed ({status}); ./scripts/setup.sh installs {TOOLCHAIN} and bpf-linker"
    );
    let object = target_dir.join("bpfel-unknown-none/release/x0-xdp");
    std::fs::copy(&object, out_dir.join("x0-xdp"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", object.display()));
}
