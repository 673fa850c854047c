"""Interrupted runs: dlsetup killed part-way through a provision, then run again.

Each point is a fresh box (a systemd container over SSH, as in
test_e2e_ssh.py) and `dlsetup provision --host box1` started as a
subprocess in its own session, like a command in a terminal. The test follows
the run through ansible-runner's event files (the CLI's private data dir lives
under the TMPDIR the test gives it) and, when the Nth task has started, sends

* SIGINT to the process group: what Ctrl-C in a terminal does. The CLI must
  exit 130 with the line saying to run the same command again;
* SIGKILL to the process group: a closed terminal, an OOM kill. No message
  can be asked for; the box must still come out whole.

Points, chosen by task count so that they are the same on every machine:

1. SIGINT at the 4th task start, early (in preflight, today: before any change);
2. SIGINT at the middle task of a full run (counted in point 1's resume run);
3. SIGKILL at the start of the longest task of that run (a package install
   once the driver or container stages are in the site).

After each interruption: no half-written file (fstab parses, daemon.json, if
there, is valid JSON); the next run converges (exit 0); after it dpkg --audit
is empty, every held package is installed and the driver stack (by
nvidia_driver's own hold pattern, once that role exists) is held and pinned
as a whole; and a further run reports changed=0.

Profile: `--skip-tags cuda,smoke`. The CUDA toolkit (1.6 GB, ~2 min a box)
would take the test over its ~4 minute budget three times over and adds no
kind of step the driver stage does not already have (an apt install, holds);
the smoke test needs a GPU and is only reported as skipped in a box anyway.
The NVIDIA Container Toolkit comes from tests/aptrepo.py's signed stand-in
for NVIDIA's repository (boxes.nvidia_mirror_vars), unreachable from CI.
Boxes share the host's apt archive (tests/aptcache.archive_volume) so the
downloads happen once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsetup import content
from tests import aptcache
from tests.boxes import (
    DLSETUP,
    REPO,
    Boxes,
    CliResult,
    dlsetup,
    nvidia_mirror_vars,
    sh,
    write_inventory,
)

pytestmark = [
    pytest.mark.slow,
]

BOX = "dlsetup-e2e-intr1"
PROFILE = ("--skip-tags", "cuda,smoke")
RESUME_LINE = "run the same command again"


@dataclass
class Watched:
    """A provision run as a subprocess whose task starts can be counted."""

    proc: subprocess.Popen[str]
    tmp: Path
    out: Path
    seen: set[Path] = field(default_factory=set)
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def poll_tasks(self) -> int:
        for f in sorted(self.tmp.glob("dlsetup-run-*/artifacts/*/job_events/*.json")):
            if f in self.seen or f.name.endswith("partial.json"):
                continue
            try:
                ev = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # still being written: read it next time
            self.seen.add(f)
            if ev.get("event") == "playbook_on_task_start":
                self.tasks.append(ev)
        self.tasks.sort(key=lambda e: int(e.get("counter", 0)))
        return len(self.tasks)

    def output(self) -> str:
        return self.out.read_text(errors="replace")


def start(inv: Path, tmp: Path) -> Watched:
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "output.txt"
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [*DLSETUP, "provision", "--host", "box1", "-i", str(inv), *PROFILE],
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(REPO),
            env={**os.environ, "TMPDIR": str(tmp)},
            start_new_session=True,  # its own process group, as a shell job has
        )
    return Watched(proc, tmp, out)


def interrupt_at(run: Watched, n: int, sig: signal.Signals, timeout: float = 600) -> str:
    """Send `sig` to the run's process group once its nth task has started;
    the name of that task."""
    deadline = time.monotonic() + timeout
    while run.poll_tasks() < n:
        if run.proc.poll() is not None:
            raise AssertionError(
                f"the run ended (rc {run.proc.returncode}) after {len(run.tasks)} tasks, "
                f"before task {n}:\n{run.output()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"task {n} did not start within {timeout} s")
        time.sleep(0.1)
    task = str(run.tasks[n - 1].get("event_data", {}).get("task", "?"))
    os.killpg(run.proc.pid, sig)
    return task


def wait_for_leftovers(tmp: Path, timeout: float = 60) -> None:
    """After SIGKILL, ansible-playbook (in its own pty session) gets SIGHUP when
    the CLI's end of the pty closes; wait until no process of this run is left,
    as a user who runs the command again a moment later would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run(["pgrep", "-f", str(tmp)], capture_output=True, check=False)
        if res.returncode != 0:
            return
        time.sleep(0.5)


