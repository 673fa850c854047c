"""The smoke test across driver generations and nouveau states, on replay bundles.

Bundles (tests/fixtures/gpucheck/, written by make_bundles.py in the shapes of
public nvidia-bug-report logs and nvidia-smi captures): driver-384 (no CUDA
field in the nvidia-smi header), driver-440 ("CUDA Version"), driver-610
("KMD Version" / "CUDA UMD Version", kmd_version), healthy (535, with the
in-process calls a capture records), nouveau-loaded (nouveau bound to the GPU)
and nouveau-unbound (nouveau loaded, the GPU bound to nvidia). The facts about
CUDA and drivers come from dlsetup.gpucheck.cuda_drivers, their one home.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dlsetup.gpucheck import cuda_drivers
from dlsetup.gpucheck.checks import SMI_FIELDS, CheckResult, Report
from dlsetup.gpucheck.parse import version_tuple
from tests.unit.test_gpucheck import FIXTURES, replay, statuses


def copy_of(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def edit_json(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def check(report: Report, check_id: str) -> CheckResult:
    result = report.check(check_id)
    assert result is not None
    return result


def commands_run(bundle: Path) -> list[list[str]]:
    return [c["argv"] for c in json.loads((bundle / "commands.json").read_text())]


# -- the driver's CUDA level, from the best source there is ------------------


def test_384_prints_no_cuda_field_so_the_driver_branch_table_answers() -> None:
    """384.59 is older than CUDA 9.0's minimum driver: the table, not the number 9.0."""
    expected = cuda_drivers.max_cuda_for_driver("384.59")
    assert expected is not None, "cuda_drivers must answer back to the 384 series"
    report = replay("driver-384")
    result = check(report, "cuda-driver-too-old")
    assert f"supports CUDA {expected} " in result.message
    assert "driver-branch table for driver 384.59" in result.message
    toolkit = (8, 0)  # /usr/local/cuda/version.txt of the bundle
    assert result.status == ("pass" if version_tuple(expected) >= toolkit else "warn")
    # the header had no CUDA field, so nvidia-smi -q was asked before the table
    assert ["nvidia-smi", "-q"] in commands_run(FIXTURES / "driver-384")
    assert report.exit_code == 0, [(c.id, c.message) for c in report.checks]


def test_384_with_a_cuda_9_toolkit_names_the_driver_it_needs(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "driver-384")
    (bundle / "files/usr/local/cuda/version.txt").write_text("CUDA Version 9.0.176\n")
    result = check(replay(bundle), "cuda-driver-too-old")
    runs = cuda_drivers.max_cuda_for_driver("384.59")
    needs = cuda_drivers.min_driver_for_cuda(9, 0)
    assert runs is not None and needs is not None
    assert version_tuple(runs) < (9, 0), "the table says 384.59 runs no CUDA 9.0"
    assert result.status == "fail"
    assert f"driver {needs} or newer, branch {needs.split('.')[0]}" in result.remedy


def test_384_old_query_fields_are_dropped_and_named() -> None:
    result = check(replay("driver-384"), "nvidia-smi")
    assert result.status == "pass"
    assert "driver 384.59" in result.message
    assert "compute_cap" in result.message and "remapped_rows.pending" in result.message


def test_440_header_field_beats_the_table() -> None:
    """440.31 prints CUDA 10.2; the table's 10.2 needs 440.33: what the driver says wins."""
    result = check(replay("driver-440"), "cuda-driver-too-old")
    assert result.status == "pass"
    assert 'supports CUDA 10.2 (nvidia-smi header field "CUDA Version")' in result.message
    assert cuda_drivers.max_cuda_for_driver("440.31") != "10.2"


def test_610_header_is_read_from_its_new_field_names() -> None:
    report = replay("driver-610")
    result = check(report, "cuda-driver-too-old")
    assert result.status == "pass"
    assert 'supports CUDA 13.3 (nvidia-smi header field "CUDA UMD Version")' in result.message
    assert report.gpus[0]["driver_version"] == "610.57.04"


def test_610_asks_kmd_version_and_so_does_the_container_check() -> None:
    argvs = commands_run(FIXTURES / "driver-610")
    queries = [
        a for a in argvs if a[1:2] and a[1].startswith("--query-gpu=index,pci.bus_id,name,uuid,")
    ]
    assert len(queries) == 1 and "kmd_version" in queries[0][1].split("=")[1].split(",")
    assert "driver_version" not in queries[0][1].split("=")[1].split(",")
    docker = [a for a in argvs if a[0] == "docker" and a[1] == "run"]
    assert docker and "--query-gpu=kmd_version" in docker[0]
    result = check(replay("driver-610"), "container-runtime-missing")
    assert result.status == "pass" and "610.57.04" in result.message


def test_before_610_kmd_version_falls_back_without_failing() -> None:
    """535 rejects kmd_version: the query retries with driver_version, nothing dropped."""
    argvs = commands_run(FIXTURES / "healthy")
    queries = [
        a[1] for a in argvs if a[1:2] and a[1].startswith("--query-gpu=index,pci.bus_id,name,uuid,")
    ]
    assert queries[0].endswith(",".join(SMI_FIELDS).replace("driver_version", "kmd_version"))
    assert queries[1].endswith(",".join(SMI_FIELDS))
    report = replay("healthy")
    result = check(report, "nvidia-smi")
    assert result.status == "pass" and "does not know" not in result.message
    assert report.gpus[0]["driver_version"] == "535.261.03"


