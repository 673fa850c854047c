#!/usr/bin/env python3
"""Where a full provision's time goes: every task of it, by kind and by role.

    .venv/bin/python benchmarks/provision_profile.py [--runs 2]

benchmarks/provision.py says how far a full provision is from a bare
`apt-get install` of the same packages (issue 16: within 1.25x); this says
what the difference is made of. The boxes are that benchmark's (the
end-to-end tests' systemd containers from the project's Debian 12 image,
reached over SSH, one apt-cacher-ng cache that an untimed provision fills
first, the NVIDIA Container Toolkit off). Each box is provisioned through
dlsetup's CLI in this process, and every task result event that
ansible-runner hands the CLI's progress display is recorded on the way
(`dlsetup.runner.run` is wrapped to see them; the run itself is the CLI's).

Each task result is one of:

- package transaction: an `ansible.builtin.apt` task that changed the box
  (the installs, what the bare `apt-get install` of the comparison also
  does; the base stage's `apt-get update` and python3-apt install is a shell
  task, and cuda_apt_clean's `apt-get clean` a command task, both counted
  with the modules);
- module on the box: any other task that ran a module there (Python starts
  on the box and imports Ansible's module_utils: docs/benchmarks/task-cost-*);
- controller only: an action that runs in the controller (set_fact, assert,
  include_tasks, validate_argument_spec ...);
- skipped: its condition was false.

Besides the tasks' own durations: the time between them (the strategy's
walk from one task to the next) and the time outside the playbook runs
(the CLI, Ansible's start, the inventory).

Writes docs/benchmarks/provision-profile-<date>.md and .json, with the machine
named. Not part of the test suite: it reports numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from provision import Bench, commit, content_hash, loadavg, machine  # noqa: E402

from dlsetup import cli, runner  # noqa: E402

# Actions whose work is done in the controller: no module runs on the box.
CONTROLLER_ACTIONS = {
    f"ansible.builtin.{a}"
    for a in (
        "set_fact", "assert", "debug", "fail", "meta", "include_tasks", "import_tasks",
        "include_role", "import_role", "include_vars", "validate_argument_spec",
        "set_stats", "add_host", "group_by", "pause",
    )
}  # fmt: skip
RESULTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")
KINDS = ("package transaction", "module on the box", "controller only", "skipped")


def kind(ev: dict[str, Any]) -> str:
    if ev["event"] == "runner_on_skipped":
        return "skipped"
    data = ev["event_data"]
    action = str(data.get("task_action") or "")
    if action in CONTROLLER_ACTIONS:
        return "controller only"
    changed = bool((data.get("res") or {}).get("changed"))
    if action == "ansible.builtin.apt" and changed:
        return "package transaction"
    return "module on the box"


class Recorder:
    """Wraps dlsetup.runner.run (as tests/fixtures/events/record.py does) to
    keep the task result events each run hands the CLI."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._run = runner.run

    def __enter__(self) -> Recorder:
        def run(spec: runner.RunSpec, handler: runner.EventHandler) -> runner.RunOutcome:
            def keep(ev: dict[str, Any]) -> bool:
                if ev.get("event") in RESULTS:
                    self.events.append(ev)
                return handler(ev)

            return self._run(spec, keep)

        runner.run = run
        return self

    def __exit__(self, *exc: object) -> None:
        runner.run = self._run


