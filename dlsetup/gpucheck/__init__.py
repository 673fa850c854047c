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

The names above are loaded on first use (PEP 562), not when the package is
imported: ``checks`` imports ``bench``, and ``python3 -m dlsetup.gpucheck.bench``
imports this package before it runs bench.py as ``__main__``; an eager import
here would load bench a second time first (runpy's RuntimeWarning "found in
sys.modules after import of package").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

if TYPE_CHECKING:  # the static view of what __getattr__ hands out
    from .checks import CHECK_IDS, CheckResult, Options, Report, run_checks
    from .probe import (
        CapturingProbe,
        CommandResult,
        LiveProbe,
        Probe,
        ReplayProbe,
    )

# name -> the submodule that defines it
_LAZY = {
    "CHECK_IDS": "checks",
    "CheckResult": "checks",
    "Options": "checks",
    "Report": "checks",
    "run_checks": "checks",
    "CapturingProbe": "probe",
    "CommandResult": "probe",
    "LiveProbe": "probe",
    "Probe": "probe",
    "ReplayProbe": "probe",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


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
