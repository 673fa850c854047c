"""A real capture, replayed: the NVIDIA H200 run of 2026-12-04.

tests/fixtures/gpucheck/real-h200-2026-12-04/ is the bundle that
``python3 -m dlsetup.gpucheck --capture DIR --json`` wrote on a lent GPU machine
(one H200 in a Firecracker VM, Ubuntu 24.04.3, driver 580.159.04, CUDA 13.0; see
docs/benchmarks/gpu-h200-2026-12-04.md), copied in unchanged. Its report.json is
the verdict the live run printed. The other bundles are assembled in real output
formats by make_bundles.py; this one is what a 580 driver and its nvidia-smi
really print, so these tests pin the parsers and checks to real output: the
replay reaches the device's verdicts, and a copy with one fault written into the
real output flips exactly the check that owns it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dlsetup.gpucheck import cli
from dlsetup.gpucheck.checks import CHECK_IDS, Report
from dlsetup.gpucheck.parse import (
    parse_cudnn_header,
    parse_nvcc_version,
    parse_nvidia_kernel_version,
    parse_smi_header,
)
from tests.unit.test_gpucheck import FIXTURES, REPO, replay, statuses

BUNDLE = FIXTURES / "real-h200-2026-12-04"

#: The device run's verdicts (smoke.json of the run, the bundle's report.json).
DEVICE_VERDICTS = {
    "nvidia-gpu-present": "pass",
    "nouveau-loaded": "pass",
    "nvidia-module-missing": "pass",
    "nvidia-module-missing-for-kernel": "skip",  # no /lib/modules, no /boot in the VM
    "driver-library-mismatch": "pass",
    "nvidia-smi": "pass",
    "gpu-ecc-errors": "pass",
    "gpu-throttling": "pass",
    "gpu-persistence-mode": "pass",
    "cuda-driver-api": "pass",
    "pcie-link-degraded": "pass",
    "cuda-driver-too-old": "pass",
    "cudnn-missing": "pass",
    "container-runtime-missing": "skip",  # no --container-image given
    "nvme-link-degraded": "skip",  # no NVMe facts (the nvme role did not run)
    "nvme-health": "skip",
    "pytorch": "pass",
}


def device_report() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((BUNDLE / "report.json").read_text())
    return doc


def commands() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((BUNDLE / "commands.json").read_text())
    return found


def mutated(tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    """A copy of the bundle with ``edit`` applied; the fixture itself stays as captured."""
    target = tmp_path / BUNDLE.name
    shutil.copytree(BUNDLE, target)
    edit(target)
    return target


def edit_json(name: str, fn: Callable[[Any], None]) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        doc = json.loads((bundle / name).read_text())
        fn(doc)
        (bundle / name).write_text(json.dumps(doc, indent=1))

    return edit


def set_during_load(field: str, value: str) -> Callable[[Path], None]:
    """The PCIe reading nvidia-smi gave under the CUDA self-test's load (calls.json)."""

    def fn(calls: list[dict[str, Any]]) -> None:
        (selftest,) = [c for c in calls if c["name"] == "cuda-selftest"]
        (row,) = selftest["value"]["report"]["during_load"]
        assert field in row
        row[field] = value

    return edit_json("calls.json", fn)


def set_smi_query(field: str, value: str) -> Callable[[Path], None]:
    """One field of the row the per-GPU nvidia-smi query answered (the accepted one)."""

    def fn(recorded: list[dict[str, Any]]) -> None:
        (cmd,) = [
            c
            for c in recorded
            if c["argv"][0] == "nvidia-smi"
            and c["argv"][1:2]
            and c["argv"][1].startswith("--query-gpu=index,pci.bus_id,name,uuid,")
            and c["rc"] == 0
        ]
        names = cmd["argv"][1].split("=", 1)[1].split(",")
        values = cmd["stdout"].rstrip("\n").split(", ")
        assert len(values) == len(names)
        values[names.index(field)] = value
        cmd["stdout"] = ", ".join(values) + "\n"

    return edit_json("commands.json", fn)


def flipped(before: Report, after: Report) -> dict[str, tuple[str, str]]:
    old, new = statuses(before), statuses(after)
    return {k: (old[k], new[k]) for k in old if old[k] != new[k]}


# -- the replay reaches the device's verdicts ----------------------------------


