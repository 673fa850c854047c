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
from dlsetup.exitcodes import ExitCode

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
            "DLSETUP_RUN_DIR": pdd,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(content.collections_path()),
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
    assert rc == ExitCode.OK
    (kw,) = recorded
    kw = strip_dynamic(kw)
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("site.yml")),
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
    assert cli.main(["provision", "--host", "lab", "--allow-reboot-local", "--json"]) == ExitCode.OK
    kw = recorded[0]
    assert kw["limit"] == "lab"
    assert kw["extravars"] == {"dlsetup_allow_reboot_local": True}
    assert "cmdline" not in kw and "tags" not in kw


def test_plan_is_check_and_diff(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["plan", "--host", "mybox", "--json"]) == ExitCode.OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("site.yml")),
        "limit": "mybox",
        "extravars": {},
        "cmdline": "--check --diff",
    }


def test_facts_runs_the_facts_playbook(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["facts", "--host", "lab", "--json"]) == ExitCode.OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("facts.yml")),
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
    assert cli.main(["provision", "--host", "admin@192.168.7.20", "--json"]) == ExitCode.OK
    assert "192.168.7.20" in seen["adhoc"]
    assert "ansible_user: admin" in seen["adhoc"]


def test_unknown_group_pattern_is_bad_input(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", "--host", "lab:&gpu*", "--json"]) == ExitCode.BAD_INPUT
    assert recorded == []
    assert "matches no host" in capsys.readouterr().err


def test_missing_inventory_is_bad_input(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["provision", "--host", "mybox", "-i", "/nonexistent/inv"]) == ExitCode.BAD_INPUT
    )
    assert recorded == []
    assert "/nonexistent/inv" in capsys.readouterr().err


