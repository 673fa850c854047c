"""The smoke test's checks: each one has a stable id and reads only through a Probe.

Check ids name the fault they look for: ``pass`` means the fault is absent,
``fail`` means it is there (overall exit 4), ``warn`` is worth a look but does
not fail the run, ``skip`` says why the check could not be judged. Every fail
and warn carries a remedy a person can act on.

Order matters: later checks read what earlier ones found (the GPUs, the
driver state), and ``cuda-driver-api`` puts the load on the GPUs under which
``pcie-link-degraded`` reads the link.

Every value a check decides on comes through the Probe: files, directory
listings, symlinks, commands, PATH look-ups, and the in-process calls
(``Probe.call``: cuDriverGetVersion, the CUDA self-test, cuDNN's handle test).
A capture records them all, so a replay of it reaches the live verdicts; no
check asks whether the probe is live.

Standard library only: this file runs on the target host with its python3.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import bench, cuda, cuda_drivers
from .exitcodes import ExitCode
from .parse import (
    GPU_CLASSES,
    NVIDIA_VENDOR,
    cuda_version_from_int,
    lib_version,
    parse_cuda_version_json,
    parse_cuda_version_txt,
    parse_cudnn_header,
    parse_ldconfig_p,
    parse_link_speed,
    parse_lspci_k,
    parse_lspci_nn,
    parse_nvcc_version,
    parse_nvidia_kernel_version,
    parse_os_release,
    parse_proc_modules,
    parse_smi_csv,
    parse_smi_header,
    parse_smi_q,
    parse_uevent,
    smi_invalid_field,
    to_int,
    version_tuple,
)
from .pci_gpus import SYSFS_PCI_DEVICES, scan_pci
from .probe import CommandResult, Probe

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

CHECK_IDS = (
    "nvidia-gpu-present",
    "nouveau-loaded",
    "nvidia-module-missing",
    "nvidia-module-missing-for-kernel",
    "driver-library-mismatch",
    "nvidia-smi",
    "gpu-ecc-errors",
    "gpu-throttling",
    "gpu-persistence-mode",
    "cuda-driver-api",
    "pcie-link-degraded",
    "cuda-driver-too-old",
    "cudnn-missing",
    "container-runtime-missing",
    "nvme-link-degraded",
    "nvme-health",
    "pytorch",
)
INTERNAL_ERROR = "internal-error"

LIB_DIRS = (
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu/nvidia/current",
    "/usr/lib64",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/wsl/lib",
)
CUDNN_HEADERS = (
    "/usr/include/cudnn_version.h",
    "/usr/include/x86_64-linux-gnu/cudnn_version_v9.h",
    "/usr/include/x86_64-linux-gnu/cudnn_version_v8.h",
    "/usr/local/cuda/include/cudnn_version.h",
)
NVME_FACTS = "/etc/ansible/facts.d/nvme.fact"

SMI_FIELDS = (
    "index",
    "pci.bus_id",
    "name",
    "uuid",
    "driver_version",
    "memory.total",
    "memory.used",
    "temperature.gpu",
    "pstate",
    "persistence_mode",
    "compute_cap",
    "ecc.mode.current",
    "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.single_bit_ecc.count",
    "retired_pages.double_bit.count",
    "retired_pages.pending",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
    "clocks_throttle_reasons.active",
    "clocks_throttle_reasons.hw_slowdown",
    "clocks_throttle_reasons.hw_thermal_slowdown",
    "clocks_throttle_reasons.hw_power_brake_slowdown",
    "clocks_throttle_reasons.sw_thermal_slowdown",
)
SMI_REQUIRED = ("index", "pci.bus_id", "name", "driver_version", "memory.total")
# Fields nvidia-smi renamed: the new name is asked first, the old one when this driver's
# nvidia-smi rejects it (the 610 series deprecates driver_version for kmd_version, to be
# removed in CUDA 14.0). Rows carry the old (SMI_FIELDS) name either way.
SMI_NEWER_NAMES = {"driver_version": "kmd_version"}
LSPCI = ["lspci", "-nnk"]  # -k adds each device's "Kernel driver in use"
PCIE_FIELDS = (
    "index",
    "pci.bus_id",
    "pstate",
    "utilization.gpu",
    "clocks_throttle_reasons.gpu_idle",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
)
THROTTLE_FIELDS = {
    "clocks_throttle_reasons.hw_slowdown": "hardware slowdown (power cables, PSU, or overheating)",
    "clocks_throttle_reasons.hw_thermal_slowdown": "hardware thermal slowdown",
    "clocks_throttle_reasons.hw_power_brake_slowdown": "power brake (external power-brake signal)",
    "clocks_throttle_reasons.sw_thermal_slowdown": "driver thermal slowdown",
}
TORCH_PROBE = r"""# dlsetup-gpucheck torch-probe v1
import json, sys, warnings
out = {"torch": None}
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        out["torch"] = torch.__version__
        out["cuda_build"] = torch.version.cuda
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["device_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
    out["warnings"] = [str(w.message).strip()[:300] for w in caught][:5]
    if out["cuda_available"]:
        out["devices"] = [torch.cuda.get_device_name(i) for i in range(out["device_count"])]
        cudnn = torch.backends.cudnn
        out["cudnn"] = cudnn.version() if cudnn.is_available() else None
        torch.backends.cuda.matmul.allow_tf32 = False
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(512, 512, generator=gen, dtype=torch.float64)
        b = torch.rand(512, 512, generator=gen, dtype=torch.float64)
        ref = a @ b
        errs = []
        for i in range(out["device_count"]):
            dev = torch.device("cuda", i)
            got = (a.float().to(dev) @ b.float().to(dev)).double().cpu()
            errs.append(float(((got - ref).abs() / ref.abs()).max()))
        out["matmul_max_rel_err"] = errs
except ImportError as exc:
    out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(out))
