#!/usr/bin/env python3
"""Snapshot benchmark: `kopsci snapshot` vs `aws s3 sync` vs `rclone copy`,
same SeaweedFS server, same data, same set of objects copied, behind a
loopback proxy that adds DELAY ms each way. Prints a Markdown table with the
latency floor (listing pages + ceil(objects / concurrency)) x round trip.

Run through bench/snapshot/run, which installs the tools and builds kopsci.
Everything binds 127.0.0.1 on free ports and is stopped at the end.
"""

import argparse
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import ACCESS, FIXTURES, SECRET, Servers  # noqa: E402

PAGE = 1000  # keys per ListObjectsV2 page


def is_backup_data(rel):
    parts = rel.split("/")
    return len(parts) >= 4 and parts[:2] == ["backups", "etcd"] and parts[3] != "control"


def tree(path):
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            full = os.path.join(dirpath, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def generate_store(dest, clusters, backups_per_cluster, rng):
    """20 clusters cloned from the fixtures, each with etcd backups."""
    fixtures = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))
    names = []
    for i in range(clusters):
        name = f"c{i:02d}.gen.example.com"
        names.append(name)
        shutil.copytree(os.path.join(FIXTURES, fixtures[i % len(fixtures)]), os.path.join(dest, name))
        per_store = backups_per_cluster // 4  # 2 stores x 2 files per backup
        for store in ("main", "events"):
            for b in range(per_store):
                stamp = f"2024-05-{1 + b // 96:02d}T{(b // 4) % 24:02d}:{(b % 4) * 15:02d}:00Z-{b:06d}"
                d = os.path.join(dest, name, "backups", "etcd", store, stamp)
                os.makedirs(d)
                with open(os.path.join(d, "etcd.backup.gz"), "wb") as fh:
                    fh.write(rng.randbytes(1024))
                with open(os.path.join(d, "_etcd_backup.meta"), "w") as fh:
                    fh.write('{"version":"3.5.9"}\n')
    return names


class Bench(Servers):
    def __init__(self, args, work):
        super().__init__(args, work, strip=("AWS_", "S3_", "KOPS", "RCLONE_"))
        self.base_env = self.env
        self.runs = 0

    # One command per tool: copy cluster `c` of `bucket` into `dest`.
    def cmd_kopsci(self, bucket, c, dest, concurrency=None, direct=False):
        cmd = [self.args.kopsci, "-q", "snapshot", "--state", f"s3://{bucket}", "--name", c, "--out", dest]
        if concurrency:
            cmd += ["--concurrency", str(concurrency)]
        port = self.s3_port if direct else self.proxy_port
        env = dict(self.base_env, S3_ENDPOINT=f"http://127.0.0.1:{port}", S3_REGION="us-east-1",
                   S3_ACCESS_KEY_ID=ACCESS, S3_SECRET_ACCESS_KEY=SECRET, CI="true")
        return cmd, env

    def cmd_aws(self, bucket, c, dest):
        cmd = self.aws_cmd(self.proxy_port, "s3", "sync", f"s3://{bucket}/{c}/", os.path.join(dest, c),
                           "--exclude", "*backups/etcd/*/2*", "--only-show-errors", "--no-progress")
        return cmd, self.base_env

    def cmd_rclone(self, bucket, c, dest):
        env = {k: v for k, v in self.base_env.items() if not k.startswith("AWS_")}
        env.update({"RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ENV_AUTH": "false",
                    "RCLONE_S3_ACCESS_KEY_ID": ACCESS, "RCLONE_S3_SECRET_ACCESS_KEY": SECRET,
                    "RCLONE_S3_ENDPOINT": f"http://127.0.0.1:{self.proxy_port}",
                    "RCLONE_S3_REGION": "us-east-1", "RCLONE_CONFIG": "/dev/null"})
        cmd = [self.args.rclone, "copy", f":s3:{bucket}/{c}", os.path.join(dest, c),
               "--exclude", "backups/etcd/*/2*/**", "-q"]
        return cmd, env

    def timed(self, tool, bucket, clusters, dest, **kw):
        """Wall time to copy every cluster, one process per cluster (one CI job each).

        Every run writes into a directory of its own, and nothing is deleted
        until the end: ext4 avoids reusing recently deleted inodes, and with
        thousands of them (a previous run's copy, deleted) every file and
        directory created costs more, run after run, for every tool. A CI
        job starts from a fresh checkout instead."""
        self.runs += 1
        dest = f"{dest}.{self.runs}"
        os.makedirs(dest)
        start = time.perf_counter()
        for c in clusters:
            out = os.path.join(dest, c) if tool == "kopsci" else dest
            cmd, env = getattr(self, "cmd_" + tool)(bucket, c, out, **kw)
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise SystemExit(f"{tool} failed on {c}: {r.stderr.decode(errors='replace')[-2000:]}")
        return time.perf_counter() - start, dest


