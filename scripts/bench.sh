#!/usr/bin/env bash
# Every benchmark of x0tta6bl4 beside its baseline, in one run: forwarding rate (vs the
# kernel's forwarding and an XDP_DROP ceiling), per-packet cost, policy cost, failover,
# control plane, memory, the brain's paths. Prints a table per benchmark, writes
# docs/performance.json and regenerates docs/PERFORMANCE.md from it.
#   ./scripts/bench.sh [--quick]     (--quick: under 3 minutes; full: under 20)
# Installs what it needs first (scripts/setup.sh). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: the benchmarks need root (XDP, BPF_PROG_TEST_RUN, network namespaces)" >&2
  exit 1
fi
./scripts/setup.sh
echo "[bench] building release binaries" >&2
cargo build --release --workspace --bins --quiet
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release"
exec "$BIN/x0-bench" all "$@"
