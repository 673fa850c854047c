"""The bench's report on the controller: report.json, report.md and PNG charts.

The bench itself (``dlsetup.gpucheck.bench``) runs on the target and prints one
JSON document per host; this module turns those documents into

* ``report.json``: every host's raw document plus the rows below;
* ``report.md``: per host, each figure as a ratio to its limit, and the
  CIFAR-10 minutes beside the seed's table;
* ``ratios-<host>.png``: ratio-to-limit bars;
* ``cifar10-<host>.png``: CIFAR-10 minutes for 100k steps beside the seed's GPUs.

It also hands the GPUs' peak figures from the compatibility data to the bench
(``peaks_table``) and runs the bench on this machine (``run_local``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlsetup.gpucheck import bench

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------- peaks for the bench


def peaks_table() -> dict[str, Any]:
    """``{"table": {pci_id: figures}}`` for every GPU with a spec in the compat data.

    The bench picks the entry of the GPU it measures (``bench.select_peaks``).
    """
    from ansible_collections.dlsetup.box.plugins.module_utils import compat  # noqa: PLC0415

    table: dict[str, Any] = {}
    for gpu in compat.load().gpus:
        spec = gpu.spec
        if spec is None:  # no hand-kept peak figures: the bench says it has none
            continue
        figures = {
            "gpu": gpu.name,
            "gemm_tflops": {
                "fp32": spec.fp32_tflops,
                "fp16": spec.fp16_tensor_tflops,
                "bf16": spec.bf16_tensor_tflops,
            },
            "memory_bandwidth_gbs": spec.memory_bandwidth_gbs,
            "pcie_gen": spec.pcie_gen,
            "pcie_width": spec.pcie_width,
            "source": spec.source,
        }
        for pci in gpu.pci_ids:
            table.setdefault(f"{compat.NVIDIA_VENDOR_ID}:{pci}", figures)
    return {"table": dict(sorted(table.items()))}


# ----------------------------------------------------------------- reading the bench's JSON


def read_raw(path: Path) -> dict[str, Any] | None:
    """A host's bench JSON, or None when it is not there or not a bench document."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _row(
    what: str, measured: Any, unit: str, limit: Any, limit_of: str, *, given: Any = None
) -> dict[str, Any]:
    """One figure; the bench's own ratio (from unrounded figures) wins over a recomputed one."""
    m = float(measured) if isinstance(measured, int | float) else None
    lim = float(limit) if isinstance(limit, int | float) else None
    ratio = bench.ratio_to_limit(m, lim)
    if isinstance(given, int | float) and ratio is not None:
        ratio = float(given)
    return {
        "what": what,
        "measured": m,
        "unit": unit,
        "limit": lim,
        "limit_of": limit_of,
        "ratio": None if ratio is None else round(ratio, 3),
    }