"""
MATMUL_TOLERANCE = 1e-3


@dataclass
class CheckResult:
    id: str
    status: str
    message: str
    remedy: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "remedy": self.remedy,
        }


@dataclass
class Options:
    container_image: str | None = None
    timeout: float = 20.0  # one command at most
    budget: float = 55.0  # the whole run
    python: str = "python3"  # the interpreter the pytorch check runs


@dataclass
class Report:
    checks: list[CheckResult]
    host: dict[str, Any]
    gpus: list[dict[str, Any]]
    mode: str
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.passed else ExitCode.SMOKE_FAILED

    def check(self, check_id: str) -> CheckResult | None:
        for result in self.checks:
            if result.id == check_id:
                return result
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "host": self.host,
            "gpus": self.gpus,
            "mode": self.mode,
            "elapsed_s": round(self.elapsed_s, 2),
        }


def normalize_bus_id(bus_id: str | None) -> str | None:
    """'00000000:01:00.0' (nvidia-smi), '01:00.0' (lspci) -> '0000:01:00.0' (sysfs)."""
    if not bus_id:
        return None
    match = re.match(r"^(?:([0-9a-fA-F]+):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$", bus_id)
    if not match:
        return bus_id.lower()
    domain = int(match.group(1) or "0", 16)
    return f"{domain:04x}:{match.group(2).lower()}:{match.group(3).lower()}.{match.group(4)}"


@dataclass
class Context:
    """What the checks share: the probe, the options, and the facts found so far."""

    probe: Probe
    options: Options
    started: float = field(default_factory=time.monotonic)
    results: list[CheckResult] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    pcie_reading: list[dict[str, Any]] | None = None  # read under the CUDA self-test's load
    cuda_report: cuda.CudaReport | None = None

    # -- plumbing ---------------------------------------------------------
    def remaining(self) -> float:
        return self.options.budget - (time.monotonic() - self.started)

    def run(self, argv: list[str], timeout: float | None = None) -> CommandResult:
        budget = self.remaining()
        # A spent budget is the probe's answer too (timeout 0), so a capture records it.
        budget = budget if budget >= 1.0 else 0.0
        return self.probe.run(argv, min(timeout or self.options.timeout, budget))

    def read(self, path: str) -> str | None:
        return self.probe.read_file(path)

    def status(self, check_id: str) -> str | None:
        for result in self.results:
            if result.id == check_id:
                return result.status
        return None

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    # -- facts ------------------------------------------------------------
    def kernel_release(self) -> str:
        text = self.read("/proc/sys/kernel/osrelease")
        return text.strip() if text else "unknown"

    def pci_devices(self) -> list[dict[str, Any]] | None:
        def load() -> list[dict[str, Any]] | None:
            devices: list[dict[str, Any]] | None = scan_pci(self.probe.list_dir, self.read)
            for device in devices or []:
                if device["nvidia_gpu"]:
                    base = SYSFS_PCI_DEVICES + "/" + device["slot"]
                    device.update(self._sysfs_driver(base))
                    for attr in ("current_link_speed", "max_link_speed"):
                        device[attr] = parse_link_speed(self.read(base + "/" + attr))
                    for attr in ("current_link_width", "max_link_width"):
                        device[attr] = to_int(self.read(base + "/" + attr))
            return devices

        result: list[dict[str, Any]] | None = self.memo("pci", load)
        return result

    def _sysfs_driver(self, base: str) -> dict[str, Any]:
        """The driver bound to a PCI device: its ``driver`` link, else its uevent's DRIVER."""
        link = self.probe.read_link(base + "/driver")
        if link:
            return {
                "driver": os.path.basename(link.rstrip("/")),
                "driver_source": "sysfs driver link",
            }
        uevent = parse_uevent(self.read(base + "/uevent"))
        if uevent.get("DRIVER"):
            return {"driver": uevent["DRIVER"], "driver_source": "sysfs uevent"}
        return {"driver": None, "driver_source": None}

    def lspci(self) -> CommandResult:
        result: CommandResult = self.memo("lspci", lambda: self.run(LSPCI))
        return result

    def modules(self) -> dict[str, dict[str, Any]] | None:
        def load() -> dict[str, dict[str, Any]] | None:
            text = self.read("/proc/modules")
            return None if text is None else parse_proc_modules(text)

        result: dict[str, dict[str, Any]] | None = self.memo("modules", load)
        return result

    def kernel_module_version(self) -> tuple[str | None, str]:
        for path in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version"):
            version = parse_nvidia_kernel_version(self.read(path))
            if version:
                return version, path
        return None, ""

    def nvidia_module_loaded(self) -> bool:
        modules = self.modules() or {}
        return any(name in modules for name in ("nvidia", "nvidia_current"))

    def smi_plain(self) -> CommandResult:
        result: CommandResult = self.memo("smi", lambda: self.run(["nvidia-smi"]))
        return result

    def smi_query(self) -> tuple[list[dict[str, str | None]], CommandResult, list[str]]:
        """The per-GPU query; renamed fields fall back to their old name, and fields this
        driver's nvidia-smi rejects are dropped, each with a retry."""
        value: tuple[list[dict[str, str | None]], CommandResult, list[str]] = self.memo(
            "smi_query", self._load_smi_query
        )
        return value

    def _load_smi_query(self) -> tuple[list[dict[str, str | None]], CommandResult, list[str]]:
        asked = [SMI_NEWER_NAMES.get(f, f) for f in SMI_FIELDS]
        older = {new: old for old, new in SMI_NEWER_NAMES.items()}
        dropped: list[str] = []
        while True:
            result = self.run(
                ["nvidia-smi", "--query-gpu=" + ",".join(asked), "--format=csv,noheader,nounits"]
            )
            bad = smi_invalid_field(result.output) if not result.ok else None
            if bad in older and bad in asked:
                asked[asked.index(bad)] = older[bad]
                continue
            if bad and bad in asked and bad not in SMI_REQUIRED:
                asked.remove(bad)
                dropped.append(bad)
                continue
            self.cache["smi_driver_field"] = SMI_NEWER_NAMES["driver_version"]
            if SMI_NEWER_NAMES["driver_version"] not in asked:
                self.cache["smi_driver_field"] = "driver_version"
            rows = parse_smi_csv(result.stdout, asked) if result.ok else []
            for row in rows:
                for new, old in older.items():
                    if new in row:
                        row[old] = row.pop(new)
            return rows, result, dropped

    def smi_driver_field(self) -> str:
        """The --query-gpu name of the driver version this nvidia-smi answered."""
        self.smi_query()
        return str(self.cache.get("smi_driver_field", "driver_version"))

    def smi_rows(self) -> list[dict[str, str | None]]:
        return self.smi_query()[0]

    def read_pcie(self) -> list[dict[str, Any]]:
        result = self.run(
            ["nvidia-smi", "--query-gpu=" + ",".join(PCIE_FIELDS), "--format=csv,noheader,nounits"]
        )
        rows = parse_smi_csv(result.stdout, list(PCIE_FIELDS)) if result.ok else []
        return [dict(row) for row in rows]

    def ldconfig(self) -> list[tuple[str, str]]:
        def load() -> list[tuple[str, str]]:
            result = self.run(["ldconfig", "-p"])
            return parse_ldconfig_p(result.stdout) if result.ok else []

        value: list[tuple[str, str]] = self.memo("ldconfig", load)
        return value

    def find_libs(self, stem: str) -> list[str]:
        """Paths of ``<stem>.so*`` in the loader cache's directories and the usual ones."""
        prefix = stem + ".so"
        dirs = list(LIB_DIRS)
        for soname, path in self.ldconfig():
            if soname.startswith(prefix):
                dirs.append(os.path.dirname(path))
        found: dict[str, str] = {}  # file name -> first path seen (/lib and /usr/lib alias)
        seen_dirs: set[str] = set()
        for directory in dirs:
            real = os.path.normpath(directory)
            if real in seen_dirs:
                continue
            seen_dirs.add(real)
            for name in self.probe.list_dir(real) or []:
                if name == prefix or name.startswith(prefix + "."):
                    found.setdefault(name, real + "/" + name)
        for soname, path in self.ldconfig():
            if soname == prefix or soname.startswith(prefix + "."):
                found.setdefault(soname, path)
        return list(found.values())

    def toolkit_version(self) -> tuple[str | None, str]:
        version = parse_cuda_version_json(self.read("/usr/local/cuda/version.json"))
        if version:
            return version, "/usr/local/cuda/version.json"
        version = parse_cuda_version_txt(self.read("/usr/local/cuda/version.txt"))
        if version:
            return version, "/usr/local/cuda/version.txt"
        for nvcc in ("nvcc", "/usr/local/cuda/bin/nvcc"):
            if nvcc == "nvcc" and self.probe.which("nvcc") is None:
                continue
            result = self.run([nvcc, "--version"])
            version = parse_nvcc_version(result.stdout) if result.ok else None
            if version:
                return version, f"{nvcc} --version"
        return None, ""

    def driver_cuda_version(self) -> tuple[str | None, str]:
        """The newest CUDA the driver runs, from the best source there is, and that source."""
        value: tuple[str | None, str] = self.memo("driver_cuda", self._load_driver_cuda)
        return value

    def _load_driver_cuda(self) -> tuple[str | None, str]:
        api = self.probe.call("cuda-driver-version", [], cuda.driver_version)
        if api and isinstance(api.get("version"), int) and api["version"] > 0:
            return cuda_version_from_int(api["version"]), "CUDA driver API cuDriverGetVersion"
        header = self.smi_header()
        if "cuda_version" in header:
            return header["cuda_version"], 'nvidia-smi header field "{}"'.format(
                header["cuda_field"]
            )
        query = self.smi_q() if self.smi_rows() else {}
        if "cuda_version" in query:
            return query["cuda_version"], 'nvidia-smi -q field "{}"'.format(query["cuda_field"])
        driver = self.host_driver_version()
        newest = cuda_drivers.max_cuda_for_driver(driver) if driver else None
        if newest:
            return (
                newest,
                f"from the driver-branch table for driver {driver}, no CUDA field printed",
            )
        return None, ""

    def smi_header(self) -> dict[str, str]:
        return parse_smi_header(self.smi_plain().stdout)

    def smi_q(self) -> dict[str, str]:
        def load() -> dict[str, str]:
            result = self.run(["nvidia-smi", "-q"])
            return parse_smi_q(result.stdout) if result.ok else {}

        value: dict[str, str] = self.memo("smi_q", load)
        return value

    def host_driver_version(self) -> str | None:
        for row in self.smi_rows():
            if row.get("driver_version"):
                return row["driver_version"]
        header = self.smi_header().get("driver_version")
        return header or self.kernel_module_version()[0]

    def gpu_for_bus(self, bus_id: str | None) -> dict[str, Any]:
        key = normalize_bus_id(bus_id)
        for gpu in self.gpus:
            if gpu.get("pci_bus_id") == key:
                return gpu
        gpu = {"pci_bus_id": key}
        self.gpus.append(gpu)
        return gpu


def _label(row: dict[str, Any]) -> str:
    bus_id = normalize_bus_id(row.get("pci.bus_id")) or "?"
    if row.get("index") is None:
        return f"GPU at {bus_id}"
    return f"GPU {row['index']} ({bus_id})"


def _first_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[:count]) if lines else "(no output)"


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------


def _kernel_driver(dev: dict[str, Any], lspci_in_use: str | None) -> tuple[str | None, str | None]:
    """The driver bound to a GPU and where that was read: sysfs first, then lspci -k."""
    if dev.get("driver"):
        return dev["driver"], dev.get("driver_source")
    if lspci_in_use:
        return lspci_in_use, "lspci -k"
    return None, None


def _record_found_gpus(ctx: Context, devices: Any, lspci: Any, listed: list[Any]) -> bool:
    """Put every NVIDIA GPU that sysfs or lspci shows into ctx.gpus; False if none."""
    descriptions = {normalize_bus_id(d["slot"]): d for d in listed if d["vendor"] == NVIDIA_VENDOR}
    in_use = {normalize_bus_id(k): v for k, v in parse_lspci_k(lspci.stdout).items()}
    found: dict[str | None, dict[str, Any]] = {}
    for dev in devices or []:
        if dev["nvidia_gpu"]:
            found[normalize_bus_id(dev["slot"])] = dev
    for dev in listed:
        if dev["vendor"] == NVIDIA_VENDOR and dev["class"] in GPU_CLASSES:
            found.setdefault(normalize_bus_id(dev["slot"]), {"vendor": dev["vendor"], **dev})
    for bus_id, dev in sorted(found.items(), key=lambda kv: str(kv[0])):
        gpu = ctx.gpu_for_bus(bus_id)
        gpu["pci_id"] = "{:04x}:{:04x}".format(dev["vendor"], dev.get("device") or 0)
        if bus_id in descriptions:
            gpu["description"] = descriptions[bus_id]["description"]
        gpu["kernel_driver"], gpu["kernel_driver_source"] = _kernel_driver(dev, in_use.get(bus_id))
        if dev.get("max_link_width"):
            gpu["sysfs_link"] = {
                k: dev.get(k)
                for k in (
                    "current_link_speed",
                    "max_link_speed",
                    "current_link_width",
                    "max_link_width",
                )
            }
    return bool(found)


