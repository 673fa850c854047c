"""`dlsetup smoke --host` and `dlsetup bench --host` end to end, over SSH, against
a systemd container that stands in for a freshly installed box.

The box has no GPU (none can be lent to a container here), so what is tested
is the path a user meets on such a box: the smoke test runs through its role
and fails cleanly with "no NVIDIA GPU found" and what lspci shows, exit 4,
never a traceback; a support bundle is fetched and replays to the same verdict;
the bench says what is missing and exits 2. The diagnosis of each GPU fault is
covered by the replay tests (tests/unit/test_gpucheck.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.boxes import (
    Boxes,
    dlsetup,
    sh,
    write_inventory,
)

BOX = "dlsetup-smoke-box1"


@pytest.fixture(scope="module")
def box(boxes: Boxes) -> tuple[Path, Path]:
    b = boxes.start(BOX)
    inv = write_inventory(
        boxes.work / "inventory" / "hosts.yml", boxes.key, {"box1": {"ansible_host": b.address}}
    )
    return boxes.work, inv


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def test_smoke_on_a_box_without_gpu_fails_cleanly_with_exit_4(box: tuple[Path, Path]) -> None:
    _work, inv = box
    res = dlsetup("smoke", "--host", "box1", "-i", str(inv), "--json", timeout=300)
    _no_traceback(res.stdout, res.stderr)
    assert res.rc == 4, res.stdout + res.stderr
    doc = res.doc
    assert doc["exit_code"] == 4 and doc["mode"] == "smoke"
    report = doc["smoke"]["box1"]
    assert report["passed"] is False
    checks = {c["id"]: c for c in report["checks"]}
    present = checks["nvidia-gpu-present"]
    assert present["status"] == "fail"
    assert present["message"].startswith("no NVIDIA GPU found")
    # what lspci shows (pciutils is not in the fresh image: it says so)
    assert "lspci" in present["message"]
    assert present["remedy"]
    # every other check is skipped for the same reason, none errors out
    assert {c["status"] for i, c in checks.items() if i != "nvidia-gpu-present"} == {"skip"}
    (failure,) = doc["hosts"]["box1"]["failures"]
    assert failure["category"] == "smoke"
    assert "nvidia-gpu-present: no NVIDIA GPU found" in failure["msg"]
    assert "fix: " in failure["msg"]
    # nothing is left on the box
    assert (
        sh(BOX, "ls /tmp /root/.ansible/tmp 2>/dev/null | grep -c dlsetup-gpucheck || true").strip()
        == "0"
    )


def test_smoke_table_and_support_bundle(box: tuple[Path, Path]) -> None:
    work, inv = box
    bundles = work / "bundles"
    res = dlsetup("smoke", "--host", "box1", "-i", str(inv), "--capture", str(bundles), timeout=300)
    _no_traceback(res.stdout, res.stderr)
    assert res.rc == 4, res.stdout + res.stderr
    assert "Smoke test of box1: FAILED" in res.stdout
    assert "no NVIDIA GPU found" in res.stdout
    assert "The smoke test failed" in res.stdout
    bundle = bundles / "box1"
    commands = json.loads((bundle / "commands.json").read_text())
    assert any(c["argv"][0] == "lspci" for c in commands)
    assert (bundle / "files" / "etc" / "os-release").is_file()
    replay = dlsetup("smoke", "--replay", str(bundle), "--json", timeout=60)
    assert replay.rc == 4, replay.stderr
    checks = {c["id"]: c for c in replay.doc["checks"]}
    assert checks["nvidia-gpu-present"]["message"].startswith("no NVIDIA GPU found")


def test_bench_on_a_box_without_gpu_says_what_is_missing_exit_2(box: tuple[Path, Path]) -> None:
    work, inv = box
    out = work / "bench"
    res = dlsetup(
        "bench", "--host", "box1", "-i", str(inv), "--report", str(out), "--json", timeout=300
    )
    _no_traceback(res.stdout, res.stderr)
    assert res.rc == 2, res.stdout + res.stderr
    doc = res.doc
    (failure,) = doc["hosts"]["box1"]["failures"]
    assert "no NVIDIA GPU found" in failure["msg"]
    assert "PyTorch is not installed" in failure["msg"]
    assert "--container-image" in failure["msg"]
    assert doc["hosts"]["box1"]["reports"]["gpu_smoke_test_bench_report"]["missing"] is True
    assert not (out / "report.md").exists()


def test_facts_hardware_summary_reads_the_nvme_stage_facts(box: tuple[Path, Path]) -> None:
    _work, inv = box
    sh(BOX, "rm -f /etc/ansible/facts.d/nvme.fact")
    res = dlsetup("facts", "--host", "box1", "-i", str(inv), env={"COLUMNS": "250"}, timeout=300)
    assert res.rc == 0, res.stdout + res.stderr
    assert "no NVMe drives (no NVMe facts: run the nvme stage for health)" in res.stdout
    assert "no GPU found" in res.stdout and "threads" in res.stdout
    # what the nvme role writes on a box without drives
    sh(BOX, """echo '{"controllers": []}' > /etc/ansible/facts.d/nvme.fact""")
    res = dlsetup("facts", "--host", "box1", "-i", str(inv), "--json", timeout=300)
    assert res.rc == 0, res.stdout + res.stderr
    report = res.doc["hosts"]["box1"]["reports"]["dl_facts_report"]
    assert report["nvme_facts"] == {"controllers": []}
    assert report["cpu"]["physical_cores"] >= 1
