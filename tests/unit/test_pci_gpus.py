"""One GPU discovery routine (the collection's plugins/module_utils/pci_gpus.py)
answers for the facts script, the smoke test and so the preflight.

The two target-side copies (dlsetup/gpucheck/pci_gpus.py and the marked part
of dl.fact) are generated; test_compat_generate fails when they are stale.
Here: the routine's rule on a recorded sysfs tree, and dl.fact and gpucheck
giving the same answer as the routine on that tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.module_utils import pci_gpus

from dlsetup import content
from dlsetup.gpucheck import checks
from dlsetup.gpucheck import pci_gpus as gpucheck_pci_gpus
from dlsetup.gpucheck.probe import CommandResult, Probe

DL_FACT = content.roles_dir() / "dl_facts" / "files" / "dl.fact"

# address -> (vendor, device, class)
TREE = {
    "0000:00:02.0": ("0x8086", "0x3e92", "0x030000"),  # Intel iGPU: display, no NVIDIA GPU
    "0000:01:00.0": ("0x10de", "0x2204", "0x030000"),  # RTX 3090 (VGA)
    "0000:02:00.0": ("0x10de", "0x20b0", "0x030200"),  # A100 (3D controller)
    "0000:03:00.0": ("0x10de", "0x1234", "0x038000"),  # NVIDIA "other display": no GPU
    "0000:04:00.0": ("0x10de", "0x22ba", "0x040300"),  # the GPU's HDMI audio function
    "0000:05:00.0": ("0x144d", "0xa808", "0x010802"),  # an NVMe drive
}
GPUS = ["0000:01:00.0", "0000:02:00.0"]


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    for addr, (vendor, device, cls) in TREE.items():
        d = tmp_path / "sys" / "bus" / "pci" / "devices" / addr
        d.mkdir(parents=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", cls)):
            (d / name).write_text(value + "\n")
    return tmp_path


def _readers(root: Path):
    def list_dir(path: str) -> list[str] | None:
        try:
            return os.listdir(str(root) + path)
        except OSError:
            return None

    def read(path: str) -> str | None:
        try:
            return Path(str(root) + path).read_text()
        except OSError:
            return None

    return list_dir, read


def test_the_rule():
    assert pci_gpus.is_nvidia_gpu(0x10DE, 0x030000)
    assert pci_gpus.is_nvidia_gpu(0x10DE, 0x030200)
    assert not pci_gpus.is_nvidia_gpu(0x10DE, 0x038000)
    assert not pci_gpus.is_nvidia_gpu(0x10DE, 0x040300)
    assert not pci_gpus.is_nvidia_gpu(0x8086, 0x030000)
    assert pci_gpus.is_display(0x038000) and not pci_gpus.is_display(0x040300)


def test_scan_finds_every_device_and_marks_the_gpus(sysroot):
    devices = pci_gpus.scan_pci(*_readers(sysroot))
    assert [d["slot"] for d in devices] == sorted(TREE)
    assert [d["slot"] for d in devices if d["nvidia_gpu"]] == GPUS
    assert [d["slot"] for d in devices if d["display"]] == sorted(TREE)[:4]
    assert pci_gpus.scan_pci(lambda path: None, lambda path: None) is None


def test_gpucheck_runs_the_same_routine(sysroot):
    readers = _readers(sysroot)
    assert gpucheck_pci_gpus.scan_pci(*readers) == pci_gpus.scan_pci(*readers)

    class TreeProbe(Probe):
        def run(self, argv, timeout):
            return CommandResult(127, "", "")

        def read_file(self, path):
            return readers[1](path)

        def list_dir(self, path):
            return readers[0](path)

        def read_link(self, path):
            return None

    ctx = checks.Context(TreeProbe(), checks.Options())
    found = [d["slot"] for d in ctx.pci_devices() if d["nvidia_gpu"]]
    assert found == GPUS


def test_dl_fact_runs_the_same_routine(sysroot):
    res = subprocess.run(
        [sys.executable, str(DL_FACT)],
        env=dict(os.environ, DL_FACTS_SYSROOT=str(sysroot)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    facts = json.loads(res.stdout)
    assert [g["address"] for g in facts["gpus"]] == sorted(TREE)[:4]  # display controllers
    assert [g["address"] for g in facts["gpus"] if g["nvidia"]] == GPUS
    assert facts["nvidia_gpu_count"] == 2
    assert facts["gpus"][1]["pci_id"] == "10de:2204"


def test_dl_fact_has_no_discovery_of_its_own():
    """Outside its generated part, dl.fact names no vendor id or PCI class."""
    text = DL_FACT.read_text()
    begin = text.index("# ---- BEGIN GENERATED")
    end = text.index("# ---- END GENERATED")
    outside = text[:begin] + text[end:]
    for needle in ("10de", "0x03", "GPU_CLASSES"):
        assert needle not in outside, needle
