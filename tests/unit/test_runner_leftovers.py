"""What a canceled run leaves behind is stopped: dlsetup.runner.stop_leftovers.

ansible-playbook's workers start sessions of their own (setsid), out of reach
of ansible-runner's kill of the playbook's process group; after a Ctrl-C one
was seen blocked for ever writing its result. The stand-in here is a real
process in a session of its own, with the run's mark in its environment, as
such a worker has it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dlsetup import runner


def _spawn(mark: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop(runner.RUN_MARK, None)
    if mark is not None:
        env[runner.RUN_MARK] = mark
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=env,
        start_new_session=True,  # as ansible's WorkerProcess does
    )


def test_a_left_process_of_the_run_is_killed_and_others_are_not(tmp_path: Path) -> None:
    mark = str(tmp_path / "dlsetup-run-x")
    worker = _spawn(mark)
    other_run = _spawn(mark + "y")  # another run's dir that starts with this one's
    unmarked = _spawn(None)
    try:
        deadline = time.monotonic() + 10  # until the children have exec'd
        while (
            worker.pid not in runner.processes_with(runner.RUN_MARK, mark)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert runner.processes_with(runner.RUN_MARK, mark) == [worker.pid]
        assert runner.stop_leftovers(mark) == [worker.pid]
        assert worker.wait(timeout=10) == -9
        assert other_run.poll() is None and unmarked.poll() is None
        assert runner.processes_with(runner.RUN_MARK, mark) == []
        assert runner.stop_leftovers(mark) == []  # nothing left to stop
    finally:
        for p in (worker, other_run, unmarked):
            p.kill()
            p.wait()
