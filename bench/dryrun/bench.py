#!/usr/bin/env python3
"""Dry-run benchmark: the overhead of `kopsci dryrun` itself — process
start, render, snapshot of the live store, spec diff, reports — excluding
kops, against SeaweedFS seeded with the kOps fixture store, behind a
loopback proxy that adds DELAY ms each way.

Measured, median of RUNS, wall time including process start:
  * `dryrun CLUSTER --without-kops` (one fixture cluster), `--all` (ten);
  * `dryrun CLUSTER` with the kops stand-in, minus the time kops itself
    took (report.json `kops_seconds`): kopsci's overhead around a real
    kops run;
  * the same without the proxy, and the latency floor of the snapshot
    (one listing page + ceil(objects / 64) GET rounds, per cluster).

Run through bench/dryrun/run, which installs the tools and builds kopsci
and the stand-in. Everything binds 127.0.0.1 on free ports and is stopped
at the end.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import ACCESS, FIXTURES, ROOT, SECRET, Servers as BaseServers  # noqa: E402

BUCKET = "bench-dryrun"
ONE = "minimal-aws.example.com"
CONCURRENCY = 64  # kopsci's default snapshot concurrency


def objects(cluster):
    """Keys kopsci copies for a cluster (etcd backup data is skipped)."""
    keys = []
    base = os.path.join(FIXTURES, cluster)
    for dirpath, _, files in os.walk(base):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), base).split(os.sep)
            if len(rel) >= 4 and rel[:2] == ["backups", "etcd"] and rel[3] != "control":
                continue
            keys.append("/".join(rel))
    return keys


class Servers(BaseServers):
    def __init__(self, args, work):
        super().__init__(args, work, strip=("AWS_", "S3_", "KOPS", "GITLAB_"))

    def aws(self, *rest):
        return self.aws_cmd(self.s3_port, *rest)

    def start_weed(self):
        super().start_weed()
        self.seed(BUCKET, FIXTURES)


def dryrun(servers, clusters, with_kops, proxied, work):
    """Runs one dry run; returns (wall seconds, kops seconds summed over clusters)."""
    reports = os.path.join(work, "reports")
    shutil.rmtree(reports, ignore_errors=True)
    port = servers.proxy_port if proxied else servers.s3_port
    env = dict(servers.env, S3_ENDPOINT=f"http://127.0.0.1:{port}", S3_REGION="us-east-1",
               S3_ACCESS_KEY_ID=ACCESS, S3_SECRET_ACCESS_KEY=SECRET, CI="true",
               KOPSCI_KOPS=servers.args.kops, TMPDIR=work)
    cmd = [servers.args.kopsci, "-q", "--fleet", os.path.join(ROOT, "kopsci.yaml"), "dryrun",
           "--state", f"s3://{BUCKET}", "--report-dir", reports, *clusters]
    if not with_kops:
        cmd.append("--without-kops")
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=work)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"dryrun {clusters} failed: {r.stderr.decode(errors='replace')[-2000:]}")
    kops = 0.0
    for name in os.listdir(reports):
        with open(os.path.join(reports, name, "report.json")) as fh:
            kops += json.load(fh).get("kops_seconds", 0.0)
    return wall, kops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kopsci", required=True)
    ap.add_argument("--kops", required=True, help="the kops stand-in")
    ap.add_argument("--weed", required=True)
    ap.add_argument("--aws", required=True)
    ap.add_argument("--proxy", required=True, help="the delay_proxy binary")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    for tool in ("kopsci", "kops", "weed", "aws", "proxy"):
        setattr(args, tool, os.path.abspath(getattr(args, tool)))

    work = tempfile.mkdtemp(prefix="kopsci-bench-dryrun-")
    servers = Servers(args, work)
    all_clusters = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))
    rtt = 2 * args.delay_ms / 1000.0
    rows = []
    try:
        servers.start_weed()
        servers.start_proxy()
        cases = [
            ("1 cluster, --without-kops", [ONE], False, 0.5),
            (f"{len(all_clusters)} clusters (--all), --without-kops", ["--all"], False, 1.5),
            ("1 cluster, with kops (stand-in), kops time subtracted", [ONE], True, 0.5),
        ]
        for label, clusters, with_kops, goal in cases:
            names = all_clusters if clusters == ["--all"] else clusters
            # Per cluster: one listing page, then ceil(objects / concurrency)
            # rounds of GETs; --all runs 4 clusters at a time.
            per = [(1 + math.ceil(len(objects(c)) / CONCURRENCY)) * rtt for c in names]
            floor = sum(per) / min(4, len(per))
            dryrun(servers, clusters, with_kops, True, work)  # warm the page cache
            proxied = [dryrun(servers, clusters, with_kops, True, work) for _ in range(args.runs)]
            direct = [dryrun(servers, clusters, with_kops, False, work) for _ in range(args.runs)]
            overhead = statistics.median(w - k for w, k in proxied)
            kops = statistics.median(k for _, k in proxied)
            direct_overhead = statistics.median(w - k for w, k in direct)
            rows.append((label, overhead, kops, direct_overhead, floor, goal))
    finally:
        servers.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nRound trip {2 * args.delay_ms} ms ({args.delay_ms} ms each way through a loopback proxy); "
          f"median of {args.runs} runs; wall time incl. process start, minus kops' own time.\n")
    print("| dry run | kopsci overhead | (kops' own time) | no proxy | snapshot latency floor | goal |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    ok = True
    for label, overhead, kops, direct, floor, goal in rows:
        met = overhead < goal
        ok &= met
        print(f"| {label} | {overhead:.3f} s | {kops:.3f} s | {direct:.3f} s | {floor:.3f} s "
              f"| < {goal} s {'✅' if met else '❌'} |")
    print(f"\nGoals: {'met' if ok else 'MISSED'}")
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
