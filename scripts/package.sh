#!/usr/bin/env bash
# Builds the Debian package of x0tta6bl4 (docs/DEPLOY.md) with cargo-deb, into target/debian/.
#   ./scripts/package.sh            amd64, from the release build (built here if needed)
#   ./scripts/package.sh --arm64    also arm64: cross-compiled with Debian's
#                                   gcc-aarch64-linux-gnu and the rustup target, smoke-tested
#                                   under qemu-user-static (--version, check --config)
# The XDP object is the same for both: BPF is little-endian on both machines.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[package] %s\n' "$*"; }

command -v cargo-deb >/dev/null || { log "cargo-deb missing: run scripts/setup.sh"; exit 1; }
cargo build --release --workspace --bins --quiet
# Man pages from the --help texts (the same for arm64: made by the host's binaries).
./scripts/man.sh >/dev/null
# Stripped: routers have little flash (46 MB installed instead of 385 with line tables).
deb=$(cargo deb -p x0-dataplane --no-build --strip --quiet 2>/dev/null | tail -1)
log "amd64: $deb"

if [[ "${1:-}" == "--arm64" ]]; then
  target=aarch64-unknown-linux-gnu
  cross=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
  missing=()
  for p in "${cross[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  rustup target list --installed | grep -q "^$target" || rustup target add "$target"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  cargo build --release --target "$target" -p x0-dataplane -p x0-brain -p x0ctl --bins --quiet
  deb_arm=$(cargo deb -p x0-dataplane --no-build --strip --target "$target" --quiet 2>/dev/null | tail -1)
  log "arm64: $deb_arm"
  for bin in x0-dataplane x0-brain x0ctl; do
    qemu-aarch64-static -L /usr/aarch64-linux-gnu "target/$target/release/$bin" --version
  done
  qemu-aarch64-static -L /usr/aarch64-linux-gnu "target/$target/release/x0-dataplane" \
    check --config deploy/etc/dataplane.toml
  qemu-aarch64-static -L /usr/aarch64-linux-gnu "target/$target/release/x0-brain" \
    check --config deploy/etc/brain.toml
  log "arm64 binaries run under qemu"
fi