def fstab_parses(box: str) -> None:
    text = sh(box, "cat /etc/fstab")
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = s.split()
        assert 4 <= len(fields) <= 6, f"fstab line is not an fstab entry: {line!r}"
        for num in fields[4:]:
            assert num.isdigit(), f"fstab dump/pass field is not a number: {line!r}"
    entries = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        return
    # libmount (what mount and systemd read) must see every entry: a line it
    # cannot parse it skips with a warning, so compare the counts.
    res = subprocess.run(
        ["docker", "exec", box, "findmnt", "--tab-file", "/etc/fstab", "-J", "--list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, f"libmount cannot read /etc/fstab: {res.stderr}"
    assert len(json.loads(res.stdout)["filesystems"]) == len(entries), res.stdout + res.stderr


def daemon_json_valid(box: str) -> None:
    text = sh(box, "cat /etc/docker/daemon.json 2>/dev/null || true")
    if text.strip():
        json.loads(text)  # raises on a half-written file


def no_half_written_files(box: str) -> None:
    fstab_parses(box)
    daemon_json_valid(box)


def _driver_hold_pattern() -> re.Pattern[str] | None:
    f = content.roles_dir() / "nvidia_driver" / "vars" / "main.yml"
    if not f.is_file():
        return None
    regex = (yaml.safe_load(f.read_text()) or {}).get("__nvidia_driver_hold_regex")
    return re.compile(str(regex).strip()) if regex else None


def packages_consistent(box: str) -> None:
    audit = sh(box, "dpkg --audit", check=False)
    assert audit.strip() == "", f"dpkg --audit: {audit}"
    rows = sh(box, "dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}\\n'")
    installed = {
        p: v for st, p, v in (r.split("|") for r in rows.splitlines()) if st.strip() in ("ii", "hi")
    }
    held = set(sh(box, "apt-mark showhold").split())
    assert held <= set(installed), f"held but not installed: {held - set(installed)}"
    pattern = _driver_hold_pattern()
    if pattern is None:
        return
    stack = {p for p in installed if pattern.match(p)}
    # The whole driver stack is held, or none of it (nothing installed yet).
    assert {p for p in held if pattern.match(p)} == stack, (
        f"driver stack half-held: stack {sorted(stack)}, held {sorted(held)}"
    )
    if stack:
        pins = sh(box, "cat /etc/apt/preferences.d/dlsetup-nvidia-driver 2>/dev/null || true")
        pinned = set(re.findall(r"^Package: (\S+)", pins, re.M))
        assert pinned == stack, f"driver stack pinned {sorted(pinned)} but is {sorted(stack)}"


@pytest.fixture(scope="module")
def work(boxes: Boxes) -> Boxes:
    return boxes


def fresh_box(boxes: Boxes, name: str) -> Path:
    box = boxes.start(BOX, volumes=[aptcache.archive_volume("e2e-debian12")])
    return write_inventory(
        boxes.work / name / "hosts.yml",
        boxes.key,
        {"box1": {"ansible_host": box.address, **nvidia_mirror_vars()}},
    )


def converge_then_no_change(inv: Path, tmp: Path) -> tuple[CliResult, Watched]:
    """The run after an interruption (exit 0, counted), then one more (changed=0)."""
    run = start(inv, tmp)
    # The CLI removes its private data dir at the end: count while it runs.
    deadline = time.monotonic() + 900
    while run.proc.poll() is None and time.monotonic() < deadline:
        run.poll_tasks()
        time.sleep(0.2)
    run.proc.wait(timeout=60)
    out = run.output()
    assert run.proc.returncode == 0, f"the run after the interruption failed:\n{out[-4000:]}"
    packages_consistent(BOX)
    no_half_written_files(BOX)
    # every task walked (--verify-all): the tasks find nothing half-done
    again = dlsetup(
        "provision", "--host", "box1", "-i", str(inv), *PROFILE, "--json", "--verify-all"
    )
    assert again.rc == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.doc["hosts"]["box1"]["changed"] == 0, again.doc["hosts"]["box1"]["changes"]
    return again, run


def _durations(run: Watched) -> list[tuple[float, int, str]]:
    """(seconds, 1-based index, name) per started task, from start to next start."""
    from datetime import datetime  # noqa: PLC0415

    stamps = [datetime.fromisoformat(str(e["created"])).timestamp() for e in run.tasks]
    out = []
    for i, ev in enumerate(run.tasks[:-1]):
        out.append((stamps[i + 1] - stamps[i], i + 1, str(ev["event_data"].get("task", ""))))
    return out


def test_interrupted_runs_resume_and_converge(work: Boxes) -> None:
    root = work.work
    report: list[str] = []

    # Point 1: Ctrl-C at the 4th task.
    inv = fresh_box(work, "p1")
    run = start(inv, root / "p1-run")
    task = interrupt_at(run, 4, signal.SIGINT)
    run.proc.wait(timeout=180)
    out = run.output()
    assert run.proc.returncode == 130, f"rc {run.proc.returncode} after Ctrl-C:\n{out[-3000:]}"
    assert RESUME_LINE in out, out[-3000:]
    no_half_written_files(BOX)
    _, resumed = converge_then_no_change(inv, root / "p1-resume")
    report.append(f"SIGINT at task 4 ({task}): resumed in {len(resumed.tasks)} tasks")

    # Points 2 and 3 from the full run's task list: its middle, and its longest task.
    total = len(resumed.tasks)
    assert total > 8, f"a full provision started only {total} tasks"
    middle = total // 2
    longest = max(_durations(resumed))
    heavy = min(max(longest[1], 5), total - 1)

    inv = fresh_box(work, "p2")
    run = start(inv, root / "p2-run")
    task = interrupt_at(run, middle, signal.SIGINT)
    run.proc.wait(timeout=180)
    out = run.output()
    assert run.proc.returncode == 130, f"rc {run.proc.returncode} after Ctrl-C:\n{out[-3000:]}"
    assert RESUME_LINE in out, out[-3000:]
    no_half_written_files(BOX)
    converge_then_no_change(inv, root / "p2-resume")
    report.append(f"SIGINT at task {middle} of {total} ({task})")

    inv = fresh_box(work, "p3")
    run = start(inv, root / "p3-run")
    task = interrupt_at(run, heavy, signal.SIGKILL)
    run.proc.wait(timeout=60)
    assert run.proc.returncode == -signal.SIGKILL
    wait_for_leftovers(root / "p3-run")
    no_half_written_files(BOX)
    converge_then_no_change(inv, root / "p3-resume")
    report.append(f"SIGKILL at task {heavy} ({task}, {longest[0]:.0f} s in a full run)")
    print("\n".join(report))
