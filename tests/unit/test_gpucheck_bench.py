"""The bench's arithmetic (dlsetup.gpucheck.bench), with numbers worked out by hand.

The measuring half of the bench needs PyTorch and a GPU; neither is here, so
only its arithmetic, its parsing of a recorded fio run, its CIFAR-10 reader and
its command line's refusal without torch are tested.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dlsetup.gpucheck import bench

REPO = Path(__file__).resolve().parents[2]
FIO = REPO / "tests" / "fixtures" / "gpucheck" / "fio" / "seqread-4jobs.json"

# GB/s per lane and direction, by hand:
#   gen1: 2.5 GT/s * 8/10 = 2 Gb/s = 0.25 GB/s     gen2: 5 * 8/10 = 4 Gb/s = 0.5 GB/s
#   gen3: 8 * 128/130 = 7.8769 Gb/s = 0.984615 GB/s
#   gen4: twice gen3 = 1.969231   gen5: 3.938462   gen6: 64 * 242/256 / 8 = 7.5625
PER_LANE = {1: 0.25, 2: 0.5, 3: 0.984615, 4: 1.969231, 5: 3.938462, 6: 7.5625}


@pytest.mark.parametrize("gen", sorted(PER_LANE))
@pytest.mark.parametrize("width", [1, 2, 4, 8, 16])
def test_pcie_bandwidth_every_gen_and_width(gen: int, width: int) -> None:
    assert bench.pcie_bandwidth_gbs(gen, width) == pytest.approx(PER_LANE[gen] * width, rel=1e-5)


@pytest.mark.parametrize(
    ("gen", "width", "gbs"),
    [
        (1, 16, 4.0),
        (2, 16, 8.0),
        (3, 16, 15.7538),  # the figure quoted for a gen3 x16 GPU slot
        (3, 8, 7.8769),
        (3, 4, 3.9385),  # a gen3 x4 NVMe drive
        (4, 16, 31.5077),
        (4, 4, 7.8769),
        (5, 16, 63.0154),
        (6, 16, 121.0),
    ],
)
def test_pcie_bandwidth_known_slots(gen: int, width: int, gbs: float) -> None:
    assert bench.pcie_bandwidth_gbs(gen, width) == pytest.approx(gbs, abs=1e-4)


@pytest.mark.parametrize(("gen", "width"), [(0, 16), (7, 16), (3, 3), (3, 0)])
def test_pcie_bandwidth_rejects_unknown_links(gen: int, width: int) -> None:
    with pytest.raises(ValueError):
        bench.pcie_bandwidth_gbs(gen, width)


def test_nvme_link_limit_from_sysfs_speed_text() -> None:
    assert bench.nvme_link_limit_gbs("8.0 GT/s PCIe", 4) == pytest.approx(3.938462, rel=1e-6)
    assert bench.nvme_link_limit_gbs("8.0 GT/s PCIe", 2) == pytest.approx(1.969231, rel=1e-6)
    assert bench.nvme_link_limit_gbs("16.0 GT/s PCIe", 4) == pytest.approx(7.876923, rel=1e-6)
    assert bench.nvme_link_limit_gbs(5.0, 4) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bench.nvme_link_limit_gbs("12.0 GT/s PCIe", 4)


def test_ratio_to_limit() -> None:
    assert bench.ratio_to_limit(12.0, 15.75) == pytest.approx(0.761905, rel=1e-6)
    assert bench.ratio_to_limit(3.5, 3.938462) == pytest.approx(0.888672, rel=1e-5)
    assert bench.ratio_to_limit(None, 10.0) is None
    assert bench.ratio_to_limit(1.0, None) is None
    assert bench.ratio_to_limit(1.0, 0.0) is None


def test_steady_rate_ignores_the_warmup() -> None:
    # Step 0 (warm-up) ends at 2.0 s after a slow start; then one step every 0.5 s.
    times = [2.0, 2.5, 3.0, 3.5, 4.0]
    assert bench.steady_steps_per_second(times, warmup=1) == pytest.approx(2.0)
    # Two warm-up steps: window 2.5 s -> 4.0 s holds 3 steps.
    assert bench.steady_steps_per_second(times, warmup=2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bench.steady_steps_per_second(times, warmup=5)
    with pytest.raises(ValueError):
        bench.steady_steps_per_second(times, warmup=0)


def test_extrapolation_to_100k_steps() -> None:
    # 100000 steps / 10 steps/s = 10000 s = 166.67 min
    assert bench.extrapolate_minutes(10.0) == pytest.approx(166.6667, rel=1e-6)
    # the seed's GTX 1080: 103 min <=> 100000 / (103 * 60) = 16.1812 steps/s
    assert bench.extrapolate_minutes(16.181230) == pytest.approx(103.0, rel=1e-6)
    assert bench.extrapolate_minutes(50.0, steps=1000) == pytest.approx(0.3333333)
    with pytest.raises(ValueError):
        bench.extrapolate_minutes(0.0)


def test_seed_table() -> None:
    assert bench.SEED_TABLE == {
        "Xeon E5450": 2243.0,
        "Tesla K20": 820.0,
        "GTX 960": 366.0,
        "GTX 1070": 119.0,
        "GTX 1080": 103.0,
    }


def test_cpu_vs_gpu_factor() -> None:
    # 2243 / 103 = 21.7767; 2243 / 820 = 2.7354; 2243 / 50 = 44.86
    assert bench.cpu_vs_gpu_factor(103.0) == pytest.approx(21.7767, rel=1e-5)
    assert bench.cpu_vs_gpu_factor(820.0) == pytest.approx(2.73537, rel=1e-5)
    assert bench.cpu_vs_gpu_factor(50.0) == pytest.approx(44.86)
    assert bench.speedup(366.0, 119.0) == pytest.approx(3.07563, rel=1e-5)


def test_compare_with_seed_orders_and_scales() -> None:
    rows = bench.compare_with_seed(50.0)
    assert [r["hardware"] for r in rows] == [
        "this host",
        "GTX 1080",
        "GTX 1070",
        "GTX 960",
        "Tesla K20",
        "Xeon E5450",
    ]
    by_name = {r["hardware"]: r for r in rows}
    assert by_name["this host"]["times_this_host"] == 1.0
    assert by_name["GTX 1080"]["times_this_host"] == 2.06  # 103 / 50
    assert by_name["Xeon E5450"]["times_this_host"] == 44.86  # 2243 / 50


def test_gemm_and_bandwidth_units() -> None:
    # one 8192^3 GEMM = 2 * 8192^3 = 1.0995e12 flop; 100 of them in 10 s = 10.995 TFLOPS
    assert bench.gemm_tflops(8192, 8192, 8192, 100, 10.0) == pytest.approx(10.99512, rel=1e-6)
    assert bench.bandwidth_gbs(12e9, 1.0) == pytest.approx(12.0)


def test_parse_recorded_fio_run() -> None:
    """fio 3.33, 4 jobs of --rw=read --bs=1M --iodepth=32 on a gen3 x4 drive."""
    result = bench.parse_fio_json(FIO.read_text())
    # bw_bytes of the four jobs: 883298654 + 880123456 + 886000000 + 879500000
    assert result["read_gbs"] == pytest.approx(3.528922110)
    assert result["read_mib_s"] == pytest.approx(3365.4424, rel=1e-6)
    assert result["jobs"] == 4
    assert result["runtime_s"] == pytest.approx(10.006)
    assert result["iops"] == pytest.approx(3365.44, rel=1e-5)
    assert result["fio_version"] == "fio-3.33"
    # against the link: 3.5289 / 3.9385 = 0.896
    limit = bench.nvme_link_limit_gbs("8.0 GT/s PCIe", 4)
    assert bench.ratio_to_limit(result["read_gbs"], limit) == pytest.approx(0.89601, rel=1e-4)


def test_parse_fio_skips_notes_and_falls_back_to_kib() -> None:
    doc = {
        "fio version": "fio-3.16",
        "jobs": [{"jobname": "j", "error": 0, "read": {"bw": 1000, "iops": 1.0, "runtime": 5000}}],
    }
    text = "fio: note: both iodepth >= 1 and synchronous I/O engine are selected\n" + json.dumps(
        doc
    )
    result = bench.parse_fio_json(text)
    assert result["read_gbs"] == pytest.approx(1000 * 1024 / 1e9)
    with pytest.raises(ValueError):
        bench.parse_fio_json("fio: failed to open /dev/nvme0n1")
    with pytest.raises(ValueError):
        bench.parse_fio_json(json.dumps({"jobs": [{"jobname": "j", "error": 5, "read": {}}]}))


def test_fio_command_is_read_only() -> None:
    argv = bench.fio_command("/dev/nvme0n1")
    assert argv[0] == "fio"
    for option in ("--readonly", "--direct=1", "--bs=1M", "--iodepth=32", "--numjobs=4",
                   "--time_based", "--runtime=10", "--rw=read", "--output-format=json"):  # fmt: skip
        assert option in argv
    assert not any("write" in a for a in argv)


def test_read_cifar_batches(tmp_path: Path) -> None:
    for i in range(1, 6):
        records = b""
        for label in (i % 10, (i + 1) % 10):
            records += bytes([label]) + bytes([label]) * 3072
        (tmp_path / f"data_batch_{i}.bin").write_bytes(records)
    labels, pixels = bench.read_cifar_batches(str(tmp_path))
    assert list(labels) == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert len(pixels) == 10 * 3072
    assert pixels[3072] == 2
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        bench.read_cifar_batches(str(tmp_path))


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlsetup.gpucheck.bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(_has_torch(), reason="torch is installed here")
def test_bench_without_torch_exits_2_and_says_so() -> None:
    proc = _bench("--json")
    assert proc.returncode == 2
    assert "PyTorch is not installed" in json.loads(proc.stdout)["error"]
    assert "PyTorch is not installed" in proc.stderr


def test_bench_bad_peaks_file_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "peaks.json"
    bad.write_text("[1, 2]")
    assert _bench("--json", "--peaks-json", str(bad)).returncode == 2
    assert _bench("--peaks-json", str(tmp_path / "missing.json")).returncode == 2


def test_bench_reachable_through_the_copied_directory(tmp_path: Path) -> None:
    """python3 DIR/gpucheck bench ... is how the role runs it on the target."""
    copied = tmp_path / "gpucheck"
    shutil.copytree(REPO / "dlsetup" / "gpucheck", copied)
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", str(copied), "bench", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if _has_torch():
        pytest.skip("torch present: the bench would run")
    assert proc.returncode == 2
    assert "error" in json.loads(proc.stdout)


def test_cifar_model_shapes() -> None:
    torch: Any = pytest.importorskip("torch")
    model = bench._cifar_model(torch)
    out = model(torch.zeros(2, 3, 24, 24))
    assert tuple(out.shape) == (2, 10)