def ratio_rows(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Each measured figure against its limit, as the bench measured it."""
    rows: list[dict[str, Any]] = []
    peaks = raw.get("peaks") or {}
    gpu = peaks.get("gpu") or raw.get("device") or "GPU"
    peak_gemm = peaks.get("gemm_tflops") or {}
    for dtype, res in (raw.get("gemm") or {}).items():
        if isinstance(res, dict) and res.get("tflops") is not None:
            rows.append(
                _row(
                    f"GEMM {dtype}",
                    res["tflops"],
                    "TFLOPS",
                    peak_gemm.get(dtype),
                    f"{gpu} dense peak",
                    given=res.get("ratio_to_peak"),
                )
            )
    mem = raw.get("memory_bandwidth") or {}
    if mem.get("gbs") is not None:
        rows.append(
            _row(
                "GPU memory",
                mem["gbs"],
                "GB/s",
                peaks.get("memory_bandwidth_gbs"),
                f"{gpu} memory bandwidth",
                given=mem.get("ratio_to_peak"),
            )
        )
    for key, label in (("host_to_device", "host->device"), ("device_to_host", "device->host")):
        copy = raw.get(key) or {}
        if copy.get("gbs") is None:
            continue
        link = copy.get("link_during_copy") or {}
        of = (
            f"PCIe gen{link.get('gen_current')} x{link.get('width_current')} under load"
            f" (max gen{link.get('gen_max')} x{link.get('width_max')})"
            if link.get("gen_current")
            else "PCIe link (not read)"
        )
        rows.append(
            _row(
                f"copy {label} (pinned)",
                copy["gbs"],
                "GB/s",
                copy.get("link_limit_gbs"),
                of,
                given=copy.get("ratio_to_link"),
            )
        )
    nvme = raw.get("nvme") or {}
    if nvme.get("read_gbs") is not None:
        link = nvme.get("link") or {}
        of = (
            f"NVMe link {link.get('speed')} x{link.get('width')}"
            if link
            else "NVMe link (not read)"
        )
        rows.append(
            _row(
                "NVMe sequential read",
                nvme["read_gbs"],
                "GB/s",
                link.get("limit_gbs"),
                of,
                given=nvme.get("ratio_to_link"),
            )
        )
    return rows


def cifar_rows(raw: dict[str, Any], host: str) -> list[dict[str, Any]]:
    """The seed's table with this host's GPU (and CPU run, when made) beside it."""
    cifar = raw.get("cifar10") or {}
    minutes = cifar.get("minutes_for_100k_steps")
    if not isinstance(minutes, int | float) or minutes <= 0:
        return []
    label = f"{host} ({raw.get('device') or 'GPU'})"
    seeded = cifar.get("seed_table")
    if isinstance(seeded, list) and seeded and all(isinstance(r, dict) for r in seeded):
        # The bench's own factors, made from the unrounded minutes: recomputing
        # them from the rounded minutes shifts each (20.97x would read 21.02x).
        rows = [{**r, "hardware": label} if r.get("this_host") else dict(r) for r in seeded]
    else:
        rows = bench.compare_with_seed(float(minutes), label)
    cpu = (raw.get("cifar10_cpu") or {}).get("minutes_for_100k_steps")
    if isinstance(cpu, int | float) and cpu > 0:
        rows.append(
            {
                "hardware": f"{host} CPU",
                "minutes": round(float(cpu), 1),
                "this_host": True,
                "times_this_host": round(float(cpu) / float(minutes), 2),
            }
        )
        rows.sort(key=lambda r: float(r["minutes"]))
    return rows


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """What report.json keeps per host beside the raw document."""
    host = str(raw.get("host") or "host")
    cifar = raw.get("cifar10") or {}
    return {
        "device": raw.get("device"),
        "ratios": ratio_rows(raw),
        "cifar10_minutes": cifar.get("minutes_for_100k_steps"),
        "cifar10_vs_seed": cifar_rows(raw, host),
        "cpu_vs_gpu_factor_seed_cpu": cifar.get("cpu_vs_gpu_factor"),
        "cpu_vs_gpu_factor_this_box": cifar.get("cpu_vs_gpu_factor_this_box"),
    }


# ----------------------------------------------------------------- writing


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def markdown_host(host: str, raw: dict[str, Any]) -> str:
    s = summarize({**raw, "host": host})
    lines = [
        f"## {host}: {raw.get('device') or '?'}",
        "",
        f"torch {raw.get('torch') or '?'}, CUDA {raw.get('cuda') or '?'}"
        + (" (synthetic inputs: not a measurement)" if raw.get("synthetic") else ""),
        "",
        "| figure | measured | limit | ratio to limit | limit of |",
        "|---|---:|---:|---:|---|",
    ]
    for r in s["ratios"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio'] * 100:.1f} %"
        lines.append(
            f"| {r['what']} | {_num(r['measured'])} {r['unit']} | "
            f"{_num(r['limit'])} {r['unit'] if r['limit'] is not None else ''} | {ratio} | "
            f"{r['limit_of']} |"
        )
    if s["cifar10_vs_seed"]:
        cifar = raw.get("cifar10") or {}
        lines += [
            "",
            f"CIFAR-10 tutorial CNN, batch 128, {cifar.get('data', '?')}: "
            f"{_num(cifar.get('steps_per_s'))} steps/s, "
            f"{_num(s['cifar10_minutes'], 1)} min for 100k steps",
            "",
            "| hardware | minutes for 100k steps | times this host |",
            "|---|---:|---:|",
        ]
        for r in s["cifar10_vs_seed"]:
            name = f"**{r['hardware']}**" if r.get("this_host") else r["hardware"]
            lines.append(f"| {name} | {_num(r['minutes'], 1)} | {_num(r['times_this_host'])} |")
        if s["cpu_vs_gpu_factor_seed_cpu"] is not None:
            lines.append("")
            lines.append(
                "CPU vs GPU: the seed's Xeon E5450 takes "
                f"{_num(s['cpu_vs_gpu_factor_seed_cpu'], 1)}x this GPU's time"
                + (
                    f"; this box's own CPU {_num(s['cpu_vs_gpu_factor_this_box'], 1)}x."
                    if s["cpu_vs_gpu_factor_this_box"] is not None
                    else "."
                )
            )
    return "\n".join(lines)


def _safe(host: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in host)


def _charts(host: str, raw: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    written: list[Path] = []
    s = summarize({**raw, "host": host})
    note = " (SYNTHETIC inputs)" if raw.get("synthetic") else ""
    rows = [r for r in s["ratios"] if r["ratio"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.5 * max(len(rows), 1)))
    if rows:
        labels = [r["what"] for r in rows]
        values = [100.0 * r["ratio"] for r in rows]
        bars = ax.barh(labels, values, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.0f} %" for v in values], padding=3)
        ax.axvline(100.0, color="black", linewidth=1)
        ax.invert_yaxis()
        ax.set_xlim(0, max(110.0, max(values) * 1.15))
    else:
        ax.text(0.5, 0.5, "no figure with a known limit", ha="center", va="center")
    ax.set_xlabel("% of the limit (peak, link)")
    ax.set_title(f"{host}: {raw.get('device') or '?'} against its limits{note}")
    fig.tight_layout()
    path = out / f"ratios-{_safe(host)}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    cifar = s["cifar10_vs_seed"]
    if cifar:
        fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(cifar)))
        labels = [r["hardware"] for r in cifar]
        values = [float(r["minutes"]) for r in cifar]
        colors = ["#dd8452" if r.get("this_host") else "#8c8c8c" for r in cifar]
        bars = ax.barh(labels, values, color=colors)
        ax.bar_label(bars, labels=[f"{v:.0f} min" for v in values], padding=3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("minutes for the tutorial's 100k steps (log scale)")
        ax.set_title(f"CIFAR-10 tutorial CNN, batch 128, beside the seed's table{note}")
        fig.tight_layout()
        path = out / f"cifar10-{_safe(host)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(raws: dict[str, dict[str, Any]], out: Path) -> dict[str, Path]:
    """report.json, report.md and the charts for every host; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "report_version": 1,
        "seed_table_minutes": dict(bench.SEED_TABLE),
        "hosts": {
            host: {**summarize({**raw, "host": host}), "raw": raw}
            for host, raw in sorted(raws.items())
        },
    }
    written: dict[str, Path] = {}
    path = out / "report.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    written["json"] = path
    md = ["# dlsetup bench", ""]
    md.append(
        "Every figure is a ratio to its limit: the GPU's dense peak and memory bandwidth "
        "from dlsetup's compatibility data, the PCIe link's gen x width as read under load, "
        "the NVMe drive's link. CIFAR-10: the TensorFlow tutorial CNN rebuilt in PyTorch, "
        "extrapolated to 100k steps, beside the seed's table."
    )
    for host, raw in sorted(raws.items()):
        md += ["", markdown_host(host, raw), ""]
        for chart in _charts(host, raw, out):
            written[chart.stem] = chart
            md.append(f"![{chart.stem}]({chart.name})")
    path = out / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    written["md"] = path
    return written


