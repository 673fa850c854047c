"""The bench: what a GPU box delivers, against what its parts promise.

Two halves:

* arithmetic (pure, stdlib, unit-tested): PCIe and NVMe link limits, ratios of
  a measurement to its limit, the CIFAR-10 tutorial time extrapolated from a
  steady step rate, the seed table of that tutorial on older hardware, the
  CPU-vs-GPU factor, fio JSON parsing;
* measuring (needs PyTorch and a GPU; torch is imported lazily, only here):
  sustained GEMM in bf16/fp16/fp32, device memory bandwidth, pinned host<->device
  copies with the PCIe link state read during the copy, NVMe sequential read
  with fio, and the TensorFlow CIFAR-10 tutorial CNN rebuilt in PyTorch.

Peak figures come in from the caller (``--peaks-json FILE``), taken from the
project's compatibility data, e.g.::

    {"gpu": "GeForce GTX 1080 Ti",
     "gemm_tflops": {"fp32": 11.3, "fp16": 0.18, "bf16": null},
     "memory_bandwidth_gbs": 484}

    python3 -m dlsetup.gpucheck.bench --json [--peaks-json FILE] [--cifar-dir DIR]
                                      [--nvme-device /dev/nvme0n1]

Exit status: 0 done, 2 PyTorch (or a CUDA device for it) missing or bad input.
Standard library only outside the measuring functions; runs on python3.8+.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

# --------------------------------------------------------------------------
# arithmetic
# --------------------------------------------------------------------------

# Per-lane transfer rate (GT/s) and the share of it that carries data.
# gen1/2 use 8b/10b line coding, gen3-5 128b/130b; gen6 is PAM4 in FLIT mode
# with no line code, where FEC and CRC take 14 of every 256 bytes (242/256).
PCIE_GENERATIONS: dict[int, tuple[float, float]] = {
    1: (2.5, 8 / 10),
    2: (5.0, 8 / 10),
    3: (8.0, 128 / 130),
    4: (16.0, 128 / 130),
    5: (32.0, 128 / 130),
    6: (64.0, 242 / 256),
}
PCIE_WIDTHS = (1, 2, 4, 8, 16, 32)

# The TensorFlow CIFAR-10 tutorial: minutes for 100k steps (batch 128) as the
# tutorial's seed measurements report them.
SEED_TABLE: dict[str, float] = {
    "Xeon E5450": 2243.0,
    "Tesla K20": 820.0,
    "GTX 960": 366.0,
    "GTX 1070": 119.0,
    "GTX 1080": 103.0,
}
SEED_CPU = "Xeon E5450"
CIFAR_STEPS = 100_000


def pcie_bandwidth_gbs(gen: int, width: int) -> float:
    """Theoretical PCIe bandwidth per direction in GB/s (10^9 bytes), link coding only.

    gen3 x16: 8 GT/s * 128/130 * 16 lanes / 8 bits = 15.75 GB/s.
    """
    if gen not in PCIE_GENERATIONS:
        raise ValueError(f"unknown PCIe generation {gen!r} (1-6)")
    if width not in PCIE_WIDTHS:
        raise ValueError(f"unknown PCIe link width x{width!r}")
    rate, efficiency = PCIE_GENERATIONS[gen]
    return rate * efficiency * width / 8.0


def pcie_gen_for_speed(gts: float) -> int:
    """8.0 (GT/s, as sysfs and nvme facts say '8.0 GT/s PCIe') -> 3."""
    for gen, (rate, _) in PCIE_GENERATIONS.items():
        if abs(rate - gts) < 0.01:
            return gen
    raise ValueError(f"no PCIe generation runs at {gts!r} GT/s")


def nvme_link_limit_gbs(speed_gts: float | str, width: int) -> float:
    """The link limit of an NVMe drive: '8.0 GT/s PCIe' x4 -> 3.94 GB/s per direction."""
    if isinstance(speed_gts, str):
        speed = float(speed_gts.split()[0].split("GT/s")[0])
    else:
        speed = float(speed_gts)
    return pcie_bandwidth_gbs(pcie_gen_for_speed(speed), width)


def ratio_to_limit(measured: float | None, limit: float | None) -> float | None:
    """measured / limit, None when either is unknown or the limit is not positive."""
    if measured is None or limit is None or limit <= 0:
        return None
    return measured / limit


def steady_steps_per_second(step_end_times: Sequence[float], warmup: int) -> float:
    """Step rate over the steady window: the steps after ``warmup`` and their time.

    ``step_end_times[i]`` is the clock when step i finished. The window starts
    when the last warm-up step ended, so it holds ``len - warmup`` steps.
    """
    if warmup < 1:
        raise ValueError("warmup must be at least one step (it starts the window)")
    if len(step_end_times) <= warmup:
        raise ValueError(f"need more steps than the {warmup} warm-up steps")
    elapsed = step_end_times[-1] - step_end_times[warmup - 1]
    if elapsed <= 0:
        raise ValueError("the steady window has no duration")
    return (len(step_end_times) - warmup) / elapsed


def extrapolate_minutes(steps_per_second: float, steps: int = CIFAR_STEPS) -> float:
    """Minutes for ``steps`` steps at a steady rate (the tutorial's 100k steps)."""
    if steps_per_second <= 0:
        raise ValueError("steps per second must be positive")
    return steps / steps_per_second / 60.0


def speedup(slow_minutes: float, fast_minutes: float) -> float:
    """How many times faster: 2243 min on a CPU vs 103 min on a GPU -> 21.8."""
    if fast_minutes <= 0:
        raise ValueError("minutes must be positive")
    return slow_minutes / fast_minutes


def cpu_vs_gpu_factor(gpu_minutes: float, cpu_minutes: float = SEED_TABLE[SEED_CPU]) -> float:
    """The tutorial's CPU time (Xeon E5450 by default) over this GPU's time."""
    return speedup(cpu_minutes, gpu_minutes)


def compare_with_seed(minutes: float, label: str = "this host") -> list[dict[str, Any]]:
    """The seed table plus this host, fastest first, each with its factor vs this host."""
    rows: list[dict[str, Any]] = [
        {"hardware": name, "minutes": value} for name, value in SEED_TABLE.items()
    ]
    rows.append({"hardware": label, "minutes": round(minutes, 1), "this_host": True})
    for row in rows:
        row["times_this_host"] = round(float(row["minutes"]) / minutes, 2)
    return sorted(rows, key=lambda r: float(r["minutes"]))


def gemm_tflops(m: int, n: int, k: int, iterations: int, seconds: float) -> float:
    """2*m*n*k floating-point operations per GEMM."""
    return 2.0 * m * n * k * iterations / seconds / 1e12


def bandwidth_gbs(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9


def parse_fio_json(text: str) -> dict[str, Any]:
    """fio --output-format=json: total sequential read over all jobs.

    fio may print notes before the JSON; they are skipped. Returns read_gbs
    (10^9 bytes/s), read_mib_s, iops, runtime_s, jobs, fio_version.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in fio's output")
    data = json.loads(text[start:])
    jobs = data.get("jobs") or []
    if not jobs:
        raise ValueError("fio's JSON has no jobs")
    total_bytes_s = 0.0
    iops = 0.0
    runtime_ms = 0
    for job in jobs:
        read = job.get("read") or {}
        if "bw_bytes" in read:
            total_bytes_s += float(read["bw_bytes"])
        else:
            total_bytes_s += float(read.get("bw", 0)) * 1024.0  # KiB/s
        iops += float(read.get("iops", 0.0))
        runtime_ms = max(runtime_ms, int(read.get("runtime", 0)))
        if job.get("error"):
            raise ValueError("fio job {} failed: error {}".format(job.get("jobname"), job["error"]))
    return {
        "read_gbs": total_bytes_s / 1e9,
        "read_mib_s": total_bytes_s / (1024.0 * 1024.0),
        "iops": iops,
        "runtime_s": runtime_ms / 1000.0,
        "jobs": len(jobs),
        "fio_version": data.get("fio version"),
    }


FIO_ARGS = (
    "--direct=1",
    "--bs=1M",
    "--iodepth=32",
    "--numjobs=4",
    "--time_based",
    "--runtime=10",
    "--rw=read",
    "--ioengine=libaio",
    "--output-format=json",
)


def fio_command(device: str) -> list[str]:
    """Read-only sequential read of a whole device; never writes."""
    return ["fio", "--name=dlsetup-seqread", "--filename=" + device, "--readonly", *FIO_ARGS]


def parse_smi_pci_ids(text: str) -> list[str]:
    """nvidia-smi --query-gpu=pci.device_id lines ('0x1B0610DE') -> ['10de:1b06']."""
    ids = []
    for line in text.splitlines():
        cell = line.strip().lower()
        if cell.startswith("0x") and len(cell) == 10:
            ids.append(f"{cell[6:10]}:{cell[2:6]}")
    return ids


def select_peaks(
    peaks: dict[str, Any], pci_ids: Sequence[str], device_name: str | None = None
) -> dict[str, Any]:
    """The peak figures of the measured GPU.

    ``peaks`` is either one GPU's figures or ``{"table": {pci_id: figures}}``
    (what ``dlsetup bench`` hands over: the whole compatibility table). A table
    entry is chosen by the GPUs' PCI ids when they all name the same product,
    else by the device name; ``{}`` when nothing fits (ratios are then left out).
    """
    table = peaks.get("table")
    if not isinstance(table, dict):
        return peaks
    products = sorted({p.lower() for p in pci_ids})
    if len(products) == 1 and products[0] in table:
        return dict(table[products[0]], pci_id=products[0])
    if device_name:
        wanted = device_name.lower().replace("nvidia", "").replace("geforce", "").split()
        for pci_id, entry in table.items():
            if pci_id.lower() not in products and products:
                continue
            name = str(entry.get("gpu", "")).lower().replace("nvidia", "").replace("geforce", "")
            if name.split() == wanted or (wanted and name.split()[: len(wanted)] == wanted):
                return dict(entry, pci_id=pci_id)
    return {}


# --------------------------------------------------------------------------
# measuring (PyTorch + a GPU; not run by the unit tests)
# --------------------------------------------------------------------------


def _sync_time(torch: Any, fn: Any, seconds: float) -> tuple[int, float]:
    """Call ``fn`` repeatedly for about ``seconds``; returns (iterations, elapsed)."""
    fn()
    torch.cuda.synchronize()
    iterations = 0
    start = time.perf_counter()
    while True:
        for _ in range(5):
            fn()
        iterations += 5
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return iterations, elapsed


def measure_gemm(torch: Any, dtype_name: str, n: int = 8192, seconds: float = 5.0) -> float | None:
    """Sustained TFLOPS of an n x n x n GEMM; None when the GPU lacks the type."""
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    if dtype_name == "bf16" and not torch.cuda.is_bf16_supported():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    out = torch.empty(n, n, device="cuda", dtype=dtype)
    iterations, elapsed = _sync_time(torch, lambda: torch.matmul(a, b, out=out), seconds)
    return gemm_tflops(n, n, n, iterations, elapsed)


def measure_device_copy(torch: Any, nbytes: int = 1 << 30, seconds: float = 3.0) -> float:
    """Device memory bandwidth from device-to-device copies (read + write counted)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    iterations, elapsed = _sync_time(torch, lambda: dst.copy_(src), seconds)
    return bandwidth_gbs(2.0 * nbytes * iterations, elapsed)


def read_pcie_link(index: int) -> dict[str, int | None]:
    """Current/max PCIe gen and width of GPU ``index`` from nvidia-smi."""
    fields = "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max"
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "-i",
                str(index),
                "--query-gpu=" + fields,
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    cells = [c.strip() for c in out.strip().split(",")]
    names = ("gen_current", "gen_max", "width_current", "width_max")
    if len(cells) != len(names):
        return {}
    return {name: int(cell) if cell.isdigit() else None for name, cell in zip(names, cells)}  # noqa: B905


def gpu_pci_ids() -> list[str]:
    """PCI ids ('10de:1b06') of the GPUs nvidia-smi sees."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=pci.device_id", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_smi_pci_ids(out)


def measure_host_copy(
    torch: Any, direction: str, nbytes: int = 256 << 20, seconds: float = 3.0
) -> dict[str, Any]:
    """Pinned host<->device copy bandwidth, with the link state read during the copy."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    if direction == "h2d":

        def fn() -> None:
            dev.copy_(host, non_blocking=True)
    else:

        def fn() -> None:
            host.copy_(dev, non_blocking=True)

    link: dict[str, Any] = {}
    reader = threading.Timer(
        min(1.0, seconds / 2), lambda: link.update(read_pcie_link(torch.cuda.current_device()))
    )
    reader.start()
    iterations, elapsed = _sync_time(torch, fn, seconds)
    reader.join()
    gbs = bandwidth_gbs(float(nbytes) * iterations, elapsed)
    result: dict[str, Any] = {"gbs": round(gbs, 2), "link_during_copy": link}
    if link.get("gen_current") and link.get("width_current"):
        limit = pcie_bandwidth_gbs(int(link["gen_current"]), int(link["width_current"]))
        result["link_limit_gbs"] = round(limit, 2)
        result["ratio_to_link"] = round(gbs / limit, 3)
    return result


def measure_nvme(device: str) -> dict[str, Any]:
    """fio sequential read (read-only) of ``device``."""
    try:
        proc = subprocess.run(
            fio_command(device), capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return {"error": "fio is not installed (apt-get install fio)"}
    except subprocess.TimeoutExpired:
        return {"error": "fio did not finish in 60 s"}
    if proc.returncode != 0:
        return {"error": f"fio exit {proc.returncode}: {proc.stderr.strip()[:300]}"}
    result = parse_fio_json(proc.stdout)
    name = os.path.basename(device).split("n1")[0] if device.startswith("/dev/nvme") else None
    if name:
        base = f"/sys/class/nvme/{name}/device/"
        try:
            with open(base + "current_link_speed") as fh:
                speed = fh.read().strip()
            with open(base + "current_link_width") as fh:
                width = int(fh.read().strip())
            limit = nvme_link_limit_gbs(speed, width)
            result["link"] = {"speed": speed, "width": width, "limit_gbs": round(limit, 2)}
            result["ratio_to_link"] = round(result["read_gbs"] / limit, 3)
        except (OSError, ValueError):
            pass
    return result


def _cifar_model(torch: Any) -> Any:
    """The TensorFlow CIFAR-10 tutorial network on 24x24 crops.

    conv5x5 64 -> relu -> maxpool 3x3/2 -> LRN -> conv5x5 64 -> relu -> LRN ->
    maxpool 3x3/2 -> fc 384 -> fc 192 -> 10. TF's LRN (depth_radius 4,
    alpha 0.001/9, beta 0.75, bias 1) is PyTorch's LocalResponseNorm(size 9,
    alpha 0.001, beta 0.75, k 1): PyTorch divides alpha by the size.
    """
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.Conv2d(64, 64, 5, padding=2),
        nn.ReLU(),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 6 * 64, 384),
        nn.ReLU(),
        nn.Linear(384, 192),
        nn.ReLU(),
        nn.Linear(192, 10),
    )


CIFAR_RECORD = 1 + 32 * 32 * 3


def read_cifar_batches(directory: str) -> tuple[bytes, bytes]:
    """CIFAR-10 binary version: data_batch_1..5.bin, records of label byte + 3072 pixels.

    Returns (labels, pixels) as raw bytes (pixels channel-major per image).
    """
    labels = bytearray()
    pixels = bytearray()
    for i in range(1, 6):
        path = os.path.join(directory, f"data_batch_{i}.bin")
        with open(path, "rb") as fh:
            data = fh.read()
        if len(data) % CIFAR_RECORD:
            raise ValueError(f"{path}: size {len(data)} is not a multiple of {CIFAR_RECORD}")
        for off in range(0, len(data), CIFAR_RECORD):
            labels.append(data[off])
            pixels += data[off + 1 : off + CIFAR_RECORD]
    return bytes(labels), bytes(pixels)


def measure_cifar10(
    torch: Any,
    cifar_dir: str | None = None,
    steps: int = 300,
    warmup: int = 50,
    device_name: str = "cuda",
) -> dict[str, Any]:
    """Train the tutorial CNN (batch 128, 24x24 crops); time a steady window.

    ``device_name="cpu"`` is the short CPU run that gives this box's own
    CPU-vs-GPU factor (the seed measured 2243 min on a Xeon E5450).
    """
    device = torch.device(device_name)
    cuda = device_name == "cuda"
    if cifar_dir:
        labels_raw, pixels_raw = read_cifar_batches(cifar_dir)
        images = torch.frombuffer(bytearray(pixels_raw), dtype=torch.uint8).view(-1, 3, 32, 32)
        labels = torch.frombuffer(bytearray(labels_raw), dtype=torch.uint8).long()
        source = f"CIFAR-10 binaries in {cifar_dir}"
    else:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (50000,), generator=gen)
        source = "synthetic CIFAR-shaped data"
    images, labels = images.to(device), labels.to(device)
    model = _cifar_model(torch).to(device)
    decay = [p for n, p in model.named_parameters() if n.startswith(("9.", "11.")) and p.dim() > 1]
    rest = [p for p in model.parameters() if all(p is not d for d in decay)]
    opt = torch.optim.SGD([{"params": rest}, {"params": decay, "weight_decay": 0.004}], lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = 128
    times = []
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch,), device=device)
        x = images[idx].float()
        dy, dx = (int(v) for v in torch.randint(0, 9, (2,)))
        x = x[:, :, dy : dy + 24, dx : dx + 24]
        if bool(torch.rand(()) < 0.5):
            x = x.flip(3)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0 / 24)
        x = (x - mean) / std
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels[idx])
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        else:
            loss.detach().item()  # waits for the step
        times.append(time.perf_counter())
    rate = steady_steps_per_second(times, warmup)
    minutes = extrapolate_minutes(rate)
    return {
        "device": device_name,
        "data": source,
        "batch": batch,
        "steps_timed": steps - warmup,
        "steps_per_s": round(rate, 2),
        "minutes_for_100k_steps": round(minutes, 1),
        "cpu_vs_gpu_factor": round(cpu_vs_gpu_factor(minutes), 1),
        "seed_table": compare_with_seed(minutes),
        # detached: a scalar of a tensor that requires grad warns (torch 2.11)
        "final_loss": round(loss.detach().item(), 3),
    }


