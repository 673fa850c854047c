"""Rendering: live progress while a run goes, tables when it ends.

Everything here reads an :class:`~dlsetup.events.EventCollector`; nothing here
decides outcomes (that is events.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dlsetup.events import (
    EventCollector,
)
from dlsetup.exitcodes import ExitCode


class Progress:
    """Live per-host display on a terminal; plain task lines otherwise.

    Used as the runner's event handler: it forwards every event to the
    collector, then refreshes the display.
    """

    def __init__(
        self, collector: EventCollector, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.collector = collector
        self.console = Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.enabled = enabled
        self.live: Live | None = None
        self._last_task = ""

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=True
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __call__(self, event: dict[str, Any]) -> bool:
        self.collector.handle(event)
        if not self.enabled:
            return True
        if self.live is not None:
            self.live.update(self._render())
        else:
            self._plain(event)
        return True

    def _plain(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        if name == "playbook_on_play_start":
            self.console.print(f"PLAY  {data.get('play', '')}")
        elif name in ("runner_on_failed", "runner_on_unreachable") and not data.get(
            "ignore_errors"
        ):
            self.console.print(f"  FAILED  [{data.get('host')}] {data.get('task')}")
        elif name == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            self.console.print(f"  changed [{data.get('host')}] {data.get('task')}")

    def _render(self) -> Table:
        t = Table(title=f"dlsetup: {self.collector.play or 'starting'}", expand=False)
        for col in ("host", "current task", "ok", "changed", "failed", "skipped"):
            t.add_column(col, justify="left" if col in ("host", "current task") else "right")
        for host, hs in sorted(self.collector.hosts.items()):
            t.add_row(
                host,
                hs.current_task[:60],
                str(hs.ok),
                str(hs.changed),
                Text(str(hs.failed), style="red" if hs.failed else ""),
                str(hs.skipped),
            )
        return t


_NEXT_STEP: dict[int, str] = {
    ExitCode.BAD_INPUT: "Nothing was changed. Fix the input named above and run the same command "
    "again.",
    ExitCode.UNREACHABLE: "Check that the host is up and reachable over SSH (address, user, key), "
    "then run again.",
    ExitCode.SMOKE_FAILED: "The smoke test failed: each failed check above says how to fix it.",
    ExitCode.INTERRUPTED: "Interrupted. Every step is safe to repeat: run the same command again "
    "to resume.",
}


def summary_table(collector: EventCollector, status: str, title: str = "Summary") -> Group:
    t = Table(title=title)
    for col in (
        "host",
        "ok",
        "changed",
        "failed",
        "unreachable",
        "skipped",
        "reboot needed",
        "elapsed",
    ):
        t.add_column(col, justify="left" if col == "host" else "right")
    for host, hs in sorted(collector.hosts.items()):
        t.add_row(
            host,
            str(hs.ok),
            str(hs.changed),
            Text(str(hs.failed), style="bold red" if hs.failed else ""),
            Text("yes" if hs.unreachable else "no", style="bold red" if hs.unreachable else ""),
            str(hs.skipped),
            Text(
                "yes" if hs.reboot_required else "no", style="yellow" if hs.reboot_required else ""
            ),
            f"{hs.elapsed_s:.0f} s",
        )
    parts: list[Any] = [t]
    for host, hs in sorted(collector.hosts.items()):
        if hs.unchanged_stages:
            parts.append(
                Text(
                    f"  unchanged on {host} since its last converged run (checked in one read, "
                    f"tasks left out; --verify-all walks them): {', '.join(hs.unchanged_stages)}",
                    style="dim",
                )
            )
        for step in hs.skipped_steps:
            parts.append(
                Text(f"  skipped on {host}: {step['step']} ({step['reason']})", style="dim")
            )
        for f in hs.failures:
            head = "UNREACHABLE" if f.category == "unreachable" else "FAILED"
            parts.append(Text(f"{head}: {host}: {f.task}", style="bold red"))
            parts.append(Text("  " + f.msg.replace("\n", "\n  ")))
        if hs.reboot_required:
            parts.append(
                Text(
                    f"{host}: a reboot is needed to finish; run the same command again "
                    "after it (remote hosts are rebooted by the run itself).",
                    style="yellow",
                )
            )
    code = collector.exit_code(status)
    if code in _NEXT_STEP:
        parts.append(Text(_NEXT_STEP[code], style="bold"))
    parts.append(Text(f"finished in {collector.elapsed():.0f} s, exit code {code}"))
    return Group(*parts)


def plan_table(collector: EventCollector) -> Group:
    """What check mode says would change, per host and kind."""
    parts: list[Any] = []
    for host, hs in sorted(collector.hosts.items()):
        t = Table(title=f"Plan for {host}", show_lines=False)
        t.add_column("kind")
        t.add_column("would change")
        for ch in hs.changes:
            # Text, not markup: an item such as "/boot/efi" in brackets is not a style.
            t.add_row(Text(ch.kind), Text(ch.task + (f" [{ch.item}]" if ch.item else "")))
        if not hs.changes:
            t.add_row("-", "nothing: the host is already as asked")
        t.add_row("reboot", "a reboot would follow" if hs.reboot_required else "no reboot")
        parts.append(t)
        # A role's own plan, where it has one (disk_layout: partitions, filesystems, mounts).
        for name, rep in sorted(hs.reports.items()):
            plan = rep.get("plan") if isinstance(rep, dict) else None
            if isinstance(plan, list):  # a role hands its plan over as lines
                plan = "\n".join(str(line) for line in plan)
            if isinstance(plan, str) and plan.strip():
                parts.append(Text(f"{name.removesuffix('_report')} plan for {host}:", style="bold"))
                parts.append(Text(plan.rstrip()))
    return Group(*parts)


def smoke_table(smoke: dict[str, dict[str, Any] | None], collector: EventCollector) -> Group:
    """The smoke test's checks, one table per host (status, id, message and remedy)."""
    style = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
    parts: list[Any] = []
    for host in sorted(set(smoke) | set(collector.hosts)):
        doc = smoke.get(host)
        if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
            hs = collector.hosts.get(host)
            why = hs.failures[0].msg if hs and hs.failures else "the checks did not run"
            parts.append(Text(f"{host}: no smoke test report: {why}", style="bold red"))
            continue
        verdict = "passed" if doc.get("passed") else "FAILED"
        t = Table(title=f"Smoke test of {host}: {verdict}")
        t.add_column("status")
        t.add_column("check")
        t.add_column("details")
        for c in doc["checks"]:
            status = str(c.get("status", "?"))
            text = Text(str(c.get("message", "")))
            if c.get("remedy") and status in ("fail", "warn"):
                text.append("\nfix: " + str(c["remedy"]), style="italic")
            t.add_row(Text(status.upper(), style=style.get(status, "")), str(c.get("id")), text)
        for g in doc.get("gpus") or []:
            if isinstance(g, dict):
                parts.append(Text(f"{host}: GPU {g.get('index', '?')} {g.get('name') or ''}"))
        parts.append(t)
    return Group(*parts)


