"""GPU / driver / CUDA / cuDNN compatibility: the knowledge and ``dlsetup compat``.

The facts live in ``dlsetup/data/compat.yml`` (every section names the NVIDIA
table it comes from); this module loads them, answers "does this combination
work on these GPUs, and if not, what should I use instead?", and offers the
``compat`` subcommand::

    dlsetup compat --gpu "GTX 1080 Ti" --driver 580 --cuda 12.8

It is plain Python (stdlib + PyYAML) so the preflight play, the CLI and the
bench can all use it without Ansible.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from dlsetup.exitcodes import ExitCode

__all__ = [
    "AmbiguousGpuError",
    "Architecture",
    "CompatData",
    "CompatError",
    "CudaToolkit",
    "CudnnRelease",
    "Distribution",
    "DistroDriver",
    "Gpu",
    "Problem",
    "Report",
    "Spec",
    "Suggestion",
    "add_arguments",
    "check",
    "cli",
    "distro_default_driver",
    "find_distribution",
    "find_gpu",
    "format_report",
    "gpu_spec",
    "load",
    "recommended_kernel_modules",
    "resolve_kernel_modules",
    "run",
    "suggest",
]

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


# ================================================================ loading


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise CompatError(f"compat.yml: {where}: missing {key!r}")
    return d[key]


def _map(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise CompatError(f"compat.yml: {where}: expected a mapping")
    return {str(k): v for k, v in x.items()}


def _list(x: Any, where: str) -> list[Any]:
    if not isinstance(x, list):
        raise CompatError(f"compat.yml: {where}: expected a list")
    return x


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)


def _opt_str(x: Any) -> str | None:
    return None if x is None else str(x)


def _parse_data(raw: Any) -> CompatData:
    top = _map(raw, "top level")

    archs: dict[str, Architecture] = {}
    for key, a_raw in _map(
        _req(_map(top["architectures"], "architectures"), "items", "architectures"),
        "architectures.items",
    ).items():
        a = _map(a_raw, f"architectures.{key}")
        archs[key] = Architecture(
            key=key,
            name=str(_req(a, "name", key)),
            min_branch=_opt_int(a.get("min_branch")),
            max_branch=_opt_int(a.get("max_branch")),
            open_kernel_modules=bool(a["open_kernel_modules"]),
            requires_open_kernel_modules=bool(a["requires_open_kernel_modules"]),
            support_note=_opt_str(a.get("support_note")),
        )

    gpus: list[Gpu] = []
    for i, g_raw in enumerate(_list(_map(top["gpus"], "gpus")["items"], "gpus.items")):
        g = _map(g_raw, f"gpus[{i}]")
        name = str(_req(g, "name", f"gpus[{i}]"))
        arch_key = str(_req(g, "arch", name))
        if arch_key not in archs:
            raise CompatError(f"compat.yml: GPU {name}: unknown architecture {arch_key!r}")
        s = _map(_req(g, "spec", name), f"{name}.spec")
        spec = Spec(
            fp32_tflops=float(s["fp32_tflops"]),
            fp16_tensor_tflops=None
            if s["fp16_tensor_tflops"] is None
            else float(s["fp16_tensor_tflops"]),
            bf16_tensor_tflops=None
            if s["bf16_tensor_tflops"] is None
            else float(s["bf16_tensor_tflops"]),
            memory_bandwidth_gbs=float(s["memory_bandwidth_gbs"]),
            memory_gb=float(s["memory_gb"]),
            pcie_gen=_opt_int(s.get("pcie_gen")),
            pcie_width=_opt_int(s.get("pcie_width")),
            source=str(_req(s, "source", f"{name}.spec")),
        )
        ids = tuple(str(p).lower() for p in _list(_req(g, "pci_ids", name), f"{name}.pci_ids"))
        for p in ids:
            if not re.fullmatch(r"[0-9a-f]{4}", p):
                raise CompatError(f"compat.yml: GPU {name}: bad PCI id {p!r}")
        gpus.append(
            Gpu(
                name=name,
                pci_ids=ids,
                arch=archs[arch_key],
                compute_capability=str(_req(g, "compute_capability", name)),
                spec=spec,
                aliases=tuple(str(a) for a in g.get("aliases") or ()),
                min_branch_override=_opt_int(g.get("min_branch")),
                note=_opt_str(g.get("note")),
            )
        )

    cuda_sec = _map(top["cuda"], "cuda")
    cuda: dict[str, CudaToolkit] = {}
    for ver, t_raw in _map(cuda_sec["toolkits"], "cuda.toolkits").items():
        t = _map(t_raw, f"cuda.toolkits.{ver}")
        md, lu = t.get("min_driver"), t.get("last_update_min_driver")
        cuda[ver] = CudaToolkit(
            version=ver,
            min_driver=None if md is None else _v(str(md)),
            last_update_min_driver=None if lu is None else _v(str(lu)),
        )
    floors = {
        int(k): _v(str(v))
        for k, v in _map(
            cuda_sec["minor_version_compatibility"], "cuda.minor_version_compatibility"
        ).items()
    }

    cc_support: dict[str, CcSupport] = {}
    for cc, c_raw in _map(
        _map(top["compute_capabilities"], "compute_capabilities")["items"],
        "compute_capabilities.items",
    ).items():
        c = _map(c_raw, f"compute_capabilities.{cc}")
        fc = c.get("first_cuda")
        cc_support[cc] = CcSupport(
            first_cuda=None if fc is None else _v(str(fc)),
            last_cuda_major=_opt_int(c.get("last_cuda_major")),
        )

    dnn_sec = _map(top["cudnn"], "cudnn")
    cudnn: list[CudnnRelease] = []
    for i, r_raw in enumerate(_list(dnn_sec["releases"], "cudnn.releases")):
        r = _map(r_raw, f"cudnn.releases[{i}]")
        cudnn.append(
            CudnnRelease(
                first=_v(str(r["first"])),
                last=_v(str(r["last"])),
                cuda={
                    int(k): _v(str(v))
                    for k, v in _map(r["cuda"], f"cudnn.releases[{i}].cuda").items()
                },
            )
        )
    cudnn.sort(key=lambda r: r.first)
    dnn_min_cc = {
        str(k): _v(str(v))
        for k, v in _map(
            dnn_sec.get("min_version_for_cc") or {}, "cudnn.min_version_for_cc"
        ).items()
    }

    km = _map(top["kernel_modules"], "kernel_modules")
    br = _map(top["driver_branches"], "driver_branches")

    distros: dict[str, Distribution] = {}
    for key, d_raw in _map(
        _map(top["distributions"], "distributions")["items"], "distributions.items"
    ).items():
        d = _map(d_raw, f"distributions.{key}")
        drivers = []
        for drv_raw in d.get("drivers") or ():
            drv = _map(drv_raw, f"{key}.drivers")
            flavor = drv.get("kernel_modules")
            drivers.append(
                DistroDriver(
                    package=str(drv["package"]),
                    version=_v(str(drv["version"])),
                    default=bool(drv.get("default", False)),
                    kernel_modules="open"
                    if flavor == "open"
                    else ("proprietary" if flavor == "proprietary" else None),
                    note=_opt_str(drv.get("note")),
                )
            )
        ct = _map(d.get("cuda_toolkit") or {}, f"{key}.cuda_toolkit")
        dn = _map(d.get("cudnn") or {}, f"{key}.cudnn")
        distros[key] = Distribution(
            key=key,
            name=str(d["name"]),
            aliases=tuple(str(a) for a in d.get("aliases") or ()),
            drivers=tuple(drivers),
            driver_branches=tuple(int(b) for b in d.get("driver_branches") or ()),
            cuda=_opt_str(ct.get("cuda")),
            cuda_package=_opt_str(ct.get("package")),
            cuda_package_version=_opt_str(ct.get("version")),
            cudnn=_opt_str(dn.get("cudnn")),
        )

    data = CompatData(
        as_of=str(top.get("as_of", "")),
        sources={
            k: {kk: str(vv) for kk, vv in _map(v, f"sources.{k}").items()}
            for k, v in _map(top["sources"], "sources").items()
        },
        architectures=archs,
        gpus=tuple(gpus),
        cuda=cuda,
        minor_compat_floor=floors,
        cc_support=cc_support,
        cudnn=tuple(cudnn),
        cudnn_min_for_cc=dnn_min_cc,
        open_first_branch=int(km["open_first_branch"]),
        open_default_branch=int(km["open_default_branch"]),
        proprietary_last_branch=int(km["proprietary_last_branch"]),
        known_branches=tuple(sorted(int(b) for b in _list(br["known"], "driver_branches.known"))),
        newest_suggested_branch=int(br["newest_suggested"]),
        distributions=distros,
    )
    _validate(data)
    return data


def _validate(data: CompatData) -> None:
    seen: dict[str, str] = {}
    for g in data.gpus:
        if g.compute_capability not in data.cc_support:
            raise CompatError(
                f"compat.yml: GPU {g.name}: compute capability "
                f"{g.compute_capability} missing from compute_capabilities"
            )
        for p in g.pci_ids:
            if p in seen:
                raise CompatError(f"compat.yml: PCI id {p} on both {seen[p]} and {g.name}")
            seen[p] = g.name
    for key, d in data.distributions.items():
        if d.cuda is not None and d.cuda not in data.cuda:
            raise CompatError(f"compat.yml: distribution {key}: CUDA {d.cuda} not in cuda.toolkits")


def _yaml_load(text: str) -> Any:
    """yaml.safe_load, with libyaml's C loader when PyYAML has it (5-10x faster)."""
    if hasattr(yaml, "CSafeLoader"):
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.safe_load(text)


