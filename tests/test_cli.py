"""The CLI maps each subcommand to exactly one ansible_runner.run call.

ansible_runner.run is replaced by a recorder here: these tests are about the
arguments dlsetup hands it (the real runner is exercised by the docker-marked
end-to-end tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dlsetup import cli, content, runner
from dlsetup.events import EXIT_BAD_INPUT, EXIT_OK

ROOT = content.root()


class FakeRunnerResult:
    def __init__(self, status: str = "successful", rc: int = 0) -> None:
        self.status = status
        self.rc = rc


class Recorder(list[dict[str, Any]]):
    """The calls made to the fake runner, and the events it replays."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Stands in for ansible_runner.run: records kwargs, replays given events."""
    calls = Recorder()
    events = calls.events

    def fake_run(**kwargs: Any) -> FakeRunnerResult:
        calls.append(kwargs)
        for ev in events:
            kwargs["event_handler"](ev)
        return FakeRunnerResult()

    monkeypatch.setattr(runner.ansible_runner, "run", fake_run)
    return calls


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user inventory with one box and one lab group; XDG dirs isolated."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "inventory"
    d.mkdir()
    (d / "hosts.yml").write_text(
        "all:\n  children:\n    lab:\n      hosts:\n        mybox: {ansible_host: 10.0.0.5}\n"
        "        box2: {ansible_host: 10.0.0.6}\n"
    )
    return d


def common(pdd: str, inventories: list[str]) -> dict[str, Any]:
    return {
        "private_data_dir": pdd,
        "project_dir": str(ROOT),
        "inventory": inventories,
        "envvars": {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        },
        "quiet": True,
        "suppress_env_files": True,
        "json_mode": False,
    }


def strip_dynamic(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    assert callable(out.pop("event_handler"))
    assert callable(out.pop("cancel_callback"))
    return out


def test_provision_exact_runner_arguments(recorded: Recorder, inv: Path) -> None:
    rc = cli.main(
        [
            "provision",
            "--host",
            "mybox",
            "--tags",
            "driver,cuda",
            "--tags",
            "docker",
            "--skip-tags",
            "disks",
            "-e",
            "nvidia_driver_branch=580",
            "--check",
            "--diff",
            "-vv",
            "--forks",
            "4",
            "--json",
        ]
    )
    assert rc == EXIT_OK
    (kw,) = recorded
    kw = strip_dynamic(kw)
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(ROOT / "playbooks" / "site.yml"),
        "limit": "mybox",
        "extravars": {"nvidia_driver_branch": "580"},
        "tags": "driver,cuda,docker",
        "skip_tags": "disks",
        "verbosity": 2,
        "forks": 4,
        "cmdline": "--check --diff",
    }
    assert Path(kw["private_data_dir"]).name.startswith("dlsetup-run-")
    assert not Path(kw["private_data_dir"]).exists(), (
        "private data dir must be removed after the run"
    )


def test_provision_allow_reboot_local_is_an_extravar(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["provision", "--host", "lab", "--allow-reboot-local", "--json"]) == EXIT_OK
    kw = recorded[0]
    assert kw["limit"] == "lab"
    assert kw["extravars"] == {"dlsetup_allow_reboot_local": True}
    assert "cmdline" not in kw and "tags" not in kw


def test_plan_is_check_and_diff(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["plan", "--host", "mybox", "--json"]) == EXIT_OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(ROOT / "playbooks" / "site.yml"),
        "limit": "mybox",
        "extravars": {},
        "cmdline": "--check --diff",
    }


def test_facts_runs_the_facts_playbook(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["facts", "--host", "lab", "--json"]) == EXIT_OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(ROOT / "playbooks" / "facts.yml"),
        "limit": "lab",
        "extravars": {},
        "tags": "facts",
    }


