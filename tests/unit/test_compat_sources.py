"""compat's answers checked against the source files the GPU table was generated from.

These tests read NVIDIA's supported-gpus.json files and pci.ids' NVIDIA section
as committed under the engine's data/sources/ (the generator's inputs), not the
generated gpus.json, and ask compat about every device id in them.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import defaultdict

import pytest
from ansible_collections.dlsetup.box.plugins.module_utils.compat import (
    UnknownGpuError,
    check,
    find_gpu,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import DATA_DIR

from dlsetup.compat.cli import cli

SOURCES = DATA_DIR / "sources"
OPEN_MODULES_FIRST = 515  # NVIDIA's open kernel modules first shipped with R515


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


def _entries() -> list[dict]:
    return json.loads((SOURCES / "sources.json").read_text("utf-8"))


def _lists() -> dict[str, list[dict]]:
    """release -> the chips of its supported-gpus.json, oldest release first."""
    out = {}
    for e in _entries():
        if e["kind"] == "supported-gpus.json":
            raw = gzip.decompress((SOURCES / e["file"]).read_bytes())
            out[e["release"]] = json.loads(raw)["chips"]
    return dict(sorted(out.items(), key=lambda kv: _release_key(kv[0])))


def _by_device() -> dict[str, dict[str, list[dict]]]:
    """device id -> release -> that list's entries for it."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for release, chips in _lists().items():
        for c in chips:
            out[c["devid"].lower().removeprefix("0x")].setdefault(release, []).append(c)
    return out


def _branch(text: str) -> int:
    return int(text.split(".", maxsplit=1)[0])


def test_the_committed_sources_are_the_ones_recorded():
    entries = _entries()
    kinds = [e["kind"] for e in entries]
    assert kinds.count("supported-gpus.json") >= 3 and kinds.count("pci.ids") == 1
    for e in entries:
        assert (SOURCES / e["file"]).is_file(), e["file"]
        assert e["package"] and e["version"] and e["suite"] and e["fetched"], e
    releases = {_branch(r) for r in _lists()}
    assert {470, 535, 550} <= releases


def test_every_device_id_in_every_supported_gpus_json_is_answered():
    devices = _by_device()
    assert len(devices) > 1100
    failures = []
    for devid, by_release in sorted(devices.items()):
        gpu = find_gpu(f"10de:{devid}")
        if gpu.pci_ids[0] != devid:
            failures.append(f"{devid}: answered as {gpu.pci_ids}")
        with_legacy = [
            r for r in sorted(by_release, key=_release_key)
            if any(c.get("legacybranch") for c in by_release[r])
        ]  # fmt: skip
        if with_legacy:
            # a legacy part: the newest list's legacy branch is the last that drives it
            newest = by_release[with_legacy[-1]]
            want = _branch(next(c["legacybranch"] for c in newest if c.get("legacybranch")))
            if gpu.max_branch != want:
                failures.append(f"{devid} {gpu.name}: last branch {gpu.max_branch}, list {want}")
        else:
            # every driver whose list names it drives it
            for release in by_release:
                b = _branch(release)
                if not (gpu.min_branch or 0) <= b <= (gpu.max_branch or 10**3):
                    failures.append(f"{devid} {gpu.name}: R{b} lists it, compat says no")
        opened = [r for r in by_release if _branch(r) >= OPEN_MODULES_FIRST]
        if opened:
            newest_open = max(opened, key=_release_key)
            listed_open = any("kernelopen" in c["features"] for c in by_release[newest_open])
            if gpu.open_kernel_modules != listed_open:
                failures.append(f"{devid} {gpu.name}: open {gpu.open_kernel_modules}")
    assert not failures, failures[:20]


