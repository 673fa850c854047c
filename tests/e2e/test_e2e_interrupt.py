"""Interrupted runs: dlsetup killed part-way through a provision, then run again.

One fresh box (a systemd container over SSH, as in test_e2e_ssh.py) and
`dlsetup provision --host box1` started as a subprocess in its own session,
like a command in a terminal, interrupted three times in a row, each run
picking up what the one before left. The test follows each run through
ansible-runner's event files (the CLI's private data dir lives under the
TMPDIR the test gives it) and, when the chosen task has started, sends

* SIGINT to the process group: what Ctrl-C in a terminal does. The CLI must
  exit 130 with the line saying to run the same command again;
* SIGKILL to the process group: a closed terminal, an OOM kill. No message
  can be asked for; the box must still come out whole.

The points, named by role and task so that they are the same on every machine:

1. SIGINT at the 4th task start, early (in the preflight stage: nothing on the
   box has changed, which the test checks, so the next run starts from the box
   as it was installed);
2. SIGINT at the first task of the driver stage: the middle of the run, the
   base, disks and NVMe stages done, the driver and container stages not;
3. SIGKILL when the driver's package install starts, in the run that resumes
   from point 2: one of the site's longest tasks (an apt transaction of the
   whole driver stack), killed from a box that was already interrupted once.

After each interruption: no half-written file (fstab parses, daemon.json, if
there, is valid JSON). After the third, the next run converges (exit 0); after
it dpkg --audit is empty, every held package is installed and the driver stack
(by nvidia_driver's own hold pattern) is held and pinned as a whole; and a
further run walking every task (--verify-all) reports changed=0.

The points once each had a fresh box and a converging run of their own (three
full provisions and three --verify-all runs, about 7 minutes of CI's e2e
stage); chained on one box the interruptions compound, which is the harder
case, and the test does one provision's work.

Profile: `--skip-tags cuda,smoke`. The CUDA toolkit (1.6 GB, ~2 min a box)
adds no kind of step the driver stage does not already have (an apt install,
holds); the smoke test needs a GPU and is only reported as skipped in a box
anyway. The NVIDIA Container Toolkit comes from tests/aptrepo.py's signed
stand-in for NVIDIA's repository (boxes.nvidia_mirror_vars), unreachable from
CI. The box shares the host's apt archive (tests/aptcache.archive_volume) so
the downloads happen once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsetup import content
from dlsetup.runner import processes_with
from tests import aptcache
from tests.boxes import (
    DLSETUP,
    REPO,
    Boxes,
    dlsetup,
    nvidia_mirror_vars,
    sh,
    snapshot,
    write_inventory,
)

pytestmark = [
    pytest.mark.slow,
]

BOX = "dlsetup-e2e-intr1"
PROFILE = ("--skip-tags", "cuda,smoke")
RESUME_LINE = "run the same command again"
# The points of the driver stage the test interrupts at (roles/nvidia_driver/tasks).
FIRST_DRIVER_TASK = "Gather the OS facts the role dispatches on"
DRIVER_INSTALL_TASK = "Install the driver packages, with DKMS and the kernel headers"


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


def interrupt_at(
    run: Watched,
    sig: signal.Signals,
    *,
    nth: int | None = None,
    role: str | None = None,
    task: str | None = None,
    timeout: float = 600,
) -> str:
    """Send `sig` to the run's process group once its `nth` task has started,
    or the first task named `task` of `role`; the name of that task and its
    place in the run."""
    deadline = time.monotonic() + timeout

    def found() -> int | None:
        if nth is not None:
            return nth if len(run.tasks) >= nth else None
        for i, ev in enumerate(run.tasks, 1):
            data = ev.get("event_data", {})
            if data.get("role") == role and data.get("task") == task:
                return i
        return None

    while True:
        run.poll_tasks()
        at = found()
        if at is not None:
            break
        if run.proc.poll() is not None:
            raise AssertionError(
                f"the run ended (rc {run.proc.returncode}) after {len(run.tasks)} tasks, "
                f"before {nth or (role, task)}:\n{run.output()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{nth or (role, task)} did not start within {timeout} s")
        time.sleep(0.1)
    os.killpg(run.proc.pid, sig)
    name = str(run.tasks[at - 1].get("event_data", {}).get("task", "?"))
    return f"task {at}, {name}"


def ctrl_c(run: Watched) -> None:
    """What a user sees after Ctrl-C: exit 130 and the line to run again."""
    run.proc.wait(timeout=180)
    out = run.output()
    assert run.proc.returncode == 130, f"rc {run.proc.returncode} after Ctrl-C:\n{out[-3000:]}"
    assert RESUME_LINE in out, out[-3000:]
    # Nothing of the run is left on this machine: ansible-playbook's workers
    # run in sessions of their own, out of reach of a kill of its group.
    left = processes_of(run.tmp)
    assert left == [], f"processes of the canceled run still alive: {left}"


def processes_of(tmp: Path) -> list[str]:
    """The processes of one run (TMPDIR=tmp in their environment, which every
    process the CLI starts inherits), as "pid command"."""
    found = []
    for pid in processes_with("TMPDIR", str(tmp)):
        with suppress(OSError):  # gone meanwhile
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            found.append(f"{pid} {cmd.decode(errors='replace')[:200]}")
    return found


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


def fresh_box(boxes: Boxes) -> Path:
    box = boxes.start(BOX, volumes=[aptcache.archive_volume("e2e-debian12")])
    return write_inventory(
        boxes.work / "hosts.yml",
        boxes.key,
        {"box1": {"ansible_host": box.address, **nvidia_mirror_vars()}},
    )


def converge_then_no_change(inv: Path, tmp: Path) -> Watched:
    """The run after the interruptions (exit 0, counted), then one more that
    walks every task (--verify-all: the tasks find nothing half-done)."""
    run = start(inv, tmp)
    # The CLI removes its private data dir at the end: count while it runs.
    deadline = time.monotonic() + 900
    while run.proc.poll() is None and time.monotonic() < deadline:
        run.poll_tasks()
        time.sleep(0.2)
    run.proc.wait(timeout=60)
    out = run.output()
    assert run.proc.returncode == 0, f"the run after the interruptions failed:\n{out[-4000:]}"
    packages_consistent(BOX)
    no_half_written_files(BOX)
    again = dlsetup(
        "provision", "--host", "box1", "-i", str(inv), *PROFILE, "--json", "--verify-all"
    )
    assert again.rc == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.doc["hosts"]["box1"]["changed"] == 0, again.doc["hosts"]["box1"]["changes"]
    return run


def test_interrupted_runs_resume_and_converge(work: Boxes) -> None:
    root = work.work
    report: list[str] = []
    inv = fresh_box(work)
    installed = snapshot(BOX)

    # Point 1: Ctrl-C at the 4th task, in the preflight stage.
    run = start(inv, root / "p1-run")
    where = interrupt_at(run, signal.SIGINT, nth=4)
    ctrl_c(run)
    no_half_written_files(BOX)
    assert snapshot(BOX) == installed, "the preflight stage changed the box"
    report.append(f"SIGINT at {where}")

    # Point 2: Ctrl-C at the first task of the driver stage.
    run = start(inv, root / "p2-run")
    where = interrupt_at(run, signal.SIGINT, role="nvidia_driver", task=FIRST_DRIVER_TASK)
    ctrl_c(run)
    no_half_written_files(BOX)
    assert snapshot(BOX) != installed, "the stages before the driver changed nothing"
    report.append(f"SIGINT at {where}")

    # Point 3: SIGKILL as the driver's package install starts, resuming from 2.
    run = start(inv, root / "p3-run")
    where = interrupt_at(run, signal.SIGKILL, role="nvidia_driver", task=DRIVER_INSTALL_TASK)
    run.proc.wait(timeout=60)
    assert run.proc.returncode == -signal.SIGKILL
    wait_for_leftovers(root / "p3-run")
    no_half_written_files(BOX)
    report.append(f"SIGKILL at {where}")

    resumed = converge_then_no_change(inv, root / "resume")
    report.append(f"converged in {len(resumed.tasks)} tasks, then changed=0")
    print("\n".join(report))
