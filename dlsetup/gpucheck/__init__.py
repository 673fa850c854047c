"""GPU smoke test and bench of a deep-learning server (``dlsetup.gpucheck``).

This package is plain Python 3.8+ using the standard library and ctypes only:
an Ansible role copies the directory to the target and runs it there with the
target's python3, as ``python3 -m dlsetup.gpucheck`` or ``python3 DIR/gpucheck``.
It imports nothing from the rest of dlsetup.

API for callers in Python::

    from dlsetup.gpucheck import LiveProbe, ReplayProbe, Options, run_checks
    report = run_checks(ReplayProbe("bundle/"), Options())
    report.exit_code          # 0 or 4
    report.to_json()          # {"passed", "checks": [{"id", "status", "message", "remedy"}],
                              #  "host", "gpus", "mode", "elapsed_s"}
"""

from __future__ import annotations

__version__ = "1.0.0"

from .checks import CHECK_IDS, CheckResult, Options, Report, run_checks
from .probe import (
    CapturingProbe,
    CommandResult,
    LiveProbe,
    Probe,
    ReplayProbe,
)

__all__ = [
    "CHECK_IDS",
    "CapturingProbe",
    "CheckResult",
    "CommandResult",
    "LiveProbe",
    "Options",
    "Probe",
    "ReplayProbe",
    "Report",
    "__version__",
    "run_checks",
]