@pytest.mark.parametrize(
    ("legacy", "next_branch"), [(470, "535"), (390, "470"), (340, "390"), (304, "340")]
)
def test_legacy_parts_stop_at_their_legacy_branch(legacy, next_branch):
    devids = sorted(
        d
        for d, by_release in _by_device().items()
        if any(
            c.get("legacybranch", "").startswith(f"{legacy}.")
            for cs in by_release.values()
            for c in cs
        )
    )
    assert devids
    for devid in devids[:: max(1, len(devids) // 25)]:  # a spread of each legacy group
        assert not check(f"10de:{devid}", driver=str(legacy)).problem_fields() & {"driver"}
        report = check(f"10de:{devid}", driver=next_branch)
        assert not report.ok
        assert any(f"R{legacy}" in p.message for p in report.problems if p.field == "driver")


def test_open_modules_only_where_nvidia_lists_kernelopen():
    by_device = _by_device()
    newest = max(_lists(), key=_release_key)
    with_open = [d for d, r in by_device.items() if newest in r and any(
        "kernelopen" in c["features"] for c in r[newest])]  # fmt: skip
    without = [d for d, r in by_device.items() if newest in r and not any(
        "kernelopen" in c["features"] for c in r[newest]) and not any(
        c.get("legacybranch") for c in r[newest])]  # fmt: skip
    assert with_open and without
    for devid in with_open[::20]:
        report = check(f"10de:{devid}", driver="560", kernel_modules="open")
        assert "kernel_modules" not in report.problem_fields(), (devid, report.problems)
    for devid in without[::10]:
        report = check(f"10de:{devid}", driver="560", kernel_modules="open")
        assert "kernel_modules" in report.problem_fields(), devid


# pci.ids lines that are a GPU's other PCI functions, or placeholders
NOT_A_GPU = re.compile(r"Audio|USB|UCSI|NVSwitch|[Bb]ridge|PCIe host|Root Port|Controller|Reserved")
TURING_ON = re.compile(r"^(TU1|GA1|AD1|GH1|GB[12])\d\d")  # not the Tegra parts (GA10B, GB20B)


def _pci_ids_turing_on() -> list[tuple[str, str]]:
    text = gzip.decompress((SOURCES / "pci-ids-10de.txt.gz").read_bytes()).decode("utf-8")
    out = []
    for line in text.splitlines():
        m = re.match(r"^\t([0-9a-f]{4})  (\S+)(.*)$", line)
        if m and TURING_ON.match(m.group(2)) and not NOT_A_GPU.search(m.group(3)):
            out.append((m.group(1), m.group(2) + m.group(3)))
    return out


# Chips pci.ids names without any product or compute capability published for
# them: compat names them as parts newer than its rules instead of guessing.
UNPLACED_CHIPS = {"GB112", "GB120"}


def test_every_turing_or_newer_device_in_pci_ids_is_answered():
    devices = _pci_ids_turing_on()
    assert len(devices) > 400
    newer = {"turing", "ampere", "ada", "hopper", "blackwell"}
    for devid, line in devices:
        if line.split()[0] in UNPLACED_CHIPS:
            with pytest.raises(UnknownGpuError, match=f"{line.split()[0]} in pci.ids"):
                find_gpu(f"10de:{devid}")
            continue
        gpu = find_gpu(f"10de:{devid}")
        assert gpu.arch.key in newer, (devid, line, gpu.arch.key)
        assert gpu.compute_capability is not None
        assert tuple(map(int, gpu.compute_capability.split("."))) >= (7, 5), (devid, line)
        assert gpu.open_kernel_modules or gpu.kernelopen is False, (devid, line)


def test_blackwell_parts_newer_than_the_lists_are_inferred_and_need_open_modules():
    gpu = find_gpu("10de:2c02")  # RTX 5080: in pci.ids, in no supported-gpus.json here
    assert gpu.inferred and gpu.arch.key == "blackwell"
    report = check("10de:2c02", driver="575", kernel_modules="proprietary")
    assert "kernel_modules" in report.problem_fields()
    assert any("inferred" in n for n in report.notes)


# ------------------------------------------------------------------ the CLI, as the issue asks


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["--gpu", "10de:2504", "--driver", "550"], 0, "GeForce RTX 3060 [10de:2504]"),
        (["--gpu", "10de:1024", "--driver", "535"], 2, "R470"),  # Tesla K40, Kepler
        (["--gpu", "10de:06c0", "--driver", "470"], 2, "R390"),  # GTX 480, Fermi
        (["--gpu", "10de:24b0"], 0, "RTX A4000"),
        (["--gpu", "RTX 5080", "--driver", "570"], 0, "Blackwell"),
    ],
)
def test_cli_exit_codes(capsys, argv, code, text):
    assert cli(argv) == code
    assert text in capsys.readouterr().out


@pytest.mark.parametrize(
    ("typed", "model"),
    [
        ("RTX 3060", "RTX 3060"),
        ("3060", "RTX 3060"),
        ("GeForce RTX 3060 Ti", "RTX 3060 Ti"),
        ("A4000", "RTX A4000"),
        ("RTX 6000 Ada", "RTX 6000 Ada Generation"),
        ("H100 NVL", "H100 NVL"),
        ("Tesla T4", "Tesla T4"),
        ("GTX 1660", "GTX 1660"),
        ("RTX 4070", "RTX 4070"),
    ],
)
def test_names_users_type(typed, model):
    assert (
        find_gpu(typed)
        .name.removeprefix("NVIDIA ")
        .removeprefix("GeForce ")
        .endswith(model.removeprefix("GeForce "))
    )


def test_a_bare_number_is_the_model_number_people_mean():
    # 10de:1080 is a GTX 580 and 10de:2080 a GA100 part, but "1080" means the GTX 1080
    assert find_gpu("1080").name.endswith("GTX 1080")
    assert find_gpu("2080").name.endswith("RTX 2080")
    assert find_gpu("10de:1080").name.endswith("GTX 580")
    assert find_gpu("2504").pci_ids[0] == "2504"  # no model is called 2504: the id


def test_one_name_over_several_device_ids_is_one_answer():
    gpu = find_gpu("RTX 3060")
    assert {"2487", "2503", "2504", "2544"} <= set(gpu.pci_ids)
    # the answer holds for each id: the latest first branch among them
    assert gpu.min_branch == max(find_gpu(f"10de:{p}").min_branch for p in gpu.pci_ids)


def test_a_truly_ambiguous_name_lists_the_candidates(capsys):
    assert cli(["--gpu", "GT 730"]) == 2  # Fermi and Kepler boards share the name
    out = capsys.readouterr().out
    assert "10de:0f02" in out and "10de:1287" in out


def test_list_gpus_filters(capsys):
    assert cli(["--list-gpus", "3060"]) == 0
    rows = capsys.readouterr().out.splitlines()
    body = [r for r in rows[1:] if r and not r.startswith("GPU data:")]
    assert body and all("3060" in r or "Laptop" in r for r in body)
    assert any("supported-gpus.json" in r for r in rows)


def test_list_gpus_survives_a_closed_pipe():
    proc = subprocess.run(
        f"{sys.executable} -m dlsetup.compat.cli --list-gpus | head -3",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert len(proc.stdout.splitlines()) == 3
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
