"""Parsers for what the smoke test reads: pure functions of text, no I/O.

Each one takes the exact text a tool or a kernel file produces (formats noted
next to each) and returns plain data; anything unrecognised gives None or an
empty result rather than an exception.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

# What a GPU is (vendor, PCI classes) and sysfs' hex ids: the one GPU discovery
# routine's (pci_gpus.py, generated from the collection's module_utils).
from .pci_gpus import GPU_CLASSES, NVIDIA_VENDOR, parse_hex

__all__ = ["GPU_CLASSES", "NVIDIA_VENDOR", "parse_hex"]  # and the parse_* functions below

# Values nvidia-smi prints for a field it cannot give.
SMI_MISSING = {"[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "[Insufficient Permissions]"}


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """'535.261.03' -> (535, 261, 3); None when it does not start with a number."""
    if not text:
        return None
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if match is None:
        return None
    return tuple(int(p) for p in match.group(1).split("."))


def parse_proc_modules(text: str) -> dict[str, dict[str, Any]]:
    """/proc/modules: 'nvidia 56717312 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000'."""
    modules: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        deps = [] if parts[3] == "-" else [d for d in parts[3].split(",") if d]
        try:
            size, refcount = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        modules[parts[0]] = {"size": size, "refcount": refcount, "used_by": deps, "state": parts[4]}
    return modules


def parse_nvidia_kernel_version(text: str | None) -> str | None:
    """/proc/driver/nvidia/version or /sys/module/nvidia/version -> '535.261.03'.

    Formats: 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  <date>',
    'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.126.09  Release Build ...',
    and the sysfs file, which holds the bare version.
    """
    if not text:
        return None
    match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    if match:
        return match.group(1)
    match = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)\s*$", text)
    return match.group(1) if match else None


def parse_lspci_nn(text: str) -> list[dict[str, Any]]:
    """`lspci -nn`: '01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP102
    [GeForce GTX 1080 Ti] [10de:1b06] (rev a1)'."""
    pattern = re.compile(
        r"^(?P<slot>[0-9a-fA-F:.]+)\s+(?P<cls>.+?)\s+\[(?P<code>[0-9a-fA-F]{4})\]:\s+"
        r"(?P<desc>.*?)\s*\[(?P<ven>[0-9a-fA-F]{4}):(?P<dev>[0-9a-fA-F]{4})\]"
        r"(?:\s+\(rev\s+(?P<rev>[0-9a-fA-F]+)\))?(?:\s+\(prog-if[^)]*\))?\s*$"
    )
    devices = []
    for line in text.splitlines():
        match = pattern.match(line.strip())
        if not match:
            continue
        devices.append(
            {
                "slot": match.group("slot"),
                "class_name": match.group("cls"),
                "class": int(match.group("code"), 16),
                "vendor": int(match.group("ven"), 16),
                "device": int(match.group("dev"), 16),
                "description": match.group("desc"),
                "line": line.strip(),
            }
        )
    return devices


def parse_lspci_k(text: str) -> dict[str, str | None]:
    """`lspci -k` (or -nnk, -vk): slot -> 'Kernel driver in use' (None when no driver is bound).

    '01:00.0 VGA compatible controller: NVIDIA Corporation ...' starts a device; its
    indented lines hold '\tKernel driver in use: nvidia' and '\tKernel modules: nouveau, nvidia'.
    """
    drivers: dict[str, str | None] = {}
    slot: str | None = None
    for line in text.splitlines():
        head = re.match(r"^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\s", line)
        if head:
            slot = line.split()[0]
            drivers[slot] = None
            continue
        match = re.match(r"^\s+Kernel driver in use:\s*(\S+)", line)
        if match and slot is not None:
            drivers[slot] = match.group(1)
    return drivers


def parse_uevent(text: str | None) -> dict[str, str]:
    """A sysfs uevent file: KEY=value lines."""
    result: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def smi_value(value: str | None) -> str | None:
    """An nvidia-smi CSV cell, None for '[N/A]' and friends."""
    if value is None:
        return None
    value = value.strip()
    if not value or value in SMI_MISSING:
        return None
    return value


def parse_smi_csv(text: str, fields: list[str]) -> list[dict[str, str | None]]:
    """`nvidia-smi --query-gpu=F1,F2 --format=csv,noheader,nounits`: one row per GPU.

    Rows whose cell count does not match the fields are dropped.
    """
    rows: list[dict[str, str | None]] = []
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    for cells in reader:
        if len(cells) != len(fields):
            continue
        row: dict[str, str | None] = {}
        for index, field in enumerate(fields):
            row[field] = smi_value(cells[index])
        rows.append(row)
    return rows


def smi_invalid_field(text: str) -> str | None:
    """'Field "compute_cap" is not a valid field to query.' -> 'compute_cap'."""
    match = re.search(r'Field\s+["\u201c]([^"\u201d]+)["\u201d]\s+is not a valid field', text)
    return match.group(1) if match else None


