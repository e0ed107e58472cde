#!/usr/bin/env python3
"""Pipeline benchmark: `kopsci pipeline` for a fleet of CLUSTERS clusters
(default 1000) in three environments, test → staging → prod (10 %, 30 %,
60 %), rendered from bench/render's templates (one Cluster and four
InstanceGroup templates, a snippet, base → environment → cluster values).

Measured, wall time including process start, over RUNS runs each, in a
git repository with GitLab's variables unset:

  * merge request: one cluster's values changed since the base
    (`--changed-since BASE --mr-note`): one dry run and the note;
  * merge request: one cluster's entry in kopsci.yaml changed (the fleet
    file at the merge base is read with git and parsed, and every
    cluster's resolved entry compared): one dry run and the note;
  * default branch, every cluster, one pipeline (`--all --max-deployments
    0`: 2000 cluster jobs with the default `apply: reconcile`, promotion
    through gate jobs);
  * default branch, every cluster, split by environment
    (`--split-by-environment`, GitLab's default limits);
  * drift (`--for drift --dryrun-environment=false`): every cluster.

Every output (each file of the split one) is checked: valid for GitLab's
CI schema (check-jsonschema's vendor.gitlab-ci, offline) and no job with
more than 50 `needs`. Run through bench/pipeline/run, which builds kopsci.
"""

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "render"))
import gen_fleet  # noqa: E402  (bench/render's templates and values)

GOAL = 0.2
MAX_NEEDS = 50
ENVIRONMENTS = [("test", 0.1, None), ("staging", 0.3, "test"), ("prod", 0.6, "staging")]


def generate(out: pathlib.Path, count: int) -> str:
    """Writes the fleet; returns the name of a prod cluster to change."""
    for d in ["templates/ig", "templates/snippets", "values/env", "values/clusters"]:
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / "templates/cluster.yaml.j2").write_text(gen_fleet.CLUSTER)
    for i, key in enumerate(["control-plane", "nodes-a", "nodes-b", "nodes-c"]):
        body = "{%- set key = '" + key + "' %}{%- set name = key %}\n" + gen_fleet.IG
        (out / f"templates/ig/{i:02d}-{key}.yaml.j2").write_text(body)
    (out / "templates/snippets/bootstrap.sh").write_text(gen_fleet.SNIPPET)
    (out / "values/base.yaml").write_text(gen_fleet.BASE)
    fleet = [
        "templates: [templates/cluster.yaml.j2, templates/ig]",
        "snippets: [templates/snippets]",
        "values: [values/base.yaml]",
        "environments:",
    ]
    for env, _, needs in ENVIRONMENTS:
        (out / f"values/env/{env}.yaml").write_text("kubernetesVersion: 1.34.1\n")
        fleet.append(f"  {env}:\n    values: [values/env/{env}.yaml]")
        if needs:
            fleet.append(f"    needs: [{needs}]")
    fleet.append("clusters:")
    n = 0
    changed = None
    for env, share, _ in ENVIRONMENTS:
        for _ in range(round(count * share)):
            name = f"c{n:04d}.{env}.k8s.example.com"
            (out / f"values/clusters/{name}.yaml").write_text(
                "zones: [eu-west-1a, eu-west-1b, eu-west-1c]\n"
                f"network: {{cidr: 10.{n % 250}.0.0/16, prefix: 10.{n % 250}}}\n"
            )
            fleet.append(f"  - name: {name}\n    environment: {env}\n    values: [values/clusters/{name}.yaml]")
            if env == "prod" and changed is None:
                changed = name
            n += 1
    (out / "kopsci.yaml").write_text("\n".join(fleet) + "\n")
    return changed