def load_path(path: Path) -> CompatData:
    """Load the compatibility data from ``path`` (the generator reads the checkout's file)."""
    return _parse_data(_yaml_load(path.read_text(encoding="utf-8")))


@functools.cache
def load() -> CompatData:
    """Load (once) the compatibility data shipped in ``dlsetup/data/compat.yml``."""
    text = (resources.files("dlsetup.data") / "compat.yml").read_text(encoding="utf-8")
    return _parse_data(_yaml_load(text))


# ================================================================ GPU lookup


_PCI_RE = re.compile(r"^(?:(?P<vendor>[0-9a-f]{4}):|0x)?(?P<device>[0-9a-f]{4})$")


def _name_keys(g: Gpu) -> set[str]:
    keys = set()
    for n in (g.name, *g.aliases):
        k = _norm(n)
        keys.add(k)
        keys.add(_compact(k))
    return keys


def find_gpu(name_or_pci_id: str) -> Gpu:
    """Resolve a marketing name ("GTX 1080 Ti", "nvidia geforce gtx 1080 ti",
    "NVIDIA H100 80GB HBM3") or a PCI device id ("1b06", "10de:1b06", "0x1b06").

    Raises :class:`CompatError` (naming the input and suggesting close names)
    when nothing matches, :class:`AmbiguousGpuError` when several models do.
    """
    data = load()
    query = name_or_pci_id.strip()
    if not query:
        raise CompatError(
            "empty GPU name: give a name like 'GTX 1080 Ti' or a PCI id like 10de:1b06"
        )
    low = query.lower()

    m = _PCI_RE.match(low)
    if m:
        vendor, device = m.group("vendor"), m.group("device")
        if vendor is not None and vendor != NVIDIA_VENDOR_ID:
            raise CompatError(f"GPU {query!r}: vendor {vendor} is not NVIDIA (10de)")
        for g in data.gpus:
            if device in g.pci_ids:
                return g
        if vendor is not None or low.startswith("0x"):
            raise CompatError(
                f"GPU {query!r}: PCI device id {NVIDIA_VENDOR_ID}:{device} is not in the "
                f"compatibility data ({len(data.gpus)} models; see `dlsetup compat --list-gpus`)"
            )
        # "a100", "4090": not a known id, so try it as a name

    q = _norm(query)
    if not q:
        raise CompatError(f"GPU {query!r}: no model name left after dropping vendor words")
    exact = [g for g in data.gpus if q in _name_keys(g) or _compact(q) in _name_keys(g)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise AmbiguousGpuError(query, exact)

    qwords = set(q.split())
    partial = [
        g for g in data.gpus if any(qwords <= set(_norm(n).split()) for n in (g.name, *g.aliases))
    ]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise AmbiguousGpuError(query, partial)

    names = {_norm(n): n for g in data.gpus for n in (g.name, *g.aliases)}
    close = difflib.get_close_matches(q, list(names), n=4, cutoff=0.5)
    hint = (" Did you mean: " + ", ".join(repr(names[c]) for c in close) + "?") if close else ""
    as_id = f" (nor as PCI id {NVIDIA_VENDOR_ID}:{low})" if m else ""
    raise CompatError(
        f"GPU {query!r} is not in the compatibility data{as_id}.{hint} "
        "A PCI id (lspci -nn: 10de:xxxx) also works; `dlsetup compat --list-gpus` lists all."
    )


def gpu_spec(gpu: str | Gpu) -> Spec:
    """Peak figures (dense FP32 / FP16 / BF16, memory bandwidth, PCIe) for the bench."""
    return (gpu if isinstance(gpu, Gpu) else find_gpu(gpu)).spec


def find_distribution(name: str) -> Distribution:
    """Resolve 'debian-12', 'bookworm', 'ubuntu-24.04', 'noble', ..."""
    data = load()
    q = name.strip().lower().replace(" ", "-")
    for d in data.distributions.values():
        if q == d.key or q in (a.lower() for a in d.aliases):
            return d
    raise CompatError(
        f"distribution {name!r} is not in the data (known: {', '.join(data.distributions)})"
    )


# ================================================================ kernel modules


def _arch(arch: str | Architecture) -> Architecture:
    if isinstance(arch, Architecture):
        return arch
    data = load()
    key = arch.strip().lower()
    for a in data.architectures.values():
        if key in (a.key, a.name.lower()):
            return a
    raise CompatError(f"architecture {arch!r} unknown (known: {', '.join(data.architectures)})")


def recommended_kernel_modules(arch: str | Architecture, branch: int | str) -> KernelModules:
    """The kernel module flavor NVIDIA recommends for ``arch`` on driver ``branch``.

    Pre-Turing GPUs only run the proprietary modules; Blackwell only the open
    ones; Turing and newer get open from R560 on (NVIDIA's default) and from
    R615 on there is no proprietary flavor at all.
    """
    a = _arch(arch)
    b = int(branch)
    data = load()
    if not a.open_kernel_modules:
        return "proprietary"
    # (R615 and later ship no proprietary flavor; they are past R560 anyway)
    if a.requires_open_kernel_modules or b >= data.open_default_branch:
        return "open"
    return "proprietary"


def _flavors_possible(gpus: Sequence[Gpu], branch: int | None) -> set[KernelModules]:
    data = load()
    out: set[KernelModules] = set()
    if all(g.arch.open_kernel_modules for g in gpus) and (
        branch is None or branch >= data.open_first_branch
    ):
        out.add("open")
    if not any(g.arch.requires_open_kernel_modules for g in gpus) and (
        branch is None or branch <= data.proprietary_last_branch
    ):
        out.add("proprietary")
    return out


def _recommended_for(gpus: Sequence[Gpu], branch: int) -> KernelModules | None:
    possible = _flavors_possible(gpus, branch)
    if not possible:
        return None
    if len(possible) == 1:
        return next(iter(possible))
    return "open" if branch >= load().open_default_branch else "proprietary"


# ================================================================ input parsing


@dataclass(frozen=True)
class _Driver:
    text: str
    version: Version  # (535,) for a branch
    is_branch: bool

    @property
    def branch(self) -> int:
        return self.version[0]

    def label(self) -> str:
        return f"R{self.branch}" if self.is_branch else _vs(self.version)


_DRIVER_RE = re.compile(r"^[rR]?(\d{3})$|^(\d{3}\.\d{1,3}(?:\.\d{1,3})?)$")
_CUDA_RE = re.compile(r"^(\d{1,2})\.(\d{1,2})(?:\.\d{1,3})?$")
_CUDNN_RE = re.compile(r"^(\d{1,2})(?:\.(\d{1,2})(?:\.\d{1,3}){0,2})?$")


def _parse_driver(text: str, problems: list[Problem]) -> _Driver | None:
    m = _DRIVER_RE.match(text.strip())
    if not m:
        problems.append(
            Problem(
                "driver",
                (
                    f"driver {text!r} is not a driver branch or version: expected a branch "
                    "like 535 "
                    "or a full version like 535.261.03 (as nvidia-smi prints it)"
                ),
            )
        )
        return None
    if m.group(1):
        return _Driver(text, (int(m.group(1)),), True)
    return _Driver(text, _v(m.group(2)), False)


def _parse_cuda(text: str, problems: list[Problem]) -> CudaToolkit | None:
    data = load()
    m = _CUDA_RE.match(text.strip())
    if not m:
        problems.append(
            Problem(
                "cuda",
                (
                    f"CUDA {text!r} is not a CUDA version: expected X.Y like 12.4 "
                    "(the major alone is not enough: the driver a toolkit needs "
                    "depends on the minor)"
                ),
            )
        )
        return None
    key = f"{int(m.group(1))}.{int(m.group(2))}"
    if key not in data.cuda:
        vs = data.cuda_versions()
        problems.append(
            Problem(
                "cuda",
                (
                    f"CUDA {key} is not a CUDA release in the data (known: {vs[0]} to {vs[-1]}: "
                    f"{', '.join(vs)})"
                ),
            )
        )
        return None
    return data.cuda[key]


def _parse_cudnn(text: str, problems: list[Problem]) -> tuple[int, int | None] | None:
    m = _CUDNN_RE.match(text.strip())
    if not m:
        problems.append(
            Problem(
                "cudnn",
                (f"cuDNN {text!r} is not a cuDNN version: expected N or N.M like 9 or 9.10"),
            )
        )
        return None
    return int(m.group(1)), (None if m.group(2) is None else int(m.group(2)))


def _parse_kernel_modules(text: str, problems: list[Problem]) -> str | None:
    t = text.strip().lower()
    if t in ("open", "proprietary", "auto"):
        return t
    problems.append(
        Problem(
            "kernel_modules", (f"kernel modules {text!r}: expected 'open', 'proprietary' or 'auto'")
        )
    )
    return None


# ================================================================ the checks


def _cc(gpu: Gpu) -> Version:
    return _v(gpu.compute_capability)


def _cuda_supports_gpu(data: CompatData, cuda: CudaToolkit, gpu: Gpu) -> bool:
    s = data.cc_support[gpu.compute_capability]
    if s.first_cuda is not None and _cmp(_v(cuda.version), s.first_cuda) < 0:
        return False
    return s.last_cuda_major is None or cuda.major <= s.last_cuda_major


def _newest_cuda_for(
    data: CompatData,
    gpus: Sequence[Gpu],
    major: int | None = None,
    *,
    known_driver: bool = False,
) -> str | None:
    """The newest CUDA X.Y that builds for all ``gpus`` (optionally within one
    major, optionally only releases whose minimum driver is known)."""
    for ver in reversed(data.cuda_versions()):
        t = data.cuda[ver]
        if major is not None and t.major != major:
            continue
        if known_driver and t.min_driver is None:
            continue
        if all(_cuda_supports_gpu(data, t, g) for g in gpus):
            return ver
    return None


def _newest_cuda_native(
    data: CompatData, gpus: Sequence[Gpu], major: int | None, branch: int
) -> str | None:
    """The newest CUDA X.Y for ``gpus`` whose own minimum driver is in ``branch``
    or older (no minor version compatibility needed)."""
    for ver in reversed(data.cuda_versions()):
        t = data.cuda[ver]
        if major is not None and t.major != major:
            continue
        if t.min_driver is None or t.min_driver[0] > branch:
            continue
        if all(_cuda_supports_gpu(data, t, g) for g in gpus):
            return ver
    return None


def _branch_supports(gpu: Gpu, branch: int) -> bool:
    lo, hi = gpu.min_branch, gpu.max_branch
    return (lo is None or branch >= lo) and (hi is None or branch <= hi)


def distro_default_driver(distro: str, gpus: Sequence[Gpu] = ()) -> str | None:
    """The driver a distribution's own packages give: the version of Debian's
    default package, or Ubuntu's newest branch that drives all ``gpus``."""
    dist = find_distribution(distro)
    default = next((d for d in dist.drivers if d.default), None)
    if default is not None:
        return _vs(default.version)
    if dist.driver_branches:
        fitting = [b for b in dist.driver_branches if all(_branch_supports(g, b) for g in gpus)]
        return str(max(fitting or dist.driver_branches))
    return None


def resolve_kernel_modules(gpus: Sequence[Gpu], branch: int | str) -> KernelModules:
    """What ``kernel_modules: auto`` means on driver ``branch`` for these GPUs:
    NVIDIA's recommendation for their architecture; with no GPU at all, NVIDIA's
    default for the branch (open from R560 on)."""
    b = int(branch)
    if gpus:
        pick = _recommended_for(gpus, b)
        if pick is not None:
            return pick
        # no single flavor drives them all (check() reports it); prefer the one
        # that drives the older GPUs
        return "proprietary" if any(not g.arch.open_kernel_modules for g in gpus) else "open"
    return "open" if b >= load().open_default_branch else "proprietary"


def _driver_at_least(drv: _Driver, need: Version) -> bool:
    """Does the given driver satisfy a minimum?  A bare branch is taken as its
    newest release: R535 satisfies 535.54.03."""
    if drv.is_branch:
        return drv.branch >= need[0]
    return _cmp(drv.version, need) >= 0


def _cudnn_ok(data: CompatData, rel: CudnnRelease, cuda_major: int, gpus: Sequence[Gpu]) -> bool:
    if cuda_major not in rel.cuda:
        return False
    floor = rel.cuda[cuda_major]
    for g in gpus:
        if _cmp(_cc(g), floor) < 0:
            return False
        need = data.cudnn_min_for_cc.get(g.compute_capability)
        if need is not None and _cmp(rel.last, need) < 0:
            return False
    return True


def _cudnn_label(rel: CudnnRelease, gpus: Sequence[Gpu], data: CompatData) -> str:
    """The label of a release range, trimmed to the part the GPUs can use
    (Blackwell needs >= 9.7 inside the 9.0-9.10 range)."""
    first = rel.first
    for g in gpus:
        need = data.cudnn_min_for_cc.get(g.compute_capability)
        if need is not None and _cmp(need, first) > 0:
            first = need
    return CudnnRelease(first, rel.last, rel.cuda).label


def suggest(gpus: Sequence[Gpu]) -> tuple[Suggestion | None, str | None]:
    """The newest (driver branch, CUDA, cuDNN, kernel modules) that works on all
    ``gpus``; or (None, why) when no single combination does."""
    data = load()
    if not gpus:
        return None, "no GPU given"
    branches = [b for b in data.known_branches if b <= data.newest_suggested_branch]
    usable = [b for b in branches if all(_branch_supports(g, b) for g in gpus)]
    if not usable:
        parts = []
        for g in _distinct(gpus):
            lo = f"R{g.min_branch}" if g.min_branch else "any"
            hi = f"R{g.max_branch}" if g.max_branch else "newest"
            parts.append(f"{g.name} needs {lo} to {hi}")
        return None, "no driver branch supports all these GPUs: " + "; ".join(parts)
    usable = [b for b in usable if _flavors_possible(gpus, b)]
    if not usable:
        need_open = [g.name for g in _distinct(gpus) if g.arch.requires_open_kernel_modules]
        no_open = [g.name for g in _distinct(gpus) if not g.arch.open_kernel_modules]
        return None, (
            "no kernel module flavor drives all these GPUs: the open modules are required by "
            f"{', '.join(need_open)} and unsupported on {', '.join(no_open)}"
        )
    branch = max(usable)

    notes: list[str] = []
    cuda_choice = _newest_cuda_native(data, gpus, None, branch)
    if cuda_choice is None:
        return None, "no CUDA release in the data supports all these GPUs"
    newest_cc = _newest_cuda_for(data, gpus, known_driver=True)
    if newest_cc and _cmp(_v(newest_cc), _v(cuda_choice)) > 0:
        t = data.cuda[newest_cc]
        floor = data.minor_compat_floor.get(t.major)
        if floor is not None and t.major == data.cuda[cuda_choice].major and branch >= floor[0]:
            notes.append(
                f"CUDA {newest_cc} also runs on R{branch} through minor version compatibility "
                f"(driver >= {_vs(floor)}), without PTX JIT; {cuda_choice} is the newest "
                f"toolkit R{branch} supports fully"
            )

    major = data.cuda[cuda_choice].major
    dnn: str | None = None
    for rel in reversed(data.cudnn):
        if _cudnn_ok(data, rel, major, gpus):
            dnn = _vs(rel.last)
            break
    if dnn is None:
        notes.append(f"no cuDNN release in the data supports CUDA {major} on these GPUs")

    flavor = _recommended_for(gpus, branch)
    assert flavor is not None  # branch was filtered on _flavors_possible
    max_arch = [g for g in gpus if g.max_branch is not None and g.max_branch == branch]
    if max_arch:
        note = max_arch[0].arch.support_note
        if note:
            notes.append(note.strip())
    return Suggestion(branch, cuda_choice, dnn, flavor, tuple(notes)), None


def _distinct(gpus: Iterable[Gpu]) -> list[Gpu]:
    out: list[Gpu] = []
    for g in gpus:
        if g not in out:
            out.append(g)
    return out


def _check_driver(data: CompatData, gpus: Sequence[Gpu], drv: _Driver, rep: Report) -> None:
    b = drv.branch
    if b not in data.known_branches:
        rep.warnings.append(
            Problem(
                "driver",
                (
                    f"R{b} is not a driver branch this data knows "
                    f"(known up to R{data.known_branches[-1]}); "
                    "checked by its number only"
                ),
            )
        )
    for g in _distinct(gpus):
        if g.min_branch is not None and b < g.min_branch:
            rep.problems.append(
                Problem(
                    "driver",
                    (
                        f"{g.name} ({g.arch.name}, {g.sm}) needs driver branch R{g.min_branch} or "
                        f"newer; {drv.label()} does not support it."
                    ),
                )
            )
        if g.max_branch is not None and b > g.max_branch:
            note = f" {g.arch.support_note.strip()}" if g.arch.support_note else ""
            rep.problems.append(
                Problem(
                    "driver",
                    (
                        f"{g.name} ({g.arch.name}) is supported up to driver branch "
                        f"R{g.max_branch}; "
                        f"{drv.label()} no longer drives it.{note}"
                    ),
                )
            )


def _check_cuda(data: CompatData, gpus: Sequence[Gpu], cuda: CudaToolkit, rep: Report) -> None:
    for g in _distinct(gpus):
        s = data.cc_support[g.compute_capability]
        if s.last_cuda_major is not None and cuda.major > s.last_cuda_major:
            newest = _newest_cuda_for(data, [g], s.last_cuda_major)
            dropped = {
                9: "CUDA 9 dropped Fermi (sm_20, sm_21)",
                11: "CUDA 11 dropped sm_30 (Kepler GK10x)",
                12: "CUDA 12 dropped Kepler (sm_35, sm_37)",
                13: "CUDA 13 dropped Maxwell, Pascal and Volta (sm_50 to sm_72)",
            }
            why = dropped.get(
                s.last_cuda_major + 1,
                f"CUDA {s.last_cuda_major + 1} dropped compute capability {g.compute_capability}",
            )
            advice = f"Use CUDA {s.last_cuda_major}.x (newest {newest})."
            if g.max_branch is not None and newest is not None:
                native = _newest_cuda_native(data, [g], s.last_cuda_major, g.max_branch)
                if native is not None and native != newest:
                    advice = (
                        f"Use CUDA {s.last_cuda_major}.x: {native} is the newest that "
                        f"R{g.max_branch}, the last driver branch for {g.arch.name}, runs "
                        f"fully ({newest} only through minor version compatibility)."
                    )
            rep.problems.append(
                Problem(
                    "cuda",
                    (
                        f"CUDA {cuda.version} cannot run on {g.name} ({g.arch.name}, {g.sm}): "
                        f"{why}. {advice}"
                    ),
                )
            )
        elif s.first_cuda is not None and _cmp(_v(cuda.version), s.first_cuda) < 0:
            rep.problems.append(
                Problem(
                    "cuda",
                    (
                        f"{g.name} ({g.sm}) needs CUDA {_vs(s.first_cuda)} or newer; "
                        f"CUDA {cuda.version} cannot build for it."
                    ),
                )
            )


def _check_cuda_driver(data: CompatData, cuda: CudaToolkit, drv: _Driver, rep: Report) -> None:
    floor = data.minor_compat_floor.get(cuda.major)
    if cuda.min_driver is None:
        if floor is not None and not _driver_at_least(drv, floor):
            rep.problems.append(
                Problem(
                    "driver",
                    (
                        f"driver {drv.label()} is too old for CUDA {cuda.version}: every CUDA "
                        f"{cuda.major}.x needs at least {_vs(floor)}"
                    ),
                )
            )
        else:
            rep.warnings.append(
                Problem(
                    "cuda",
                    (
                        f"the minimum driver of CUDA {cuda.version} is not in the data "
                        "(it no longer "
                        f"bundles a Linux driver); only the CUDA {cuda.major}.x floor was checked"
                    ),
                )
            )
        return
    if _driver_at_least(drv, cuda.min_driver):
        return
    need = _vs(cuda.min_driver)
    if floor is not None and _driver_at_least(drv, floor):
        rep.warnings.append(
            Problem(
                "driver",
                (
                    f"driver {drv.label()} is older than CUDA {cuda.version}'s own driver "
                    f"(>= {need}): "
                    f"it runs CUDA {cuda.version} applications only through minor version "
                    f"compatibility (CUDA {cuda.major}.x needs >= {_vs(floor)}), so PTX JIT is "
                    f"unavailable and features that need a newer driver fail. "
                    f"Use R{cuda.min_driver[0]} or newer for full support."
                ),
            )
        )
        return
    compat = (
        f" (or >= {_vs(floor)} with minor version compatibility)"
        if floor is not None
        else f" (CUDA {cuda.major} has no minor version compatibility)"
    )
    rep.problems.append(
        Problem(
            "driver",
            (
                f"driver {drv.label()} is too old for CUDA {cuda.version}: it needs >= {need}"
                f"{compat}."
            ),
        )
    )


def _merge_ranges(spans: Sequence[tuple[Version, Version]]) -> str:
    """[(9.0, 9.10), (9.11, 9.11), (9.12, 9.28)] -> '9.0-9.28'; gaps stay visible."""
    merged: list[tuple[Version, Version]] = []
    for first, last in sorted(spans):
        if merged:
            pf, pl = merged[-1]
            if first[0] == pl[0] and first[1] <= pl[1] + 1:
                merged[-1] = (pf, max(pl, last))
                continue
        merged.append((first, last))
    return ", ".join(CudnnRelease(f, la, {}).label for f, la in merged) or "none"


def _cudnn_ranges(data: CompatData, cuda_major: int, gpus: Sequence[Gpu] = ()) -> str:
    """The cuDNN releases with a CUDA ``cuda_major`` build that support ``gpus``."""
    spans = []
    for r in data.cudnn:
        if cuda_major in r.cuda and _cudnn_ok(data, r, cuda_major, gpus):
            spans.append((_v(_cudnn_label(r, gpus, data).split("-")[0]), r.last))
    return _merge_ranges(spans)


def _check_cudnn(
    data: CompatData,
    gpus: Sequence[Gpu],
    want: tuple[int, int | None],
    cuda: CudaToolkit | None,
    rep: Report,
) -> None:
    major, minor = want
    label = f"{major}" if minor is None else f"{major}.{minor}"
    rels = [r for r in data.cudnn if r.first[0] == major]
    if not rels:
        known = sorted({r.first[0] for r in data.cudnn})
        rep.problems.append(
            Problem(
                "cudnn",
                (f"cuDNN {label} is not in the data (known: {', '.join(f'{k}.x' for k in known)})"),
            )
        )
        return
    if minor is not None:
        rels = [r for r in rels if r.contains((major, minor))]
        if not rels:
            rep.warnings.append(
                Problem(
                    "cudnn",
                    (
                        f"cuDNN {label} is not in the data's support matrix excerpt "
                        f"(known: {', '.join(r.label for r in data.cudnn)}); not checked"
                    ),
                )
            )
            return
    majors = [cuda.major] if cuda else sorted({m for r in rels for m in r.cuda})
    if cuda is None and gpus:
        # without a CUDA version, a cuDNN fits when some CUDA major fits both it and the GPUs
        majors = [m for m in majors if _newest_cuda_for(data, gpus, m) is not None]
    working = [(r, m) for r in rels for m in majors if _cudnn_ok(data, r, m, gpus)]
    if working and minor is not None:
        for g in _distinct(gpus):
            need = data.cudnn_min_for_cc.get(g.compute_capability)
            if need is not None and _cmp((major, minor), need) < 0:
                rep.problems.append(
                    Problem(
                        "cudnn",
                        f"{g.name} ({g.arch.name}, {g.sm}) needs cuDNN {_vs(need)} or newer; "
                        f"cuDNN {label} does not support it.",
                    )
                )
                return
    if working:
        if minor is None and cuda is not None:
            spans = [(_v(_cudnn_label(r, gpus, data).split("-")[0]), r.last) for r, _ in working]
            rep.notes.append(
                f"cuDNN {label} with CUDA {cuda.major}.x on these GPUs means {_merge_ranges(spans)}"
            )
        return
    where = f"CUDA {cuda.major}" if cuda else "any CUDA these GPUs run"
    has_build = [r for r in rels for m in majors if m in r.cuda]
    if cuda is not None and not has_build:
        msg = (
            f"cuDNN {label} has no build for CUDA {cuda.major} "
            f"(cuDNN releases for CUDA {cuda.major}: {_cudnn_ranges(data, cuda.major)})"
        )
    else:
        reasons = []
        for g in _distinct(gpus):
            for r in rels:
                for m in majors:
                    if m not in r.cuda:
                        continue
                    floor = r.cuda[m]
                    if _cmp(_cc(g), floor) < 0:
                        reasons.append(
                            f"cuDNN {r.label} for CUDA {m} needs compute capability "
                            f">= {_vs(floor)}, {g.name} is {g.compute_capability}"
                        )
                    need = data.cudnn_min_for_cc.get(g.compute_capability)
                    if need is not None and _cmp(r.last, need) < 0:
                        reasons.append(f"{g.name} ({g.arch.name}) needs cuDNN {_vs(need)} or newer")
        msg = f"cuDNN {label} does not work with {where} on these GPUs: " + "; ".join(
            dict.fromkeys(reasons) or ["no matching build"]
        )
        if cuda is not None:
            msg += (
                f" (cuDNN for CUDA {cuda.major} on these GPUs: "
                f"{_cudnn_ranges(data, cuda.major, gpus)})"
            )
    rep.problems.append(Problem("cudnn", msg + "."))


def _check_kernel_modules(
    data: CompatData, gpus: Sequence[Gpu], km: str | None, drv: _Driver | None, rep: Report
) -> None:
    distinct = _distinct(gpus)
    need_open = [g for g in distinct if g.arch.requires_open_kernel_modules]
    no_open = [g for g in distinct if not g.arch.open_kernel_modules]
    if need_open and no_open:
        rep.problems.append(
            Problem(
                "kernel_modules",
                (
                    "no kernel module flavor drives all these GPUs: the open modules are "
                    f"required by {', '.join(g.name for g in need_open)} "
                    f"({need_open[0].arch.name}) and unsupported on "
                    f"{', '.join(g.name for g in no_open)} ({no_open[0].arch.name}); "
                    "put them in different machines"
                ),
            )
        )
        return
    branch = drv.branch if drv else None
    flavor: str | None = km
    if km == "auto":
        if branch is None:
            flavor = "proprietary" if no_open else "open"
        else:
            flavor = _recommended_for(distinct, branch)
            if flavor is None:
                rep.problems.append(
                    Problem(
                        "kernel_modules",
                        (f"no kernel module flavor of driver R{branch} drives these GPUs"),
                    )
                )
                return
        rep.notes.append(f"kernel modules 'auto' resolves to {flavor}")
    if flavor == "open":
        for g in no_open:
            rep.problems.append(
                Problem(
                    "kernel_modules",
                    (
                        f"the open kernel modules need Turing or newer (they rely on the GPU "
                        "System "
                        f"Processor); {g.name} is {g.arch.name}: use the proprietary modules"
                    ),
                )
            )
        if branch is not None and branch < data.open_first_branch:
            rep.problems.append(
                Problem(
                    "kernel_modules",
                    (
                        f"the open kernel modules first shipped with R{data.open_first_branch}; "
                        f"R{branch} has only the proprietary ones"
                    ),
                )
            )
        elif branch is not None and branch < data.open_default_branch and not no_open:
            rep.warnings.append(
                Problem(
                    "kernel_modules",
                    (
                        f"before R{data.open_default_branch} the open modules were not "
                        "NVIDIA's default "
                        "(GeForce and workstation support was alpha/beta quality)"
                    ),
                )
            )
    elif flavor == "proprietary":
        for g in need_open:
            rep.problems.append(
                Problem(
                    "kernel_modules",
                    (
                        f"{g.name} ({g.arch.name}) runs only with the open kernel modules; the "
                        "proprietary flavor does not support it"
                    ),
                )
            )
        if branch is not None and branch > data.proprietary_last_branch:
            rep.problems.append(
                Problem(
                    "kernel_modules",
                    (
                        f"R{branch} ships no proprietary kernel modules (removed after "
                        f"R{data.proprietary_last_branch}); use the open ones"
                    ),
                )
            )
        elif (
            not need_open and not no_open and (branch is None or branch >= data.open_default_branch)
        ):
            rep.warnings.append(
                Problem(
                    "kernel_modules",
                    (
                        f"for Turing and newer GPUs NVIDIA recommends the open kernel modules from "
                        f"R{data.open_default_branch} on, and branches after "
                        f"R{data.proprietary_last_branch} ship only those"
                    ),
                )
            )


def _distro_defaults(
    data: CompatData,
    dist: Distribution,
    gpus: Sequence[Gpu],
    *,
    driver: str | None,
    cuda: str | None,
    rep: Report,
) -> tuple[str | None, str | None]:
    if driver is None:
        default = next((d for d in dist.drivers if d.default), None)
        if default is not None:
            driver = _vs(default.version)
            rep.notes.append(f"driver {driver} is {dist.name}'s {default.package} package")
        elif dist.driver_branches:
            fitting = [b for b in dist.driver_branches if all(_branch_supports(g, b) for g in gpus)]
            pick = max(fitting) if fitting else max(dist.driver_branches)
            driver = str(pick)
            rep.notes.append(
                f"driver R{pick} is the newest {dist.name} branch "
                f"(nvidia-driver-{pick}) {'for these GPUs' if fitting else ''}".rstrip()
            )
    if cuda is None and dist.cuda is not None:
        cuda = dist.cuda
        rep.notes.append(
            f"CUDA {cuda} is {dist.name}'s {dist.cuda_package} {dist.cuda_package_version}"
        )
    fits = [d for d in dist.drivers if all(_branch_supports(g, d.version[0]) for g in gpus)]
    if dist.drivers and fits:
        rep.notes.append(
            f"{dist.name} driver packages that support these GPUs: "
            + ", ".join(f"{d.package} {_vs(d.version)}" for d in fits)
        )
    elif dist.drivers:
        rep.notes.append(f"none of {dist.name}'s driver packages supports these GPUs")
    return driver, cuda


def check(
    gpu: str | Sequence[str],
    driver: str | None = None,
    cuda: str | None = None,
    cudnn: str | None = None,
    kernel_modules: str | None = None,
    *,
    distro: str | None = None,
) -> Report:
    """Check a (GPUs, driver, CUDA, cuDNN, kernel modules) combination.

    ``driver`` is a branch ("535") or a version ("535.261.03"); ``cuda`` "X.Y";
    ``cudnn`` "N" or "N.M"; ``kernel_modules`` "open", "proprietary", "auto" or
    None; ``distro`` fills driver and CUDA from a distribution's own packages when
    they are not given.  Every GPU of a multi-GPU box must be supported.
    """
    data = load()
    names = [gpu] if isinstance(gpu, str) else list(gpu)
    rep = Report(
        gpus=[],
        inputs={
            "gpu": ", ".join(names),
            "driver": driver,
            "cuda": cuda,
            "cudnn": cudnn,
            "kernel_modules": kernel_modules,
            "distro": distro,
        },
    )
    if not names:
        rep.problems.append(
            Problem("gpu", "no GPU given: name one like 'GTX 1080 Ti' or 10de:1b06")
        )
    for n in names:
        try:
            rep.gpus.append(find_gpu(n))
        except AmbiguousGpuError as e:
            if e.equivalent:
                rep.gpus.append(e.candidates[0])
                rep.warnings.append(
                    Problem(
                        "gpu",
                        (
                            f"{n!r} matches several models "
                            f"({', '.join(g.name for g in e.candidates)}); "
                            "they are alike for this check, but name the model for its peak figures"
                        ),
                    )
                )
            else:
                rep.problems.append(Problem("gpu", str(e)))
        except CompatError as e:
            rep.problems.append(Problem("gpu", str(e)))

    if distro is not None:
        try:
            dist = find_distribution(distro)
        except CompatError as e:
            rep.problems.append(Problem("distro", str(e)))
        else:
            driver, cuda = _distro_defaults(data, dist, rep.gpus, driver=driver, cuda=cuda, rep=rep)
            rep.inputs["driver"], rep.inputs["cuda"] = driver, cuda

    drv = _parse_driver(driver, rep.problems) if driver is not None else None
    cu = _parse_cuda(cuda, rep.problems) if cuda is not None else None
    dnn = _parse_cudnn(cudnn, rep.problems) if cudnn is not None else None
    km = _parse_kernel_modules(kernel_modules, rep.problems) if kernel_modules is not None else None

    if rep.gpus:
        rep.suggestion, rep.suggestion_missing_reason = suggest(rep.gpus)
        if rep.suggestion is None and _flavors_possible(rep.gpus, None):
            # (a kernel-module conflict is reported by _check_kernel_modules)
            rep.problems.append(
                Problem("driver", rep.suggestion_missing_reason or "no driver fits")
            )
        if drv is not None:
            _check_driver(data, rep.gpus, drv, rep)
        if cu is not None:
            _check_cuda(data, rep.gpus, cu, rep)
        if dnn is not None:
            _check_cudnn(data, rep.gpus, dnn, cu, rep)
        _check_kernel_modules(data, rep.gpus, km, drv, rep)
    if cu is not None and drv is not None:
        _check_cuda_driver(data, cu, drv, rep)
    return rep


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


def _gpu_table() -> str:
    data = load()
    rows = [f"{'GPU':<26} {'PCI id(s)':<20} {'architecture':<13} {'cc':>5}  driver branches"]
    for g in data.gpus:
        ids = ",".join(g.pci_ids)
        lo = f"R{g.min_branch}" if g.min_branch else "old"
        hi = f"R{g.max_branch}" if g.max_branch else "current"
        rows.append(
            f"{g.name:<26} {ids:<20} {g.arch.name:<13} {g.compute_capability:>5}  {lo}..{hi}"
        )
    return "\n".join(rows)


# ================================================================ CLI

EPILOG = """\
examples:
  dlsetup compat --gpu "GTX 1080 Ti" --driver 580 --cuda 12.9
      Pascal on the last branch that drives it, with the last CUDA major for it: OK.
  dlsetup compat --gpu "Tesla K80" --cuda 12.4
      NOT OK: CUDA 12 dropped Kepler; the report suggests R470 + CUDA 11.4.
  dlsetup compat --gpu 10de:2330 --driver 535.261.03 --cuda 12.8
      OK with a warning: R535 runs CUDA 12.8 only through minor version compatibility.
  dlsetup compat --gpu "RTX 5090" --kernel-modules proprietary
      NOT OK: Blackwell runs only with the open kernel modules.
  dlsetup compat --gpu "GTX 1080" --gpu "RTX 3090" --cuda 13.0
      Multi-GPU box: every GPU must be supported (CUDA 13 dropped Pascal).
  dlsetup compat --gpu "GTX 970" --distro debian-12
      What Debian 12's own packages (driver 535, CUDA 11.8) give this GPU.
  dlsetup compat --gpu A100 --cuda 12.4 --cudnn 9 --json
      Machine-readable report (exit code 0 when OK, 2 when not).

GPU names are matched loosely ("geforce gtx 1080 ti", "1080 Ti") and PCI ids
as lspci -nn prints them (10de:1b06, 1b06, 0x1b06); --list-gpus shows all.
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
    parser.add_argument("--list-gpus", action="store_true", help="list the GPUs in the data")


def run(args: argparse.Namespace) -> int:
    """Run ``dlsetup compat``; 0 when the combination fits, 2 when not (or bad input)."""
    if getattr(args, "list_gpus", False):
        print(_gpu_table())
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
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
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