# The nvidia-smi table header, by driver generation:
#   3xx/4xx before 410  '| NVIDIA-SMI 384.59     Driver Version: 384.59         |'  (no CUDA field)
#   410 to 595          '| NVIDIA-SMI 535.261.03  Driver Version: 535.261.03  CUDA Version: 12.2 |'
#   610 and later       '| NVIDIA-SMI 610.57.04   KMD Version: 610.57.04   CUDA UMD Version: 13.3 |'
# `nvidia-smi -q` prints the same fields as 'Name : value' lines before the GPUs;
# from 610 the old names carry '[Deprecated; will be removed in CUDA 14.0. ...]'.
DRIVER_FIELDS = ("KMD Version", "Driver Version")  # newest name first
CUDA_FIELDS = ("CUDA UMD Version", "CUDA Version")


def _smi_fields(text: str, separator: str) -> dict[str, str]:
    """The driver and CUDA fields of a header or -q text, each with the field name read."""
    result: dict[str, str] = {}
    for key, names, number in (
        ("driver", DRIVER_FIELDS, r"[0-9]+(?:\.[0-9]+)+"),
        ("cuda", CUDA_FIELDS, r"[0-9]+\.[0-9]+"),
    ):
        for name in names:
            pattern = rf"(?<![A-Za-z]){re.escape(name)}\s*{separator}\s*({number})"
            match = re.search(pattern, text, re.M)
            if match:
                result[key + "_version"] = match.group(1)
                result[key + "_field"] = name
                break
    return result


def parse_smi_header(text: str) -> dict[str, str]:
    """The header of plain `nvidia-smi` (any generation above) ->
    {'driver_version', 'driver_field', 'cuda_version', 'cuda_field'}, each pair only when
    printed: a driver before 410 prints no CUDA field."""
    for line in text.splitlines():
        if "NVIDIA-SMI" in line and "Version:" in line:
            return _smi_fields(line, ":")
    return {}


def parse_smi_q(text: str) -> dict[str, str]:
    """The lines of `nvidia-smi -q` before 'Attached GPUs' ('Driver Version : 440.31',
    'KMD Version : 610.57.04', 'CUDA UMD Version : 13.3'): the same keys as
    parse_smi_header, the 610+ names preferred over the deprecated ones."""
    if "NVSMI LOG" not in text:
        return {}
    head = text.split("Attached GPUs", 1)[0]
    return _smi_fields(head, r"\n?\s*:")


def parse_nvcc_version(text: str) -> str | None:
    """`nvcc --version`: 'Cuda compilation tools, release 11.8, V11.8.89' -> '11.8'."""
    match = re.search(r"release\s+(\d+\.\d+)", text)
    return match.group(1) if match else None


def parse_cuda_version_json(text: str | None) -> str | None:
    """/usr/local/cuda/version.json: {"cuda": {"version": "11.8.20220929"}} -> '11.8'."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    version = data.get("cuda", {}).get("version") if isinstance(data, dict) else None
    if not isinstance(version, str):
        return None
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def parse_cuda_version_txt(text: str | None) -> str | None:
    """/usr/local/cuda/version.txt (CUDA <= 11.0): 'CUDA Version 10.2.89' -> '10.2'."""
    match = re.search(r"CUDA Version\s+(\d+\.\d+)", text or "")
    return match.group(1) if match else None


def parse_ldconfig_p(text: str) -> list[tuple[str, str]]:
    """`ldconfig -p`: '\\tlibcudnn.so.8 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcudnn.so.8'."""
    libs = []
    for line in text.splitlines():
        match = re.match(r"^\s+(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$", line)
        if match:
            libs.append((match.group(1), match.group(3)))
    return libs


def lib_version(filename: str, stem: str) -> str | None:
    """'libnvidia-ml.so.535.261.03', 'libnvidia-ml.so' -> '535.261.03'."""
    prefix = stem + "."
    if not filename.startswith(prefix):
        return None
    rest = filename[len(prefix) :]
    return rest if re.match(r"^\d+(\.\d+)*$", rest) else None


def parse_cudnn_header(text: str | None) -> str | None:
    """cudnn_version.h: '#define CUDNN_MAJOR 8' ... -> '8.9.7'."""
    if not text:
        return None
    parts = []
    for name in ("MAJOR", "MINOR", "PATCHLEVEL"):
        match = re.search(rf"#define\s+CUDNN_{name}\s+(\d+)", text)
        if not match:
            return None
        parts.append(match.group(1))
    return ".".join(parts)


def cudnn_version_from_int(value: int) -> str:
    """cudnnGetVersion(): 8907 -> '8.9.7' (cuDNN 8: M*1000+m*100+p), 90100 -> '9.1.0'."""
    if value >= 90000:
        return f"{value // 10000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


def cuda_version_from_int(value: int) -> str:
    """cuDriverGetVersion(): 12020 -> '12.2'."""
    return f"{value // 1000}.{value % 1000 // 10}"


def parse_link_speed(text: Any) -> float | None:
    """'8.0 GT/s PCIe' (sysfs, nvme facts) -> 8.0."""
    if isinstance(text, (int, float)):
        return float(text)
    match = re.match(r"\s*(\d+(?:\.\d+)?)\s*GT/s", str(text or ""))
    return float(match.group(1)) if match else None


def parse_os_release(text: str | None) -> dict[str, str]:
    """/etc/os-release KEY="value" lines."""
    result: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            result[key.strip()] = value.strip().strip('"')
    return result


def to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return int(float(str(value).strip()))
        except ValueError:
            return None


def to_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None