def print_json(doc: dict[str, Any], stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def _link_text(link: dict[str, Any]) -> str:
    """A PCIe link as dl.fact reports it: in use against what the device can do."""
    return (
        f"link {link.get('current_speed', '?')} x{link.get('current_width', '?')}"
        f" (max {link.get('max_speed', '?')} x{link.get('max_width', '?')})"
    )


def _nvme_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    """NVMe drives: health and link from the nvme role's facts (nvme.fact) when that
    stage ran, else the links dl.fact reads from sysfs and a hint to run it."""
    nvf = f.get("nvme_facts")
    if isinstance(nvf, dict):
        ctrls = [c for c in nvf.get("controllers") or [] if isinstance(c, dict)]
        if not ctrls:
            return [("NVMe", "no NVMe drives")]
        rows = []
        for c in ctrls:
            health = [
                f"critical warning {c.get('critical_warning', '?')}",
                f"{c.get('temperature_c', '?')} °C",
                f"{c.get('percentage_used', '?')} % used",
                f"{c.get('media_errors', '?')} media errors",
            ]
            rows.append(
                (
                    "NVMe",
                    f"{c.get('name')}: {c.get('model', '?')} (serial {c.get('serial', '?')}) "
                    f"fw {c.get('firmware', '?')}, {_link_text(c.get('link') or {})}; "
                    + ", ".join(health),
                )
            )
            rows += [("  warning", f"{c.get('name')}: {w}") for w in c.get("warnings") or []]
        return rows
    sysfs = [n for n in f.get("nvme") or [] if isinstance(n, dict)]
    rows = [
        (
            "NVMe",
            f"{n.get('name')}: {n.get('model', '?')} fw {n.get('firmware', '?')}"
            f", {_link_text(n.get('link') or {})}",
        )
        for n in sysfs
    ]
    if not rows:
        return [("NVMe", "no NVMe drives (no NVMe facts: run the nvme stage for health)")]
    return [*rows, ("NVMe health", "no NVMe facts (run the nvme stage)")]


# The smoke test's check id (dlsetup/gpucheck/checks.py), so that `dlsetup facts`
# and `dlsetup smoke` name a kernel without the module the same way.
MODULE_FOR_KERNEL_CHECK = "nvidia-module-missing-for-kernel"

_MODULE_WORDS = {
    "built": "NVIDIA module built",
    "missing": "NVIDIA module not built (headers installed: DKMS can build it)",
    "no-headers": "NVIDIA module not built (no headers: it cannot be built)",
}


def _kernel_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    """Installed kernels (nvidia_driver_state's list, via dl_facts) and the NVIDIA
    module for each, the running one marked; a warning, worded as the smoke test's
    check, for each kernel the box can boot without the module. The list is DKMS's
    view (``dkms status``): no warning when DKMS built the module for no kernel (no
    driver here, or one from precompiled module packages: the smoke test, which asks
    modinfo, judges those), and the running kernel counts as having the module when
    nvidia is loaded."""
    kernels = f.get("kernels")
    if not isinstance(kernels, list):
        return []  # facts from before the kernel listing
    if not kernels:
        return [("kernels", "none found (/lib/modules/<v> with /boot/vmlinuz-<v>)")]
    loaded = bool((f.get("kernel_modules") or {}).get("nvidia"))
    running = str(f.get("running_kernel") or "?")
    rows: list[tuple[str, str]] = []
    missing: list[str] = []
    by_dkms = any(k.get("module") == "built" for k in kernels)
    for k in kernels:
        name = str(k.get("kernel", "?"))
        state = str(k.get("module", "?"))
        if state == "built" and k.get("dkms"):
            word = f"NVIDIA module built ({k['dkms']})"
        elif state != "built" and k.get("running") and loaded:
            word, state = "NVIDIA module loaded (not built by DKMS)", "built"
        else:
            word = _MODULE_WORDS.get(state, f"NVIDIA module {state}")
        if state != "built":
            missing.append(name)
        rows.append(("kernel", f"{name}{' (running)' if k.get('running') else ''}: {word}"))
    if not by_dkms:
        return rows
    for name in missing:
        if name == running:
            text = f"no nvidia module for the running kernel {running} (see nvidia-module-missing)"
        else:
            text = (
                f"no nvidia module for kernel {name}, which the box can boot (running: "
                f"{running}): a reboot into it leaves the box without a GPU"
            )
        rows.append(("  warning", f"{MODULE_FOR_KERNEL_CHECK}: {text}"))
    return rows


def facts_table(facts: dict[str, dict[str, Any]]) -> Group:
    """The dl_facts of each host as a readable table."""
    parts: list[Any] = []
    for host, f in sorted(facts.items()):
        t = Table(title=f"{host}", show_header=False)
        t.add_column("what", style="bold")
        t.add_column("value")
        osf = f.get("os") or {}
        t.add_row(
            "OS",
            f"{osf.get('name', '?')} {osf.get('version', '')} (kernel {osf.get('kernel', '?')})",
        )
        cpu = f.get("cpu") or {}
        phys = (
            f" ({cpu['physical_cores']} physical in {cpu.get('sockets') or '?'} socket(s))"
            if cpu.get("physical_cores")
            else ""
        )
        t.add_row("CPU", f"{cpu.get('model', '?')}, {cpu.get('cores', '?')} threads{phys}")
        mem = f.get("memory_bytes")
        t.add_row("RAM", f"{mem / 2**30:.1f} GiB" if isinstance(mem, int | float) else "?")
        t.add_row("virtualization", str(f.get("virtualization", "?")))
        t.add_row("boot / Secure Boot", f"{f.get('boot_mode', '?')} / {f.get('secure_boot', '?')}")
        gpus = f.get("gpus") or []
        if gpus:
            for g in gpus:
                linktxt = f", {_link_text(g['link'])}" if g.get("link") else ""
                if g.get("driver"):
                    linktxt += f", kernel driver {g['driver']}"
                t.add_row(
                    "GPU",
                    f"{g.get('name') or g.get('pci_id')} [{g.get('pci_id')}] at "
                    f"{g.get('address')}{linktxt}",
                )
        else:
            t.add_row("GPU", "no GPU found")
        mods = f.get("kernel_modules") or {}
        t.add_row(
            "kernel modules",
            ", ".join(
                f"{k}: {'loaded' if v else 'not loaded'}"
                for k, v in mods.items()
                if isinstance(v, bool)
            ),
        )
        for what, value in _kernel_rows(f):
            t.add_row(what, value)
        ver = f.get("versions") or {}
        t.add_row(
            "driver / CUDA / cuDNN",
            " / ".join(str(ver.get(k) or "none") for k in ("driver", "cuda", "cudnn")),
        )
        for what, value in _nvme_rows(f):
            t.add_row(what, value)
        for d in f.get("disks") or []:
            ids = d.get("by_id") or []
            t.add_row(
                "disk",
                f"{d.get('path')} {d.get('size_bytes', 0) / 1e9:.0f} GB "
                f"{d.get('model') or ''} {('by-id ' + ids[0]) if ids else ''}".strip(),
            )
        parts.append(t)
    return Group(*parts)


def console(stream: TextIO | None = None) -> Console:
    return Console(file=stream or sys.stdout, highlight=False)
