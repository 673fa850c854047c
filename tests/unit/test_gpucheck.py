"""The GPU smoke test (dlsetup.gpucheck), driven by replay bundles.

There is no GPU on the machines this suite runs on: the bundles under
tests/fixtures/gpucheck/ stand in for real boxes. They hold, in the exact
formats a real host produces, what the checks read (files under /proc, /sys,
/etc; the output and exit codes of nvidia-smi, lspci, ldconfig, docker, nvcc,
the torch probe). Each fault bundle is the healthy box with one thing broken;
tests/fixtures/gpucheck/make_bundles.py writes them. What only a live GPU can
show (the CUDA driver API self-test, cuDNN handle creation, the PCIe reading
under the self-test's load) the bundles hold as a capture records it
(calls.json); the ctypes code itself runs here against a C stub driver.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dlsetup.gpucheck import checks, cli, cuda
from dlsetup.gpucheck.checks import (
    CHECK_IDS,
    PCIE_FIELDS,
    SMI_FIELDS,
    TORCH_PROBE,
    Options,
    run_checks,
)
from dlsetup.gpucheck.probe import (
    BundleError,
    CapturingProbe,
    CommandResult,
    LiveProbe,
    ReplayProbe,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "dlsetup" / "gpucheck"
FIXTURES = REPO / "tests" / "fixtures" / "gpucheck"
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3")
IMAGE_HEALTHY = "nvidia/cuda:11.8.0-base-ubuntu22.04"


def replay(name: str | Path, **options: Any) -> checks.Report:
    bundle = name if isinstance(name, Path) else FIXTURES / name
    probe = ReplayProbe(str(bundle))
    opts = Options(**options)
    if opts.container_image is None:
        opts.container_image = probe.meta.get("options", {}).get("container_image")
    return run_checks(probe, opts)


def statuses(report: checks.Report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def host_has_nvidia_gpu() -> bool:
    for vendor in Path("/sys/bus/pci/devices").glob("*/vendor"):
        try:
            if vendor.read_text().strip() == "0x10de":
                return True
        except OSError:
            continue
    return False


# -- the bundles --------------------------------------------------------------

FAULTS = [
    ("no-gpu", "nvidia-gpu-present", "fail"),
    ("nouveau-loaded", "nouveau-loaded", "fail"),
    ("nvidia-module-missing", "nvidia-module-missing", "fail"),
    ("driver-library-mismatch", "driver-library-mismatch", "fail"),
    ("pcie-link-degraded", "pcie-link-degraded", "fail"),
    ("cuda-driver-too-old", "cuda-driver-too-old", "fail"),
    ("cudnn-missing", "cudnn-missing", "fail"),
    ("container-runtime-missing", "container-runtime-missing", "fail"),
    ("nvme-link-degraded", "nvme-link-degraded", "fail"),
    ("nvme-critical-warning", "nvme-health", "fail"),
]


@pytest.mark.parametrize(("bundle", "check_id", "status"), FAULTS)
def test_fault_bundle_fails_its_check_with_a_remedy(
    bundle: str, check_id: str, status: str
) -> None:
    """Each recorded fault (a replayed box, no GPU needed) fails its check, exit 4."""
    report = replay(bundle)
    result = report.check(check_id)
    assert result is not None
    assert result.status == status, result.message
    assert result.remedy.strip()
    assert report.exit_code == 4
    assert not report.passed


@pytest.mark.parametrize(("bundle", "check_id", "status"), FAULTS)
def test_fault_bundle_cli_exit_code_and_json(
    bundle: str, check_id: str, status: str, capsys: Any
) -> None:
    """The CLI replays the bundle, prints the JSON document and exits 4."""
    assert cli.main(["--json", "--replay", str(FIXTURES / bundle)]) == 4
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False
    by_id = {c["id"]: c for c in doc["checks"]}
    assert by_id[check_id]["status"] == status
    assert by_id[check_id]["remedy"]
    assert set(doc) >= {"passed", "checks", "host", "gpus"}
    for check in doc["checks"]:
        assert set(check) == {"id", "status", "message", "remedy"}


def test_healthy_bundle_passes() -> None:
    """A healthy GTX 1080 Ti box, replayed: every check passes, the live-only ones from
    the self-test results the bundle recorded."""
    report = replay("healthy")
    assert report.exit_code == 0
    assert report.passed
    assert [c.id for c in report.checks] == list(CHECK_IDS)
    for result in report.checks:
        assert result.status == "pass", (result.id, result.message)
        assert result.remedy == ""
    api = report.check("cuda-driver-api")
    assert api is not None and "NVRTC 11.8 kernel verified" in api.message
    gpu = report.gpus[0]
    assert gpu["name"] == "NVIDIA GeForce GTX 1080 Ti"
    assert gpu["driver_version"] == "535.261.03"
    assert gpu["memory_total_mib"] == 11264
    assert gpu["pci_bus_id"] == "0000:01:00.0"
    assert gpu["pcie"]["width_current"] == 16
    assert gpu["pcie"]["read_under_load"] is True
    assert report.host["hostname"] == "dl-box"
    assert report.mode == "replay"


def test_healthy_messages_carry_the_facts() -> None:
    """Messages say what was found, not only that it is fine."""
    report = replay("healthy")
    text = {c.id: c.message for c in report.checks}
    assert "535.261.03" in text["driver-library-mismatch"]
    assert "11.8" in text["cuda-driver-too-old"] and "12.2" in text["cuda-driver-too-old"]
    assert "8.9.7" in text["cudnn-missing"]
    assert "535.261.03" in text["container-runtime-missing"]
    assert "torch 2.1.2+cu118" in text["pytorch"]
    assert "gen3 x16" in text["pcie-link-degraded"]


def test_no_gpu_bundle_says_what_lspci_shows() -> None:
    report = replay("no-gpu")
    result = report.check("nvidia-gpu-present")
    assert result is not None
    assert result.message.startswith("no NVIDIA GPU found")
    assert "UHD Graphics 630" in result.message
    assert all(c.status == "skip" for c in report.checks if c.id != "nvidia-gpu-present")


def test_mismatch_names_both_versions_and_the_reboot() -> None:
    result = replay("driver-library-mismatch").check("driver-library-mismatch")
    assert result is not None
    assert "535.183.01" in result.message and "535.261.03" in result.message
    assert "reboot" in result.remedy


def test_pcie_degraded_names_the_width() -> None:
    result = replay("pcie-link-degraded").check("pcie-link-degraded")
    assert result is not None
    assert "x8 of x16" in result.message and "under the CUDA self-test's load" in result.message


def test_old_driver_query_retries_without_unknown_fields() -> None:
    """nvidia-smi of driver 470 rejects compute_cap; the query drops it and goes on."""
    report = replay("cuda-driver-too-old")
    result = report.check("nvidia-smi")
    assert result is not None and result.status == "pass"
    assert "compute_cap" in result.message
    assert report.gpus[0]["driver_version"] == "470.256.02"


def test_nouveau_bundle_also_explains_the_missing_module() -> None:
    report = replay("nouveau-loaded")
    module = report.check("nvidia-module-missing")
    assert module is not None and module.status == "fail"
    assert "nouveau" in module.message and "535.261.03" in module.message


def test_table_output_lists_checks_and_fixes(capsys: Any) -> None:
    assert cli.main(["--replay", str(FIXTURES / "nvme-link-degraded")]) == 4
    out = capsys.readouterr().out
    assert "FAIL   nvme-link-degraded" in out
    assert "fix: Move the drive" in out
    assert out.rstrip().splitlines()[-1].startswith("FAILED: 17 checks, 1 failed")


# -- variations of the healthy box ---------------------------------------------


def variant(tmp_path: Path, edit: Any, base: str = "healthy") -> Path:
    """A copy of a bundle whose commands.json ``edit(commands)`` changed in place."""
    target = tmp_path / base
    shutil.copytree(FIXTURES / base, target)
    commands = json.loads((target / "commands.json").read_text())
    edit(commands)
    (target / "commands.json").write_text(json.dumps(commands))
    return target


def set_stdout(argv_start: list[str], stdout: str, rc: int = 0) -> Any:
    def edit(commands: list[dict[str, Any]]) -> None:
        hits = [c for c in commands if c["argv"][: len(argv_start)] == argv_start]
        assert hits, argv_start
        for command in hits:
            command["stdout"], command["rc"] = stdout, rc

    return edit


def smi_row(**changes: str) -> str:
    row = {
        "index": "0",
        "pci.bus_id": "00000000:01:00.0",
        "name": "NVIDIA A100-PCIE-40GB",
        "uuid": "GPU-0c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8",
        "driver_version": "535.261.03",
        "memory.total": "40960",
        "memory.used": "0",
        "temperature.gpu": "31",
        "pstate": "P0",
        "persistence_mode": "Enabled",
        "compute_cap": "8.0",
        "ecc.mode.current": "Enabled",
        "ecc.errors.corrected.volatile.total": "0",
        "ecc.errors.uncorrected.volatile.total": "0",
        "ecc.errors.uncorrected.aggregate.total": "0",
        "retired_pages.single_bit_ecc.count": "[N/A]",
        "retired_pages.double_bit.count": "[N/A]",
        "retired_pages.pending": "[N/A]",
        "remapped_rows.correctable": "0",
        "remapped_rows.uncorrectable": "0",
        "remapped_rows.pending": "No",
        "remapped_rows.failure": "No",
        "clocks_throttle_reasons.active": "0x0000000000000000",
        "clocks_throttle_reasons.hw_slowdown": "Not Active",
        "clocks_throttle_reasons.hw_thermal_slowdown": "Not Active",
        "clocks_throttle_reasons.hw_power_brake_slowdown": "Not Active",
        "clocks_throttle_reasons.sw_thermal_slowdown": "Not Active",
    }
    row.update(changes)
    return ", ".join(row[f] for f in SMI_FIELDS) + "\n"


def pcie_row(**changes: str) -> str:
    row = dict(
        zip(
            PCIE_FIELDS,
            ["0", "00000000:01:00.0", "P2", "97", "Not Active", "3", "3", "16", "16"],
            strict=True,
        )
    )
    row.update({k.replace("_", "."): v for k, v in changes.items()})
    return ", ".join(row[f] for f in PCIE_FIELDS) + "\n"


SMI_QUERY = ["nvidia-smi", "--query-gpu=" + ",".join(SMI_FIELDS)]
PCIE_QUERY = ["nvidia-smi", "--query-gpu=" + ",".join(PCIE_FIELDS)]


def with_calls(bundle: Path, edit: Any) -> Path:
    """``edit(calls)`` changes the bundle's recorded in-process calls in place."""
    calls = json.loads((bundle / "calls.json").read_text())
    edit(calls)
    (bundle / "calls.json").write_text(json.dumps(calls))
    return bundle