# ----------------------------------------------------------------- on this machine


@dataclass
class LocalResult:
    raw: dict[str, Any] | None
    rc: int
    error: str
    host: str


def run_local(
    python: str = "python3",
    cifar_dir: str | None = None,
    nvme_device: str | None = None,
    container_image: str | None = None,
    timeout: float = 900,
) -> LocalResult:
    """Run the bench here with ``python`` (its torch), or in ``container_image``."""
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="dlsetup-bench-") as tmp:
        peaks = Path(tmp) / "peaks.json"
        peaks.write_text(json.dumps(peaks_table()))
        tail: list[str] = ["--json", "--peaks-json"]
        if container_image:
            pkg = Path(bench.__file__).resolve().parent
            argv = [
                "docker",
                "run",
                "--rm",
                "--gpus",
                "all",
                "-v",
                f"{pkg}:/opt/dlsetup/gpucheck:ro",
                "-v",
                f"{peaks}:/opt/dlsetup/peaks.json:ro",
                *(["-v", f"{cifar_dir}:/opt/dlsetup/cifar:ro"] if cifar_dir else []),
                container_image,
                "python3",
                "/opt/dlsetup/gpucheck",
                "bench",
                *tail,
                "/opt/dlsetup/peaks.json",
                *(["--cifar-dir", "/opt/dlsetup/cifar"] if cifar_dir else []),
            ]
            env = dict(os.environ)
        else:
            argv = [python, "-m", "dlsetup.gpucheck.bench", *tail, str(peaks)]
            argv += ["--cifar-dir", cifar_dir] if cifar_dir else []
            env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
        if nvme_device:
            argv += ["--nvme-device", nvme_device]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except FileNotFoundError:
            return LocalResult(None, 2, f"{argv[0]} not found: the bench needs it", host)
        except subprocess.TimeoutExpired:
            return LocalResult(None, 1, f"the bench did not finish in {timeout:.0f} s", host)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if proc.returncode != 0 or not isinstance(doc, dict) or "error" in doc:
        why = (doc or {}).get("error") if isinstance(doc, dict) else None
        msg = why or proc.stderr.strip()[-1500:] or f"the bench exited {proc.returncode}"
        return LocalResult(None, 2 if proc.returncode in (0, 2) else 1, msg, host)
    return LocalResult(doc, 0, "", host)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `dlsetup bench`")