def run_bench(
    torch: Any, peaks: dict[str, Any], cifar_dir: str | None, nvme: str | None
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "bench_version": 2,
        "host": os.uname().nodename,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "peaks": peaks,
    }
    gemm: dict[str, Any] = {}
    peak_gemm = peaks.get("gemm_tflops") or {}
    for name in ("bf16", "fp16", "fp32"):
        tflops = measure_gemm(torch, name)
        gemm[name] = {
            "tflops": None if tflops is None else round(tflops, 2),
            "ratio_to_peak": ratio_to_limit(tflops, peak_gemm.get(name)),
        }
    report["gemm"] = gemm
    mem = measure_device_copy(torch)
    report["memory_bandwidth"] = {
        "gbs": round(mem, 1),
        "ratio_to_peak": ratio_to_limit(mem, peaks.get("memory_bandwidth_gbs")),
    }
    report["host_to_device"] = measure_host_copy(torch, "h2d")
    report["device_to_host"] = measure_host_copy(torch, "d2h")
    if nvme:
        report["nvme"] = measure_nvme(nvme)
    report["cifar10"] = measure_cifar10(torch, cifar_dir)
    cpu = measure_cifar10(torch, cifar_dir, steps=25, warmup=5, device_name="cpu")
    report["cifar10_cpu"] = {
        k: cpu[k]
        for k in ("device", "data", "steps_timed", "steps_per_s", "minutes_for_100k_steps")
    }
    report["cifar10"]["cpu_vs_gpu_factor_this_box"] = round(
        speedup(cpu["minutes_for_100k_steps"], report["cifar10"]["minutes_for_100k_steps"]), 1
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpucheck-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--peaks-json", metavar="FILE", help="peak figures of this GPU (JSON)")
    parser.add_argument(
        "--cifar-dir", metavar="DIR", help="CIFAR-10 binary batches (else synthetic)"
    )
    parser.add_argument("--nvme-device", metavar="DEV", help="e.g. /dev/nvme0n1 (read-only fio)")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"gpucheck-bench: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": message}))
        return 2

    peaks: dict[str, Any] = {}
    if args.peaks_json:
        try:
            with open(args.peaks_json, encoding="utf-8") as fh:
                peaks = json.load(fh)
        except (OSError, ValueError) as exc:
            return fail(f"cannot read --peaks-json {args.peaks_json}: {exc}")
        if not isinstance(peaks, dict):
            return fail("--peaks-json must hold a JSON object")
    if args.cifar_dir and not os.path.isdir(args.cifar_dir):
        return fail(f"--cifar-dir {args.cifar_dir}: no such directory")
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        return fail(
            f"PyTorch is not installed in {sys.executable}: the bench needs torch with CUDA"
        )
    if not torch.cuda.is_available():
        return fail(f"torch {torch.__version__} sees no CUDA device: run the smoke test first")
    if "table" in peaks:
        peaks = select_peaks(peaks, gpu_pci_ids(), torch.cuda.get_device_name(0))
    report = run_bench(torch, peaks, args.cifar_dir, args.nvme_device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<16} {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
