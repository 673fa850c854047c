"""The data model of the compatibility knowledge and of a check's report, and the
version helpers: plain dataclasses, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Field = Literal["gpu", "driver", "cuda", "cudnn", "kernel_modules", "distro"]
KernelModules = Literal["open", "proprietary"]
Version = tuple[int, ...]


NVIDIA_VENDOR_ID = "10de"


class CompatError(ValueError):
    """A GPU, version or distribution that the compatibility data cannot resolve."""


class AmbiguousGpuError(CompatError):
    """A name that matches several GPU models (e.g. "A100", "Titan X")."""

    def __init__(self, query: str, candidates: Sequence[Gpu]) -> None:
        self.query = query
        self.candidates: tuple[Gpu, ...] = tuple(candidates)
        listed = "; ".join(f"{g.name} [{g.pci_id}]" for g in self.candidates)
        super().__init__(f"GPU {query!r} matches several models: {listed}. Name one of them.")

    @property
    def equivalent(self) -> bool:
        """True when every candidate has the same compatibility (arch, compute
        capability, first driver branch), so a check gives the same answer."""
        keys = {
            (g.arch.key, g.compute_capability, g.min_branch, g.max_branch, g.open_kernel_modules)
            for g in self.candidates
        }
        return len(keys) == 1


class UnknownGpuError(CompatError):
    """An NVIDIA PCI device id that neither NVIDIA's lists nor pci.ids know."""

    def __init__(self, query: str, device: str, message: str) -> None:
        self.query = query
        self.device = device
        super().__init__(message)


# ================================================================ data model


@dataclass(frozen=True)
class Spec:
    """Peak figures of one GPU (dense, boost clock), for the bench."""

    fp32_tflops: float
    fp16_tensor_tflops: float | None  # FP16 tensor, FP32 accumulate; None: no tensor cores
    bf16_tensor_tflops: float | None  # None: no BF16
    memory_bandwidth_gbs: float
    memory_gb: float
    pcie_gen: int | None
    pcie_width: int | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_tflops": self.fp32_tflops,
            "fp16_tensor_tflops": self.fp16_tensor_tflops,
            "bf16_tensor_tflops": self.bf16_tensor_tflops,
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "memory_gb": self.memory_gb,
            "pcie_gen": self.pcie_gen,
            "pcie_width": self.pcie_width,
            "source": self.source,
        }


@dataclass(frozen=True)
class Architecture:
    key: str
    name: str
    min_branch: int | None
    max_branch: int | None
    open_kernel_modules: bool
    requires_open_kernel_modules: bool
    support_note: str | None = None


@dataclass(frozen=True)
class Gpu:
    """One GPU model: one or more PCI device ids with the same facts.

    The facts come from data/gpus.json (generated from NVIDIA's
    supported-gpus.json and pci.ids); ``first_branch`` is resolved by the
    loader from the architecture, the chip and the lists that do not name it.
    """

    name: str
    pci_ids: tuple[str, ...]
    arch: Architecture
    compute_capability: str | None  # None: no CUDA (pre-Tesla parts)
    spec: Spec | None = None  # peak figures, where compat.yml has them
    aliases: tuple[str, ...] = ()
    first_branch: int | None = None
    legacy_branch: int | None = None  # NVIDIA's legacy branch: the last that drives it
    kernelopen: bool | None = None  # NVIDIA lists it with the open kernel modules
    listed_in: tuple[str, ...] = ()  # driver releases whose supported-gpus.json names it
    chips: tuple[str, ...] = ()
    note: str | None = None

    @property
    def pci_id(self) -> str:
        """The first PCI id as ``10de:xxxx``."""
        return f"{NVIDIA_VENDOR_ID}:{self.pci_ids[0]}"

    @property
    def sm(self) -> str:
        """The compute capability as a CUDA target, e.g. ``sm_61``."""
        if self.compute_capability is None:
            return "no CUDA"
        return "sm_" + self.compute_capability.replace(".", "")

    @property
    def inferred(self) -> bool:
        """True when no supported-gpus.json names it: its facts follow from its
        pci.ids chip codename and the architecture rules."""
        return not self.listed_in

    @property
    def min_branch(self) -> int | None:
        """The first driver branch that supports this model."""
        return self.first_branch

    @property
    def max_branch(self) -> int | None:
        """The last driver branch that supports it (None: still supported)."""
        return self.legacy_branch if self.legacy_branch is not None else self.arch.max_branch

    @property
    def open_kernel_modules(self) -> bool:
        """Whether the open kernel modules drive it: NVIDIA's kernelopen flag
        where a list says, else the architecture's rule."""
        return self.arch.open_kernel_modules if self.kernelopen is None else self.kernelopen

    @property
    def requires_open_kernel_modules(self) -> bool:
        return self.arch.requires_open_kernel_modules

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pci_ids": [f"{NVIDIA_VENDOR_ID}:{p}" for p in self.pci_ids],
            "architecture": self.arch.name,
            "compute_capability": self.compute_capability,
            "driver_branches": {"min": self.min_branch, "max": self.max_branch},
            "open_kernel_modules": self.open_kernel_modules,
            "listed_in": list(self.listed_in),
            "inferred": self.inferred,
        }


