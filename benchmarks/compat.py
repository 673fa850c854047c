#!/usr/bin/env python3
"""How long `dlsetup compat` takes for one GPU, now that its table holds every NVIDIA id.

    .venv/bin/python benchmarks/compat.py [--repeat 15]

Runs the installed console script (`.venv/bin/dlsetup compat ...`) as a user
does, a fresh process each time, and reports the median and worst wall time
of --repeat runs for a few queries (a PCI id, a name, a partial name, a check
with versions, --list-gpus with a filter); then the in-process cost of the
parts (loading the data, one lookup). Target (issue 11): under 0.5 s wall per
run. Writes docs/benchmarks/compat-<date>.md with the machine named (CPU,
cores, RAM, kernel, from /proc) and the load average. Not part of the test
suite: it reports numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DLSETUP = Path(sys.executable).with_name("dlsetup")
TARGET_S = 0.5
QUERIES = [
    ["--gpu", "10de:2504", "--driver", "550"],
    ["--gpu", "RTX 3060"],
    ["--gpu", "3060", "--driver", "580", "--cuda", "12.8", "--cudnn", "9"],
    ["--gpu", "10de:06c0", "--driver", "470"],
    ["--list-gpus", "A100"],
]


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.1f} GiB RAM, "
        f"kernel {platform.release()}, Python {platform.python_version()}"
    )


def wall(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([str(DLSETUP), "compat", *argv], capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return times


def floors(repeat: int) -> dict[str, float]:
    """Median seconds of what every run pays before compat does anything."""
    out = {}
    for label, code in (
        ("Python start-up alone", "pass"),
        ("Python + `import dlsetup.cli` (the whole CLI's imports)", "import dlsetup.cli"),
    ):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times)
    return out


def in_process() -> dict[str, float]:
    """Milliseconds for the parts, in this process (imports warm, caches cold)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "collections")]
    t0 = time.perf_counter()
    from ansible_collections.dlsetup.box.plugins.module_utils import compat  # noqa: PLC0415

    t1 = time.perf_counter()
    data = compat.load()
    t2 = time.perf_counter()
    compat.find_gpu("10de:2504")
    t3 = time.perf_counter()
    compat.find_gpu("RTX 3060")
    t4 = time.perf_counter()
    compat.check("10de:2504", driver="550", cuda="12.4")
    t5 = time.perf_counter()
    return {
        "import the compat engine (module_utils.compat)": (t1 - t0) * 1e3,
        f"load() ({len(data.gpus)} models, {len(data.by_pci_id)} PCI ids)": (t2 - t1) * 1e3,
        "find_gpu by PCI id": (t3 - t2) * 1e3,
        "find_gpu by name (builds the name index)": (t4 - t3) * 1e3,
        "check() one GPU with driver and CUDA": (t5 - t4) * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    load_start = os.getloadavg()
    rows = []
    for argv in QUERIES:
        times = wall(argv, args.repeat)
        med, worst = statistics.median(times), max(times)
        verdict = "meets the target" if med < TARGET_S else "**misses the target**"
        shown = " ".join(a if " " not in a else f'"{a}"' for a in argv)
        rows.append(f"| `dlsetup compat {shown}` | {med:.3f} s | {worst:.3f} s | {verdict} |")
    base = floors(args.repeat)
    parts = in_process()
    load_end = os.getloadavg()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    today = dt.date.today().isoformat()
    text = "\n".join(
        [
            f"# `dlsetup compat` benchmark, {today}",
            "",
            f"Made with `benchmarks/compat.py --repeat {args.repeat}` at commit {commit}: "
            "each query runs the installed `dlsetup` console script in a fresh process, "
            f"as a user does. Target (issue 11): under {TARGET_S} s wall (the median of "
            "the runs; the worst shows what the shared machine's other work adds).",
            "",
            f"Machine: {machine()}.",
            "Load average (1, 5, 15 min) at the start "
            + " ".join(f"{x:.2f}" for x in load_start)
            + ", at the end "
            + " ".join(f"{x:.2f}" for x in load_end)
            + " (the machine is shared: other work slows every run).",
            "",
            "| query | median | worst | target |",
            "|---|---:|---:|---|",
            *rows,
            "",
            "What every run pays first (median, fresh processes):",
            "",
            *[f"- {k}: {v:.3f} s" for k, v in base.items()],
            "",
            "In-process parts (one run, caches cold):",
            "",
            *[f"- {k}: {v:.1f} ms" for k, v in parts.items()],
            "",
        ]
    )
    out = ROOT / "docs" / "benchmarks" / f"compat-{today}.md"
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