def test_broken_inventory_is_bad_input(
    recorded: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts: [this, is, not, a, mapping\n")
    assert cli.main(["provision", "--host", "mybox", "-i", str(bad)]) == ExitCode.BAD_INPUT
    assert recorded == []
    assert "inventory" in capsys.readouterr().err


def test_broken_inventory_is_bad_input_after_ansible_read_its_settings(
    recorded: Recorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI ran this after other tests had imported ansible.constants with the
    # lenient defaults: the environment switch came too late and a broken
    # inventory turned into "no hosts", exit 0.
    from ansible import constants  # noqa: PLC0415  (imported here on purpose: the point is the order)

    monkeypatch.setattr(constants, "INVENTORY_UNPARSED_IS_FAILED", False)
    monkeypatch.setattr(constants, "INVENTORY_ANY_UNPARSED_IS_FAILED", False)
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts: [this, is, not, a, mapping\n")
    assert cli.main(["provision", "--host", "mybox", "-i", str(bad)]) == ExitCode.BAD_INPUT
    assert recorded == []
    assert "inventory" in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["novalue", "1abc=2", "@/nonexistent.yml"])
def test_bad_extra_vars_are_bad_input(
    recorded: Recorder, inv: Path, extra: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", "--host", "mybox", "-e", extra]) == ExitCode.BAD_INPUT
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
        == ExitCode.OK
    )
    assert recorded[0]["extravars"] == {
        "cuda_version": "12.8",
        "nvme_apst_max_latency_us": 0,
        "container_runtime_users": ["ana"],
    }


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["provision"])  # --host missing
    assert exc.value.code == ExitCode.BAD_INPUT
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == ExitCode.BAD_INPUT


def test_inventory_lookup_falls_back_to_xdg_config(
    recorded: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # no ./inventory here
    user_inv = tmp_path / "cfg" / "dlsetup" / "inventory"
    user_inv.mkdir(parents=True)
    (user_inv / "hosts.yml").write_text("all:\n  hosts:\n    workstation: {}\n")
    assert cli.main(["facts", "--host", "workstation", "--json"]) == ExitCode.OK
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
    assert cli.main(["provision", "--host", "mybox", "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 0
    assert doc["hosts"]["mybox"]["changed"] == 1
    assert doc["hosts"]["mybox"]["changes"][0]["kind"] == "file"


GPUCHECK = str(ROOT / "dlsetup" / "gpucheck")

NO_GPU_REPORT = {
    "passed": False,
    "checks": [
        {
            "id": "nvidia-gpu-present",
            "status": "fail",
            "message": "no NVIDIA GPU found: lspci is not installed (apt-get install pciutils)",
            "remedy": "Seat the GPU.",
        },
        {
            "id": "nvidia-smi",
            "status": "skip",
            "message": "no NVIDIA GPU found (see nvidia-gpu-present)",
            "remedy": "",
        },
    ],
}


def smoke_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What the smoke play sends for a host whose checks failed (shape of a real run)."""
    return [
        {"event": "playbook_on_play_start", "event_data": {"play": "Smoke test of the GPU stack"}},
        {
            "event": "runner_on_ok",
            "event_data": {
                "host": "mybox",
                "task": "Hand the smoke stage's result to the CLI (dlsetup_result)",
                "resolved_action": "ansible.builtin.set_fact",
                "res": {
                    "changed": False,
                    "ansible_facts": {
                        "dlsetup_result": {
                            "stage": "smoke",
                            "reports": {"gpu_smoke_test_report": report},
                        }
                    },
                },
            },
        },
        {
            "event": "runner_on_failed",
            "event_data": {
                "host": "mybox",
                "task": "Fail when a check failed",
                "res": {
                    "msg": "GPU smoke test failed on mybox:\nnvidia-gpu-present: no NVIDIA GPU found"
                },
            },
        },
        {
            "event": "playbook_on_stats",
            "event_data": {"ok": {"mybox": 5}, "failures": {"mybox": 1}},
        },
    ]


def test_smoke_host_exact_runner_arguments(recorded: Recorder, inv: Path) -> None:
    assert cli.main(["smoke", "--host", "lab", "--json"]) == ExitCode.OK
    (kw,) = recorded
    kw = strip_dynamic(kw)
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("smoke.yml")),
        "limit": "lab",
        "extravars": {"gpu_smoke_test_gpucheck_dir": GPUCHECK},
        "tags": "smoke",
    }


def test_smoke_host_capture_and_container_image(
    recorded: Recorder, inv: Path, tmp_path: Path
) -> None:
    argv = ["smoke", "--host", "mybox", "--capture", "bundles", "--container-image", "cuda:base"]
    assert cli.main([*argv, "-vv", "--json"]) == ExitCode.OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("smoke.yml")),
        "limit": "mybox",
        "extravars": {
            "gpu_smoke_test_gpucheck_dir": GPUCHECK,
            "gpu_smoke_test_capture_dir": str(tmp_path / "bundles"),
            "gpu_smoke_test_container_image": "cuda:base",
        },
        "tags": "smoke",
        "verbosity": 2,
    }


def test_smoke_host_failed_check_is_exit_4_with_the_report(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded.events.extend(smoke_events(NO_GPU_REPORT))
    assert cli.main(["smoke", "--host", "mybox", "--json"]) == ExitCode.SMOKE_FAILED
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == ExitCode.SMOKE_FAILED
    assert doc["smoke"] == {"mybox": NO_GPU_REPORT}
    assert doc["hosts"]["mybox"]["failures"][0]["category"] == "smoke"

    recorded.events[:] = smoke_events(NO_GPU_REPORT)
    assert cli.main(["smoke", "--host", "mybox"]) == ExitCode.SMOKE_FAILED
    out = capsys.readouterr().out
    assert "Smoke test of mybox: FAILED" in out
    assert "nvidia-gpu-present" in out and "no NVIDIA GPU found" in out
    assert "fix: Seat the GPU." in out


def test_smoke_needs_a_target(recorded: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["smoke"]) == ExitCode.BAD_INPUT
    assert "--host" in capsys.readouterr().err
    assert recorded == []


def test_bench_host_exact_runner_arguments(recorded: Recorder, inv: Path, tmp_path: Path) -> None:
    from dlsetup import bench_report  # noqa: PLC0415

    argv = ["bench", "--host", "mybox", "--report", "out", "--cifar-dir", "/data/cifar"]
    argv += ["--container-image", "torch:cuda", "--nvme-device", "/dev/nvme0n1", "--json"]
    assert cli.main(argv) == ExitCode.OK
    kw = strip_dynamic(recorded[0])
    assert kw == {
        **common(kw["private_data_dir"], [str(inv)]),
        "playbook": str(content.playbook("bench.yml")),
        "limit": "mybox",
        "extravars": {
            "gpu_smoke_test_gpucheck_dir": GPUCHECK,
            "gpu_smoke_test_bench_peaks": bench_report.peaks_table(),
            "gpu_smoke_test_bench_fetch_dir": str(tmp_path / "out"),
            "gpu_smoke_test_bench_container_image": "torch:cuda",
            "gpu_smoke_test_bench_cifar_dir": "/data/cifar",
            "gpu_smoke_test_bench_nvme_device": "/dev/nvme0n1",
        },
        "tags": "bench",
    }
    assert kw["extravars"]["gpu_smoke_test_bench_peaks"]["table"]["10de:1b06"]["gpu"] == (
        "GeForce GTX 1080 Ti"
    )


def test_bench_host_without_torch_is_exit_2(
    recorded: Recorder, inv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "no NVIDIA GPU found (lspci is not installed); PyTorch is not installed"
    recorded.events.extend(
        [
            {"event": "playbook_on_play_start", "event_data": {"play": "Bench of the GPU box"}},
            {
                "event": "runner_on_ok",
                "event_data": {
                    "host": "mybox",
                    "task": "Hand the bench stage's result to the CLI (dlsetup_result)",
                    "resolved_action": "ansible.builtin.set_fact",
                    "res": {
                        "ansible_facts": {
                            "dlsetup_result": {
                                "stage": "bench",
                                "reports": {
                                    "gpu_smoke_test_bench_report": {
                                        "missing": True,
                                        "error": missing,
                                    }
                                },
                            }
                        }
                    },
                },
            },
            {
                "event": "runner_on_failed",
                "event_data": {
                    "host": "mybox",
                    "task": "Say what is missing",
                    "res": {"msg": missing},
                },
            },
        ]
    )
    assert cli.main(["bench", "--host", "mybox", "--json"]) == ExitCode.BAD_INPUT
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == ExitCode.BAD_INPUT
    assert doc["hosts"]["mybox"]["failures"][0]["msg"] == missing
    assert doc["bench"]["files"] == []


def test_bench_needs_host_or_local(recorded: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench"]) == ExitCode.BAD_INPUT
    assert cli.main(["bench", "--local", "--host", "x"]) == ExitCode.BAD_INPUT
    assert "--host PATTERN or --local" in capsys.readouterr().err
    assert recorded == []


def test_every_subcommand_help_teaches_by_example(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("provision", "plan", "facts", "demo", "smoke", "bench"):
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"dlsetup {name}" in out


FACTS = {
    "os": {"name": "Debian GNU/Linux", "version": "12", "kernel": "6.1.0-28-amd64"},
    "cpu": {"model": "AMD Ryzen 9 7950X", "cores": 32, "physical_cores": 16, "sockets": 1},
    "memory_bytes": 64 * 2**30,
    "virtualization": "none",
    "boot_mode": "uefi",
    "secure_boot": "disabled",
    "gpus": [
        {
            "address": "0000:01:00.0",
            "pci_id": "10de:1b06",
            "name": "NVIDIA GeForce GTX 1080 Ti",
            "driver": "nvidia",
            "link": {
                "current_speed": "8.0 GT/s PCIe",
                "max_speed": "8.0 GT/s PCIe",
                "current_width": 8,
                "max_width": 16,
            },
        }
    ],
    "kernel_modules": {"nouveau": False, "nvidia": True},
    "versions": {"driver": "535.261.03", "cuda": "11.8", "cudnn": "8.9.7"},
    "nvme": [
        {
            "name": "nvme0",
            "model": "Samsung SSD 970 EVO Plus 1TB",
            "firmware": "2B2QEXM7",
            "link": {
                "current_speed": "8.0 GT/s PCIe",
                "max_speed": "8.0 GT/s PCIe",
                "current_width": 4,
                "max_width": 4,
            },
        }
    ],
}
NVME_FACTS = {
    "controllers": [
        {
            "name": "nvme0",
            "model": "Samsung SSD 970 EVO Plus 1TB",
            "serial": "S4EWNX0R",
            "firmware": "2B2QEXM7",
            "critical_warning": 0,
            "temperature_c": 41,
            "percentage_used": 3,
            "media_errors": 0,
            "link": {
                "current_speed": "8.0 GT/s PCIe",
                "max_speed": "8.0 GT/s PCIe",
                "current_width": 2,
                "max_width": 4,
            },
            "warnings": ["link runs at x2 of x4"],
        }
    ]
}


def facts_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"event": "playbook_on_play_start", "event_data": {"play": "Install and read facts"}},
        {
            "event": "runner_on_ok",
            "event_data": {
                "host": "mybox",
                "task": "Hand the facts stage's result to the CLI (dlsetup_result)",
                "resolved_action": "ansible.builtin.set_fact",
                "res": {
                    "ansible_facts": {
                        "dlsetup_result": {"stage": "facts", "reports": {"dl_facts_report": report}}
                    }
                },
            },
        },
    ]


@pytest.mark.parametrize(
    ("nvme_facts", "expected"),
    [
        (
            NVME_FACTS,
            [
                "nvme0: Samsung SSD 970 EVO Plus 1TB (serial S4EWNX0R) fw 2B2QEXM7, "
                "link 8.0 GT/s PCIe x2 (max 8.0 GT/s PCIe x4)",
                "critical warning 0, 41 °C, 3 % used, 0 media errors",
                "nvme0: link runs at x2 of x4",
            ],
        ),
        (None, ["link 8.0 GT/s PCIe x4", "no NVMe facts (run the nvme stage)"]),
        ({"controllers": []}, ["no NVMe drives"]),
    ],
    ids=["nvme-stage-ran", "no-nvme-facts", "no-drives"],
)
def test_facts_hardware_summary(
    recorded: Recorder,
    inv: Path,
    capsys: pytest.CaptureFixture[str],
    nvme_facts: dict[str, Any] | None,
    expected: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    recorded.events.extend(facts_events({**FACTS, "nvme_facts": nvme_facts}))
    assert cli.main(["facts", "--host", "mybox"]) == ExitCode.OK
    out = capsys.readouterr().out
    for text in [
        "NVIDIA GeForce GTX 1080 Ti [10de:1b06] at 0000:01:00.0, link 8.0 GT/s PCIe x8 "
        "(max 8.0 GT/s PCIe x16), kernel driver nvidia",
        "AMD Ryzen 9 7950X, 32 threads (16 physical in 1 socket(s))",
        "64.0 GiB",
        "kernel 6.1.0-28-amd64",
        "535.261.03 / 11.8 / 8.9.7",
        *expected,
    ]:
        assert text in out, text


def _kernel(name: str, module: str, *, running: bool = False, dkms: str = "") -> dict[str, Any]:
    """One entry of nvidia_driver_state's kernel list (scope kernels), as dl_facts reports it."""
    return {
        "kernel": name,
        "running": running,
        "image": True,
        "headers": module != "no-headers",
        "module": module,
        "dkms": dkms or "not built",
    }


def test_facts_lists_the_kernels_and_warns_for_one_without_the_module(
    recorded: Recorder,
    inv: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """unattended-upgrades installed 6.1.0-31 without headers: the box boots into it
    without a GPU. `dlsetup facts` marks the running kernel and warns with the smoke
    test's check id and words; the kernel whose headers are there is warned too."""
    monkeypatch.setenv("COLUMNS", "300")
    kernels = [
        _kernel("6.1.0-28-amd64", "built", running=True, dkms="nvidia-current: installed"),
        _kernel("6.1.0-30-amd64", "missing"),
        _kernel("6.1.0-31-amd64", "no-headers"),
    ]
    report = {
        **FACTS,
        "nvme_facts": None,
        "virtualization": "none",
        "in_container": False,
        "container": {"container": False, "kind": ""},
        "running_kernel": "6.1.0-28-amd64",
        "kernels": kernels,
    }
    recorded.events.extend(facts_events(report))
    assert cli.main(["facts", "--host", "mybox"]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    cells = [[c.strip() for c in line.split("│")] for line in lines]
    assert [c[2] for c in cells if len(c) > 2 and c[1] == "kernel"] == [
        "6.1.0-28-amd64 (running): NVIDIA module built (nvidia-current: installed)",
        "6.1.0-30-amd64: NVIDIA module not built (headers installed: DKMS can build it)",
        "6.1.0-31-amd64: NVIDIA module not built (no headers: it cannot be built)",
    ]
    warnings = [line for line in lines if "nvidia-module-missing-for-kernel" in line]
    assert len(warnings) == 2
    for name, line in zip(("6.1.0-30-amd64", "6.1.0-31-amd64"), warnings, strict=True):
        assert "warning" in line
        assert (
            f"nvidia-module-missing-for-kernel: no nvidia module for kernel {name}, which the "
            "box can boot (running: 6.1.0-28-amd64): a reboot into it leaves the box without "
            "a GPU"
        ) in line


@pytest.mark.parametrize(
    ("kernels", "expected", "warned"),
    [
        ([], ["none found (/lib/modules/<v> with /boot/vmlinuz-<v>)"], False),
        # no driver on the box: no kernel has the module, nothing to warn about (as the
        # smoke test skips): the rows say it
        (
            [
                _kernel("6.1.0-28-amd64", "missing", running=True),
                _kernel("6.1.0-31-amd64", "missing"),
            ],
            ["6.1.0-28-amd64 (running): NVIDIA module not built"],
            False,
        ),
        # the running kernel's module was not built by DKMS but is loaded: it has one
        (
            [
                _kernel("6.1.0-28-amd64", "missing", running=True),
                _kernel("6.1.0-31-amd64", "built"),
            ],
            ["6.1.0-28-amd64 (running): NVIDIA module loaded (not built by DKMS)"],
            False,
        ),
        # modules from packages (Ubuntu's linux-modules-nvidia-*), none by DKMS: the
        # loaded one is shown, the others are not judged here (the smoke test asks modinfo)
        (
            [
                _kernel("6.1.0-28-amd64", "missing", running=True),
                _kernel("6.1.0-31-amd64", "missing"),
            ],
            [
                "6.1.0-28-amd64 (running): NVIDIA module loaded (not built by DKMS)",
                "6.1.0-31-amd64: NVIDIA module not built (headers installed: DKMS can build it)",
            ],
            False,
        ),
    ],
    ids=["no-kernels", "no-driver", "loaded-not-dkms", "precompiled-not-dkms"],
)
def test_facts_kernel_rows_edge_cases(
    recorded: Recorder,
    inv: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kernels: list[dict[str, Any]],
    expected: list[str],
    warned: bool,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    report = {**FACTS, "nvme_facts": None, "running_kernel": "6.1.0-28-amd64", "kernels": kernels}
    # nvidia is loaded where the running kernel's module came from elsewhere
    loaded = request.node.callspec.id in ("loaded-not-dkms", "precompiled-not-dkms")
    report["kernel_modules"] = {"nouveau": False, "nvidia": loaded}
    recorded.events.extend(facts_events(report))
    assert cli.main(["facts", "--host", "mybox"]) == ExitCode.OK
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, text
    assert ("nvidia-module-missing-for-kernel" in out) is warned


def test_facts_without_a_kernel_list_shows_no_kernel_rows(
    recorded: Recorder,
    inv: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Facts from before the kernel listing (no ``kernels`` key) render as before."""
    monkeypatch.setenv("COLUMNS", "300")
    recorded.events.extend(facts_events({**FACTS, "nvme_facts": None}))
    assert cli.main(["facts", "--host", "mybox"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "NVIDIA module" not in out and "nvidia-module-missing-for-kernel" not in out


def test_bench_host_writes_the_report_from_the_fetched_json(
    recorded: Recorder, inv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the playbook leaves on the controller: <report>/<host>/bench.json (here the
    # synthetic bench document of tests/fixtures/bench, not a measurement).
    raw = (ROOT / "tests" / "fixtures" / "bench" / "synthetic-gtx1080ti.json").read_text()
    for host in ("mybox", "box2"):
        (tmp_path / "out" / host).mkdir(parents=True)
        (tmp_path / "out" / host / "bench.json").write_text(raw)
    recorded.events.extend(
        [
            {"event": "playbook_on_play_start", "event_data": {"play": "Bench of the GPU box"}},
            {
                "event": "runner_on_ok",
                "event_data": {
                    "host": "mybox",
                    "task": "Hand the bench stage's result to the CLI (dlsetup_result)",
                    "resolved_action": "ansible.builtin.set_fact",
                    "res": {
                        "ansible_facts": {
                            "dlsetup_result": {
                                "stage": "bench",
                                "reports": {"gpu_smoke_test_bench_report": {"missing": False}},
                            }
                        }
                    },
                },
            },
            {
                "event": "runner_on_ok",
                "event_data": {"host": "box2", "task": "Gathering Facts", "res": {}},
            },
        ]
    )
    assert cli.main(["bench", "--host", "lab", "--report", "out", "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    # box2's bench.json is from an earlier run: not reported
    assert set(doc["bench"]["hosts"]) == {"mybox"}
    assert doc["bench"]["hosts"]["mybox"]["device"] == "NVIDIA GeForce GTX 1080 Ti"
    files = {Path(f).name for f in doc["bench"]["files"]}
    assert files == {"report.json", "report.md", "ratios-mybox.png", "cifar10-mybox.png"}
    assert "GEMM fp32" in (tmp_path / "out" / "report.md").read_text()


def test_gpucheck_exit_codes_agree_with_the_cli() -> None:
    """gpucheck runs standalone on the target and keeps its own copy of the codes
    it uses; each must mean what the CLI's one definition says."""
    from dlsetup.exitcodes import ExitCode as Cli  # noqa: PLC0415
    from dlsetup.gpucheck.exitcodes import ExitCode as Standalone  # noqa: PLC0415

    for code in Standalone:
        assert Cli[code.name] == code.value, code
