#!/usr/bin/env bash
# Every test of x0tta6bl4, on the real kernel: formatting and lints, unit tests,
# BPF_PROG_TEST_RUN tests of the XDP program, and the network-namespace lab.
# Installs what it needs first (scripts/setup.sh). Needs root: without it, it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the tests need root (XDP, BPF_PROG_TEST_RUN, network namespaces); run it as root" >&2
  exit 1
fi
./scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }
step "format and lints"
cargo fmt --all --check
(cd xdp/programs && cargo fmt --check && cargo clippy --release --quiet -- -D warnings)
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build (the lab tests run the release binaries built here)"
# Release daemons, as users run them: the six-router brain lab (6 dataplanes with BFD at
# 10 ms x 3 and 6 brains on 2 cores) lost adjacencies by chance with debug builds
# (x0-lab::brains failed in 4 of 9 runs here, full suites and the brain suite alone, one
# of them a fresh-clone CI run). With release daemons: 10 of 10 runs of the brain suite
# (brains and brains_operator, 100 tests) and fresh-clone CI runs green (2026-12-06).
cargo build --release --workspace --bins --quiet
X0_DATAPLANE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/x0-dataplane"
export X0_DATAPLANE_BIN

step "tests"
# nextest runs each test in its own process, so one test's lab or maps never leak into
# another's; its closing summary line is the result.
cargo nextest run --workspace --no-fail-fast --test-threads 2