def test_address_in_no_inventory_becomes_an_adhoc_ssh_host(
    inv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, str] = {}

    def grab(**kwargs: Any) -> FakeRunnerResult:
        seen["adhoc"] = Path(kwargs["inventory"][-1]).read_text()
        return FakeRunnerResult()

    monkeypatch.setattr(runner.ansible_runner, "run", grab)
    assert cli.main(["provision", "--host", "admin@192.168.7.20", "--json"]) == EXIT_OK
    assert "192.168.7.20" in seen["adhoc"]
    assert "ansible_user: admin" in seen["adhoc"]


def test_unknown_group_pattern_is_bad_input(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", "--host", "lab:&gpu*", "--json"]) == EXIT_BAD_INPUT
    assert recorded == []
    assert "matches no host" in capsys.readouterr().err


def test_missing_inventory_is_bad_input(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", "--host", "mybox", "-i", "/nonexistent/inv"]) == EXIT_BAD_INPUT
    assert recorded == []
    assert "/nonexistent/inv" in capsys.readouterr().err


def test_broken_inventory_is_bad_input(
    recorded: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts: [this, is, not, a, mapping\n")
    assert cli.main(["provision", "--host", "mybox", "-i", str(bad)]) == EXIT_BAD_INPUT
    assert recorded == []
    assert "inventory" in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["novalue", "1abc=2", "@/nonexistent.yml"])
def test_bad_extra_vars_are_bad_input(
    recorded: Recorder, inv: Path, extra: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", "--host", "mybox", "-e", extra]) == EXIT_BAD_INPUT
    assert recorded == []
    assert "-e" in capsys.readouterr().err


def test_extra_vars_from_file_and_json(recorded: Recorder, inv: Path, tmp_path: Path) -> None:
    f = tmp_path / "vars.yml"
    f.write_text("cuda_version: '12.8'\nnvme_apst_max_latency_us: 0\n")
    assert (
        cli.main(
            [
                "provision",
                "--host",
                "mybox",
                "-e",
                f"@{f}",
                "-e",
                '{"container_runtime_users": ["ana"]}',
                "--json",
            ]
        )
        == EXIT_OK
    )
    assert recorded[0]["extravars"] == {
        "cuda_version": "12.8",
        "nvme_apst_max_latency_us": 0,
        "container_runtime_users": ["ana"],
    }


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["provision"])  # --host missing
    assert exc.value.code == EXIT_BAD_INPUT
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == EXIT_BAD_INPUT


def test_inventory_lookup_falls_back_to_xdg_config(
    recorded: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # no ./inventory here
    user_inv = tmp_path / "cfg" / "dlsetup" / "inventory"
    user_inv.mkdir(parents=True)
    (user_inv / "hosts.yml").write_text("all:\n  hosts:\n    workstation: {}\n")
    assert cli.main(["facts", "--host", "workstation", "--json"]) == EXIT_OK
    assert recorded[0]["inventory"] == [str(user_inv)]


def test_json_summary_document(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded.events.extend(
        [
            {"event": "playbook_on_play_start", "event_data": {"play": "Local facts"}},
            {
                "event": "runner_on_ok",
                "event_data": {
                    "host": "mybox",
                    "task": "Install facts",
                    "task_action": "ansible.builtin.copy",
                    "res": {"changed": True, "dest": "/x"},
                },
            },
            {
                "event": "playbook_on_stats",
                "event_data": {"ok": {"mybox": 1}, "changed": {"mybox": 1}},
            },
        ]
    )
    assert cli.main(["provision", "--host", "mybox", "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 0
    assert doc["hosts"]["mybox"]["changed"] == 1
    assert doc["hosts"]["mybox"]["changes"][0]["kind"] == "file"


def test_not_built_commands_say_so_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("bench",):
        assert cli.main([name]) == EXIT_BAD_INPUT
        assert "not built yet" in capsys.readouterr().err


def test_every_subcommand_help_teaches_by_example(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("provision", "plan", "facts", "demo"):
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"dlsetup {name}" in out
