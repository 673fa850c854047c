"""Event -> summary -> exit code, from events recorded in real runs.

The fixtures under tests/fixtures/events/ were recorded from ansible-runner
against the demo box (trimmed to the fields dlsetup reads): a converged run,
a first run with changes, bad host vars caught by preflight, a failing task,
and an unreachable second host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dlsetup.events import (
    EventCollector,
)
from dlsetup.exitcodes import ExitCode
from dlsetup.report import plan_table, summary_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def replay(name: str) -> EventCollector:
    c = EventCollector()
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        c.handle(json.loads(line))
    return c


def render(renderable: Any) -> str:
    con = Console(record=True, width=120)
    con.print(renderable)
    return con.export_text()


def test_converged_run() -> None:
    c = replay("success")
    demo = c.hosts["demo"]
    assert c.exit_code("successful") == ExitCode.OK
    assert demo.changed == 0 and demo.failed == 0 and not demo.unreachable
    assert demo.ok > 10
    assert demo.failures == [] and demo.changes == []
    assert c.stats_seen


def test_first_run_lists_what_changed() -> None:
    c = replay("changed")
    demo = c.hosts["demo"]
    assert c.exit_code("successful") == ExitCode.OK
    assert demo.changed == 2
    assert [(ch.kind, ch.task) for ch in demo.changes] == [
        ("file", "Create the local facts folder"),
        ("file", "Install the dlsetup facts script"),
    ]
    text = render(plan_table(c))
    assert "Install the dlsetup facts script" in text and "no reboot" in text


def test_bad_host_var_is_exit_2_naming_the_variable() -> None:
    c = replay("bad-input")
    demo = c.hosts["demo"]
    assert c.exit_code("failed") == ExitCode.BAD_INPUT
    (failure,) = demo.failures
    assert failure.category == "preflight"
    assert "dl_facts_dri" in failure.msg
    # Preflight stopped the run: no task of a later play ran.
    assert demo.changes == []
    text = render(summary_table(c, "failed"))
    assert "Nothing was changed" in text and "dl_facts_dri" in text


def test_failed_task_is_exit_1_with_task_and_message() -> None:
    c = replay("task-failed")
    (failure,) = c.hosts["demo"].failures
    assert c.exit_code("failed") == ExitCode.TASK_FAILED
    assert failure.category == "task"
    assert failure.task == "Create the local facts folder"
    assert "/proc/1/nope" in failure.msg
    text = render(summary_table(c, "failed"))
    assert "FAILED: demo: Create the local facts folder" in text
    assert "Traceback" not in text


def test_unreachable_host_is_exit_3_and_the_other_host_finished() -> None:
    c = replay("unreachable")
    assert c.exit_code("failed") == ExitCode.UNREACHABLE
    ghost, demo = c.hosts["ghost"], c.hosts["demo"]
    assert ghost.unreachable and ghost.failures[0].category == "unreachable"
    assert not demo.unreachable and demo.failed == 0
    assert demo.failures == [] and demo.ok > 10  # the whole site ran on demo
    assert "UNREACHABLE: ghost" in render(summary_table(c, "failed"))


def test_canceled_is_exit_130_whatever_happened_before() -> None:
    c = replay("task-failed")
    assert c.exit_code("canceled") == ExitCode.INTERRUPTED
    assert "run the same command again" in render(summary_table(c, "canceled"))


def _synthetic(play: str, event: str, **res: Any) -> dict[str, Any]:
    return {"event": event, "event_data": {"host": "h", "task": "t", "play": play, "res": res}}


def test_smoke_failure_is_exit_4_and_bad_input_wins_over_it() -> None:
    c = EventCollector()
    c.handle(
        _synthetic("Smoke test of the GPU stack", "runner_on_failed", msg="cuda-driver-api failed")
    )
    assert c.exit_code("failed") == ExitCode.SMOKE_FAILED
    c.handle(_synthetic("Preflight checks", "runner_on_failed", msg="bad var"))
    assert c.exit_code("failed") == ExitCode.BAD_INPUT


def test_ignored_failure_does_not_fail_the_run() -> None:
    c = EventCollector()
    ev = _synthetic("Stage", "runner_on_failed", msg="probe failed")
    ev["event_data"]["ignore_errors"] = True
    c.handle(ev)
    assert c.exit_code("successful") == ExitCode.OK
    assert c.hosts["h"].ignored == 1 and c.hosts["h"].failures == []


def test_role_facts_report_skips_and_reboots() -> None:
    c = EventCollector()
    c.handle(
        _synthetic(
            "Driver",
            "runner_on_ok",
            changed=False,
            ansible_facts={
                "nvidia_driver_skipped": [
                    {"step": "load the nvidia module", "reason": "no NVIDIA GPU in this box"}
                ],
                "nvidia_driver_reboot_required": True,
            },
        )
    )
    c.handle(
        _synthetic(
            "Disks",
            "runner_on_ok",
            changed=False,
            ansible_facts={
                "disk_layout_reboot_required": False,
            },
        )
    )
    hs = c.hosts["h"]
    assert hs.skipped_steps == [
        {"step": "load the nvidia module", "reason": "no NVIDIA GPU in this box"}
    ]
    assert hs.reboot_required is True  # one role needs it; another saying no does not clear it
    text = render(summary_table(c, "successful"))
    assert "no NVIDIA GPU in this box" in text and "reboot is needed" in text


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_runner_failure_without_events_is_not_ok(status: str) -> None:
    assert EventCollector().exit_code(status) == ExitCode.TASK_FAILED


def test_plan_table_prints_items_verbatim_and_a_roles_own_plan() -> None:
    """An item like "/boot/efi" in brackets is text, not rich markup (it crashed `plan`)."""
    import io  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from dlsetup.events import Change, EventCollector  # noqa: PLC0415
    from dlsetup.report import plan_table  # noqa: PLC0415

    c = EventCollector()
    hs = c.host("mybox")
    hs.changes.append(Change("Mount", "ansible.posix.mount", "mount", "/boot/efi"))
    hs.reports["disk_layout_report"] = {
        "plan": ["disk_layout plan (safe mode on)", "create scratch on /dev/nvme0n1 (ext4)"]
    }
    out = io.StringIO()
    Console(file=out, width=120).print(plan_table(c))
    text = out.getvalue()
    assert "Mount [/boot/efi]" in text
    assert "disk_layout plan for mybox:" in text
    assert "create scratch on /dev/nvme0n1 (ext4)" in text
