#!/usr/bin/env bash
# Render benchmark: `kopsci render --all --out DIR` of a generated fleet of
# 200 clusters (1 Cluster + 4 InstanceGroup templates each), wall time with
# process start included. Goal: under 0.5 s.
#
#   bench/render/run.sh [CLUSTERS] [RUNS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
clusters="${1:-200}"
runs="${2:-15}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --locked -q -p kopsci --manifest-path "$root/Cargo.toml"
bin="$root/target/release/kopsci"
python3 "$root/bench/render/gen_fleet.py" "$work/fleet" "$clusters"

python3 - "$bin" "$work" "$runs" "$clusters" <<'PY'
import os, statistics, subprocess, sys, time
bin, work, runs, clusters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fleet = os.path.join(work, "fleet")
cmd = [bin, "render", "--all", "--out", os.path.join(work, "out")]
subprocess.run(cmd, cwd=fleet, check=True)  # warm the page cache
times = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=fleet, check=True, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - start)
docs = sum(open(os.path.join(work, "out", f)).read().count("\nkind: ")
           for f in os.listdir(os.path.join(work, "out")))
print(f"render --all: {clusters} clusters, {docs} documents, {runs} runs, {os.cpu_count()} cores")
print(f"  min {min(times)*1000:.1f} ms   median {statistics.median(times)*1000:.1f} ms   max {max(times)*1000:.1f} ms")
print(f"  goal < 500 ms: {'met' if statistics.median(times) < 0.5 else 'MISSED'}")
PY
