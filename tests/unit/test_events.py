"""Event -> summary -> exit code, from events recorded in real runs.

The fixtures under tests/fixtures/events/ were recorded by
tests/fixtures/events/record.py (its docstring says how): the dlsetup CLI run
against a throw-away demo box, every event trimmed to the fields dlsetup
reads. A converged run, a first run with changes, bad host vars caught by
validate_vars, a too-old Ansible caught by preflight's assert, a failing
task, an unreachable second host, and a smoke test failing on a box without
a GPU.

The contract is data (DESIGN.md, convention 14): the exit code and the summary
come from the per-host fact dlsetup_result and the tasks' resolved actions;
the tests rename every play and task to show that names play no part.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dlsetup.events import STAGE_PREFLIGHT, STAGE_SMOKE, EventCollector, _kind
from dlsetup.exitcodes import ExitCode
from dlsetup.report import plan_table, summary_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def events(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines()]


def replay(name: str, stream: list[dict[str, Any]] | None = None) -> EventCollector:
    c = EventCollector()
    for event in events(name) if stream is None else stream:
        c.handle(event)
    return c


# fixture -> (the runner's status in that run, the exit code the CLI gave)
RECORDED = {
    "success": ("successful", ExitCode.OK),
    "changed": ("successful", ExitCode.OK),
    "bad-input": ("failed", ExitCode.BAD_INPUT),
    "bad-input-assert": ("failed", ExitCode.BAD_INPUT),
    "task-failed": ("failed", ExitCode.TASK_FAILED),
    "unreachable": ("failed", ExitCode.UNREACHABLE),
    "smoke-failed": ("failed", ExitCode.SMOKE_FAILED),
}


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
    # What dlsetup_result handed back: the last stage reached and the stages' reports.
    assert demo.stage == "disks"
    assert demo.reports["dl_facts_report"]["in_container"] is True
    assert "disk_layout plan (safe mode on)" in demo.reports["disk_layout_report"]["plan"]
    assert demo.reboot_required is False and demo.skipped_steps == []


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_runs_give_the_exit_code_the_cli_gave(name: str) -> None:
    status, code = RECORDED[name]
    assert replay(name).exit_code(status) == code


def _renamed(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same run with every play and task called something else."""
    out = copy.deepcopy(stream)
    names: dict[str, str] = {}
    for ev in out:
        data = ev.get("event_data") or {}
        for key in ("play", "task", "name"):
            if isinstance(data.get(key), str):
                data[key] = names.setdefault(data[key], f"{key} {len(names)}")
    return out


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_renaming_every_play_and_task_changes_no_exit_code(name: str) -> None:
    status, code = RECORDED[name]
    stream = events(name)
    renamed = _renamed(stream)
    plays = {ev["event_data"].get("play") for ev in renamed if "event_data" in ev} - {None}
    assert plays and not any("Preflight" in p or "Smoke" in p for p in plays)
    before, after = replay(name, stream), replay(name, renamed)
    assert after.exit_code(status) == code
    for host, hs in before.hosts.items():
        assert [f.category for f in after.hosts[host].failures] == [f.category for f in hs.failures]
        assert after.hosts[host].stage == hs.stage


def test_first_run_lists_what_changed() -> None:
    c = replay("changed")
    demo = c.hosts["demo"]
    assert c.exit_code("successful") == ExitCode.OK
    assert demo.changed == 2
    assert [(ch.kind, ch.action) for ch in demo.changes] == [
        ("file", "ansible.builtin.file"),
        ("file", "ansible.builtin.copy"),
    ]
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
    assert demo.stage == "preflight"
    # Preflight stopped the run: no task of a later play ran.
    assert demo.changes == []
    text = render(summary_table(c, "failed"))
    assert "Nothing was changed" in text and "dl_facts_dri" in text


def test_preflight_assert_is_exit_2_from_the_stage_not_the_action() -> None:
    """ansible.builtin.assert is no input check of its own: the host was in preflight."""
    c = replay("bad-input-assert")
    demo = c.hosts["demo"]
    assert c.exit_code("failed") == ExitCode.BAD_INPUT
    (failure,) = demo.failures
    assert failure.category == "preflight" and demo.stage == "preflight"
    assert "too old" in failure.msg
    failed = [e for e in events("bad-input-assert") if e["event"] == "runner_on_failed"]
    assert failed[0]["event_data"]["resolved_action"] == "ansible.builtin.assert"


