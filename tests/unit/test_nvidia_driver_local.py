"""Which host is "the machine dlsetup runs on", that the driver role never
reboots without --allow-reboot-local: the connection_local expression of
roles/nvidia_driver/tasks/state.yml, rendered by Ansible's own templar with the
variables a run would give it (no host is reached: the facts are the input)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dlsetup import content
from tests.templating import render

STATE = content.roles_dir() / "nvidia_driver" / "tasks" / "state.yml"
CONTROLLER = "3d1219c7c4c5404aaa1f6d2a48adfda4"


def _expression() -> str:
    tasks = yaml.safe_load(STATE.read_text())
    for task in tasks:
        args = task.get("dlsetup.box.nvidia_driver_state")
        if args:
            return str(args["connection_local"])
    raise AssertionError("no dlsetup.box.nvidia_driver_state task in state.yml")


def _local(**variables: Any) -> bool:
    variables.setdefault("__nvidia_driver_controller_machine_id", CONTROLLER)
    rendered = render(_expression(), variables)
    return str(rendered).strip() == "True"


@pytest.mark.parametrize(
    ("variables", "local"),
    [
        ({"ansible_connection": "local", "ansible_facts": {"machine_id": "x"}}, True),
        # SSH to itself, under any name: the same machine-id.
        ({"ansible_connection": "ssh", "ansible_facts": {"machine_id": CONTROLLER}}, True),
        # A VM behind a port forward on 127.0.0.1 is another machine.
        (
            {
                "ansible_connection": "ssh",
                "inventory_hostname": "127.0.0.1",
                "ansible_facts": {"machine_id": "9f0c0ffee9f0c0ffee9f0c0ffee9f0c0"},
            },
            False,
        ),
        # No machine-id on either side (a fresh container): not the controller.
        ({"ansible_connection": "ssh", "ansible_facts": {"machine_id": ""}}, False),
        (
            {
                "ansible_connection": "docker",
                "ansible_facts": {},
                "__nvidia_driver_controller_machine_id": "",
            },
            False,
        ),
    ],
)
def test_the_machine_dlsetup_runs_on_is_known_by_connection_or_machine_id(
    variables: dict[str, Any], local: bool
) -> None:
    assert _local(**variables) is local