def load_reading(row: str) -> Any:
    """The PCIe reading the recorded self-test took under its load becomes ``row``."""

    def edit(calls: list[dict[str, Any]]) -> None:
        (selftest,) = [c for c in calls if c["name"] == "cuda-selftest"]
        parsed = checks.parse_smi_csv(row, list(PCIE_FIELDS))
        selftest["value"]["report"]["during_load"] = parsed

    return edit


def idle_reading(tmp_path: Path, row: str) -> Path:
    """No self-test result in the bundle: the check reads the link idle, as ``row``."""
    bundle = variant(tmp_path, lambda commands: commands.append(
        {"argv": [*PCIE_QUERY, "--format=csv,noheader,nounits"], "rc": 0, "stdout": row,
         "stderr": ""}))  # fmt: skip
    return with_calls(bundle, lambda calls: calls.clear())


IDLE_GEN1 = pcie_row(pstate="P8", **{"utilization.gpu": "0", "pcie.link.gen.current": "1"})


def test_idle_gen_downclock_is_not_a_fault(tmp_path: Path) -> None:
    """An idle GPU drops to gen1; with the full width that passes, and says it was idle."""
    result = replay(idle_reading(tmp_path, IDLE_GEN1)).check("pcie-link-degraded")
    assert result is not None and result.status == "pass"
    assert "not a fault" in result.message and "read idle by nvidia-smi" in result.message