def _stamp(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def profile(events: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = {k: [0, 0.0] for k in KINDS}
    by_role: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    tasks: list[dict[str, Any]] = []
    for ev in events:
        data = ev["event_data"]
        k = kind(ev)
        secs = float(data.get("duration") or 0.0)
        by_kind[k][0] += 1
        by_kind[k][1] += secs
        role = str(data.get("role") or "(play)")
        if k == "module on the box":
            by_role[role][0] += 1
            by_role[role][1] += secs
        tasks.append(
            {"kind": k, "role": role, "task": data.get("task"), "action": data.get("task_action"),
             "seconds": round(secs, 3), "start": data.get("start"), "end": data.get("end")}
        )  # fmt: skip
    in_tasks = sum(v[1] for v in by_kind.values())
    spans = [(_stamp(t["start"]), _stamp(t["end"])) for t in tasks if t["start"] and t["end"]]
    span = max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0
    return {
        "wall_s": round(wall, 1),
        "tasks": len(tasks),
        "kinds": {k: {"tasks": int(v[0]), "seconds": round(v[1], 1)} for k, v in by_kind.items()},
        "between_tasks_s": round(max(0.0, span - in_tasks), 1),
        "outside_playbooks_s": round(max(0.0, wall - span), 1),
        "roles": {r: {"tasks": int(v[0]), "seconds": round(v[1], 1)} for r, v in by_role.items()},
        "task_list": tasks,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    b = Bench(work, [], 1)
    runs: list[dict[str, Any]] = []
    try:
        warm = b.box("warm")
        t_cold, _ = b.provision(b.inventory("warm", {"warm": warm}), "warm")
        b.say(f"warm-up provision (cold cache, not profiled): {t_cold:.1f} s")
        b.remove("warm")
        for i in range(1, args.runs + 1):
            name = f"prof{i}"
            inv = b.inventory(name, {name: b.box(name)})
            # the CLI's JSON document is not needed here: its rc says enough
            # (a real file: Ansible reconfigures stdout and warns on a StringIO)
            with (
                Recorder() as rec,
                open(os.devnull, "w") as devnull,
                contextlib.redirect_stdout(devnull),
            ):
                t0 = time.monotonic()
                rc = cli.main(["provision", "--host", name, "-i", str(inv), "--json"])
                wall = time.monotonic() - t0
            if rc != 0:
                raise SystemExit(f"provision of {name} failed ({rc})")
            p = profile(rec.events, wall)
            b.say(
                f"profiled provision {i}: {wall:.1f} s, {p['tasks']} task results, "
                + ", ".join(f"{k} {v['tasks']} / {v['seconds']} s" for k, v in p["kinds"].items())
                + f", between tasks {p['between_tasks_s']} s, outside {p['outside_playbooks_s']} s"
            )
            if runs:
                del p["task_list"]  # the first run's list is kept, not every run's
            runs.append(p)
            b.remove(name)
    finally:
        b.close()
    return {
        "date": dt.date.today().isoformat(),
        "commit": commit(),
        "content": content_hash(),
        "machine": machine(),
        "load_start": load_start,
        "load_end": loadavg(),
        "warmup_s": round(t_cold, 1),
        "runs": runs,
        "log": b.log,
    }


def _median(runs: list[dict[str, Any]], get: Any) -> float:
    return round(statistics.median(get(r) for r in runs), 1)


def markdown(r: dict[str, Any]) -> str:
    runs = r["runs"]
    m = r["machine"]
    out = [
        f"# Where a full provision's time goes, {r['date']}",
        "",
        f"Made with `benchmarks/provision_profile.py` at commit {r['commit']}; "
        "profile: full site (NVIDIA Container Toolkit off: its repository is on the internet).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel {m['kernel']}, "
        f"{m['os']}, Docker {m['docker']}. Boxes as in benchmarks/provision.py (SSH, one "
        f"apt-cacher-ng cache filled by an untimed provision first: {r['warmup_s']} s). "
        f"Load average at the start {r['load_start']}, at the end {r['load_end']}.",
        "",
        f"Medians of {len(runs)} provisions of fresh boxes "
        f"(walls: {[x['wall_s'] for x in runs]} s).",
        "",
        "| where | tasks | seconds |",
        "|---|---:|---:|",
    ]
    for k in KINDS:
        out.append(
            f"| {k} | {_median(runs, lambda x, k=k: x['kinds'][k]['tasks']):.0f} "
            f"| {_median(runs, lambda x, k=k: x['kinds'][k]['seconds'])} |"
        )
    out += [
        f"| between tasks (the walk from one to the next) | | "
        f"{_median(runs, lambda x: x['between_tasks_s'])} |",
        f"| outside the playbook runs (CLI, Ansible's start, inventory) | | "
        f"{_median(runs, lambda x: x['outside_playbooks_s'])} |",
        f"| **whole provision** | {_median(runs, lambda x: x['tasks']):.0f} | "
        f"**{_median(runs, lambda x: x['wall_s'])}** |",
        "",
        "Modules on the box by role (the first run):",
        "",
        "| role | tasks | seconds |",
        "|---|---:|---:|",
    ]
    first = runs[0]
    for role, v in sorted(first["roles"].items(), key=lambda kv: -kv[1]["seconds"]):
        out.append(f"| {role} | {v['tasks']} | {v['seconds']} |")
    out += ["", "The package transactions and the longest modules on the box (the first run):", ""]
    out += ["| seconds | kind | role | task |", "|---:|---|---|---|"]
    slow = [t for t in first["task_list"] if t["kind"] in KINDS[:2]]
    for t in sorted(slow, key=lambda t: -t["seconds"])[:20]:
        out.append(f"| {t['seconds']:.2f} | {t['kind']} | {t['role']} | {t['task']} |")
    out += ["", "Log:", "", "```", *r["log"], "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2, help="profiled provisions of fresh boxes")
    p.add_argument("--work", default=str(REPO / ".cache" / "bench-profile"), help="scratch folder")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="where results go")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs: expected 1 or more")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the runs: a missing folder must not lose them
    r = run(args)
    stem = out / f"provision-profile-{r['date']}"
    stem.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(r))
    print(f"wrote {stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
