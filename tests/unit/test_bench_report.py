"""The bench's report on the controller (dlsetup.bench_report) and `dlsetup bench --local`.

The bench document used here, tests/fixtures/bench/synthetic-gtx1080ti.json,
is SYNTHETIC: made-up raw inputs (iteration counts, seconds, step times) run
through the bench's own arithmetic by make_fixture.py beside it. No GPU was
measured; the first test proves the file is what that code path produces.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from dlsetup import bench_report, cli
from dlsetup.exitcodes import ExitCode
from dlsetup.gpucheck import bench
from tests.fixtures.bench import make_fixture

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "bench"
RAW = FIXTURES / "synthetic-gtx1080ti.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_maker() -> Any:
    return make_fixture


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(RAW.read_text())
    return doc


def test_fixture_is_what_the_arithmetic_produces() -> None:
    maker = _load_maker()
    assert maker.render() == RAW.read_text(), "re-run tests/fixtures/bench/make_fixture.py"
    assert "NOT a measurement" in json.loads(RAW.read_text())["synthetic"]


def test_peaks_come_from_the_compat_table() -> None:
    table = bench_report.peaks_table()["table"]
    h100 = table["10de:2330"]
    assert h100["gpu"] == "H100 SXM5 80GB"
    assert h100["gemm_tflops"]["bf16"] == pytest.approx(989.4)  # dense, no sparsity
    ti = table["10de:1b06"]
    assert ti["gemm_tflops"] == {"fp32": 11.34, "fp16": None, "bf16": None}
    assert ti["memory_bandwidth_gbs"] == 484.0


def test_select_peaks_by_pci_id_then_by_name() -> None:
    peaks = bench_report.peaks_table()
    assert bench.select_peaks(peaks, ["10de:2330"] * 8)["gpu"] == "H100 SXM5 80GB"
    # two different products: the CUDA device's name decides
    mixed = bench.select_peaks(peaks, ["10de:2330", "10de:1b06"], "NVIDIA GeForce GTX 1080 Ti")
    assert mixed["gpu"] == "GeForce GTX 1080 Ti" and mixed["pci_id"] == "10de:1b06"
    assert bench.select_peaks(peaks, ["10de:ffff"], "Unknown GPU") == {}
    one = {"gpu": "x", "gemm_tflops": {"fp32": 1.0}}
    assert bench.select_peaks(one, []) is one


def test_parse_smi_pci_ids() -> None:
    assert bench.parse_smi_pci_ids("0x233010DE\n0x1B0610DE\n\n") == ["10de:2330", "10de:1b06"]
    assert bench.parse_smi_pci_ids("No devices were found\n") == []


def test_ratio_rows_against_their_limits(raw: dict[str, Any]) -> None:
    rows = {r["what"]: r for r in bench_report.ratio_rows(raw)}
    fp32 = rows["GEMM fp32"]
    assert fp32["limit"] == 11.34 and fp32["ratio"] == pytest.approx(10.37 / 11.34, abs=1e-3)
    assert rows["GEMM fp16"]["ratio"] is None  # a 1080 Ti has no fp16 tensor peak
    assert "GEMM bf16" not in rows  # not supported: not measured
    assert rows["GPU memory"]["limit"] == 484.0
    h2d = rows["copy host->device (pinned)"]
    assert h2d["limit"] == pytest.approx(bench.pcie_bandwidth_gbs(3, 16), abs=0.01)
    assert "gen3 x16 under load" in h2d["limit_of"]
    nvme = rows["NVMe sequential read"]
    assert nvme["limit"] == pytest.approx(bench.nvme_link_limit_gbs("8.0 GT/s PCIe", 4), abs=0.01)
    assert nvme["ratio"] == pytest.approx(nvme["measured"] / nvme["limit"], abs=1e-3)


def test_cifar_rows_beside_the_seed_table(raw: dict[str, Any]) -> None:
    rows = bench_report.cifar_rows(raw, "box")
    minutes = {r["hardware"]: r["minutes"] for r in rows}
    assert minutes["Xeon E5450"] == 2243.0 and minutes["GTX 1080"] == 103.0
    assert minutes["Tesla K20"] == 820.0 and minutes["GTX 960"] == 366.0
    assert minutes["GTX 1070"] == 119.0
    gpu_min = raw["cifar10"]["minutes_for_100k_steps"]
    assert minutes["box (NVIDIA GeForce GTX 1080 Ti)"] == gpu_min
    assert minutes["box CPU"] == raw["cifar10_cpu"]["minutes_for_100k_steps"]
    assert [r["minutes"] for r in rows] == sorted(r["minutes"] for r in rows)


def test_write_report_json_md_and_png_charts(raw: dict[str, Any], tmp_path: Path) -> None:
    written = bench_report.write_report({"box": raw}, tmp_path)
    assert set(written) == {"json", "md", "ratios-box", "cifar10-box"}
    for name in ("ratios-box", "cifar10-box"):
        data = written[name].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    doc = json.loads(written["json"].read_text())
    assert doc["hosts"]["box"]["raw"] == raw  # round-trips
    assert doc["hosts"]["box"]["ratios"] == bench_report.ratio_rows(raw)
    assert doc["seed_table_minutes"]["Tesla K20"] == 820.0
    md = written["md"].read_text()
    fp32 = raw["gemm"]["fp32"]["ratio_to_peak"]
    assert f"| GEMM fp32 | 10.37 TFLOPS | 11.34 TFLOPS | {fp32 * 100:.1f} % |" in md
    assert "| copy host->device (pinned) | 12.44 GB/s | 15.75 GB/s | 79.0 % |" in md
    assert "| Xeon E5450 | 2243.0 |" in md and "| GTX 1080 | 103.0 |" in md
    assert "synthetic inputs: not a measurement" in md
    assert "![ratios-box](ratios-box.png)" in md and "![cifar10-box](cifar10-box.png)" in md


def test_report_without_any_limit_still_draws(tmp_path: Path) -> None:
    raw = {"device": "GPU", "gemm": {"fp32": {"tflops": 1.0, "ratio_to_peak": None}}}
    written = bench_report.write_report({"odd": raw}, tmp_path)
    assert written["ratios-odd"].read_bytes().startswith(PNG_MAGIC)
    assert "cifar10-odd" not in written
    assert "| GEMM fp32 | 1.00 TFLOPS | - " in written["md"].read_text()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is here")
def test_bench_local_without_torch_says_so_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = cli.main(["bench", "--local", "--python", sys.executable, "--report", str(out)])
    assert rc == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "PyTorch is not installed" in err and sys.executable in err
    assert not out.exists()


def test_cifar_rows_keep_the_bench_factors_made_from_unrounded_minutes(
    raw: dict[str, Any],
) -> None:
    # The bench's own seed table (factors from 4.911 min) wins over a
    # recomputation from the 4.9 the document prints.
    doc = json.loads(json.dumps(raw))
    doc["cifar10"]["minutes_for_100k_steps"] = 4.9
    doc["cifar10"]["seed_table"] = [
        {"hardware": "this host", "minutes": 4.9, "this_host": True, "times_this_host": 1.0},
        {"hardware": "GTX 1080", "minutes": 103.0, "times_this_host": 20.97},
    ]
    rows = {r["hardware"]: r for r in bench_report.cifar_rows(doc, "box")}
    assert rows["GTX 1080"]["times_this_host"] == 20.97  # not 103 / 4.9 = 21.02
    assert rows["box (NVIDIA GeForce GTX 1080 Ti)"]["this_host"] is True