def test_p0_reading_without_the_load_is_not_judged_under_load(tmp_path: Path) -> None:
    """A reading that looks busy (P0, 97 %) but was not taken under the self-test's load
    (an H100 idles at P0) does not fail a slow link: the load is not known to run."""
    busy_slow = pcie_row(**{"pcie.link.gen.current": "1"})
    result = replay(idle_reading(tmp_path, busy_slow)).check("pcie-link-degraded")
    assert result is not None and result.status == "pass", result.message
    assert "read idle" in result.message


def test_narrow_idle_link_warns_and_asks_for_a_live_run(tmp_path: Path) -> None:
    narrow = pcie_row(**{"pcie.link.width.current": "8"})
    report = replay(idle_reading(tmp_path, narrow))
    result = report.check("pcie-link-degraded")
    assert result is not None and result.status == "warn"
    assert "x8 of x16" in result.message and "read idle" in result.message
    assert "dlsetup smoke --local" in result.remedy
    assert report.exit_code == 0


def test_low_gen_under_load_is_a_fault(tmp_path: Path) -> None:
    slow = pcie_row(**{"pcie.link.gen.current": "1"})
    bundle = with_calls(variant(tmp_path, lambda commands: None), load_reading(slow))
    result = replay(bundle).check("pcie-link-degraded")
    assert result is not None and result.status == "fail"
    assert "gen1 of gen3" in result.message and "self-test's load" in result.message