def test_bundle_is_the_device_capture_unchanged() -> None:
    meta = json.loads((BUNDLE / "meta.json").read_text())
    assert meta["captured_at"] == "2026-12-04T11:31:38+0000"
    assert meta["options"] == {"container_image": None, "python": "python3"}
    assert "note" not in meta  # make_bundles.py marks its own bundles with a note
    doc = device_report()
    assert doc["mode"] == "capture" and doc["passed"] is True
    assert doc["host"]["probe"] == "live, captured to /tmp/cap"
    assert {c["id"]: c["status"] for c in doc["checks"]} == DEVICE_VERDICTS


def test_replay_gives_the_device_verdict_for_every_check() -> None:
    report = replay(BUNDLE)
    assert [c.id for c in report.checks] == list(CHECK_IDS)
    assert statuses(report) == DEVICE_VERDICTS
    assert sorted(statuses(report).values()).count("pass") == 13
    assert sorted(statuses(report).values()).count("skip") == 4
    doc = report.to_json()
    device = device_report()
    assert doc["checks"] == device["checks"]  # messages and remedies too, word for word
    assert doc["gpus"] == device["gpus"]
    assert report.exit_code == 0 and report.passed


def test_replay_reads_the_box_as_the_device_saw_it() -> None:
    (gpu,) = replay(BUNDLE).gpus
    assert gpu["name"] == "NVIDIA H200"
    assert gpu["pci_id"] == "10de:2335"
    assert gpu["pci_bus_id"] == "0000:00:06.0"
    assert gpu["driver_version"] == "580.159.04"
    assert gpu["compute_capability"] == "9.0"
    assert gpu["memory_total_mib"] == 143771
    assert gpu["kernel_driver"] == "nvidia"
    assert gpu["kernel_driver_source"] == "sysfs driver link"  # lspci is not installed
    assert gpu["pcie"] == {
        "gen_current": 5,
        "gen_max": 5,
        "width_current": 16,
        "width_max": 16,
        "read_under_load": True,
        "limit_gbs_per_direction": 63.02,
    }
    assert gpu["sysfs_link"] == {
        "current_link_speed": 32.0,
        "max_link_speed": 32.0,
        "current_link_width": 16,
        "max_link_width": 16,
    }
    # Hopper retires no pages (it remaps rows): nvidia-smi answers [N/A] for them.
    assert gpu["retired_pages"] == {"single_bit": None, "double_bit": None, "pending": None}
    assert gpu["remapped_rows"] == {
        "correctable": 0,
        "uncorrectable": 0,
        "pending": "No",
        "failure": "No",
    }


def test_cli_replay_exits_0_with_the_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--replay", str(BUNDLE)]) == 0
    out = capsys.readouterr().out
    assert "PASSED: 17 checks, 0 failed, 0 warnings, 4 skipped" in out
    assert "GPU 0, NVIDIA H200, at 0000:00:06.0, 143771 MiB, driver 580.159.04" in out
    assert "PCIe gen5 x16 (max gen5 x16)" in out


def test_copied_directory_replays_it_with_the_system_python(tmp_path: Path) -> None:
    """As on a target: the package directory alone, run by /usr/bin/python3."""
    copied = tmp_path / "gpucheck"
    shutil.copytree(REPO / "dlsetup" / "gpucheck", copied)
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", str(copied), "--json", "--replay", str(BUNDLE)],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["checks"] == device_report()["checks"]


# -- the parsers on the 580 driver's real output --------------------------------


def test_nvidia_smi_header_of_the_580_driver() -> None:
    (plain,) = [c for c in commands() if c["argv"] == ["nvidia-smi"]]
    assert parse_smi_header(plain["stdout"]) == {
        "driver_version": "580.159.04",
        "driver_field": "Driver Version",
        "cuda_version": "13.0",
        "cuda_field": "CUDA Version",
    }


def test_the_580_driver_rejects_kmd_version_and_the_query_falls_back() -> None:
    queries = [c for c in commands() if c["argv"][1:2] and c["argv"][1].startswith("--query-gpu=")]
    first, second = queries[0], queries[1]
    assert "kmd_version" in first["argv"][1] and first["rc"] == 2
    assert first["stdout"].startswith('Field "kmd_version" is not a valid field to query.')
    assert "driver_version" in second["argv"][1] and second["rc"] == 0
    assert second["stdout"].split(", ")[4] == "580.159.04"


def test_kernel_module_toolkit_and_cudnn_versions() -> None:
    files = BUNDLE / "files"
    proc_version = (files / "proc/driver/nvidia/version").read_text()
    assert "Open Kernel Module" in proc_version
    assert parse_nvidia_kernel_version(proc_version) == "580.159.04"
    (nvcc,) = [c for c in commands() if c["argv"][-1:] == ["--version"]]
    assert parse_nvcc_version(nvcc["stdout"]) == "13.0"
    header = files / "usr/include/x86_64-linux-gnu/cudnn_version_v9.h"
    assert parse_cudnn_header(header.read_text()) == "9.14.0"


