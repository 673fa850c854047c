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

And what one more apt transaction costs (--apt-package, nvme-cli by default,
the nvme role's; 0 runs with --apt-repeat 0): each role installs its packages
in a transaction of its own, a bare `apt-get install` of them all in one.
With the package's files downloaded first (untimed, `--download-only`), so
that no download is timed: apt's resolution alone (`apt-get install -s`), the
bare `apt-get install --no-install-recommends`, both run in the box with
`docker exec` (about 0.1 s of its own), and the same install as one
`ansible.builtin.apt` task over SSH (a playbook's wall less the empty one's);
the package is purged after each, its dependencies with it.
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


def box_sh_s(cmd: str) -> float:
    """Wall seconds of one shell command run as root in the box (docker exec)."""
    t0 = time.monotonic()
    subprocess.run(["docker", "exec", BOX, "bash", "-c", cmd], capture_output=True, check=True)
    return time.monotonic() - t0


def apt_cost(work: Path, inv: Path, package: str, repeat: int, empty_wall: float) -> dict[str, Any]:
    """One package's install: apt's resolution, bare apt-get, the apt module (medians)."""
    apt = "export DEBIAN_FRONTEND=noninteractive; apt-get -q -y --no-install-recommends"
    box_sh_s(f"{apt} update && {apt} install python3-apt")  # the base stage's part of a run
    fetch = f"{apt} install --download-only {package}"
    purge = f"{apt} purge {package} && {apt} autoremove --purge"
    task = {"ansible.builtin.apt": {"name": package, "install_recommends": False}, "become": True}
    pb = playbook(work / "apt.yml", task, 1)
    resolve, bare, module = [], [], []
    for _ in range(repeat):
        box_sh_s(fetch)
        resolve.append(box_sh_s(f"{apt} install -s {package}"))
        bare.append(box_sh_s(f"{apt} install {package}"))
        box_sh_s(purge)
        box_sh_s(fetch)
        module.append(run_playbook(pb, inv)[0] - empty_wall)
        box_sh_s(purge)
    return {
        "package": package,
        "resolve_s": round(statistics.median(resolve), 2),
        "apt_get_s": round(statistics.median(bare), 2),
        "apt_module_s": round(statistics.median(module), 2),
        "runs": {
            "resolve_s": [round(x, 2) for x in resolve],
            "apt_get_s": [round(x, 2) for x in bare],
            "apt_module_s": [round(x, 2) for x in module],
        },
    }


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
        if args.apt_repeat > 0:
            results["apt"] = apt_cost(work, inv, args.apt_package, args.apt_repeat, w0)
            print(f"apt: {results['apt']}", file=sys.stderr, flush=True)
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
{apt_markdown(res.get("apt"))}"""


def apt_markdown(a: dict[str, Any] | None) -> str:
    if not a:
        return ""
    return f"""
One more apt transaction, `{a["package"]}` with its files downloaded first (medians;
runs in brackets): apt's resolution alone (`apt-get install -s`, docker exec)
{a["resolve_s"]} s {a["runs"]["resolve_s"]}; the bare `apt-get install
--no-install-recommends` (docker exec) {a["apt_get_s"]} s {a["runs"]["apt_get_s"]};
the same install as one `ansible.builtin.apt` task over SSH, less the empty
playbook {a["apt_module_s"]} s {a["runs"]["apt_module_s"]}.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=30, help="tasks in each playbook")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each playbook")
    ap.add_argument("--apt-package", default="nvme-cli", help="the package of the apt measurement")
    ap.add_argument("--apt-repeat", type=int, default=3, help="installs of it (0: none)")
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