def test_610_without_its_header_field_reads_nvidia_smi_q(tmp_path: Path) -> None:
    """A header that does not parse (a new layout again): -q's "CUDA UMD Version"."""
    bundle = copy_of(tmp_path, "driver-610")
    q_text = (
        "\n==============NVSMI LOG==============\n\n"
        "Driver Version                      : 610.57.04 [Deprecated; will be removed in "
        "CUDA 14.0. Use KMD Version instead]\n"
        "CUDA Version                        : 13.3 [Deprecated; will be removed in CUDA 14.0. "
        "Use CUDA UMD Version instead]\n"
        "KMD Version                         : 610.57.04\n"
        "CUDA UMD Version                    : 13.3\n\nAttached GPUs                       : 1\n"
    )

    def edit(commands: list[dict[str, Any]]) -> None:
        (plain,) = [c for c in commands if c["argv"] == ["nvidia-smi"]]
        plain["stdout"] = plain["stdout"].replace("CUDA UMD Version: 13.3", "UMD 13.3")
        at = commands.index(plain) + 1
        commands.insert(at, {"argv": ["nvidia-smi", "-q"], "rc": 0, "stdout": q_text, "stderr": ""})

    edit_json(bundle / "commands.json", edit)
    result = check(replay(bundle), "cuda-driver-too-old")
    assert 'supports CUDA 13.3 (nvidia-smi -q field "CUDA UMD Version")' in result.message


def test_the_driver_api_is_the_first_source() -> None:
    """The healthy capture recorded cuDriverGetVersion; the replay uses it."""
    result = check(replay("healthy"), "cuda-driver-too-old")
    assert "supports CUDA 12.2 (CUDA driver API cuDriverGetVersion)" in result.message


def test_the_driver_api_answer_wins_over_the_header(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "healthy")

    def edit(calls: list[dict[str, Any]]) -> None:
        (version,) = [c for c in calls if c["name"] == "cuda-driver-version"]
        version["value"] = {"version": 12040}

    edit_json(bundle / "calls.json", edit)
    result = check(replay(bundle), "cuda-driver-too-old")
    assert "supports CUDA 12.4 (CUDA driver API cuDriverGetVersion)" in result.message


def test_a_failed_driver_api_call_falls_back_to_the_header(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "healthy")

    def edit(calls: list[dict[str, Any]]) -> None:
        (version,) = [c for c in calls if c["name"] == "cuda-driver-version"]
        version["value"] = {"error": "cannot load libcuda.so.1: not found"}

    edit_json(bundle / "calls.json", edit)
    result = check(replay(bundle), "cuda-driver-too-old")
    assert 'supports CUDA 12.2 (nvidia-smi header field "CUDA Version")' in result.message


def test_old_bundles_without_calls_still_replay(tmp_path: Path) -> None:
    """A bundle of an older gpucheck (no calls.json, no links.json) replays as before."""
    bundle = copy_of(tmp_path, "healthy")
    (bundle / "calls.json").unlink()
    (bundle / "links.json").unlink()
    report = replay(bundle)
    assert statuses(report)["cuda-driver-api"] == "skip"
    assert report.exit_code == 0
    assert "nvidia-smi header" in check(report, "cuda-driver-too-old").message


# -- nouveau, judged by binding ----------------------------------------------


def test_nouveau_bound_to_the_gpu_fails() -> None:
    report = replay("nouveau-loaded")
    result = check(report, "nouveau-loaded")
    assert result.status == "fail"
    assert "drives 0000:01:00.0" in result.message and "sysfs driver link" in result.message
    assert "blacklist nouveau" in result.remedy
    assert report.exit_code == 4


def test_nouveau_loaded_but_unbound_warns() -> None:
    report = replay("nouveau-unbound")
    result = check(report, "nouveau-loaded")
    assert result.status == "warn"
    assert "drives no NVIDIA GPU" in result.message
    assert "0000:01:00.0: nvidia (sysfs driver link)" in result.message
    assert "keeps the NVIDIA driver from binding" not in result.message
    assert "blacklist nouveau" in result.remedy
    assert report.exit_code == 0
    assert statuses(report)["nvidia-module-missing"] == "pass"


def without_sysfs_driver(bundle: Path) -> None:
    """No driver link and no DRIVER= in the GPU's uevent (a container's partial /sys)."""
    (bundle / "links.json").write_text("{}")
    uevent = bundle / "files/sys/bus/pci/devices/0000:01:00.0/uevent"
    uevent.write_text("".join(x for x in uevent.read_text().splitlines(True) if "DRIVER" not in x))


def test_without_sysfs_the_binding_comes_from_lspci_k(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "nouveau-unbound")
    without_sysfs_driver(bundle)
    result = check(replay(bundle), "nouveau-loaded")
    assert result.status == "warn"
    assert "0000:01:00.0: nvidia (lspci -k)" in result.message


def test_nouveau_bound_per_lspci_k_fails(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "nouveau-loaded")
    without_sysfs_driver(bundle)
    result = check(replay(bundle), "nouveau-loaded")
    assert result.status == "fail"
    assert "0000:01:00.0: nouveau (lspci -k)" in result.message


def test_nouveau_loaded_and_binding_unknown_warns(tmp_path: Path) -> None:
    bundle = copy_of(tmp_path, "nouveau-unbound")
    without_sysfs_driver(bundle)

    def no_driver_lines(commands: list[dict[str, Any]]) -> None:
        for command in commands:
            if command["argv"][0] == "lspci":
                lines = command["stdout"].splitlines(True)
                command["stdout"] = "".join(x for x in lines if "driver in use" not in x)

    edit_json(bundle / "commands.json", no_driver_lines)
    result = check(replay(bundle), "nouveau-loaded")
    assert result.status == "warn"
    assert "not known" in result.message and "sysfs and lspci -k show none" in result.message