# -- a fault written into the real output flips the check that owns it ---------


def test_pcie_link_at_x8_under_load_fails_the_pcie_check(tmp_path: Path) -> None:
    before = replay(BUNDLE)
    after = replay(mutated(tmp_path, set_during_load("pcie.link.width.current", "8")))
    assert flipped(before, after) == {"pcie-link-degraded": ("pass", "fail")}
    result = after.check("pcie-link-degraded")
    assert result is not None
    assert "links at x8 of x16 gen5 of gen5" in result.message
    assert "read under the CUDA self-test's load" in result.message
    assert "x16 to the CPU" in result.remedy
    assert after.exit_code == 4
    assert after.gpus[0]["pcie"]["width_current"] == 8


def test_pcie_link_at_gen4_under_load_fails_the_pcie_check(tmp_path: Path) -> None:
    after = replay(mutated(tmp_path, set_during_load("pcie.link.gen.current", "4")))
    assert flipped(replay(BUNDLE), after) == {"pcie-link-degraded": ("pass", "fail")}
    result = after.check("pcie-link-degraded")
    assert result is not None and "runs at gen4 of gen5 x16" in result.message


def test_the_verdict_on_the_link_comes_from_the_reading_under_load(tmp_path: Path) -> None:
    """sysfs read the link idle; the self-test's reading under load is the one judged."""

    def narrow_sysfs(bundle: Path) -> None:
        dev = bundle / "files/sys/bus/pci/devices/0000:00:06.0"
        (dev / "current_link_width").write_text("8\n")

    after = replay(mutated(tmp_path, narrow_sysfs))
    assert after.gpus[0]["sysfs_link"]["current_link_width"] == 8
    assert flipped(replay(BUNDLE), after) == {}


def test_uncorrectable_ecc_errors_fail_the_ecc_check(tmp_path: Path) -> None:
    after = replay(mutated(tmp_path, set_smi_query("ecc.errors.uncorrected.volatile.total", "2")))
    assert flipped(replay(BUNDLE), after) == {"gpu-ecc-errors": ("pass", "fail")}
    result = after.check("gpu-ecc-errors")
    assert result is not None
    assert "2 uncorrectable ECC errors since the driver loaded" in result.message
    assert "nvidia-smi -q -d ECC" in result.remedy
    assert after.exit_code == 4


def test_a_pending_row_remapping_fails_the_ecc_check(tmp_path: Path) -> None:
    after = replay(mutated(tmp_path, set_smi_query("remapped_rows.pending", "Yes")))
    assert flipped(replay(BUNDLE), after) == {"gpu-ecc-errors": ("pass", "fail")}
    result = after.check("gpu-ecc-errors")
    assert result is not None and "a row remapping is pending" in result.message


# -- the bench's warnings of the device run (bench.err) -------------------------


def test_bench_as_a_module_loads_bench_once() -> None:
    """`python3 -m dlsetup.gpucheck.bench` printed runpy's RuntimeWarning ('found in
    sys.modules after import of package'): the package imported bench through checks
    before runpy ran it. Any warning on stderr would show here."""
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-m", "dlsetup.gpucheck.bench",
         "--peaks-json", str(BUNDLE / "missing.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpucheck-bench: cannot read --peaks-json"), proc.stderr
    assert "Warning" not in proc.stderr


def test_importing_the_package_leaves_checks_and_bench_unloaded() -> None:
    code = (
        "import sys, dlsetup.gpucheck as g\n"
        "print(sorted(m for m in sys.modules if m.startswith('dlsetup.gpucheck.')))\n"
        "print(g.run_checks.__module__, g.ReplayProbe.__module__, len(g.CHECK_IDS))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[]",
        f"dlsetup.gpucheck.checks dlsetup.gpucheck.probe {len(CHECK_IDS)}",
    ]


def test_the_table_column_fits_the_longest_check_id(capsys: pytest.CaptureFixture[str]) -> None:
    # nvidia-module-missing-for-kernel (32 characters) ran into its message in
    # the device run's table; every check's message now starts in one column.
    assert cli.main(["--replay", str(BUNDLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line[:7] in {"PASS   ", "SKIP   "}]
    assert [r.split()[1] for r in rows] == list(DEVICE_VERDICTS)
    columns = {len(r) - len(r[7:].split(" ", 1)[1].lstrip()) for r in rows}
    assert columns == {7 + len("nvidia-module-missing-for-kernel") + 1}