def phases(bench, bucket, clusters, dest, direct):
    """Mean listing time, GET time and the rest (process start and finish)
    per cluster, from kopsci's own debug timings, and the CPU time the
    server spent per cluster (it shares the machine's cores with the client)."""
    listing = gets = rest = 0.0
    server_before = bench.server_cpu_ms()
    for c in clusters:
        cmd, env = bench.cmd_kopsci(bucket, c, os.path.join(f"{dest}.{int(direct)}", c), direct=direct)
        cmd = [a for a in cmd if a != "-q"]
        env = dict(env, KOPSCI_LOG="kopsci_core=debug")
        start = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        wall = (time.perf_counter() - start) * 1000
        log = r.stderr.decode(errors="replace")
        listed = int(re.search(r"listing page keys=\d+ ms=(\d+)", log).group(1))
        done = int(re.search(r"copy done objects=\d+ ms=(\d+)", log).group(1))
        listing += listed
        gets += done - listed
        rest += wall - done
    n = len(clusters)
    return listing / n, gets / n, rest / n, (bench.server_cpu_ms() - server_before) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kopsci", required=True)
    ap.add_argument("--weed", required=True)
    ap.add_argument("--aws", required=True)
    ap.add_argument("--rclone", required=True)
    ap.add_argument("--proxy", required=True, help="the delay_proxy binary")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--backups", type=int, default=2000, help="etcd backup objects in the generated store")
    ap.add_argument("--concurrency", type=int, default=64, help="kopsci's default, for the floor")
    ap.add_argument("--sweep", default="4,16,32,64,128", help="kopsci --concurrency values to compare")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    for tool in ("kopsci", "weed", "aws", "rclone", "proxy"):
        setattr(args, tool, os.path.abspath(getattr(args, tool)))

    work = tempfile.mkdtemp(prefix="kopsci-bench-")
    bench = Bench(args, work)
    try:
        rng = random.Random(42)
        gen = os.path.join(work, "gen")
        os.makedirs(gen)
        gen_clusters = generate_store(gen, args.clusters, args.backups // args.clusters, rng)
        fixture_clusters = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))
        bench.start_weed()
        bench.seed("bench-fixture", FIXTURES)
        bench.seed("bench-generated", gen)
        bench.start_proxy()

        rtt = 2 * args.delay_ms / 1000.0
        workloads = [
            ("fixture store (10 clusters)", "bench-fixture", fixture_clusters, FIXTURES),
            (f"generated store ({args.clusters} clusters, {args.backups} etcd-backup objects)",
             "bench-generated", gen_clusters, gen),
        ]
        tools = ["kopsci", "aws", "rclone"]
        rows = []
        for label, bucket, clusters, src in workloads:
            listed = copied = 0
            floor = 0.0
            for c in clusters:
                keys = list(tree(os.path.join(src, c)))
                kept = [k for k in keys if not is_backup_data(k)]
                listed += len(keys)
                copied += len(kept)
                pages = max(1, math.ceil(len(keys) / PAGE))
                floor += (pages + math.ceil(len(kept) / args.concurrency)) * rtt
            times = {t: [] for t in tools + ["direct"]}
            copies = {}  # each tool's last copy
            for _ in range(args.runs):
                for t in tools:
                    seconds, copies[t] = bench.timed(t, bucket, clusters, os.path.join(work, "out", t))
                    times[t].append(seconds)
                # The same copy without the proxy: the server's own time.
                seconds, _ = bench.timed("kopsci", bucket, clusters, os.path.join(work, "out", "direct"), direct=True)
                times["direct"].append(seconds)
            # All three copied the same objects, byte for byte.
            ref = {}
            for c in clusters:
                ref.update({f"{c}/{k}": v for k, v in tree(os.path.join(copies["kopsci"], c, c)).items()})
            for t in ("aws", "rclone"):
                got = tree(copies[t])
                if got != ref:
                    missing = sorted(set(ref) - set(got))[:5]
                    extra = sorted(set(got) - set(ref))[:5]
                    raise SystemExit(f"{t} copied a different set: missing {missing}, extra {extra}")
            med = {t: statistics.median(v) for t, v in times.items()}
            rows.append((label, bucket, clusters, listed, copied, floor, med, times))

        sweep = []
        label, bucket, clusters = rows[-1][0], rows[-1][1], rows[-1][2]
        for c in [int(x) for x in args.sweep.split(",") if x]:
            ts = [bench.timed("kopsci", bucket, clusters, os.path.join(work, "out", "sweep"), concurrency=c)[0]
                  for _ in range(args.runs)]
            sweep.append((c, statistics.median(ts)))
        split = [phases(bench, bucket, clusters, os.path.join(work, "out", "phases"), direct)
                 for direct in (False, True)]
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nRound trip {2 * args.delay_ms} ms ({args.delay_ms} ms each way through a loopback proxy); "
          f"one process per cluster; median of {args.runs} runs; wall time incl. process start.\n")
    print("| workload | objects copied / listed | kopsci | aws s3 sync | rclone copy | latency floor "
          "| aws ÷ kopsci | rclone ÷ kopsci | kopsci ÷ floor | kopsci, no delay | (kopsci − no delay) ÷ floor |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ok = True
    for label, _, _, listed, copied, floor, med, _ in rows:
        k, a, r, d = med["kopsci"], med["aws"], med["rclone"], med["direct"]
        print(f"| {label} | {copied} / {listed} | {k:.2f} s | {a:.2f} s | {r:.2f} s | {floor:.2f} s "
              f"| {a / k:.1f}× | {r / k:.1f}× | {k / floor:.2f}× | {d:.2f} s | {(k - d) / floor:.2f}× |")
        ok &= a / k >= 3 and r > k and k / floor <= 1.5
    print("\nkopsci ÷ floor, run by run (the spread behind the medians):\n")
    for label, _, _, _, _, floor, _, times in rows:
        print(f"- {label}: " + ", ".join(f"{t / floor:.2f}×" for t in times["kopsci"]))
    print("\nkopsci --concurrency on the generated store:\n")
    print("| concurrency | " + " | ".join(str(c) for c, _ in sweep) + " |")
    print("| --- |" + " ---: |" * len(sweep))
    print("| seconds | " + " | ".join(f"{t:.2f}" for _, t in sweep) + " |")
    print("\nWhere a cluster's time goes on the generated store (mean per cluster, from kopsci's debug timings):\n")
    print("| | listing | GETs | process start and finish | server CPU |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (listing, gets, rest, server) in zip(("through the proxy", "straight to the server"), split):
        print(f"| {name} | {listing:.1f} ms | {gets:.1f} ms | {rest:.1f} ms | {server:.1f} ms |")
    floor_per_cluster = rows[-1][5] / len(rows[-1][2])
    print(f"\nThe floor is {floor_per_cluster * 1000:.0f} ms per cluster; the server's CPU time is not in it.")
    print(f"\nGoals (≥ 3× faster than aws s3 sync, faster than rclone, within 1.5× of the floor): "
          f"{'met' if ok else 'MISSED'}")
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