def _found_message(ctx: Context) -> str:
    parts = []
    for gpu in ctx.gpus:
        text = "{} {} [{}]".format(
            gpu["pci_bus_id"], gpu.get("description", "NVIDIA"), gpu["pci_id"]
        )
        if gpu.get("kernel_driver"):
            text += " (driver in use: {})".format(gpu["kernel_driver"])
        parts.append(text)
    return f"{len(parts)} NVIDIA GPU(s): " + "; ".join(parts)


def _listed_by_nvidia_smi(ctx: Context) -> CheckResult | None:
    """Neither sysfs nor lspci could be read: a container may still see GPUs via nvidia-smi."""
    listing = ctx.run(["nvidia-smi", "-L"])
    names = re.findall(r"^GPU (\d+): (.+?) \(UUID", listing.stdout, re.M)
    if not (listing.ok and names):
        return None
    for index, name in names:
        ctx.gpus.append({"index": int(index), "name": name})
    return CheckResult(
        "nvidia-gpu-present",
        PASS,
        f"{len(names)} NVIDIA GPU(s) listed by nvidia-smi -L (no PCI view here): "
        + "; ".join(n for _, n in names),
    )


def _what_was_seen(devices: Any, lspci: Any, listed: list[Any]) -> list[str]:
    """What lspci and sysfs showed instead of an NVIDIA GPU, for the failure message."""
    seen = []
    if lspci.ok:
        display = [d["line"] for d in listed if d["class"] >> 8 == 0x03]
        if display:
            seen.append("lspci -nn shows: " + "; ".join(display))
        else:
            seen.append(f"lspci -nn lists {len(listed)} devices, none a display controller")
    elif not lspci.found:
        seen.append("lspci is not installed (apt-get install pciutils)")
    else:
        seen.append(f"lspci -nn failed: {_first_lines(lspci.output, 1)}")
    if devices is not None:
        vendors: dict[str, int] = {}
        for dev in devices:
            key = "%04x" % (dev["vendor"] or 0)
            vendors[key] = vendors.get(key, 0) + 1
        summary = ", ".join(f"{vid} x{count}" for vid, count in sorted(vendors.items()))
        seen.append(
            f"/sys/bus/pci/devices lists {len(devices)} device(s) (vendor ids "
            f"{summary or 'none'}), none from NVIDIA (10de)"
        )
    else:
        seen.append("/sys/bus/pci/devices cannot be read")
    return seen


def check_gpu_present(ctx: Context) -> CheckResult:
    devices = ctx.pci_devices()
    lspci = ctx.lspci()
    listed = parse_lspci_nn(lspci.stdout) if lspci.ok else []
    if _record_found_gpus(ctx, devices, lspci, listed):
        return CheckResult("nvidia-gpu-present", PASS, _found_message(ctx))
    if devices is None and not lspci.ok:
        listed_by_smi = _listed_by_nvidia_smi(ctx)
        if listed_by_smi is not None:
            return listed_by_smi
    return CheckResult(
        "nvidia-gpu-present",
        FAIL,
        "no NVIDIA GPU found: " + "; ".join(_what_was_seen(devices, lspci, listed)),
        "Check the card is seated and both ends of its PCIe power cables are plugged in, that "
        "the slot is enabled in the firmware setup (and 'Above 4G decoding' is on for cards with "
        "large memory), and that this is the host you meant; in a VM, pass the GPU through "
        "(VFIO) first. Then `lspci -nn | grep -i nvidia` must list it.",
    )


NOUVEAU_REMEDY = (
    "Blacklist nouveau, rebuild the initramfs and reboot: printf 'blacklist nouveau\\n"
    "options nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && "
    "sudo update-initramfs -u && sudo reboot (the nvidia_driver role does this)."
)


def _bindings(ctx: Context) -> str:
    """'0000:01:00.0: nvidia (sysfs driver link); ...' for the GPUs on the bus."""
    return "; ".join(
        "{}: {} ({})".format(
            g["pci_bus_id"],
            g.get("kernel_driver") or "no driver",
            g.get("kernel_driver_source") or "sysfs and lspci -k show none",
        )
        for g in ctx.gpus
        if g.get("pci_id")
    )


def check_nouveau(ctx: Context) -> CheckResult:
    """Judged by binding: nouveau bound to an NVIDIA GPU fails, nouveau merely loaded warns."""
    modules = ctx.modules()
    gpus = [g for g in ctx.gpus if g.get("pci_id")]
    bound = [g for g in gpus if g.get("kernel_driver") == "nouveau"]
    if bound:
        return CheckResult(
            "nouveau-loaded",
            FAIL,
            "the open-source nouveau driver drives {}: the NVIDIA driver cannot bind a GPU "
            "that nouveau holds (bindings: {})".format(
                ", ".join(g["pci_bus_id"] for g in bound), _bindings(ctx)
            ),
            NOUVEAU_REMEDY,
        )
    if modules is None:
        return CheckResult(
            "nouveau-loaded",
            SKIP,
            f"cannot read /proc/modules; no GPU is bound to nouveau ({_bindings(ctx)})",
        )
    if "nouveau" not in modules:
        return CheckResult("nouveau-loaded", PASS, "nouveau is not loaded")
    if any(not g.get("kernel_driver") for g in gpus):
        state = "which driver holds every GPU is not known"
    else:
        state = "it drives no NVIDIA GPU (its probe failed or another card loaded it)"
    return CheckResult(
        "nouveau-loaded",
        WARN,
        f"nouveau is in /proc/modules but {state}; bindings: {_bindings(ctx)}. After a "
        "driver reload or a GPU reset it can take the GPU",
        NOUVEAU_REMEDY,
    )


def check_nvidia_module(ctx: Context) -> CheckResult:
    version, source = ctx.kernel_module_version()
    if version or ctx.nvidia_module_loaded():
        others = [
            "{} uses {}".format(g["pci_bus_id"], g["kernel_driver"])
            for g in ctx.gpus
            if g.get("kernel_driver") not in (None, "nvidia", "nvidia_current")
        ]
        message = "nvidia kernel module {} is loaded{}".format(
            version or "",
            f" ({source})" if source else "",
        )
        if others:
            return CheckResult(
                "nvidia-module-missing",
                WARN,
                message + ", but not every GPU is bound to it: " + "; ".join(others),
                "A GPU bound to vfio-pci or another driver is invisible to CUDA here; if that is "
                "not meant (VM passthrough), remove its ids from the vfio-pci options in "
                "/etc/modprobe.d and reboot.",
            )
        return CheckResult("nvidia-module-missing", PASS, message.replace("  ", " "))

    kernel = ctx.kernel_release()
    nouveau = ctx.status("nouveau-loaded") == FAIL
    modinfo = ctx.run(["modinfo", "-F", "version", "nvidia"])
    if not modinfo.ok:
        debian = ctx.run(["modinfo", "-F", "version", "nvidia-current"])
        modinfo = debian if debian.ok else modinfo
    installed = modinfo.stdout.strip() if modinfo.ok else ""
    if nouveau:
        message = "the nvidia kernel module is not loaded: nouveau holds the GPU"
        if installed:
            message += f" (nvidia {installed} is built for kernel {kernel})"
        return CheckResult(
            "nvidia-module-missing", FAIL, message, "Disable nouveau first: see nouveau-loaded."
        )
    if installed:
        return CheckResult(
            "nvidia-module-missing",
            FAIL,
            f"nvidia kernel module {installed} is installed for kernel {kernel} but not loaded",
            "Load it: sudo modprobe nvidia. If that fails, read `sudo dmesg | grep -i -e nvidia "
            "-e nvrm`: with Secure Boot on (mokutil --sb-state) the DKMS module must be signed "
            "with an enrolled key (sudo mokutil --import /var/lib/dkms/mok.pub, then reboot).",
        )
    if ctx.probe.which("nvidia-smi") is None:
        return CheckResult(
            "nvidia-module-missing",
            FAIL,
            f"no NVIDIA driver is installed (no nvidia kernel module for kernel {kernel}, "
            "no nvidia-smi)",
            "Install the driver: run dlsetup's driver stage (the nvidia_driver role), then reboot.",
        )
    return CheckResult(
        "nvidia-module-missing",
        FAIL,
        "the NVIDIA driver's user-space is installed but there is no nvidia kernel module for "
        f"the running kernel {kernel} (modinfo: {_first_lines(modinfo.output, 1)})",
        f"Build it for this kernel: sudo apt-get install linux-headers-{kernel} && sudo dkms "
        f"autoinstall -k {kernel} && sudo modprobe nvidia (a kernel upgrade without its headers "
        "leaves DKMS unable to build; the nvidia_driver role installs the headers "
        "metapackage).",
    )


