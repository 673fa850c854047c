"""The exit codes of the dlsetup CLI, defined once (DESIGN.md "Exit codes").

Every module of the controller side imports them from here. The smoke test's
standalone copy on the target (dlsetup/gpucheck/exitcodes.py, which may not
import the rest of dlsetup) is held to this one by a unit test.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # all good
    TASK_FAILED = 1  # a task failed on a host
    BAD_INPUT = 2  # arguments, inventory, host vars, incompatible versions; before any change
    UNREACHABLE = 3  # a host was unreachable (the others still finish)
    SMOKE_FAILED = 4  # the smoke test ran and a check failed
    INTERRUPTED = 130  # Ctrl-C / SIGINT: every step is safe to repeat
