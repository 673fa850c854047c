"""Which installed kernels the driver role checks and builds the module for:
the "Pick the kernels to check" expression of roles/nvidia_driver/tasks/module.yml,
rendered by Ansible's own templar with the kernels the state module reports
(nvidia_driver_check_all_kernels true: every one; false: the running one)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dlsetup import content
from tests.templating import render

MODULE_TASKS = content.roles_dir() / "nvidia_driver" / "tasks" / "module.yml"
KERNELS = [
    {"kernel": "6.1.0-18-amd64", "running": True, "module": "built"},
    {"kernel": "6.1.0-21-amd64", "running": False, "module": "missing"},
    {"kernel": "6.1.0-22-amd64", "running": False, "module": "no-headers"},
]


def _pick(check_all: bool) -> list[dict[str, Any]]:
    tasks = yaml.safe_load(MODULE_TASKS.read_text())
    task = next(t for t in tasks if t.get("name") == "Pick the kernels to check")
    expression = task["ansible.builtin.set_fact"]["__nvidia_driver_kernels_checked"]
    variables = {
        "nvidia_driver_check_all_kernels": check_all,
        "__nvidia_driver_state": {"kernels": KERNELS},
    }
    return list(render(expression, variables))


@pytest.mark.parametrize(
    ("check_all", "kernels"),
    [
        (True, ["6.1.0-18-amd64", "6.1.0-21-amd64", "6.1.0-22-amd64"]),
        (False, ["6.1.0-18-amd64"]),
    ],
)
def test_kernels_checked(check_all: bool, kernels: list[str]) -> None:
    assert [k["kernel"] for k in _pick(check_all)] == kernels


def test_the_default_checks_every_installed_kernel() -> None:
    defaults = yaml.safe_load((content.roles_dir() / "nvidia_driver/defaults/main.yml").read_text())
    assert defaults["nvidia_driver_check_all_kernels"] is True