@dataclass(frozen=True)
class CudaToolkit:
    version: str  # "12.4"
    min_driver: Version | None  # GA release's Linux x86_64 driver; None: unknown
    last_update_min_driver: Version | None = None

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class CcSupport:
    first_cuda: Version | None
    last_cuda_major: int | None


@dataclass(frozen=True)
class CudnnRelease:
    """A range of cuDNN releases with the same CUDA builds and hardware floor."""

    first: Version
    last: Version
    cuda: Mapping[int, Version]  # CUDA major -> lowest compute capability

    @property
    def label(self) -> str:
        first, last = _vs(self.first), _vs(self.last)
        return first if first == last else f"{first}-{last}"

    def contains(self, v: Version) -> bool:
        return self.first <= v[: len(self.first)] <= self.last


@dataclass(frozen=True)
class DistroDriver:
    package: str
    version: Version
    default: bool = False
    kernel_modules: KernelModules | None = None
    note: str | None = None


@dataclass(frozen=True)
class Distribution:
    key: str
    name: str
    aliases: tuple[str, ...]
    drivers: tuple[DistroDriver, ...]  # Debian: packages with versions
    driver_branches: tuple[int, ...]  # Ubuntu: ubuntu-drivers branches
    cuda: str | None
    cuda_package: str | None
    cuda_package_version: str | None
    cudnn: str | None


@dataclass(frozen=True)
class CompatData:
    as_of: str
    sources: Mapping[str, Mapping[str, str]]
    architectures: Mapping[str, Architecture]
    gpus: tuple[Gpu, ...]
    cuda: Mapping[str, CudaToolkit]
    minor_compat_floor: Mapping[int, Version]
    cc_support: Mapping[str, CcSupport]
    cudnn: tuple[CudnnRelease, ...]
    cudnn_min_for_cc: Mapping[str, Version]
    open_first_branch: int
    open_default_branch: int
    proprietary_last_branch: int
    known_branches: tuple[int, ...]
    newest_suggested_branch: int
    distributions: Mapping[str, Distribution]
    by_pci_id: Mapping[str, Gpu] = field(default_factory=dict)  # "2504" -> its model
    driver_lists: tuple[str, ...] = ()  # the supported-gpus.json releases the table used
    pci_ids_version: str | None = None
    gpu_inputs: tuple[Mapping[str, str], ...] = ()  # gpus.json's inputs (package, suite, date)
    unplaced: Mapping[str, str] = field(default_factory=dict)  # pci.ids GPU chips no rule places

    def cuda_versions(self) -> list[str]:
        return sorted(self.cuda, key=_v)

    @property
    def newest_list(self) -> str | None:
        """The newest driver release whose supported-gpus.json the table used."""
        return max(self.driver_lists, key=_v) if self.driver_lists else None


# ================================================================ report model


@dataclass(frozen=True)
class Problem:
    field: Field
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class Suggestion:
    """The newest combination that works for every GPU given."""

    driver_branch: int
    cuda: str
    cudnn: str | None
    kernel_modules: KernelModules
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver_branch": self.driver_branch,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "kernel_modules": self.kernel_modules,
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        parts = [f"driver R{self.driver_branch}", f"CUDA {self.cuda}"]
        if self.cudnn:
            parts.append(f"cuDNN {self.cudnn}")
        parts.append(f"{self.kernel_modules} kernel modules")
        return ", ".join(parts)


@dataclass
class Report:
    gpus: list[Gpu]
    inputs: dict[str, str | None]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suggestion: Suggestion | None = None
    suggestion_missing_reason: str | None = None
    unknown_gpus: list[str] = field(default_factory=list)  # NVIDIA ids no source knows

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_fields(self) -> set[str]:
        return {p.field for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "gpus": [g.to_dict() for g in self.gpus],
            "inputs": dict(self.inputs),
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
            "notes": list(self.notes),
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "suggestion_missing_reason": self.suggestion_missing_reason,
            "unknown_gpus": [f"{NVIDIA_VENDOR_ID}:{d}" for d in self.unknown_gpus],
        }


# ================================================================ small helpers


def _v(s: str) -> Version:
    """'535.54.03' -> (535, 54, 3)."""
    return tuple(int(p) for p in s.split("."))


def _vs(v: Version) -> str:
    """(535, 54, 3) -> '535.54.03' (driver style: minor parts two digits)."""
    if len(v) >= 3:
        return f"{v[0]}.{v[1]:02d}." + ".".join(f"{p:02d}" for p in v[2:])
    return ".".join(str(p) for p in v)


def _cmp(a: Version, b: Version) -> int:
    n = max(len(a), len(b))
    pa, pb = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (pa > pb) - (pa < pb)


def _norm(name: str) -> str:
    """Normalise a GPU name for matching: lower case, punctuation to spaces,
    vendor and product-line words dropped."""
    s = name.lower().replace("(", " ").replace(")", " ")
    s = re.sub(r"[^a-z0-9.]+", " ", s)
    words = [w for w in s.split() if w not in {"nvidia", "geforce", "tesla", "quadro"}]
    return " ".join(words)


def _compact(s: str) -> str:
    return s.replace(" ", "")