def _kernel_key(release: str) -> list[Any]:
    """'6.1.0-31-amd64' sorts after '6.1.0-28-amd64' (numbers compared as numbers)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def _module_for_kernel(ctx: Context, kernel: str) -> str | None:
    """The nvidia module's version built for ``kernel`` (Debian names it nvidia-current)."""
    for name in ("nvidia", "nvidia-current"):
        res = ctx.run(["modinfo", "-k", kernel, "-F", "version", name])
        if res.ok and res.stdout.strip():
            return res.stdout.strip().splitlines()[0]
    return None


def check_nvidia_module_for_kernels(ctx: Context) -> CheckResult:
    """Every kernel the box can boot (/lib/modules/<v> with /boot/vmlinuz-<v>) has the
    module: unattended-upgrades installs kernels, and one without the module is a box
    without a GPU after the next reboot."""
    check_id = "nvidia-module-missing-for-kernel"
    running = ctx.kernel_release()
    trees = ctx.probe.list_dir("/lib/modules")
    boot = ctx.probe.list_dir("/boot")
    if trees is None or boot is None:
        return CheckResult(check_id, SKIP, "cannot list /lib/modules and /boot (a container?)")
    kernels = sorted((v for v in trees if "vmlinuz-" + v in boot), key=_kernel_key)
    if not kernels:
        return CheckResult(check_id, SKIP, "no kernel with an image in /boot")
    found = {k: _module_for_kernel(ctx, k) for k in kernels}
    if running in found and found[running] is None and ctx.nvidia_module_loaded():
        found[running] = ctx.kernel_module_version()[0] or "loaded"
    if all(v is None for v in found.values()):
        return CheckResult(
            check_id, SKIP, "no nvidia module for any installed kernel (see nvidia-module-missing)"
        )
    missing = [k for k, v in found.items() if v is None]
    listing = ", ".join(
        f"{k}{' (running)' if k == running else ''}: {v or 'none'}" for k, v in found.items()
    )
    if not missing:
        versions = sorted({v for v in found.values() if v and v != "loaded"})
        if len(versions) > 1:
            return CheckResult(
                check_id,
                WARN,
                f"the kernels have different nvidia modules ({listing})",
                "Rebuild for every kernel (sudo dkms autoinstall -k <kernel> for each, or run "
                "dlsetup's driver stage): booting a kernel with the older module gives "
                "'Driver/library version mismatch'.",
            )
        return CheckResult(
            check_id, PASS, f"the nvidia module is built for every installed kernel ({listing})"
        )
    names = ", ".join(missing)
    remedy = (
        "Build it before rebooting: sudo apt-get install "
        + " ".join(f"linux-headers-{k}" for k in missing)
        + " && "
        + " && ".join(f"sudo dkms autoinstall -k {k}" for k in missing)
        + " (dlsetup's driver stage installs the headers metapackage so every new kernel gets "
        "headers, and builds for every kernel). If the build fails, the kernel is newer than "
        "the driver branch supports: install a newer branch, or hold that kernel back (apt-mark "
        "hold the linux-image metapackage, remove the new linux-image-<kernel>)."
    )
    if running in missing:
        return CheckResult(
            check_id,
            FAIL,
            f"no nvidia module for the running kernel {running} ({listing}; see "
            "nvidia-module-missing)",
            remedy,
        )
    return CheckResult(
        check_id,
        WARN,
        f"no nvidia module for kernel {names}, which the box can boot (running: {running}): "
        f"a reboot into it leaves the box without a GPU ({listing})",
        remedy,
    )


def check_driver_library_mismatch(ctx: Context) -> CheckResult:
    kernel_version, source = ctx.kernel_module_version()
    libs = ctx.find_libs("libnvidia-ml")
    versions = sorted(
        {v for v in (lib_version(os.path.basename(p), "libnvidia-ml.so") for p in libs) if v}
        - {"1"},
        key=lambda v: version_tuple(v) or (),
    )
    smi = ctx.smi_plain()
    nvml_says = "Driver/library version mismatch" in smi.output
    match = re.search(r"NVML library version:\s*([0-9][0-9.]*)", smi.output)
    nvml_lib = match.group(1) if match else None
    if kernel_version is None:
        return CheckResult(
            "driver-library-mismatch",
            SKIP,
            "no nvidia kernel module is loaded to compare with (see nvidia-module-missing)",
        )
    user_versions = versions or ([nvml_lib] if nvml_lib else [])
    if nvml_says or (versions and kernel_version not in versions):
        user = ", ".join(user_versions) or "a different version"
        message = (
            f"the loaded kernel module is {kernel_version} ({source}) but the user-space "
            f"driver (libnvidia-ml) is {user}"
        )
        if nvml_says:
            message += f"; nvidia-smi: {_first_lines(smi.output, 2)}"
        return CheckResult(
            "driver-library-mismatch",
            FAIL,
            message,
            "The driver packages were upgraded while the old kernel module stayed loaded: "
            "reboot the host (sudo reboot) to load the %s module. Without a reboot: stop every "
            "GPU user (containers, nvidia-persistenced, the display manager), then sudo rmmod "
            "nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia. Hold the "
            "driver packages (apt-mark hold) so unattended upgrades do not repeat this."
            % (user_versions[-1] if user_versions else "new"),
        )
    if not versions and not smi.found:
        return CheckResult(
            "driver-library-mismatch",
            FAIL,
            f"kernel module {kernel_version} is loaded but the user-space driver "
            "(libnvidia-ml, nvidia-smi) is not installed",
            f"Install the user-space packages of driver {kernel_version} (the nvidia_driver "
            "role installs both halves from one branch).",
        )
    return CheckResult(
        "driver-library-mismatch",
        PASS,
        f"kernel module and libnvidia-ml are both {kernel_version}"
        if versions
        else f"kernel module {kernel_version}; nvidia-smi initialises NVML",
    )


def check_nvidia_smi(ctx: Context) -> CheckResult:
    if ctx.probe.which("nvidia-smi") is None:
        return CheckResult(
            "nvidia-smi",
            FAIL,
            "nvidia-smi is not installed",
            "It ships with the driver (Debian: nvidia-smi; NVIDIA's repository: "
            "nvidia-utils-<branch> or cuda-drivers): run the nvidia_driver role.",
        )
    rows, result, dropped = ctx.smi_query()
    if not result.ok or not rows:
        out = result.output
        if "version mismatch" in out:
            remedy = "See driver-library-mismatch: reboot to load the matching kernel module."
        elif "couldn't communicate with the NVIDIA driver" in out or result.rc == 9:
            remedy = "The kernel module is not loaded: see nvidia-module-missing."
        elif "fallen off the bus" in out or "Unable to determine the device handle" in out:
            remedy = (
                "The GPU stopped answering (Xid 79): power the host off, reseat the card and its "
                "power cables, check temperatures; `sudo dmesg | grep -i xid` tells more."
            )
        else:
            remedy = "Run nvidia-smi by hand and read `sudo dmesg | grep -i -e nvrm -e xid`."
        return CheckResult(
            "nvidia-smi",
            FAIL,
            f"nvidia-smi failed (exit {result.rc}): {_first_lines(out)}",
            remedy,
        )
    parts = []
    for row in rows:
        gpu = ctx.gpu_for_bus(row.get("pci.bus_id"))
        gpu.update(
            {
                "index": to_int(row.get("index")),
                "name": row.get("name"),
                "uuid": row.get("uuid"),
                "driver_version": row.get("driver_version"),
                "memory_total_mib": to_int(row.get("memory.total")),
                "memory_used_mib": to_int(row.get("memory.used")),
                "temperature_c": to_int(row.get("temperature.gpu")),
                "pstate": row.get("pstate"),
                "persistence_mode": row.get("persistence_mode"),
                "compute_capability": row.get("compute_cap"),
                "ecc_mode": row.get("ecc.mode.current"),
                "ecc_errors": {
                    "corrected_volatile": to_int(row.get("ecc.errors.corrected.volatile.total")),
                    "uncorrected_volatile": to_int(
                        row.get("ecc.errors.uncorrected.volatile.total")
                    ),
                    "uncorrected_aggregate": to_int(
                        row.get("ecc.errors.uncorrected.aggregate.total")
                    ),
                },
                "retired_pages": {
                    "single_bit": to_int(row.get("retired_pages.single_bit_ecc.count")),
                    "double_bit": to_int(row.get("retired_pages.double_bit.count")),
                    "pending": row.get("retired_pages.pending"),
                },
                "remapped_rows": {
                    "correctable": to_int(row.get("remapped_rows.correctable")),
                    "uncorrectable": to_int(row.get("remapped_rows.uncorrectable")),
                    "pending": row.get("remapped_rows.pending"),
                    "failure": row.get("remapped_rows.failure"),
                },
                "throttle_reasons_active": row.get("clocks_throttle_reasons.active"),
            }
        )
        parts.append(
            "{} {}, {} MiB, driver {}".format(
                _label(row), row.get("name"), row.get("memory.total"), row.get("driver_version")
            )
        )
    ctx.gpus.sort(key=lambda g: (g.get("index") is None, g.get("index") or 0))
    pci_count = len([g for g in ctx.gpus if g.get("pci_id")])
    message = "; ".join(parts)
    if dropped:
        message += " (this nvidia-smi does not know: {})".format(", ".join(dropped))
    if pci_count > len(rows):
        missing = [g["pci_bus_id"] for g in ctx.gpus if g.get("pci_id") and g.get("index") is None]
        return CheckResult(
            "nvidia-smi",
            FAIL,
            f"nvidia-smi sees {len(rows)} of the {pci_count} NVIDIA GPUs on the PCI bus "
            f"(missing: {', '.join(missing)}): {message}",
            "A GPU on the bus that the driver does not manage has usually fallen off the bus or "
            "failed to initialise: read `sudo dmesg | grep -i -e nvrm -e xid`, reseat it and its "
            "power cables.",
        )
    return CheckResult("nvidia-smi", PASS, message)


