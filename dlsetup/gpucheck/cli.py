"""Command line of the smoke test.

    python3 -m dlsetup.gpucheck [--json] [--capture DIR | --replay DIR]
                                [--container-image IMG] [--timeout S] [--python PY]
    python3 /path/to/gpucheck ...          (the package copied as a directory)
    python3 /path/to/gpucheck bench ...    (the bench, see bench.py)

Exit status: 0 no check failed, 4 a check failed (the smoke test ran and
failed), 2 bad arguments or a replay folder that is not a readable capture (the
message names what is missing), 130 interrupted.

Standard library only: this file runs on the target host with its python3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .checks import Options, run_checks
from .exitcodes import ExitCode
from .probe import BundleError, CapturingProbe, LiveProbe, Probe, ReplayProbe
from .report import render_json, render_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucheck",
        description="GPU smoke test of a deep-learning server: driver, CUDA, cuDNN, PCIe, "
        "container runtime, NVMe, PyTorch. Exit 0 when no check failed, 4 when one did.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--capture",
        metavar="DIR",
        help="run live and record every input into the bundle DIR (for a later --replay)",
    )
    mode.add_argument(
        "--replay",
        metavar="DIR",
        help="run offline from a bundle written by --capture: the same verdicts as the "
        "captured run, no hardware touched",
    )
    parser.add_argument(
        "--container-image",
        metavar="IMG",
        help="a LOCAL image with nvidia-smi (e.g. nvidia/cuda:12.2.2-base-ubuntu22.04) for the "
        "container runtime check; never pulled. On --replay the captured value is the default.",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=20.0,
        help="seconds one command may take (default 20); the whole run stays under 60 s",
    )
    parser.add_argument(
        "--python",
        metavar="PY",
        default="python3",
        help="interpreter whose torch the pytorch check tests (default python3)",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def make_probe(args: argparse.Namespace) -> Probe:
    if args.replay:
        return ReplayProbe(args.replay)
    if args.capture:
        meta = {
            "gpucheck_version": __version__,
            "python": sys.version.split()[0],
            "options": {"container_image": args.container_image, "python": args.python},
        }
        return CapturingProbe(LiveProbe(), args.capture, meta)
    return LiveProbe()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main  # noqa: PLC0415 (loaded only for bench)

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print("gpucheck: --timeout must be positive", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        probe = make_probe(args)
    except (BundleError, OSError) as exc:
        print(f"gpucheck: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    container_image = args.container_image
    if isinstance(probe, ReplayProbe) and container_image is None:
        container_image = (probe.meta.get("options") or {}).get("container_image")
    options = Options(container_image=container_image, timeout=args.timeout, python=args.python)
    try:
        report = run_checks(probe, options)
    except KeyboardInterrupt:
        print("gpucheck: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        try:
            probe.close()
        except OSError as exc:
            print(f"gpucheck: cannot write the capture bundle: {exc}", file=sys.stderr)
    if args.capture:
        try:
            with open(os.path.join(args.capture, "report.json"), "w", encoding="utf-8") as fh:
                json.dump(report.to_json(), fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            print(f"gpucheck: cannot write report.json: {exc}", file=sys.stderr)
    print(render_json(report) if args.json else render_table(report))
    return report.exit_code
