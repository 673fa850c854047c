"""`dlsetup compat`: arguments, the text report, the GPU list."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ansible_collections.dlsetup.box.plugins.module_utils.compat.check import check
from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import load
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    Gpu,
    Report,
    _compact,
    _norm,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.rules import _distinct

from dlsetup.exitcodes import ExitCode

# ================================================================ output


def format_report(report: Report) -> str:
    """A readable multi-line text of a :class:`Report`."""
    lines: list[str] = []
    for g in _distinct(report.gpus):
        n = sum(1 for x in report.gpus if x == g)
        count = f"{n} x " if n > 1 else ""
        lines.append(
            f"GPU:      {count}{g.name} [{g.pci_id}] - {g.arch.name}, "
            f"compute capability {g.compute_capability} ({g.sm})"
        )
        if g.note:
            lines.append(f"          {' '.join(g.note.split())}")
    asked = [
        f"{k.replace('_', ' ')} {v}"
        for k, v in report.inputs.items()
        if v is not None and k != "gpu"
    ]
    lines.append("Checked:  " + (", ".join(asked) if asked else "GPU support only"))
    lines.append(
        "Result:   "
        + (
            "OK - this combination works"
            if report.ok
            else "NOT OK - this combination does not work"
        )
    )
    for p in report.problems:
        lines.append(f"  x [{p.field}] {p.message}")
    for w in report.warnings:
        lines.append(f"  ! [{w.field}] {w.message}")
    for n_ in report.notes:
        lines.append(f"  - {n_}")
    if report.suggestion is not None:
        lines.append(f"Newest combination that works: {report.suggestion.describe()}")
        for note in report.suggestion.notes:
            lines.append(f"  - {' '.join(note.split())}")
    elif report.suggestion_missing_reason:
        lines.append(f"No combination works: {report.suggestion_missing_reason}")
    return "\n".join(lines)


def _branches(g: Gpu) -> str:
    lo = f"R{g.min_branch}" if g.min_branch else "old"
    hi = f"R{g.max_branch}" if g.max_branch else "current"
    return f"{lo}..{hi}"


def _gpu_table(text: str = "") -> str:
    """The GPU table, or the models whose name, alias, PCI id or chip holds ``text``."""
    data = load()
    want = _norm(text)
    rows = [
        f"{'GPU':<40} {'PCI id(s)':<20} {'architecture':<13} {'cc':>4} {'branches':<12} "
        "open  source"
    ]
    for g in data.gpus:
        hay = " ".join(_norm(n) for n in (g.name, *g.aliases, *g.pci_ids, *g.chips))
        if want and want not in hay and _compact(want) not in _compact(hay):
            continue
        ids = ",".join(g.pci_ids)
        ids = ids if len(ids) <= 20 else ids[:17] + "..."
        source = f"listed R{g.listed_in[-1].split('.')[0]}" if g.listed_in else "inferred"
        rows.append(
            f"{g.name[:40]:<40} {ids:<20} {g.arch.name[:13]:<13} "
            f"{g.compute_capability or '-':>4} {_branches(g):<12} "
            f"{'yes' if g.open_kernel_modules else 'no':<5} {source}"
        )
    if len(rows) == 1:
        return f"no GPU in the data matches {text!r}"
    return "\n".join(rows)


def _data_origin() -> str:
    """Where the GPU table comes from, for --help and --list-gpus."""
    data = load()
    lists = ", ".join(data.driver_lists) or "none"
    fetched = sorted({e.get("fetched", "") for e in data.gpu_inputs} - {""})
    return (
        f"GPU data: generated from NVIDIA's supported-gpus.json of drivers {lists} and "
        f"pci.ids {data.pci_ids_version or '?'} (Debian packages, fetched "
        f"{', '.join(fetched) or '?'}); CUDA, cuDNN, architecture and distribution "
        "tables: hand-kept in compat.yml with their sources (collection dlsetup.box, "
        "plugins/module_utils/compat/data/)."
    )


# ================================================================ CLI

EPILOG = """\
examples:
  dlsetup compat --gpu "RTX 3060" --driver 550 --cuda 12.4
      Names as people type them: "RTX 3060", "3060", "GeForce RTX 3060 Ti", "A4000".
  dlsetup compat --gpu 10de:2504 --driver 550
      A PCI id as lspci -nn prints it (also 2504 or 0x2504).
  dlsetup compat --gpu "GTX 1080 Ti" --driver 580 --cuda 12.9
      Pascal on the last branch that drives it, with the last CUDA major for it: OK.
  dlsetup compat --gpu "Tesla K80" --cuda 12.4
      NOT OK: CUDA 12 dropped Kepler; the report suggests R470 + CUDA 11.4.
  dlsetup compat --gpu "RTX 5090" --kernel-modules proprietary
      NOT OK: Blackwell runs only with the open kernel modules.
  dlsetup compat --gpu "GTX 1080" --gpu "RTX 3090" --cuda 13.0
      Multi-GPU box: every GPU must be supported (CUDA 13 dropped Pascal).
  dlsetup compat --gpu "GTX 970" --distro debian-12
      What Debian 12's own packages (driver 535, CUDA 11.8) give this GPU.
  dlsetup compat --gpu "H100 NVL" --cuda 12.4 --cudnn 9 --json
      Machine-readable report (exit code 0 when OK, 2 when not).
  dlsetup compat --list-gpus 3060
      The GPUs whose name, PCI id or chip holds "3060".