def _needs_smi(check_id: str, ctx: Context) -> CheckResult | None:
    if not ctx.smi_rows():
        return CheckResult(check_id, SKIP, "needs a working nvidia-smi (see nvidia-smi)")
    return None


def check_ecc(ctx: Context) -> CheckResult:
    skipped = _needs_smi("gpu-ecc-errors", ctx)
    if skipped:
        return skipped
    fails, warns, unsupported = [], [], []
    remedy_fail = (
        "Drain the GPU, look at `nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER -i N`, then "
        "reset it (sudo nvidia-smi -r -i N) or reboot so pending retirements/remappings take "
        "effect; if uncorrectable errors come back, the board needs an RMA."
    )
    for row in ctx.smi_rows():
        label = _label(row)
        uncorrected = to_int(row.get("ecc.errors.uncorrected.volatile.total")) or 0
        if (
            row.get("ecc.mode.current") is None
            and row.get("retired_pages.pending") is None
            and (row.get("remapped_rows.pending") is None)
        ):
            unsupported.append("{} {}".format(label, row.get("name")))
            continue
        if uncorrected > 0:
            fails.append(f"{label}: {uncorrected} uncorrectable ECC errors since the driver loaded")
        if row.get("retired_pages.pending") == "Yes":
            fails.append(f"{label}: a page retirement is pending (needs a reset)")
        if row.get("remapped_rows.pending") == "Yes":
            fails.append(f"{label}: a row remapping is pending (needs a reset)")
        if row.get("remapped_rows.failure") == "Yes":
            fails.append(f"{label}: row remapping FAILED (the board is out of spare rows)")
        history = (to_int(row.get("retired_pages.double_bit.count")) or 0) + (
            to_int(row.get("remapped_rows.uncorrectable")) or 0
        )
        if history:
            warns.append(f"{label}: {history} memory rows/pages retired after uncorrectable errors")
        if row.get("ecc.mode.current") == "Disabled":
            warns.append(f"{label}: ECC is disabled")
    if fails:
        return CheckResult("gpu-ecc-errors", FAIL, "; ".join(fails + warns), remedy_fail)
    if warns:
        return CheckResult(
            "gpu-ecc-errors",
            WARN,
            "; ".join(warns),
            "Enable ECC where it is off (sudo nvidia-smi -e 1, then reboot) and watch the retired "
            "counts: `nvidia-smi -q -d PAGE_RETIREMENT,ROW_REMAPPER`; a growing count means RMA.",
        )
    message = "no ECC errors, no pending page retirement or row remapping"
    if unsupported:
        message = (
            "no memory errors reported; ECC, page retirement and row remapping are not "
            "supported by {}".format(", ".join(unsupported))
        )
    return CheckResult("gpu-ecc-errors", PASS, message)


def check_throttling(ctx: Context) -> CheckResult:
    skipped = _needs_smi("gpu-throttling", ctx)
    if skipped:
        return skipped
    problems = []
    for row in ctx.smi_rows():
        active = [text for fld, text in THROTTLE_FIELDS.items() if row.get(fld) == "Active"]
        temp = to_int(row.get("temperature.gpu"))
        if temp is not None and temp >= 85:
            active.append(f"temperature {temp} C")
        if active:
            problems.append("{}: {}".format(_label(row), ", ".join(active)))
    if problems:
        return CheckResult(
            "gpu-throttling",
            WARN,
            "clocks held down: " + "; ".join(problems),
            "Check that every PCIe power connector is plugged in and the PSU is big enough, "
            "clean the heatsink and fans and give the case airflow; `nvidia-smi -q -d "
            "PERFORMANCE,TEMPERATURE,POWER` shows which limit is hit.",
        )
    temps = [row.get("temperature.gpu") for row in ctx.smi_rows() if row.get("temperature.gpu")]
    extra = " (temperatures {} C)".format(", ".join(str(t) for t in temps)) if temps else ""
    return CheckResult("gpu-throttling", PASS, "no hardware or thermal slowdown" + extra)


def check_persistence(ctx: Context) -> CheckResult:
    skipped = _needs_smi("gpu-persistence-mode", ctx)
    if skipped:
        return skipped
    modes = [(row, row.get("persistence_mode")) for row in ctx.smi_rows()]
    off = [_label(row) for row, mode in modes if mode == "Disabled"]
    if off:
        return CheckResult(
            "gpu-persistence-mode",
            WARN,
            "persistence mode is off on {}: every CUDA start re-initialises the GPU (seconds), "
            "and the driver unloads its state between jobs".format(", ".join(off)),
            "Run the persistence daemon: sudo systemctl enable --now nvidia-persistenced "
            "(or sudo nvidia-smi -pm 1 until the next reboot).",
        )
    if all(mode is None for _, mode in modes):
        return CheckResult("gpu-persistence-mode", SKIP, "persistence mode is not reported here")
    return CheckResult("gpu-persistence-mode", PASS, "persistence mode is on")


def _find_nvrtc(ctx: Context) -> list[str]:
    paths = [p for p in ctx.find_libs("libnvrtc") if "builtins" not in p]
    # Prefer the most specific name of the newest version (libnvrtc.so.12 over libnvrtc.so).
    return sorted(paths, key=lambda p: (-(len(version_tuple(p.split(".so.")[-1]) or ())), p))