def test_idle_reading_under_the_self_test_would_fail(tmp_path: Path) -> None:
    """The same slow link read under the self-test's load fails; read idle it passes."""
    bundle = with_calls(variant(tmp_path, lambda commands: None), load_reading(IDLE_GEN1))
    result = replay(bundle).check("pcie-link-degraded")
    assert result is not None and result.status == "fail"


def test_uncorrectable_ecc_and_pending_remap_fail(tmp_path: Path) -> None:
    bad = smi_row(**{"ecc.errors.uncorrected.volatile.total": "2", "remapped_rows.pending": "Yes"})
    report = replay(variant(tmp_path, set_stdout(SMI_QUERY, bad)))
    result = report.check("gpu-ecc-errors")
    assert result is not None and result.status == "fail"
    assert "2 uncorrectable" in result.message and "remapping is pending" in result.message
    assert "reset" in result.remedy
    assert report.exit_code == 4


def test_clean_ecc_gpu_passes(tmp_path: Path) -> None:
    report = replay(variant(tmp_path, set_stdout(SMI_QUERY, smi_row())))
    result = report.check("gpu-ecc-errors")
    assert result is not None and result.status == "pass"
    assert "no ECC errors" in result.message


def test_hw_slowdown_warns_without_failing(tmp_path: Path) -> None:
    hot = smi_row(**{"clocks_throttle_reasons.hw_slowdown": "Active"})
    report = replay(variant(tmp_path, set_stdout(SMI_QUERY, hot)))
    result = report.check("gpu-throttling")
    assert result is not None and result.status == "warn"
    assert "power" in result.remedy
    assert report.exit_code == 0


def test_persistence_off_warns(tmp_path: Path) -> None:
    report = replay(variant(tmp_path, set_stdout(SMI_QUERY, smi_row(persistence_mode="Disabled"))))
    result = report.check("gpu-persistence-mode")
    assert result is not None and result.status == "warn"
    assert "nvidia-persistenced" in result.remedy


def test_second_gpu_missing_from_nvidia_smi_fails(tmp_path: Path) -> None:
    """Two GPUs on the bus, one in nvidia-smi: the other fell off the bus."""
    bundle = variant(tmp_path, lambda commands: None)
    second = bundle / "files/sys/bus/pci/devices/0000:03:00.0"
    shutil.copytree(bundle / "files/sys/bus/pci/devices/0000:01:00.0", second)
    result = replay(bundle).check("nvidia-smi")
    assert result is not None and result.status == "fail"
    assert "1 of the 2" in result.message and "0000:03:00.0" in result.message


def test_container_image_not_present_is_skipped() -> None:
    report = replay("healthy", container_image="registry.example/never-pulled:1")
    result = report.check("container-runtime-missing")
    assert result is not None and result.status == "skip"
    assert "not present locally" in result.message


def test_no_container_image_is_skipped_with_reason(tmp_path: Path) -> None:
    bundle = variant(tmp_path, lambda commands: None)
    (bundle / "meta.json").unlink()
    result = replay(bundle).check("container-runtime-missing")
    assert result is not None and result.status == "skip"
    assert "--container-image" in result.message


def test_torch_absent_is_skipped(tmp_path: Path) -> None:
    absent = json.dumps(
        {"torch": None, "import_error": "ModuleNotFoundError: No module named 'torch'"}
    )
    bundle = variant(tmp_path, set_stdout(["python3", "-c"], absent + "\n"))
    result = replay(bundle).check("pytorch")
    assert result is not None and result.status == "skip"
    assert "not installed" in result.message


def test_wrong_matmul_fails(tmp_path: Path) -> None:
    data = json.loads(
        json.dumps(
            {
                "torch": "2.1.2+cu118",
                "cuda_build": "11.8",
                "cuda_available": True,
                "device_count": 1,
                "devices": ["NVIDIA GeForce GTX 1080 Ti"],
                "cudnn": 8700,
                "matmul_max_rel_err": [0.37],
            }
        )
    )
    bundle = variant(tmp_path, set_stdout(["python3", "-c"], json.dumps(data) + "\n"))
    result = replay(bundle).check("pytorch")
    assert result is not None and result.status == "fail"


def test_nvme_facts_absent_are_skipped(tmp_path: Path) -> None:
    bundle = variant(tmp_path, lambda commands: None)
    (bundle / "files/etc/ansible/facts.d/nvme.fact").unlink()
    report = replay(bundle)
    for check_id in ("nvme-link-degraded", "nvme-health"):
        result = report.check(check_id)
        assert result is not None and result.status == "skip"
        assert "nvme.fact" in result.message


