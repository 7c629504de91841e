#!/usr/bin/env bash
# Installs everything x0tta6bl4 needs on a fresh Debian 12 machine, idempotently:
# apt packages, the pinned nightly with rust-src, bpf-linker (LLVM 22), a Python virtualenv
# with grpcio (for the Python client test of the gRPC API), and a bpffs mount.
# Each step is skipped when what it installs is already there.
set -euo pipefail

NIGHTLY="${X0_NIGHTLY:-nightly-2026-05-19}"   # rustc 1.97 on LLVM 22, matches bpf-linker's LLVM
BPF_LINKER_VERSION="${X0_BPF_LINKER_VERSION:-0.13.0}"
PYENV="${X0_PYENV:-/opt/x0tta6bl4/pyenv}"     # netns-tests/tests/python_client.rs runs its python
PY_REQUIREMENTS=(grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1)
APT_PACKAGES=(
  llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev   # bpf-linker links against LLVM 22
  iproute2 iputils-ping ethtool                        # the namespace lab
  traceroute iputils-tracepath iperf3                  # the lab checked with an operator's tools
  frr                                                  # bfdd: a standard BFD peer for interop tests
  python3-venv                                         # the virtualenv of the Python API client
  babeld time                                          # benchmarks: babeld to compare with, peak RSS
  bird2                                                # benchmarks: BIRD 2 (babel) as a memory anchor
  curl                                                 # the metrics endpoints, as an operator reads them
  tcpdump                                              # the chaos soak counts control packets on its links
  python3-h2                                           # HTTP/2 abuse of the API (tests/python/h2_abuse.py)
  python3-scapy                                        # packets that try to bypass the policy (tests/python/policy_bypass.py)
  systemd adduser                                      # systemd-analyze and the package's user (tests/package.rs)
  help2man                                             # the man pages of the package (scripts/man.sh)
)
# Prometheus' server and promtool for the metrics tests (netns-tests/tests/metrics.rs),
# without the exporters it recommends; the lab runs its own Prometheus in a namespace.
PROMETHEUS_PACKAGE=prometheus

log() { printf '[setup] %s\n' "$*"; }
export PATH="$HOME/.cargo/bin:$PATH"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # The lab runs its own routing daemons in namespaces: the host's stay off.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now bird babeld frr >/dev/null 2>&1 || true
  fi
else
  log "apt: all packages present"
fi

if dpkg-query -W -f='${Status}' "$PROMETHEUS_PACKAGE" 2>/dev/null | grep -q "install ok installed"; then
  log "apt: ${PROMETHEUS_PACKAGE} present"
else
  log "apt: installing ${PROMETHEUS_PACKAGE} (its service is left stopped and disabled)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$PROMETHEUS_PACKAGE" >/dev/null
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

if rustup toolchain list | grep -q "^${NIGHTLY}"; then
  log "rust: ${NIGHTLY} present"
else
  log "rust: installing ${NIGHTLY} with rust-src"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
fi
for c in rust-src rustfmt clippy; do   # rustfmt and clippy keep the XDP crate as clean as the rest
  rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q "^$c" \
    || rustup component add "$c" --toolchain "$NIGHTLY"
done
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done

if command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "bpf-linker: ${BPF_LINKER_VERSION} present"
else
  log "bpf-linker: building ${BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22
fi

if command -v cargo-deb >/dev/null 2>&1; then
  log "cargo-deb present"
else
  log "cargo-deb: installing (scripts/package.sh builds the Debian package with it)"
  cargo install --locked cargo-deb
fi

if cargo nextest --version >/dev/null 2>&1; then
  log "cargo-nextest present"
else
  log "cargo-nextest: installing"
  cargo install --locked cargo-nextest
fi

# Built on Debian's python3, not whatever python3 comes first on PATH, so that it outlives
# PATH changes. Present when the venv's python imports every pinned version.
pyenv_ok() {
  "$PYENV/bin/python" - "${PY_REQUIREMENTS[@]}" 2>/dev/null <<'EOF'
import sys, importlib.metadata as m
sys.exit(any(m.version(n) != v for n, v in (r.split("==") for r in sys.argv[1:])))
EOF
}
if pyenv_ok; then
  log "python: ${PYENV} has ${PY_REQUIREMENTS[*]}"
else
  log "python: installing ${PY_REQUIREMENTS[*]} into ${PYENV}"
  /usr/bin/python3 -m venv "$PYENV"
  "$PYENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "${PY_REQUIREMENTS[@]}"
  pyenv_ok || { log "python: ${PYENV} still lacks ${PY_REQUIREMENTS[*]}"; exit 1; }
fi

if ! mountpoint -q /sys/fs/bpf; then
  log "bpffs: mounting /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "done"
