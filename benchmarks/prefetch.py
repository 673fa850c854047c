#!/usr/bin/env python3
"""Does downloading the cuda stage's packages during the driver stage pay?

    .venv/bin/python benchmarks/prefetch.py [--pairs 2]

Full provisions of fresh boxes (the end-to-end tests' boxes: systemd
containers from the project's Debian 12 image, reached over SSH) that fetch
every package from Debian's mirror themselves, as a user's box does: no shared
cache, so the downloads are real. Each pair is one provision as dlsetup runs
it (the driver stage downloads CUDA's toolkit beside its own install) and one
with the download ahead turned off (`-e dlsetup_download_ahead=false`: the cuda
stage downloads it, as before). The order alternates within pairs (ABBA...),
so that a drift of the shared machine or of the mirror falls on both sides.

Writes docs/benchmarks/prefetch-<date>.md and .json, with the machine named.
Not part of the test suite: it reports numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from provision import commit, content_hash, loadavg, machine  # noqa: E402

from tests.boxes import dlsetup, make_key, remove_boxes, start_box, write_inventory  # noqa: E402

PREFIX = "dlsetup-bench-prefetch-"


def provision(work: Path, key: Path, pub: str, name: str, prefetch: bool) -> float:
    box = PREFIX + name
    try:
        b = start_box(box, pub)
        inv = write_inventory(
            work / name / "hosts.yml",
            key,
            # NVIDIA's repository is on the internet, out of reach here: as in
            # the demo, the Container Toolkit is left out.
            {name: {"ansible_host": b.address, "container_runtime_nvidia_toolkit": False}},
        )
        extra = [] if prefetch else ["-e", "dlsetup_download_ahead=false"]
        res = dlsetup("provision", "--host", name, "-i", str(inv), *extra, "--json", timeout=3600)
        if res.rc != 0:
            raise SystemExit(f"provision of {name} failed ({res.rc}):\n{res.stdout[-3000:]}")
        return res.seconds
    finally:
        remove_boxes([box])


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    on, off = r["with_s"], r["without_s"]
    med_on, med_off = statistics.median(on), statistics.median(off)
    return f"""# Downloading CUDA during the driver stage, {r["date"][:10]}

Made with `benchmarks/prefetch.py` at commit {r["commit"]}. Machine: {m["cpu"]}, {m["cores"]} cores,
{m["ram_gib"]} GiB RAM, kernel {m["kernel"]}, {m["os"]}, Docker {m["docker"]}.
Boxes are systemd containers from the project's Debian 12 image reached over SSH;
each fetches every package from Debian's mirror itself (no cache), as a user's box does.
Load average at the start {r["loadavg_start"]}, at the end {r["loadavg_end"]}.

| full provision of a fresh box | median | runs |
|---|---:|---|
| as dlsetup runs it (CUDA downloaded beside the driver's install) | {med_on:.1f} s | {on} |
| `-e dlsetup_download_ahead=false` (the cuda stage downloads it) | {med_off:.1f} s | {off} |

Difference of the medians: {med_off - med_on:.1f} s
(positive: the download ahead saved that much). Order of the runs: {r["order"]}.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pairs", type=int, default=2, help="pairs of provisions (with, without)")
    p.add_argument(
        "--work", default=str(REPO / ".cache" / "bench-prefetch"), help="scratch folder (keys)"
    )
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="where results go")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    key, pub = make_key(work)
    start, content = loadavg(), content_hash()
    runs: dict[bool, list[float]] = {True: [], False: []}
    order: list[str] = []
    for i in range(args.pairs):
        for prefetch in (True, False) if i % 2 == 0 else (False, True):
            t = provision(work, key, pub, f"p{i}{'a' if prefetch else 'b'}", prefetch)
            runs[prefetch].append(round(t, 1))
            order.append("with" if prefetch else "without")
            print(f"{'with' if prefetch else 'without'} the download ahead: {t:.1f} s", flush=True)
    if content_hash() != content:
        raise SystemExit("the collection changed during the run: results discarded")
    r = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "loadavg_start": start,
        "loadavg_end": loadavg(),
        "with_s": runs[True],
        "without_s": runs[False],
        "order": order,
    }
    out = Path(args.out)
    stem = out / f"prefetch-{r['date'][:10]}"
    stem.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
