"""The only module that talks to ansible-runner.

A :class:`RunSpec` says what to run (playbook, inventory, limit, extravars,
tags); :func:`run` runs it in a throw-away private data dir with
``suppress_env_files=True`` (nothing secret lands in artifacts), feeds every
event to the caller's handler and returns the runner's status.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import ansible_runner

from dlsetup import content


@dataclass(frozen=True)
class RunSpec:
    """Everything one ansible-runner invocation needs; built by the CLI."""

    playbook: str
    inventories: tuple[str, ...] = ()
    limit: str | None = None
    extravars: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    forks: int | None = None


@dataclass
class RunOutcome:
    status: str  # successful, failed, timeout, canceled
    rc: int
    stdout_tail: str = ""


EventHandler = Callable[[dict[str, Any]], bool]

# The environment variable that marks every process of one run with its
# private data dir (stop_leftovers).
RUN_MARK = "DLSETUP_RUN_DIR"


def processes_with(name: str, value: str) -> list[int]:
    """Processes alive (this one aside) whose environment has ``name=value``."""
    needle = f"\0{name}={value}\0".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            env = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in b"\0" + env + b"\0" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def stop_leftovers(mark: str) -> list[int]:
    """Kill what a canceled run left behind, once ansible-runner has returned.

    ansible-playbook's workers each start a session of their own (setsid, so
    that a terminal's Ctrl-C reaches only the main process). When a run is
    canceled, ansible-runner kills the main process's group, which misses a
    worker in the middle of a task: with nothing left to read its result, such
    a worker can block for ever writing it (seen after a Ctrl-C in the
    interrupt test). SSH's ControlPersist masters of the run go too."""
    pids = processes_with(RUN_MARK, mark)
    for pid in pids:
        with suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGKILL)
    return pids


def _put_own_bin_on_path() -> None:
    """ansible-runner spawns ``ansible-playbook`` by name: make it the one installed
    beside dlsetup, so a venv works without being activated."""
    own = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if (Path(own) / "ansible-playbook").is_file() and own not in path.split(os.pathsep):
        os.environ["PATH"] = own + os.pathsep + path


def runner_kwargs(spec: RunSpec, private_data_dir: str) -> dict[str, Any]:
    """The exact keyword arguments given to ``ansible_runner.run`` for a spec."""
    root = content.root()
    cmdline: list[str] = []
    if spec.check:
        cmdline.append("--check")
    if spec.diff:
        cmdline.append("--diff")
    kwargs: dict[str, Any] = {
        "private_data_dir": private_data_dir,
        "project_dir": str(root),
        "playbook": str(content.playbook(spec.playbook)),
        "inventory": list(spec.inventories),
        "extravars": dict(spec.extravars),
        "envvars": {
            # every process of the run carries it (stop_leftovers)
            RUN_MARK: private_data_dir,
            "ANSIBLE_CONFIG": str(content.ansible_cfg()),
            "ANSIBLE_COLLECTIONS_PATH": str(content.collections_path()),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        },
        "quiet": True,
        "suppress_env_files": True,
        "json_mode": False,
    }
    if spec.limit:
        kwargs["limit"] = spec.limit
    if spec.tags:
        kwargs["tags"] = ",".join(spec.tags)
    if spec.skip_tags:
        kwargs["skip_tags"] = ",".join(spec.skip_tags)
    if spec.verbosity:
        kwargs["verbosity"] = spec.verbosity
    if spec.forks:
        kwargs["forks"] = spec.forks
    if cmdline:
        kwargs["cmdline"] = " ".join(cmdline)
    return kwargs


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set a flag that the runner's cancel callback reads."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def run(spec: RunSpec, event_handler: EventHandler) -> RunOutcome:
    """Run a playbook; events go to ``event_handler`` as they happen."""
    with (
        tempfile.TemporaryDirectory(prefix="dlsetup-run-") as pdd,
        _interruptible() as stop,
    ):
        _put_own_bin_on_path()
        kwargs = runner_kwargs(spec, pdd)
        kwargs["event_handler"] = event_handler
        kwargs["cancel_callback"] = stop.is_set
        try:
            r = ansible_runner.run(**kwargs)
        finally:
            # A run that ends by itself waits for its workers, and SSH's
            # ControlPersist masters are meant to outlive it; a canceled one
            # leaves nothing behind.
            if stop.is_set():
                stop_leftovers(pdd)
        tail = ""
        if r.status != "successful":
            try:
                tail = r.stdout.read()[-4000:]
            except (OSError, AttributeError, ValueError):
                tail = ""
        status = "canceled" if stop.is_set() else str(r.status)
        return RunOutcome(status=status, rc=int(r.rc if r.rc is not None else 1), stdout_tail=tail)