def _run_selftest(ctx: Context, nvrtc_paths: list[str]) -> dict[str, Any]:
    """The live self-test in a thread with a time limit; its outcome as a JSON object."""
    holder: dict[str, Any] = {}

    def work() -> None:
        try:
            holder["report"] = cuda.selftest(nvrtc_paths, ctx.read_pcie)
        except Exception as exc:  # a ctypes surprise must not kill the run
            holder["crash"] = f"{type(exc).__name__}: {exc}"

    limit = max(5.0, min(40.0, ctx.remaining() - 10.0))
    thread = threading.Thread(target=work, name="cuda-selftest", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        return {"timeout_s": round(limit)}
    if "crash" in holder:
        return {"crash": holder["crash"]}
    report: cuda.CudaReport = holder["report"]
    return {"report": report.to_json()}


def check_cuda_driver_api(ctx: Context) -> CheckResult:
    skipped = _needs_smi("cuda-driver-api", ctx)
    if skipped:
        return skipped
    nvrtc_paths = _find_nvrtc(ctx)
    outcome = ctx.probe.call("cuda-selftest", [], lambda: _run_selftest(ctx, nvrtc_paths))
    if outcome is None:
        return CheckResult(
            "cuda-driver-api",
            SKIP,
            "needs a live GPU: this bundle holds no result of the CUDA self-test (written by "
            "hand or by an older gpucheck)",
        )
    if "timeout_s" in outcome:
        return CheckResult(
            "cuda-driver-api",
            FAIL,
            "the CUDA self-test did not finish within {} s".format(outcome["timeout_s"]),
            "A hang in cuInit or a copy points at the driver or the card: read `sudo dmesg | "
            "grep -i -e nvrm -e xid`, stop other GPU processes, reboot.",
        )
    if "crash" in outcome:
        return CheckResult(
            "cuda-driver-api",
            FAIL,
            "the CUDA self-test crashed: {}".format(outcome["crash"]),
            "Report this with the capture bundle (--capture DIR).",
        )
    return _judge_selftest(ctx, cuda.CudaReport.from_json(outcome.get("report") or {}))


def _judge_selftest(ctx: Context, report: cuda.CudaReport) -> CheckResult:
    ctx.cuda_report = report
    if isinstance(report.during_load, list) and report.during_load:
        ctx.pcie_reading = report.during_load
    if report.error:
        return CheckResult("cuda-driver-api", FAIL, report.error, _cuda_remedy(report.error_name))
    parts, bad, untested = [], [], []
    for dev in report.devices:
        text = (
            f"GPU {dev.index} {dev.name} (sm_{dev.compute_capability.replace('.', '')}, "
            f"{dev.total_memory_mib} MiB): context + {cuda.COPY_BYTES // (1024 * 1024)} MiB "
            "copy verified"
        )
        if dev.kernel_ok:
            text += f", NVRTC {report.nvrtc_version} kernel verified"
        parts.append(text)
        if not dev.copy_ok or dev.kernel_ok is False:
            bad.append(f"GPU {dev.index}: " + ("; ".join(dev.notes) or "copy mismatch"))
        elif dev.kernel_ok is None:
            untested.append(f"GPU {dev.index}: " + "; ".join(dev.notes))
    version = (
        f" (driver API CUDA {cuda_version_from_int(report.driver_cuda_version)})"
        if report.driver_cuda_version
        else ""
    )
    if bad:
        return CheckResult(
            "cuda-driver-api",
            FAIL,
            "; ".join(bad) + version,
            "Wrong data from a copy means bad GPU memory or PCIe errors: run the check again, "
            "read `sudo dmesg | grep -i -e xid -e aer`; a kernel that fails to build or load "
            "usually means the toolkit's NVRTC is newer than the driver (see cuda-driver-too-old).",
        )
    if untested:
        return CheckResult(
            "cuda-driver-api",
            WARN,
            "; ".join(parts) + version + "; kernel launch not tested: " + "; ".join(untested),
            "Install NVRTC from the CUDA toolkit (cuda-nvrtc-<ver>, the cuda_toolkit role) so "
            "the check can compile and launch a kernel.",
        )
    return CheckResult("cuda-driver-api", PASS, "; ".join(parts) + version)


def _cuda_remedy(name: str | None) -> str:
    remedies = {
        "LIBCUDA_NOT_LOADABLE": "libcuda.so.1 ships with the driver (Debian: libcuda1; NVIDIA: "
        "libnvidia-compute-<branch>): reinstall the driver, then `ldconfig -p | grep libcuda`.",
        "CUDA_ERROR_NO_DEVICE": "The driver sees no usable GPU: check /dev/nvidia* exist and are "
        "readable, that nvidia_uvm loads (sudo modprobe nvidia-uvm) and CUDA_VISIBLE_DEVICES.",
        "CUDA_ERROR_INSUFFICIENT_DRIVER": "The driver is older than this libcuda expects: see "
        "cuda-driver-too-old.",
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH": "A cuda-compat libcuda shadows the driver's: remove "
        "the cuda-compat package or its directory from LD_LIBRARY_PATH / ld.so.conf.d.",
        "CUDA_ERROR_OUT_OF_MEMORY": "Other processes hold the GPU memory: see nvidia-smi's "
        "process list and stop them.",
        "CUDA_ERROR_UNKNOWN": "cuInit fails with an unknown error when nvidia_uvm is not loaded "
        "or the GPU is in a bad state: sudo modprobe nvidia-uvm, then reboot if it persists.",
    }
    return remedies.get(
        name or "",
        "Read `sudo dmesg | grep -i -e nvrm -e xid` and rerun; a failing context or allocation "
        "on an idle GPU points at the driver install or the card.",
    )


def _gen(speed: float | None) -> int | None:
    try:
        return bench.pcie_gen_for_speed(speed) if speed else None
    except ValueError:
        return None


PCIE_REMEDY = (
    "Put the card in a slot wired x16 to the CPU (the board manual says which slots are "
    "x8/x4 electrically or share lanes with M.2/NVMe slots), reseat it, drop or replace a "
    "riser cable, and compare `sudo lspci -vv -s <bus id> | grep -E 'LnkCap|LnkSta'`; a "
    "link that trains below its generation under load is a signal-integrity problem "
    "(riser, dirty contacts) or a slot forced low in the firmware setup."
)


def _pcie_rows(ctx: Context) -> tuple[list[dict[str, Any]], str]:
    """The link reading to judge and which one it is: under the self-test's load if that
    ran, else nvidia-smi idle, else sysfs idle."""
    if ctx.pcie_reading:
        return ctx.pcie_reading, "under load"
    rows = ctx.read_pcie() if ctx.smi_rows() else []
    if rows:
        return rows, "idle"
    # nvidia-smi cannot tell: sysfs still shows the link.
    return [
        {
            "index": g.get("index"),
            "pci.bus_id": g["pci_bus_id"],
            "pcie.link.gen.current": _gen(g["sysfs_link"]["current_link_speed"]),
            "pcie.link.gen.max": _gen(g["sysfs_link"]["max_link_speed"]),
            "pcie.link.width.current": g["sysfs_link"]["current_link_width"],
            "pcie.link.width.max": g["sysfs_link"]["max_link_width"],
        }
        for g in ctx.gpus
        if g.get("sysfs_link")
    ], "idle (sysfs)"


def _pcie_verdict(ctx: Context, row: dict[str, Any], loaded: bool) -> tuple[str, str]:
    """(fail|warn|note, text) for one GPU's link."""
    label = _label(row)
    gen_cur, gen_max = (
        to_int(row.get("pcie.link.gen.current")),
        to_int(row.get("pcie.link.gen.max")),
    )
    w_cur, w_max = (
        to_int(row.get("pcie.link.width.current")),
        to_int(row.get("pcie.link.width.max")),
    )
    gpu = ctx.gpu_for_bus(row.get("pci.bus_id"))
    gpu["pcie"] = {
        "gen_current": gen_cur,
        "gen_max": gen_max,
        "width_current": w_cur,
        "width_max": w_max,
        "read_under_load": loaded,
    }
    if gen_max and w_max:
        gpu["pcie"]["limit_gbs_per_direction"] = round(bench.pcie_bandwidth_gbs(gen_max, w_max), 2)
    if w_cur is None or w_max is None:
        return "note", f"{label}: link width not reported"
    gens = f" gen{gen_cur} of gen{gen_max}" if gen_cur and gen_max else ""
    slow = bool(gen_cur and gen_max and gen_cur < gen_max)
    if w_cur < w_max:
        return ("fail" if loaded else "warn"), f"{label} links at x{w_cur} of x{w_max}{gens}"
    if slow and loaded:
        return "fail", f"{label} runs at gen{gen_cur} of gen{gen_max} x{w_cur}"
    if slow:
        return "note", (
            f"{label} x{w_cur} of x{w_max}, gen{gen_cur} of gen{gen_max} (an idle GPU lowers its "
            "link speed; not a fault)"
        )
    limit = ""
    if gen_cur and w_cur:
        limit = f", {bench.pcie_bandwidth_gbs(gen_cur, w_cur):.1f} GB/s per direction"
    return "note", f"{label} gen{gen_cur or '?'} x{w_cur} of gen{gen_max or '?'} x{w_max}{limit}"


def check_pcie(ctx: Context) -> CheckResult:
    """Judged under load only when the load is known to run (the CUDA self-test's); an idle
    reading cannot fail: a narrow idle link warns, a slow idle link is normal."""
    rows, reading = _pcie_rows(ctx)
    if not rows:
        return CheckResult(
            "pcie-link-degraded", SKIP, "no PCIe link data (nvidia-smi and sysfs unavailable)"
        )
    loaded = reading == "under load"
    found: dict[str, list[str]] = {"fail": [], "warn": [], "note": []}
    for row in rows:
        kind, text = _pcie_verdict(ctx, row, loaded)
        found[kind].append(text)
    if loaded:
        where = "read under the CUDA self-test's load"
    else:
        where = "read idle {}: no load was running, the CUDA self-test did not run".format(
            "from sysfs" if reading == "idle (sysfs)" else "by nvidia-smi"
        )
    message = "; ".join(found["fail"] + found["warn"] + found["note"]) + f" ({where})"
    if found["fail"]:
        return CheckResult("pcie-link-degraded", FAIL, message, PCIE_REMEDY)
    if found["warn"]:
        return CheckResult(
            "pcie-link-degraded",
            WARN,
            message,
            "Run the smoke test live on the box (dlsetup smoke --local) so the link is read "
            "under load; if it stays narrow: " + PCIE_REMEDY,
        )
    return CheckResult("pcie-link-degraded", PASS, message)


def check_cuda_driver_too_old(ctx: Context) -> CheckResult:
    toolkit, tk_source = ctx.toolkit_version()
    driver_cuda, d_source = ctx.driver_cuda_version()
    if toolkit is None:
        return CheckResult(
            "cuda-driver-too-old",
            SKIP,
            "no CUDA toolkit installed (/usr/local/cuda, nvcc): nothing to compare; framework "
            "wheels bring their own CUDA runtime",
        )
    if driver_cuda is None:
        return CheckResult(
            "cuda-driver-too-old",
            SKIP,
            f"the driver's CUDA version is unknown (see nvidia-smi); toolkit is {toolkit}",
        )
    tk, drv = version_tuple(toolkit) or (0,), version_tuple(driver_cuda) or (0,)
    needs = cuda_drivers.min_driver_for_cuda(tk[0], tk[1] if len(tk) > 1 else 0)
    branch = f" (driver {needs} or newer, branch {needs.split('.')[0]})" if needs else ""
    facts = (
        f"the CUDA {toolkit} toolkit ({tk_source}) and a driver that supports CUDA "
        f"{driver_cuda} ({d_source})"
    )
    if tk[:1] > drv[:1]:
        return CheckResult(
            "cuda-driver-too-old",
            FAIL,
            f"driver too old: {facts}; CUDA {tk[0]} programs will not start",
            f"Upgrade the driver to one that supports CUDA {toolkit}{branch} with the "
            f"nvidia_driver role, or install a CUDA toolkit no newer than {driver_cuda}.",
        )
    if tk[:2] > drv[:2]:
        return CheckResult(
            "cuda-driver-too-old",
            WARN,
            facts + ": runs under CUDA minor-version compatibility, but PTX JIT (NVRTC, Triton, "
            "torch.compile) and newer APIs fail",
            f"Upgrade the driver to one that supports CUDA {toolkit}{branch}, or use toolkit "
            f"{driver_cuda}.",
        )
    return CheckResult("cuda-driver-too-old", PASS, facts)


def check_cudnn(ctx: Context) -> CheckResult:
    libs = ctx.find_libs("libcudnn")
    if not libs:
        return CheckResult(
            "cudnn-missing",
            FAIL,
            "cuDNN not found: no libcudnn.so* in `ldconfig -p` or in {}".format(
                ", ".join(LIB_DIRS[:3])
            ),
            "Install cuDNN for this CUDA major version (the cuda_toolkit role's cuDNN option; "
            "NVIDIA's repository: libcudnn8 or libcudnn9-cuda-12), then sudo ldconfig.",
        )
    versions = sorted(
        {
            v
            for v in (lib_version(os.path.basename(p), "libcudnn.so") for p in libs)
            if v and "." in v
        },
        key=lambda v: version_tuple(v) or (),
    )
    header = None
    for path in CUDNN_HEADERS:
        header = parse_cudnn_header(ctx.read(path))
        if header:
            break
    majors = sorted(
        {v for v in (lib_version(os.path.basename(p), "libcudnn.so") for p in libs) if v}
    )
    version = versions[-1] if versions else header or (majors[-1] + ".x" if majors else "?")
    where = os.path.dirname(libs[0])
    sonames = [p for p in libs if re.search(r"\.so\.\d+$", p)] or libs
    outcome = ctx.probe.call("cudnn-selftest", [], lambda: _run_cudnn(ctx, sonames[-1]))
    if outcome is None:
        return CheckResult(
            "cudnn-missing",
            PASS,
            f"cuDNN {version} in {where} (from the library file names; creating a handle "
            "needs a live GPU and this bundle holds no result of it)",
        )
    if "report" not in outcome:
        return CheckResult(
            "cudnn-missing",
            FAIL,
            f"cudnnCreate did not return in time ({sonames[-1]})",
            "Check the GPU with cuda-driver-api first; then `sudo dmesg | grep -i xid`.",
        )
    report = cuda.CudnnReport.from_json(outcome["report"])
    if report.error:
        return CheckResult(
            "cudnn-missing",
            FAIL,
            f"cuDNN {report.version or version} found but unusable: {report.error}",
            "A cuDNN built for another CUDA major version than the driver supports, or missing "
            "companion libraries (libcublas/libcublasLt of the same CUDA), break loading: install "
            "the cuDNN package matching the toolkit, then sudo ldconfig.",
        )
    cudart = ""
    if report.cudart_version:
        cudart = f", built for CUDA {cuda_version_from_int(report.cudart_version)}"
    return CheckResult(
        "cudnn-missing",
        PASS,
        f"cuDNN {report.version} ({sonames[-1]}{cudart}): handle created",
    )


def _run_cudnn(ctx: Context, path: str) -> dict[str, Any]:
    """cuDNN's handle test in a thread with a time limit; its outcome as a JSON object."""
    holder: dict[str, cuda.CudnnReport] = {}
    thread = threading.Thread(
        target=lambda: holder.setdefault("r", cuda.cudnn_selftest(path)), daemon=True
    )
    limit = max(5.0, min(20.0, ctx.remaining() - 5.0))
    thread.start()
    thread.join(limit)
    report = holder.get("r")
    return {"timeout_s": round(limit)} if report is None else {"report": report.to_json()}


def check_container_runtime(ctx: Context) -> CheckResult:
    image = ctx.options.container_image
    if not image:
        return CheckResult(
            "container-runtime-missing",
            SKIP,
            "no --container-image given (the check runs a local image and never pulls one)",
        )
    if ctx.probe.which("docker") is None:
        return CheckResult(
            "container-runtime-missing",
            FAIL,
            "docker is not installed",
            "Run the container_runtime role (Docker + NVIDIA Container Toolkit).",
        )
    inspect = ctx.run(["docker", "image", "inspect", "--format", "{{.Id}}", image])
    if not inspect.ok:
        if (
            "Cannot connect to the Docker daemon" in inspect.output
            or "permission denied" in inspect.output
        ):
            return CheckResult(
                "container-runtime-missing",
                FAIL,
                f"docker cannot reach its daemon: {_first_lines(inspect.output, 1)}",
                "sudo systemctl enable --now docker; run the check as root or as a member of the "
                "docker group.",
            )
        return CheckResult(
            "container-runtime-missing",
            SKIP,
            f"image {image} is not present locally ({_first_lines(inspect.output, 1)}); "
            "docker pull it to run this check",
        )
    host_driver = ctx.host_driver_version()
    # The host's nvidia-smi is the one the toolkit injects: ask what the host's answered.
    argv = [
        "docker", "run", "--rm", "--gpus", "all", image,
        "nvidia-smi", "--query-gpu=" + ctx.smi_driver_field(), "--format=csv,noheader",
    ]  # fmt: skip
    result = ctx.run(argv, timeout=max(ctx.options.timeout, 30.0))
    if not result.ok:
        out = result.output
        if "could not select device driver" in out or "unknown or invalid runtime" in out:
            remedy = (
                "Docker has no GPU support: install the NVIDIA Container Toolkit and register it "
                "(sudo apt-get install nvidia-container-toolkit && sudo nvidia-ctk runtime "
                "configure --runtime=docker && sudo systemctl restart docker) - the "
                "container_runtime role does this."
            )
        elif "unsatisfied condition: cuda" in out:
            remedy = (
                "The image needs a newer CUDA than this driver supports: use an image whose CUDA "
                "is no newer than the driver's (see cuda-driver-too-old), or upgrade the driver."
            )
        elif "nvidia-container-cli" in out:
            remedy = (
                "The toolkit is installed but cannot set the container up: run `sudo "
                "nvidia-container-cli -k -d /dev/tty info`; a driver/library mismatch or "
                "missing /dev/nvidia-uvm shows there."
            )
        elif "executable file not found" in out:
            remedy = (
                "nvidia-smi was not injected: the toolkit adds it only with the 'utility' "
                "capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility)."
            )
        else:
            remedy = "Run the docker command by hand and read its error."
        return CheckResult(
            "container-runtime-missing",
            FAIL,
            f"`{' '.join(argv)}` failed (exit {result.rc}): {_first_lines(out)}",
            remedy,
        )
    inside = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not inside or (host_driver and any(v != host_driver for v in inside)):
        return CheckResult(
            "container-runtime-missing",
            FAIL,
            "inside {} the driver is {}, on the host {}".format(
                image, ", ".join(inside) or "unknown", host_driver or "unknown"
            ),
            "The container must use the host's driver libraries: remove driver libraries baked "
            "into the image, and fix the host first if it shows a driver/library mismatch.",
        )
    return CheckResult(
        "container-runtime-missing",
        PASS,
        f"docker run --gpus all {image} sees {len(inside)} GPU(s) with driver {inside[0]}, "
        "same as the host",
    )


def _nvme_controllers(
    ctx: Context, check_id: str
) -> tuple[list[dict[str, Any]], CheckResult | None]:
    text = ctx.read(NVME_FACTS)
    if text is None:
        return [], CheckResult(
            check_id, SKIP, f"no NVMe facts ({NVME_FACTS} is written by the nvme role)"
        )
    try:
        data = json.loads(text)
        controllers = data["controllers"]
        if not isinstance(controllers, list):
            raise TypeError("controllers is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        return [], CheckResult(
            check_id,
            WARN,
            f"{NVME_FACTS} is not the nvme role's JSON: {exc}",
            "Re-run the nvme role to rewrite its facts file.",
        )
    if not controllers:
        return [], CheckResult(check_id, SKIP, "the nvme facts list no NVMe controller")
    return [c for c in controllers if isinstance(c, dict)], None


def _nvme_warning_names(ctrl: dict[str, Any]) -> str:
    """The critical-warning bits by name, as the nvme role decoded them into its fact
    (the collection's module_utils/nvme.py is their one home)."""
    names = ctrl.get("critical_warnings")
    if isinstance(names, list) and names:
        return ", ".join(str(n) for n in names)
    return "bits not named in the facts: re-run the nvme role"


def check_nvme_link(ctx: Context) -> CheckResult:
    controllers, early = _nvme_controllers(ctx, "nvme-link-degraded")
    if early:
        return early
    faults, warns, notes = [], [], []
    for ctrl in controllers:
        link = ctrl.get("link") or {}
        label = "{} ({})".format(ctrl.get("name", "?"), ctrl.get("model", "?"))
        w_cur, w_max = to_int(link.get("current_width")), to_int(link.get("max_width"))
        s_cur, s_max = (
            parse_link_speed(link.get("current_speed")),
            parse_link_speed(link.get("max_speed")),
        )
        if w_cur is None or w_max is None:
            notes.append(f"{label}: link not reported")
            continue
        limit = bench.nvme_link_limit_gbs(s_cur, w_cur) if s_cur else None
        limit_text = f", {limit:.2f} GB/s" if limit else ""
        if w_cur < w_max:
            faults.append(f"{label} links at x{w_cur} of x{w_max}{limit_text}")
        elif s_cur and s_max and s_cur < s_max:
            warns.append(f"{label} runs at {s_cur:g} of {s_max:g} GT/s x{w_cur}{limit_text}")
        else:
            notes.append(f"{label} {s_cur or 0:g} GT/s x{w_cur}{limit_text}")
    remedy = (
        "Move the drive to an M.2 slot wired x4 to the CPU (the board manual lists slots that are "
        "x2 or share lanes with SATA ports or a PCIe slot), or disable the device that shares its "
        "lanes in the firmware setup; an adapter card needs an x4 or wider slot. Check with "
        "`sudo lspci -vv -s <bus id> | grep -E 'LnkCap|LnkSta'`."
    )
    if faults:
        return CheckResult("nvme-link-degraded", FAIL, "; ".join(faults + warns + notes), remedy)
    if warns:
        return CheckResult("nvme-link-degraded", WARN, "; ".join(warns + notes), remedy)
    return CheckResult("nvme-link-degraded", PASS, "; ".join(notes))


def check_nvme_health(ctx: Context) -> CheckResult:
    controllers, early = _nvme_controllers(ctx, "nvme-health")
    if early:
        return early
    fails, warns, notes = [], [], []
    for ctrl in controllers:
        label = "{} ({})".format(ctrl.get("name", "?"), ctrl.get("model", "?"))
        critical = to_int(ctrl.get("critical_warning")) or 0
        used = to_int(ctrl.get("percentage_used"))
        media = to_int(ctrl.get("media_errors")) or 0
        temp = to_int(ctrl.get("temperature_c"))
        if critical:
            names = _nvme_warning_names(ctrl)
            fails.append(f"{label}: critical warning 0x{critical:02x} ({names})")
        if used is not None and used >= 100:
            fails.append(f"{label}: {used}% of its rated endurance used")
        elif used is not None and used >= 90:
            warns.append(f"{label}: {used}% of its rated endurance used")
        if media:
            warns.append(f"{label}: {media} media errors")
        if temp is not None and temp >= 70:
            warns.append(f"{label}: {temp} C")
        notes.append(
            f"{label}: {'?' if used is None else used}% used, {media} media errors, "
            f"{'?' if temp is None else temp} C"
        )
    if fails:
        return CheckResult(
            "nvme-health",
            FAIL,
            "; ".join(fails + warns),
            "Copy the data off the drive now and replace it; `sudo nvme smart-log /dev/<name>` "
            "shows the counters (a temperature warning alone: give it a heatsink and airflow).",
        )
    if warns:
        return CheckResult(
            "nvme-health",
            WARN,
            "; ".join(warns),
            "Watch `sudo nvme smart-log /dev/<name>`; plan the replacement of a worn drive and "
            "cool a hot one (heatsink, airflow).",
        )
    return CheckResult("nvme-health", PASS, "; ".join(notes))


def check_pytorch(ctx: Context) -> CheckResult:
    python = ctx.options.python
    result = ctx.run([python, "-c", TORCH_PROBE], timeout=max(ctx.options.timeout, 45.0))
    if not result.found:
        return CheckResult("pytorch", SKIP, f"{python} is not installed")
    data: dict[str, Any] | None = None
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            break
    if data is None:
        return CheckResult(
            "pytorch",
            FAIL,
            f"the torch probe in {python} died (exit {result.rc}): "
            + _first_lines(result.stderr or result.stdout, 3),
            f"Run `{python} -c 'import torch; print(torch.cuda.is_available())'` by hand; a "
            "crash in import usually means a broken install: reinstall torch in a fresh venv.",
        )
    if data.get("torch") is None:
        return CheckResult(
            "pytorch",
            SKIP,
            "PyTorch is not installed in {} ({})".format(
                python, data.get("import_error", "import failed")
            ),
        )
    version = "torch {} (CUDA {})".format(data["torch"], data.get("cuda_build"))
    if data.get("error"):
        return CheckResult(
            "pytorch",
            FAIL,
            "{}: {}".format(version, data["error"]),
            f"Run the matmul by hand in {python}; errors from the CUDA runtime point at the driver "
            "(see the checks above).",
        )
    if not data.get("cuda_available"):
        warns = "; ".join(data.get("warnings") or []) or "torch.cuda.is_available() is False"
        driver_cuda, _ = ctx.driver_cuda_version()
        remedy = "Install a PyTorch build whose CUDA version the driver supports"
        if driver_cuda:
            remedy += f" (this driver supports CUDA {driver_cuda})"
        if data.get("cuda_build") is None:
            remedy = "This is a CPU-only PyTorch build: install a CUDA build of torch"
        return CheckResult(
            "pytorch",
            FAIL,
            f"{version} does not see a GPU: {warns}",
            remedy + ", e.g. pip install torch --index-url <PyTorch's cuXYZ wheel index>; or "
            "upgrade the driver (see cuda-driver-too-old).",
        )
    errors = data.get("matmul_max_rel_err") or []
    worst = max(errors) if errors else None
    devices = data.get("devices") or []
    message = (
        f"{version}, cuDNN {data.get('cudnn')}, sees {data.get('device_count', 0)} GPU(s): "
        + ", ".join(devices)
    )
    if worst is None or worst > MATMUL_TOLERANCE:
        return CheckResult(
            "pytorch",
            FAIL,
            message
            + f"; 512x512 fp32 matmul differs from the CPU result (max relative error {worst})",
            "Wrong arithmetic on the GPU: rerun, then test the card with a memory test "
            "(e.g. gpu-burn / cuda_memtest) and check `sudo dmesg | grep -i xid`.",
        )
    expected = len(ctx.smi_rows())
    if expected and data.get("device_count", 0) < expected:
        return CheckResult(
            "pytorch",
            WARN,
            f"{message}; nvidia-smi lists {expected}",
            "CUDA_VISIBLE_DEVICES or a container's device list hides GPUs from torch.",
        )
    return CheckResult(
        "pytorch",
        PASS,
        message + f"; 512x512 fp32 matmul matches the CPU (max rel. error {worst:.1e})",
    )


CHECKS: tuple[tuple[str, Callable[[Context], CheckResult]], ...] = (
    ("nvidia-gpu-present", check_gpu_present),
    ("nouveau-loaded", check_nouveau),
    ("nvidia-module-missing", check_nvidia_module),
    ("nvidia-module-missing-for-kernel", check_nvidia_module_for_kernels),
    ("driver-library-mismatch", check_driver_library_mismatch),
    ("nvidia-smi", check_nvidia_smi),
    ("gpu-ecc-errors", check_ecc),
    ("gpu-throttling", check_throttling),
    ("gpu-persistence-mode", check_persistence),
    ("cuda-driver-api", check_cuda_driver_api),
    ("pcie-link-degraded", check_pcie),
    ("cuda-driver-too-old", check_cuda_driver_too_old),
    ("cudnn-missing", check_cudnn),
    ("container-runtime-missing", check_container_runtime),
    ("nvme-link-degraded", check_nvme_link),
    ("nvme-health", check_nvme_health),
    ("pytorch", check_pytorch),
)
# Checks that mean nothing while the driver does not work (nvidia-smi failed).
NEEDS_DRIVER = {"cuda-driver-api", "container-runtime-missing", "pytorch"}


def host_info(ctx: Context) -> dict[str, Any]:
    hostname = ctx.read("/proc/sys/kernel/hostname")
    os_release = parse_os_release(ctx.read("/etc/os-release"))
    return {
        "hostname": hostname.strip() if hostname else None,
        "os": os_release.get("PRETTY_NAME"),
        "kernel": ctx.kernel_release(),
        "probe": ctx.probe.description,
        "gpucheck_python": sys.version.split()[0],
    }


def run_checks(probe: Probe, options: Options | None = None) -> Report:
    """Run every check through ``probe``; never raises (but KeyboardInterrupt)."""
    ctx = Context(probe=probe, options=options or Options())
    mode = probe.mode
    host: dict[str, Any] = {}
    internal: list[str] = []
    try:
        host = host_info(ctx)
        for check_id, fn in CHECKS:
            if check_id != "nvidia-gpu-present" and ctx.status("nvidia-gpu-present") == FAIL:
                ctx.results.append(
                    CheckResult(check_id, SKIP, "no NVIDIA GPU found (see nvidia-gpu-present)")
                )
                continue
            if check_id in NEEDS_DRIVER and ctx.status("nvidia-smi") == FAIL:
                ctx.results.append(
                    CheckResult(check_id, SKIP, "needs a working driver (see nvidia-smi)")
                )
                continue
            try:
                ctx.results.append(fn(ctx))
            except Exception as exc:
                internal.append(f"{check_id}: {type(exc).__name__}: {exc}")
                ctx.results.append(
                    CheckResult(check_id, SKIP, "not judged: the check hit an internal error")
                )
    except Exception as exc:
        internal.append(f"{type(exc).__name__}: {exc}")
    if internal:
        ctx.results.append(
            CheckResult(
                INTERNAL_ERROR,
                FAIL,
                "; ".join(internal),
                "This is a bug in dlsetup's gpucheck: report it with a capture bundle "
                "(python3 -m dlsetup.gpucheck --capture DIR).",
            )
        )
    return Report(
        checks=ctx.results,
        host=host,
        gpus=ctx.gpus,
        mode=mode,
        elapsed_s=time.monotonic() - ctx.started,
    )