where the data comes from:
  Every NVIDIA device id NVIDIA's own driver lists name (supported-gpus.json of
  several driver releases, as Debian ships them), plus the newer ids pci.ids
  knows, placed by their chip codename (GA106 -> Ampere, sm_86); "inferred" in
  --list-gpus marks those. CUDA / cuDNN / architecture / distribution tables are
  hand-kept in compat.yml, each with its source. Both live in the collection
  dlsetup.box, plugins/module_utils/compat/data/ (gpus.json generated, sources/
  its inputs with package versions and fetch dates).
  Refresh: scripts/update-compat-data --fetch (downloads the packages) or
  --offline (regenerates from the committed inputs); it prints what changed.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compat`` options to ``parser`` (the main CLI mounts it as a subcommand)."""
    parser.description = parser.description or (
        "Check whether a GPU (or several) works with a driver branch, CUDA toolkit, "
        "cuDNN and kernel module flavor, and print the newest combination that does."
    )
    parser.epilog = parser.epilog or EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--gpu",
        action="append",
        metavar="NAME_OR_PCI_ID",
        help="GPU model name or PCI id; repeat for each GPU of a multi-GPU box",
    )
    parser.add_argument(
        "--driver", metavar="BRANCH_OR_VERSION", help="driver branch (535) or version (535.261.03)"
    )
    parser.add_argument("--cuda", metavar="X.Y", help="CUDA toolkit version, e.g. 12.4")
    parser.add_argument("--cudnn", metavar="N[.M]", help="cuDNN version, e.g. 9 or 9.10")
    parser.add_argument(
        "--kernel-modules", metavar="open|proprietary|auto", help="NVIDIA kernel module flavor"
    )
    parser.add_argument(
        "--distro",
        metavar="NAME",
        help="take driver and CUDA from a distribution's packages when not "
        "given: debian-12, debian-13, ubuntu-22.04, ubuntu-24.04",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--list-gpus",
        nargs="?",
        const="",
        default=None,
        metavar="TEXT",
        help="list the GPUs in the data (those whose name, PCI id or chip holds TEXT)",
    )


def _emit(text: str) -> None:
    """Print, surviving a reader that stops early (``| head``)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader is gone: point stdout at /dev/null so the exit flush is quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    """Run ``dlsetup compat``; 0 when the combination fits, 2 when not (or bad input)."""
    listing = getattr(args, "list_gpus", None)
    if listing is not None:
        _emit(_gpu_table(listing) + "\n\n" + _data_origin())
        return ExitCode.OK
    if not args.gpu:
        print("dlsetup compat: --gpu NAME_OR_PCI_ID is required (or --list-gpus)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    report = check(
        args.gpu,
        driver=args.driver,
        cuda=args.cuda,
        cudnn=args.cudnn,
        kernel_modules=args.kernel_modules,
        distro=args.distro,
    )
    _emit(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return ExitCode.OK if report.ok else ExitCode.BAD_INPUT


def cli(argv: list[str] | None = None) -> int:
    """``dlsetup compat`` as a stand-alone entry point (``python -m dlsetup.compat``)."""
    parser = argparse.ArgumentParser(prog="dlsetup compat")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help exits 0, bad usage 2
        return e.code if isinstance(e.code, int) else ExitCode.BAD_INPUT
    return run(args)


if __name__ == "__main__":
    sys.exit(cli())
