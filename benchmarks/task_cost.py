#!/usr/bin/env python3
"""What one Ansible task costs, and where: the unit behind a provision's overhead.

    .venv/bin/python benchmarks/task_cost.py [--tasks 30] [--repeat 3]

writes docs/benchmarks/task-cost-<date>.md and .json, with the machine named.
Not part of the test suite: it reports numbers and asserts nothing.

A full provision spends most of its time in apt, and the rest in Ansible's
walk of the roles' tasks (benchmarks/provision.py compares the whole). This
measures the two kinds of task that walk is made of, on one box of the
end-to-end tests (tests/boxes.py: a systemd container from the project's
Debian 12 image, reached over SSH with the project's ansible.cfg, pipelining
and ControlPersist on):

- a module run on the box: `ansible.builtin.command: /bin/true` (become), the
  cheapest module there is: what is left is Ansible's own cost per module run;
- a task that never leaves the controller: `ansible.builtin.set_fact`.

Each playbook holds --tasks tasks of one kind; the cost per task is its wall
time less that of the same playbook with no tasks (start-up, inventory,
connection), divided by --tasks; the median of --repeat runs. Beside the wall
time: the CPU time the box's container used (its cgroup, read on this host)
and the CPU time of ansible-playbook and its children on the controller, per
task, so that it says which side the time is spent on. A raw `ssh` round trip
through the same ControlPersist master is shown for scale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provision import commit, loadavg, machine

from tests.boxes import (
    REPO,
    SSH_USER,
    docker_ready,
    make_key,
    remove_boxes,
    start_box,
    write_inventory,
)

BOX = "dlsetup-bench-taskcost"
KINDS = {
    "module": {"ansible.builtin.command": "/bin/true", "become": True, "changed_when": False},
    "controller": {"ansible.builtin.set_fact": {"x": "{{ 1 }}"}},
}


def playbook(path: Path, task: dict[str, Any] | None, n: int) -> Path:
    tasks = [{"name": f"task {i}", **task} for i in range(n)] if task else []
    path.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    return path


def box_cpu_s(name: str) -> float:
    """CPU seconds the box's container has used (cgroup v1 or v2, read on the host)."""
    cid = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
    ):
        if v2.exists():
            usage = next(ln for ln in v2.read_text().splitlines() if ln.startswith("usage_usec"))
            return int(usage.split()[1]) / 1e6
    raise SystemExit(f"no cgroup CPU accounting found for {name}")


def run_playbook(pb: Path, inv: Path) -> tuple[float, float, float]:
    """(wall s, controller CPU s, box CPU s) of one ansible-playbook run."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    box0 = box_cpu_s(BOX)
    t0 = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(pb)],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ctl = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, ctl, box_cpu_s(BOX) - box0


def ssh_round_trip_s(inv: Path, key: Path, address: str, n: int = 20) -> float:
    """One `ssh box true` through a ControlPersist master, as Ansible's are."""
    control = inv.parent / "cm-%C"
    base = [
        "ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
        "UserKnownHostsFile=/dev/null", "-o", "ControlMaster=auto", "-o",
        "ControlPersist=60s", "-o", f"ControlPath={control}", f"{SSH_USER}@{address}", "true",
    ]  # fmt: skip
    subprocess.run(base, capture_output=True, check=True)  # opens the master
    t0 = time.monotonic()
    for _ in range(n):
        subprocess.run(base, capture_output=True, check=True)
    return (time.monotonic() - t0) / n


def run(args: argparse.Namespace) -> dict[str, Any]:
    why = docker_ready()
    if why:
        raise SystemExit(why)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    key, pub = make_key(work)
    load_start = loadavg()
    try:
        b = start_box(BOX, pub)
        inv = write_inventory(work / "hosts.yml", key, {"box": {"ansible_host": b.address}})
        empty = playbook(work / "empty.yml", None, 0)
        run_playbook(empty, inv)  # untimed: the connection's first use, interpreter discovery
        results: dict[str, Any] = {}
        base = [run_playbook(empty, inv) for _ in range(args.repeat)]
        results["empty"] = {
            "wall_s": round(statistics.median(w for w, _, _ in base), 2),
            "runs_s": [round(w, 2) for w, _, _ in base],
        }
        # the empty playbook's medians, unrounded, taken off every kind's
        w0, c0, x0 = (statistics.median(r[k] for r in base) for k in range(3))
        for kind, task in KINDS.items():
            pb = playbook(work / f"{kind}.yml", task, args.tasks)
            runs = [run_playbook(pb, inv) for _ in range(args.repeat)]
            results[kind] = {
                "task": task,
                "per_task_wall_s": round(
                    (statistics.median(w for w, _, _ in runs) - w0) / args.tasks, 3
                ),
                "per_task_controller_cpu_s": round(
                    (statistics.median(c for _, c, _ in runs) - c0) / args.tasks, 3
                ),
                "per_task_box_cpu_s": round(
                    (statistics.median(x for _, _, x in runs) - x0) / args.tasks, 3
                ),
                "runs_s": [round(w, 2) for w, _, _ in runs],
            }
            print(f"{kind}: {results[kind]}", file=sys.stderr, flush=True)
        results["ssh_round_trip_s"] = round(ssh_round_trip_s(inv, key, b.address), 3)
    finally:
        remove_boxes([BOX])
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "ansible_core": subprocess.run(
            [str(Path(sys.executable).parent / "ansible"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0],
        "tasks": args.tasks,
        "repeat": args.repeat,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "results": results,
    }


def markdown(r: dict[str, Any]) -> str:
    m, res = r["machine"], r["results"]
    rows = "\n".join(
        f"| {kind} | `{json.dumps(res[kind]['task'])}` | {res[kind]['per_task_wall_s']} s "
        f"| {res[kind]['per_task_controller_cpu_s']} s | {res[kind]['per_task_box_cpu_s']} s |"
        for kind in KINDS
    )
    return f"""# What one Ansible task costs, {r["date"][:10]}

Made with `benchmarks/task_cost.py` at commit {r["commit"]} ({r["ansible_core"]}),
{r["tasks"]} tasks per playbook, medians of {r["repeat"]} runs.

Machine: {m["cpu"]}, {m["cores"]} cores, {m["ram_gib"]} GiB RAM, kernel {m["kernel"]},
{m["os"]}, Docker {m["docker"]}. The box is a systemd container from the project's
Debian 12 image on the same machine, reached over SSH with the project's ansible.cfg
(pipelining, ControlPersist). Load average at the start {r["loadavg_start"]}, at the end
{r["loadavg_end"]}.

| kind | task | wall per task | controller CPU per task | box CPU per task |
|---|---|---:|---:|---:|
{rows}

A playbook with no tasks took {res["empty"]["wall_s"]} s (runs {res["empty"]["runs_s"]} s);
the module playbooks' runs: {res["module"]["runs_s"]} s; the controller-only ones':
{res["controller"]["runs_s"]} s. One `ssh box true` through a ControlPersist master:
{res["ssh_round_trip_s"]} s.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=30, help="tasks in each playbook")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each playbook")
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench-task-cost"))
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    ap.add_argument("--label", default="", help="suffix of the result's file name")
    args = ap.parse_args(argv)
    r = run(args)
    out = Path(args.out)
    stem = f"task-cost-{r['date'][:10]}" + (f"-{args.label}" if args.label else "")
    (out / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
