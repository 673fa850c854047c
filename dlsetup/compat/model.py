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
        keys = {(g.arch.key, g.compute_capability, g.min_branch) for g in self.candidates}
        return len(keys) == 1


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
    name: str
    pci_ids: tuple[str, ...]
    arch: Architecture
    compute_capability: str
    spec: Spec
    aliases: tuple[str, ...] = ()
    min_branch_override: int | None = None
    note: str | None = None

    @property
    def pci_id(self) -> str:
        """The first PCI id as ``10de:xxxx``."""
        return f"{NVIDIA_VENDOR_ID}:{self.pci_ids[0]}"

    @property
    def sm(self) -> str:
        """The compute capability as a CUDA target, e.g. ``sm_61``."""
        return "sm_" + self.compute_capability.replace(".", "")

    @property
    def min_branch(self) -> int | None:
        """The first driver branch that supports this model."""
        return self.min_branch_override or self.arch.min_branch

    @property
    def max_branch(self) -> int | None:
        return self.arch.max_branch

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pci_ids": [f"{NVIDIA_VENDOR_ID}:{p}" for p in self.pci_ids],
            "architecture": self.arch.name,
            "compute_capability": self.compute_capability,
            "driver_branches": {"min": self.min_branch, "max": self.max_branch},
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

    def cuda_versions(self) -> list[str]:
        return sorted(self.cuda, key=_v)


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