def test_failed_task_is_exit_1_with_task_and_message() -> None:
    c = replay("task-failed")
    (failure,) = c.hosts["demo"].failures
    assert c.exit_code("failed") == ExitCode.TASK_FAILED
    assert failure.category == "task"
    assert c.hosts["demo"].stage == "base"  # preflight passed: its stage is over
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


def test_failed_smoke_test_is_exit_4_with_its_report() -> None:
    c = replay("smoke-failed")
    demo = c.hosts["demo"]
    assert c.exit_code("failed") == ExitCode.SMOKE_FAILED
    (failure,) = demo.failures
    assert failure.category == "smoke" and demo.stage == "smoke"
    assert "nvidia-gpu-present" in failure.msg
    report = demo.reports["gpu_smoke_test_report"]
    assert report["passed"] is False
    assert "nvidia-gpu-present" in [ch["id"] for ch in report["checks"] if ch["status"] == "fail"]


def test_canceled_is_exit_130_whatever_happened_before() -> None:
    c = replay("task-failed")
    assert c.exit_code("canceled") == ExitCode.INTERRUPTED
    assert "run the same command again" in render(summary_table(c, "canceled"))


def _synthetic(event: str, action: str = "ansible.builtin.command", **res: Any) -> dict[str, Any]:
    data = {"host": "h", "task": "t", "play": "p", "resolved_action": action, "res": res}
    return {"event": event, "event_data": data}


def _result(stage: str, **part: Any) -> dict[str, Any]:
    """A set_fact event of the dlsetup role's tasks/result.yml, as ansible-runner sends it."""
    result = {"stage": stage, "stages": {stage: part}, "reports": {}}
    ev = _synthetic("runner_on_ok", "ansible.builtin.set_fact", changed=False)
    ev["event_data"]["res"]["ansible_facts"] = {"dlsetup_result": result}
    return ev


def test_smoke_failure_is_exit_4_and_bad_input_wins_over_it() -> None:
    c = EventCollector()
    c.handle(_result("smoke"))
    c.handle(_synthetic("runner_on_failed", "ansible.builtin.fail", msg="cuda-driver-api failed"))
    assert c.exit_code("failed") == ExitCode.SMOKE_FAILED
    c.handle(_synthetic("runner_on_failed", "dlsetup.box.validate_vars", msg="bad var"))
    assert c.exit_code("failed") == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    "action", ["ansible.builtin.validate_argument_spec", "dlsetup.box.compat_check"]
)
def test_an_input_check_failing_is_bad_input_in_any_stage(action: str) -> None:
    c = EventCollector()
    c.handle(_result("cuda"))
    c.handle(_synthetic("runner_on_failed", action, msg="cuda_version: not a version"))
    assert c.exit_code("failed") == ExitCode.BAD_INPUT


def test_play_names_and_fact_suffixes_mean_nothing() -> None:
    """The old contract: a play called Preflight or Smoke test, facts named *_skipped ..."""
    c = EventCollector()
    ev = _synthetic("runner_on_ok", "ansible.builtin.set_fact", changed=False)
    ev["event_data"]["res"]["ansible_facts"] = {
        "nvidia_driver_skipped": [{"step": "s", "reason": "r"}],
        "nvidia_driver_reboot_required": True,
        "nvidia_driver_report": {"x": 1},
    }
    c.handle(ev)
    hs = c.hosts["h"]
    assert hs.skipped_steps == [] and hs.reboot_required is False and hs.reports == {}
    for play in ("Preflight checks", "Smoke test of the GPU stack"):
        fail = _synthetic("runner_on_failed", msg="boom")
        fail["event_data"]["play"] = play
        c.handle(fail)
    assert {f.category for f in hs.failures} == {"task"}
    assert c.exit_code("failed") == ExitCode.TASK_FAILED


