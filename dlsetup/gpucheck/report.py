"""Rendering of a smoke-test Report: a plain-text table, or JSON.

Standard library only: this file runs on the target host with its python3.
"""

from __future__ import annotations

import json
import textwrap

from .checks import FAIL, SKIP, WARN, Report

WIDTH = 100
ID_WIDTH = 26


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False)


def _gpu_line(gpu: dict[str, object]) -> str:
    parts = ["GPU %s" % ("?" if gpu.get("index") is None else gpu.get("index"))]
    parts.append(str(gpu.get("name") or gpu.get("description") or "NVIDIA GPU"))
    if gpu.get("pci_bus_id"):
        parts.append("at {}".format(gpu["pci_bus_id"]))
    if gpu.get("memory_total_mib"):
        parts.append("{} MiB".format(gpu["memory_total_mib"]))
    if gpu.get("driver_version"):
        parts.append("driver {}".format(gpu["driver_version"]))
    pcie = gpu.get("pcie")
    if isinstance(pcie, dict) and pcie.get("width_current"):
        parts.append(
            "PCIe gen{} x{} (max gen{} x{})".format(
                pcie.get("gen_current"),
                pcie.get("width_current"),
                pcie.get("gen_max"),
                pcie.get("width_max"),
            )
        )
    return "  " + ", ".join(parts)


def render_table(report: Report) -> str:
    host = report.host
    lines = [
        "dlsetup GPU smoke test: {} ({}, kernel {}) [{}]".format(
            host.get("hostname") or "?",
            host.get("os") or "?",
            host.get("kernel") or "?",
            host.get("probe") or report.mode,
        ),
    ]
    for gpu in report.gpus:
        lines.append(_gpu_line(gpu))
    lines.append("")
    # The column fits the longest check id (nvidia-module-missing-for-kernel is 32).
    id_width = max([ID_WIDTH] + [len(c.id) for c in report.checks])
    lines.append(f"{'STATUS':<6} {'CHECK':<{id_width}} DETAILS")
    indent = " " * (7 + id_width + 1)
    for check in report.checks:
        wrapped = textwrap.wrap(check.message, WIDTH - len(indent)) or [""]
        lines.append(f"{check.status.upper():<6} {check.id:<{id_width}} {wrapped[0]}")
        lines.extend(indent + line for line in wrapped[1:])
        if check.remedy and check.status in (FAIL, WARN):
            fix = textwrap.wrap("fix: " + check.remedy, WIDTH - len(indent))
            lines.extend(indent + line for line in fix)
    counts = {
        status: sum(1 for c in report.checks if c.status == status) for status in (FAIL, WARN, SKIP)
    }
    lines.append("")
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(
        f"{verdict}: {len(report.checks)} checks, {counts[FAIL]} failed, {counts[WARN]} "
        f"warnings, {counts[SKIP]} skipped ({report.elapsed_s:.1f} s)"
    )
    return "\n".join(lines)
