#!/usr/bin/env bash
# Where the fast path's time goes, per source line: runs x0_forward through
# BPF_PROG_TEST_RUN on one table (`x0-bench test-run-loop`) under `perf record`
# (cpu-clock: VMs often have no PMU) and maps the samples to the BPF programs' source
# lines through their jited line info (scripts/bpf_lines.py; Debian's bpftool cannot
# disassemble JIT code). Needs root, perf and bpftool.
#   ./scripts/profile-fast-path.sh [test-run-loop args]   e.g. --routes 1000000 --policy
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null && command -v bpftool >/dev/null ||
    apt-get install -y linux-perf bpftool >/dev/null
cargo build --release -p x0-bench
out=$(mktemp -d)
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--routes 1000000 --policy)
perf record -g -e cpu-clock -F 25000 -a -o "$out/perf.data" -- \
    ./target/release/x0-bench test-run-loop "${args[@]}" --secs 25 >"$out/loop.out" 2>&1 &
perf_pid=$!
# The programs exist only while the loop runs: read their line tables then.
for _ in $(seq 60); do
    grep -q "batches\|installed" "$out/loop.out" 2>/dev/null && break
    sleep 1
done
sleep 3
ids=$(bpftool prog show | grep -E "name (x0_forward|x0_policy) " | cut -d: -f1 | tail -2)
python3 scripts/bpf_lines.py dump "$out/lines.json" $ids
wait $perf_pid
perf script -i "$out/perf.data" 2>/dev/null >"$out/perf.txt"
grep batches "$out/loop.out"
python3 scripts/bpf_lines.py map "$out/lines.json" "$out/perf.txt"
rm -rf "$out"