def test_a_crashing_check_becomes_internal_error(monkeypatch: Any) -> None:
    def boom(ctx: checks.Context) -> checks.CheckResult:
        raise ZeroDivisionError("division by zero")

    patched = tuple((cid, boom if cid == "gpu-throttling" else fn) for cid, fn in checks.CHECKS)
    monkeypatch.setattr(checks, "CHECKS", patched)
    report = replay("healthy")
    assert statuses(report)["gpu-throttling"] == "skip"
    internal = report.check("internal-error")
    assert internal is not None and internal.status == "fail"
    assert "gpu-throttling: ZeroDivisionError" in internal.message
    assert internal.remedy
    assert report.exit_code == 4


def test_a_crash_outside_the_checks_is_reported_too(monkeypatch: Any) -> None:
    def boom(ctx: checks.Context) -> dict[str, Any]:
        raise RuntimeError("no host")

    monkeypatch.setattr(checks, "host_info", boom)
    report = replay("healthy")
    assert [c.id for c in report.checks] == ["internal-error"]
    assert report.exit_code == 4


class LiveReplay(ReplayProbe):
    """Stands in for a live box (there is no GPU here): files and commands from a bundle,
    the in-process calls (ctypes on libcuda, libcudnn) really run, as on a live probe."""

    live = True

    def call(self, name: str, args: list[str], fn: Any) -> dict[str, Any] | None:
        return fn()

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        if timeout <= 0:  # as LiveProbe: a spent budget runs nothing
            return LiveProbe().run(argv, timeout)
        return super().run(argv, timeout)


def test_live_path_without_libcuda_fails_cleanly() -> None:
    """The live-only code runs up to loading libcuda.so.1 here, and fails with a remedy."""

    report = run_checks(LiveReplay(str(FIXTURES / "healthy")), Options())
    api = report.check("cuda-driver-api")
    assert api is not None and api.status == "fail"
    assert "libcuda.so.1" in api.message and "libcuda" in api.remedy
    cudnn = report.check("cudnn-missing")
    assert cudnn is not None and cudnn.status == "fail"


# -- the probe and the bundle format -----------------------------------------


def test_replay_rules(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "files/proc/driver/nvidia").mkdir(parents=True)
    (bundle / "files/proc/driver/nvidia/version").write_text("NVRM version: x\n")
    (bundle / "commands.json").write_text(
        json.dumps(
            [
                {"argv": ["tool", "a"], "rc": 0, "stdout": "first\n", "stderr": ""},
                {"argv": ["tool", "a"], "rc": 0, "stdout": "second\n", "stderr": ""},
                {"argv": ["gone"], "rc": 127, "stdout": "", "stderr": "gone: not found"},
                {
                    "argv": ["python3", "-c", "# tag v1\nprint(1)"],
                    "rc": 0,
                    "stdout": "1\n",
                    "stderr": "",
                },
            ]
        )
    )
    (bundle / "dirs.json").write_text(json.dumps({"/empty": [], "/missing": None}))
    probe = ReplayProbe(str(bundle))
    assert probe.read_file("/proc/driver/nvidia/version") == "NVRM version: x\n"
    assert probe.read_file("/proc/modules") is None
    assert probe.read_file("/../../etc/passwd") is None
    assert probe.list_dir("/proc/driver") == ["nvidia"]
    assert probe.list_dir("/empty") == []
    assert probe.list_dir("/missing") is None
    assert probe.list_dir("/nowhere") is None
    assert probe.run(["tool", "a"], 5).stdout == "first\n"
    assert probe.run(["tool", "a"], 5).stdout == "second\n"
    assert probe.run(["tool", "a"], 5).stdout == "second\n"
    assert probe.run(["tool", "b"], 5).rc == 127
    assert probe.run(["python3", "-c", "# tag v1\nprint(2)"], 5).stdout == "1\n"
    assert probe.which("tool") == "/usr/bin/tool"
    assert probe.which("gone") is None
    assert probe.which("absent") is None