def git(repo: pathlib.Path, *args: str) -> str:
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def clean_env() -> dict:
    """The environment kopsci runs in: no GitLab variables."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CI_") or k.startswith("GITLAB_") or k.startswith("KOPSCI_"))}
    env["NO_COLOR"] = "1"
    return env


def check(files, tool: str) -> str:
    """GitLab's schema and the needs limit, for every file; returns a summary."""
    jobs = deployments = worst = 0
    for f in files:
        doc = yaml.load(pathlib.Path(f).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for name, job in doc.items():
            if not isinstance(job, dict) or "stage" not in job:
                continue
            jobs += 1
            deployments += "environment" in job
            needs = len(job.get("needs", []))
            worst = max(worst, needs)
            if needs > MAX_NEEDS:
                raise SystemExit(f"{f}: {name} needs {needs} jobs, more than {MAX_NEEDS}")
    r = subprocess.run([tool, "--builtin-schema", "vendor.gitlab-ci", *map(str, files)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"GitLab schema validation failed:\n{r.stdout}\n{r.stderr}")
    size = sum(pathlib.Path(f).stat().st_size for f in files)
    return (f"{len(files)} file(s), {size / 1e6:.2f} MB, {jobs} jobs, {deployments} deployments, "
            f"at most {worst} needs; schema ok")


def measure(label, cmd, repo, runs, outputs, tool):
    env = clean_env()
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(cmd)} failed:\n{r.stderr}")
    summary = check(outputs(), tool)
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # kopsci and the git it waits for: what the run costs whatever
        # else the machine is doing.
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    med = statistics.median(times)
    print(f"{label}\n  {summary}\n  wall: min {min(times) * 1000:.1f} ms   median {med * 1000:.1f} ms   "
          f"max {max(times) * 1000:.1f} ms   goal < {GOAL * 1000:.0f} ms: {'met' if med < GOAL else 'MISSED'}\n"
          f"  cpu (user + sys, git included): median {statistics.median(cpu) * 1000:.1f} ms")
    return med


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kopsci", required=True)
    p.add_argument("--check-jsonschema", required=True)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kopsci-bench-pipeline-"))
    try:
        repo = work / "fleet"
        changed = generate(repo, args.clusters)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "fleet")
        base = git(repo, "rev-parse", "HEAD")
        with open(repo / f"values/clusters/{changed}.yaml", "a") as f:
            f.write("nodes: 5\n")
        git(repo, "commit", "-qam", f"{changed}: more nodes")

        k = args.kopsci
        out = repo / ".kopsci/child-pipeline.yml"
        children = repo / ".kopsci/children"

        def main_file():
            return [out]

        def split_files():
            return [out, *sorted(children.glob("*.yml"))]

        print(f"kopsci pipeline: {args.clusters} clusters in 3 environments, {args.runs} runs, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        results = [
            measure("merge request, 1 cluster changed",
                    [k, "pipeline", "--changed-since", base, "--mr-note", "--out", str(out)],
                    repo, args.runs, main_file, args.check_jsonschema),
        ]
        # One cluster's fleet-file entry changed, on top.
        values_commit = git(repo, "rev-parse", "HEAD")
        fleet_text = (repo / "kopsci.yaml").read_text()
        entry = f"  - name: {changed}\n    environment: prod\n"
        assert entry in fleet_text, entry
        (repo / "kopsci.yaml").write_text(
            fleet_text.replace(entry, entry + "    apply: update-roll\n"))
        git(repo, "commit", "-qam", f"{changed}: update-roll")
        results += [
            measure("merge request, 1 cluster's entry in kopsci.yaml changed",
                    [k, "pipeline", "--changed-since", values_commit, "--mr-note", "--out", str(out)],
                    repo, args.runs, main_file, args.check_jsonschema),
        ]
        dry_runs = [j for j in yaml.safe_load(out.read_text()) if str(j).startswith("dryrun:")]
        if dry_runs != [f"dryrun:{changed}"]:
            raise SystemExit(f"the fleet-file change selected {dry_runs}, not only {changed}")
        results += [
            measure("default branch, every cluster, one pipeline (gates)",
                    [k, "pipeline", "--for", "default-branch", "--all", "--max-deployments", "0",
                     "--out", str(out)],
                    repo, args.runs, main_file, args.check_jsonschema),
        ]
        shutil.rmtree(children, ignore_errors=True)
        results.append(
            measure("default branch, every cluster, split by environment",
                    [k, "pipeline", "--for", "default-branch", "--all", "--split-by-environment",
                     "--out", ".kopsci/child-pipeline.yml"],
                    repo, args.runs, split_files, args.check_jsonschema))
        results.append(
            measure("drift, every cluster",
                    [k, "pipeline", "--for", "drift", "--dryrun-environment=false", "--out", str(out)],
                    repo, args.runs, main_file, args.check_jsonschema))
        if args.check and any(r >= GOAL for r in results):
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
