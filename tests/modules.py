"""Run one of the collection's module files the way Ansible runs it: a Python
process given its arguments in a JSON file, with check and diff mode as
Ansible passes them. Its JSON result comes back, failed ones too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_module_file(
    module: Path,
    workdir: Path,
    args: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = True,
    path_first: Path | None = None,
) -> dict[str, Any]:
    """path_first: a folder searched before PATH, for a test's stand-ins of
    the box's commands."""
    argfile = workdir / "args.json"
    argfile.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
        )
    )
    res = subprocess.run(
        [sys.executable, str(module), str(argfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=None
        if path_first is None
        else {**os.environ, "PATH": f"{path_first}:{os.environ['PATH']}"},
    )
    result: dict[str, Any] = json.loads(res.stdout)
    return result