def test_broken_bundle_is_bad_input(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "commands.json").write_text('[{"argv": ["x"]}]')
    with pytest.raises(BundleError):
        ReplayProbe(str(tmp_path))
    assert cli.main(["--replay", str(tmp_path)]) == 2
    assert cli.main(["--replay", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_capture_and_replay_together_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--capture", str(tmp_path), "--replay", str(tmp_path)])
    assert exc.value.code == 2


def test_capturing_probe_records_what_it_returns(tmp_path: Path) -> None:
    probe = CapturingProbe(LiveProbe(), str(tmp_path / "cap"), {"options": {}})
    assert probe.read_file("/proc/sys/kernel/osrelease")
    assert probe.list_dir("/proc/sys/kernel")
    assert probe.run(["true"], 5).rc == 0
    assert probe.run(["definitely-not-a-command-xyz"], 5).rc == 127
    assert probe.which("definitely-not-a-command-xyz") is None
    probe.close()
    again = ReplayProbe(str(tmp_path / "cap"))
    assert (
        again.read_file("/proc/sys/kernel/osrelease")
        == Path("/proc/sys/kernel/osrelease").read_text()
    )
    assert again.list_dir("/proc/sys/kernel") == sorted(os.listdir("/proc/sys/kernel"))
    assert again.run(["definitely-not-a-command-xyz"], 5).rc == 127
    assert again.which("definitely-not-a-command-xyz") is None
    assert json.loads((tmp_path / "cap/commands.json").read_text())[0] == {
        "argv": ["true"],
        "rc": 0,
        "stdout": "",
        "stderr": "",
    }


def test_live_probe_timeout_is_rc_124() -> None:
    result = LiveProbe().run(["sleep", "5"], 0.3)
    assert result.rc == 124 and "timed out" in result.stderr


# -- live runs on this machine (no GPU) ----------------------------------------


def run_cli(
    *args: str, python: str = sys.executable, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [python, *args], capture_output=True, text=True, timeout=90, cwd=cwd, env=env, check=False
    )


@pytest.mark.skipif(host_has_nvidia_gpu(), reason="this host has an NVIDIA GPU")
def test_live_run_without_gpu_exits_4_without_traceback() -> None:
    proc = run_cli("-m", "dlsetup.gpucheck")
    assert proc.returncode == 4, proc.stderr
    assert "no NVIDIA GPU found" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = run_cli("-m", "dlsetup.gpucheck", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 4
    assert doc["passed"] is False
    assert doc["checks"][0]["id"] == "nvidia-gpu-present"
    assert doc["checks"][0]["message"].startswith("no NVIDIA GPU found")
    assert doc["elapsed_s"] < 60


@pytest.mark.skipif(host_has_nvidia_gpu(), reason="this host has an NVIDIA GPU")
def test_capture_replays_to_the_same_result(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    live = run_cli("-m", "dlsetup.gpucheck", "--json", "--capture", str(bundle))
    assert live.returncode == 4, live.stderr
    assert (bundle / "commands.json").is_file() and (bundle / "dirs.json").is_file()
    assert (bundle / "files").is_dir() and (bundle / "report.json").is_file()
    again = run_cli("-m", "dlsetup.gpucheck", "--json", "--replay", str(bundle))
    assert again.returncode == live.returncode
    live_doc, replay_doc = json.loads(live.stdout), json.loads(again.stdout)
    assert replay_doc["checks"] == live_doc["checks"]
    assert replay_doc["gpus"] == live_doc["gpus"]
    assert replay_doc["passed"] == live_doc["passed"]
    assert replay_doc["host"]["hostname"] == live_doc["host"]["hostname"]
    assert live_doc["mode"] == "capture" and replay_doc["mode"] == "replay"


def copy_package(tmp_path: Path) -> Path:
    target = tmp_path / "opt" / "gpucheck"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.parametrize(
    "python",
    [
        "/usr/bin/python3",
        pytest.param(
            str(PY38),
            marks=pytest.mark.skipif(not PY38.exists(), reason="no python3.8 on this host"),
        ),
    ],
)
def test_copied_directory_runs_with_system_python(tmp_path: Path, python: str) -> None:
    """As the Ansible role runs it: the directory alone, the target's python3, stdlib only."""
    copied = copy_package(tmp_path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    replayed = subprocess.run(
        [python, "-I", str(copied), "--json", "--replay", str(FIXTURES / "healthy")],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert doc["passed"] is True
    assert [c["id"] for c in doc["checks"]] == list(CHECK_IDS)
    fault = subprocess.run(
        [python, "-I", str(copied), "--replay", str(FIXTURES / "nouveau-loaded")],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert fault.returncode == 4
    assert "FAIL   nouveau-loaded" in fault.stdout
    if not host_has_nvidia_gpu():
        live = subprocess.run(
            [python, "-I", str(copied), "--json"],
            capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env, check=False,
        )  # fmt: skip
        assert live.returncode == 4
        assert json.loads(live.stdout)["checks"][0]["message"].startswith("no NVIDIA GPU found")
        assert "Traceback" not in live.stderr


def test_copied_directory_runs_as_a_module(tmp_path: Path) -> None:
    copied = copy_package(tmp_path)
    proc = subprocess.run(
        ["/usr/bin/python3", "-m", "gpucheck", "--json", "--replay", str(FIXTURES / "cudnn-missing")],
        capture_output=True, text=True, timeout=90, cwd=copied.parent, check=False,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert {c["id"]: c["status"] for c in json.loads(proc.stdout)["checks"]}[
        "cudnn-missing"
    ] == "fail"


def test_package_imports_only_the_standard_library() -> None:
    """The target has nothing but python3: no third-party or dlsetup imports outside bench's torch."""
    allowed = set(sys.stdlib_module_names)
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if path.name == "bench.py" and top == "torch":
                    continue
                assert top in allowed or top == "__future__", f"{path.name} imports {name}"


def test_every_module_uses_postponed_annotations() -> None:
    for path in PACKAGE.glob("*.py"):
        assert "from __future__ import annotations" in path.read_text(), path.name


def test_torch_probe_script_runs_without_torch() -> None:
    """The script the pytorch check runs is valid and reports a missing torch as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if data["torch"] is None:
        assert "import_error" in data
    else:
        assert "cuda_available" in data


def test_cudnn_found_through_ldconfig_alone(tmp_path: Path) -> None:
    """No directory listing recorded: the loader cache still shows libcudnn.so.8."""
    bundle = variant(tmp_path, lambda commands: None)
    (bundle / "dirs.json").write_text("{}")
    (bundle / "calls.json").unlink()
    result = replay(bundle).check("cudnn-missing")
    assert result is not None and result.status == "pass"
    assert "cuDNN 8.x" in result.message


# -- the ctypes bindings against a stub driver -------------------------------


def test_cuda_selftest_through_the_stub(stub_lib: str) -> None:
    seen: list[int] = []

    def during_load() -> list[dict[str, str]]:
        seen.append(1)
        return [{"pcie.link.width.current": "16"}]

    report = cuda.selftest([stub_lib], during_load, warmup_s=0.2, libcuda=stub_lib)
    assert report.error is None, report.error
    assert report.ok
    assert report.driver_cuda_version == 12020
    assert report.nvrtc_version == "11.8"
    dev = report.devices[0]
    assert (dev.name, dev.compute_capability, dev.total_memory_mib) == ("Fake GPU", "6.1", 11264)
    assert dev.copy_ok and dev.kernel_ok
    assert seen == [1]
    assert report.during_load == [{"pcie.link.width.current": "16"}]


def test_cuda_selftest_sees_corrupted_copies(
    stub_lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CUDA_CORRUPT", "1")
    report = cuda.selftest([stub_lib], None, libcuda=stub_lib)
    assert not report.ok
    assert not report.devices[0].copy_ok
    assert "offset 100" in report.devices[0].notes[0]


def test_cuda_selftest_without_nvrtc_or_devices(
    stub_lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = cuda.selftest([], None, libcuda=stub_lib)
    assert report.devices[0].copy_ok and report.devices[0].kernel_ok is None
    assert "NVRTC" in report.devices[0].notes[0]
    monkeypatch.setenv("FAKE_CUDA_NO_DEVICE", "1")
    report = cuda.selftest([stub_lib], None, libcuda=stub_lib)
    assert report.error_name == "CUDA_ERROR_NO_DEVICE"


def test_cudnn_selftest_through_the_stub(stub_lib: str) -> None:
    report = cuda.cudnn_selftest(stub_lib)
    assert report.error is None
    assert (report.version, report.cudart_version, report.handle_ok) == ("8.9.7", 11080, True)
    missing = cuda.cudnn_selftest("/nonexistent/libcudnn.so.8")
    assert missing.error and "cannot load" in missing.error


def use_stub_driver(monkeypatch: pytest.MonkeyPatch, stub_lib: str) -> None:
    """The checks' ctypes calls load the stub in place of libcuda, libnvrtc, libcudnn."""
    real_selftest, real_cudnn, real_version = (
        cuda.selftest,
        cuda.cudnn_selftest,
        cuda.driver_version,
    )
    monkeypatch.setattr(
        checks.cuda, "selftest", lambda paths, load: real_selftest(paths, load, 0.2, stub_lib)
    )
    monkeypatch.setattr(checks.cuda, "cudnn_selftest", lambda path: real_cudnn(stub_lib))
    monkeypatch.setattr(checks.cuda, "driver_version", lambda: real_version(stub_lib))
    monkeypatch.setattr(checks, "_find_nvrtc", lambda ctx: [stub_lib])


def machine(tmp_path: Path, name: str) -> Path:
    """A bundle made into the box a fake live probe stands for: where the bundle recorded
    the self-test's reading under load, the box's nvidia-smi answers that PCIe query."""
    target = tmp_path / ("machine-" + name)
    shutil.copytree(FIXTURES / name, target)
    calls = json.loads((target / "calls.json").read_text())
    commands = json.loads((target / "commands.json").read_text())
    for call in calls:
        rows = (call["value"].get("report") or {}).get("during_load")
        if call["name"] == "cuda-selftest" and rows:
            csv = "".join(", ".join(r[f] or "[N/A]" for f in PCIE_FIELDS) + "\n" for r in rows)
            argv = [*PCIE_QUERY, "--format=csv,noheader,nounits"]
            commands.append({"argv": argv, "rc": 0, "stdout": csv, "stderr": ""})
    (target / "commands.json").write_text(json.dumps(commands))
    (target / "calls.json").write_text("[]")  # the box has no recordings: calls run
    return target


def test_live_checks_end_to_end_through_the_stub(
    stub_lib: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The healthy box with its live-only checks run against the stub driver: all pass."""

    use_stub_driver(monkeypatch, stub_lib)
    probe = LiveReplay(str(machine(tmp_path, "healthy")))
    report = run_checks(probe, Options(container_image=IMAGE_HEALTHY))
    assert report.passed, [(c.id, c.message) for c in report.checks if c.status != "pass"]
    assert all(c.status == "pass" for c in report.checks)
    api = report.check("cuda-driver-api")
    assert (
        api is not None
        and "Fake GPU" in api.message
        and "NVRTC 11.8 kernel verified" in api.message
    )
    cudnn = report.check("cudnn-missing")
    assert cudnn is not None and "handle created" in cudnn.message
    pcie = report.check("pcie-link-degraded")
    assert pcie is not None and "read under the CUDA self-test's load" in pcie.message
    too_old = report.check("cuda-driver-too-old")
    assert too_old is not None and "cuDriverGetVersion" in too_old.message


def test_readme_lists_every_check_id_with_a_line() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("### Smoke test checks", 1)[1].split("\n## ", 1)[0]
    listed = [line.split("`")[1] for line in section.splitlines() if line.startswith("- `")]
    assert listed == [*CHECK_IDS, checks.INTERNAL_ERROR]


def test_module_missing_for_a_kernel_that_is_not_running_warns() -> None:
    """unattended-upgrades installed 6.1.0-31 without headers while 6.1.0-28 runs: the
    GPU works today, a reboot would lose it. A warning with the build command, exit 0."""
    report = replay("nvidia-module-missing-for-kernel")
    result = report.check("nvidia-module-missing-for-kernel")
    assert result is not None
    assert result.status == "warn", result.message
    assert "6.1.0-31-amd64" in result.message and "running: 6.1.0-28-amd64" in result.message
    assert "linux-headers-6.1.0-31-amd64" in result.remedy
    assert "dkms autoinstall -k 6.1.0-31-amd64" in result.remedy
    assert "newer" in result.remedy and "hold" in result.remedy
    assert statuses(report)["nvidia-module-missing"] == "pass"
    assert report.exit_code == 0


def test_healthy_bundle_has_the_module_for_its_kernel() -> None:
    result = replay("healthy").check("nvidia-module-missing-for-kernel")
    assert result is not None and result.status == "pass"
    assert "6.1.0-28-amd64 (running): 535.261.03" in result.message


def test_module_missing_for_the_running_kernel_fails_this_check_too() -> None:
    result = replay("nvidia-module-missing").check("nvidia-module-missing-for-kernel")
    assert result is not None and result.status == "fail"
    assert "running kernel 6.1.0-31-amd64" in result.message


def test_kernels_with_different_module_versions_warn(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(FIXTURES / "healthy", bundle)
    dirs = json.loads((bundle / "dirs.json").read_text())
    dirs["/lib/modules"] = ["6.1.0-27-amd64", "6.1.0-28-amd64"]
    dirs["/boot"] = ["vmlinuz-6.1.0-27-amd64", "vmlinuz-6.1.0-28-amd64"]
    (bundle / "dirs.json").write_text(json.dumps(dirs))
    commands = json.loads((bundle / "commands.json").read_text())
    argv = ["modinfo", "-k", "6.1.0-27-amd64", "-F", "version", "nvidia"]
    commands.append({"argv": argv, "rc": 0, "stdout": "535.183.01\n", "stderr": ""})
    (bundle / "commands.json").write_text(json.dumps(commands))
    result = checks.run_checks(ReplayProbe(str(bundle))).check("nvidia-module-missing-for-kernel")
    assert result is not None and result.status == "warn", result.message
    assert "535.183.01" in result.message and "mismatch" in result.remedy