def test_the_result_counts_only_from_set_fact() -> None:
    """A dlsetup_result in another action's facts (gathered, say) is not the plays' word."""
    c = EventCollector()
    ev = _result("smoke")
    ev["event_data"]["resolved_action"] = "ansible.builtin.gather_facts"
    c.handle(ev)
    c.handle(_synthetic("runner_on_failed", msg="boom"))
    assert c.hosts["h"].stage == "" and c.exit_code("failed") == ExitCode.TASK_FAILED


def test_ignored_failure_does_not_fail_the_run() -> None:
    c = EventCollector()
    ev = _synthetic("runner_on_failed", msg="probe failed")
    ev["event_data"]["ignore_errors"] = True
    c.handle(ev)
    assert c.exit_code("successful") == ExitCode.OK
    assert c.hosts["h"].ignored == 1 and c.hosts["h"].failures == []


def test_result_reports_skips_and_reboots() -> None:
    c = EventCollector()
    c.handle(
        _result(
            "driver",
            skipped=[{"step": "load the nvidia module", "reason": "no NVIDIA GPU in this box"}],
            reboot_required=True,
        )
    )
    # The next stage's event carries the whole result so far, merged by tasks/result.yml.
    merged = _result("disks", skipped=[], reboot_required=False)
    merged_result = merged["event_data"]["res"]["ansible_facts"]["dlsetup_result"]
    first = c.hosts["h"]
    merged_result["stages"]["driver"] = {
        "skipped": first.skipped_steps,
        "reboot_required": first.reboot_required,
    }
    c.handle(merged)
    hs = c.hosts["h"]
    assert hs.stage == "disks"
    assert hs.skipped_steps == [
        {"step": "load the nvidia module", "reason": "no NVIDIA GPU in this box"}
    ]
    assert hs.reboot_required is True  # one stage needs it; another saying no does not clear it
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


ROLES = Path(__file__).resolve().parents[2] / "collections/ansible_collections/dlsetup/box/roles"


def _stages_handed_back() -> dict[str, set[str]]:
    """role -> the dlsetup_result_stage values its task files hand to tasks/result.yml."""
    import yaml  # noqa: PLC0415

    found: dict[str, set[str]] = {}

    def walk(node: Any, role: str) -> None:
        if isinstance(node, dict):
            stage = (node.get("vars") or {}).get("dlsetup_result_stage")
            if stage is not None:
                found.setdefault(role, set()).add(str(stage))
            for val in node.values():
                walk(val, role)
        elif isinstance(node, list):
            for val in node:
                walk(val, role)

    for tasks in sorted(ROLES.glob("*/tasks/*.yml")):
        walk(yaml.safe_load(tasks.read_text()), tasks.parents[1].name)
    return found


def test_every_role_hands_its_stage_back_and_the_cli_knows_the_stages() -> None:
    stages = _stages_handed_back()
    assert set(stages) == {p.name for p in ROLES.iterdir() if (p / "tasks").is_dir()}
    # tasks/converged.yml hands back, for a stage its check proved converged,
    # the stage the playbook names (dlsetup_stage): each is a role's own stage
    assert stages["dlsetup"] == {STAGE_PREFLIGHT, "base", "{{ dlsetup_stage }}"}
    assert STAGE_SMOKE in stages["gpu_smoke_test"]
    import yaml  # noqa: PLC0415

    playbooks = ROLES.parent / "playbooks"
    checked = set()
    for book in playbooks.glob("*.yml"):
        for play in yaml.safe_load(book.read_text()) or []:
            for task in play.get("tasks") or []:
                if (task.get("ansible.builtin.include_role") or {}).get(
                    "tasks_from"
                ) == "converged":
                    checked.add(task["vars"]["dlsetup_stage"])
    handed = set().union(*stages.values())
    assert checked == {"base", "disks", "nvme", "driver", "cuda", "docker"}
    assert checked <= handed


def test_the_collections_several_files_module_is_a_file_change() -> None:
    """dlsetup.box.files writes what copy and template wrote: the summary
    lists its changes among the files."""
    assert _kind("dlsetup.box.files") == _kind("ansible.builtin.copy") == "file"
