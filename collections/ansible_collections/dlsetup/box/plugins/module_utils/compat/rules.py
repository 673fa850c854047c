"""The rules: what each GPU's architecture allows (driver branches, kernel
modules, CUDA, cuDNN), input parsing, and one check per setting."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import load
from ansible_collections.dlsetup.box.plugins.module_utils.compat.lookup import find_distribution
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    Architecture,
    CcSupport,
    CompatData,
    CompatError,
    CudaToolkit,
    CudnnRelease,
    Distribution,
    Gpu,
    KernelModules,
    Problem,
    Report,
    Version,
    _cmp,
    _v,
    _vs,
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
    if all(g.open_kernel_modules for g in gpus) and (
        branch is None or branch >= data.open_first_branch
    ):
        out.add("open")
    if not any(g.requires_open_kernel_modules for g in gpus) and (
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


def parse_cudnn(text: str) -> tuple[int, int | None] | None:
    """'9' -> (9, None), '9.8' (or '9.8.0.87') -> (9, 8); None when it is no cuDNN version."""
    m = _CUDNN_RE.match(text.strip())
    return None if m is None else (int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


def _parse_cudnn(text: str, problems: list[Problem]) -> tuple[int, int | None] | None:
    parsed = parse_cudnn(text)
    if parsed is None:
        problems.append(
            Problem(
                "cudnn",
                (f"cuDNN {text!r} is not a cuDNN version: expected N or N.M like 9 or 9.10"),
            )
        )
    return parsed


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
    """The compute capability as a version; (0,) for a GPU without CUDA."""
    return (0,) if gpu.compute_capability is None else _v(gpu.compute_capability)


def _cc_support(data: CompatData, gpu: Gpu) -> CcSupport:
    """Which CUDA releases build for the GPU (none for a GPU without CUDA)."""
    if gpu.compute_capability is None:
        return CcSupport(first_cuda=None, last_cuda_major=0)
    return data.cc_support[gpu.compute_capability]


def _cuda_supports_gpu(data: CompatData, cuda: CudaToolkit, gpu: Gpu) -> bool:
    s = _cc_support(data, gpu)
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
        return "proprietary" if any(not g.open_kernel_modules for g in gpus) else "open"
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
        need = data.cudnn_min_for_cc.get(g.compute_capability or "")
        if need is not None and _cmp(rel.last, need) < 0:
            return False
    return True


def _cudnn_label(rel: CudnnRelease, gpus: Sequence[Gpu], data: CompatData) -> str:
    """The label of a release range, trimmed to the part the GPUs can use
    (Blackwell needs >= 9.7 inside the 9.0-9.10 range)."""
    first = rel.first
    for g in gpus:
        need = data.cudnn_min_for_cc.get(g.compute_capability or "")
        if need is not None and _cmp(need, first) > 0:
            first = need
    return CudnnRelease(first, rel.last, rel.cuda).label


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
        s = _cc_support(data, g)
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
            if g.compute_capability is None:
                why = "it has no CUDA support at all"
            advice = f"Use CUDA {s.last_cuda_major}.x (newest {newest})."
            if newest is None:
                advice = f"No CUDA release in this data ({data.cuda_versions()[0]} on) runs on it."
            elif g.max_branch is not None and newest is not None:
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
    rels = _cudnn_releases(data, want, label, rep)
    if not rels:
        return
    majors = _cudnn_cuda_majors(data, gpus, rels, cuda)
    working = [(r, m) for r in rels for m in majors if _cudnn_ok(data, r, m, gpus)]
    if not working:
        msg = _cudnn_failure(data, gpus, rels, majors, label=label, cuda=cuda)
        rep.problems.append(Problem("cudnn", msg + "."))
    elif minor is not None:
        _check_cudnn_min_for_gpus(data, gpus, (major, minor), label, rep)
    elif cuda is not None:
        spans = [(_v(_cudnn_label(r, gpus, data).split("-")[0]), r.last) for r, _ in working]
        rep.notes.append(
            f"cuDNN {label} with CUDA {cuda.major}.x on these GPUs means {_merge_ranges(spans)}"
        )


def _cudnn_releases(
    data: CompatData, want: tuple[int, int | None], label: str, rep: Report
) -> list[CudnnRelease]:
    """The data's cuDNN releases that ``want`` names; none (and a problem, or a
    warning for a minor version outside the excerpt) when the data lacks it."""
    major, minor = want
    rels = [r for r in data.cudnn if r.first[0] == major]
    if not rels:
        known = sorted({r.first[0] for r in data.cudnn})
        rep.problems.append(
            Problem(
                "cudnn",
                (f"cuDNN {label} is not in the data (known: {', '.join(f'{k}.x' for k in known)})"),
            )
        )
        return []
    if minor is None:
        return rels
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
    return rels


def _cudnn_cuda_majors(
    data: CompatData, gpus: Sequence[Gpu], rels: Sequence[CudnnRelease], cuda: CudaToolkit | None
) -> list[int]:
    """The CUDA majors to try ``rels`` with: the one asked for, else every major
    they have a build for that also fits the GPUs."""
    majors = [cuda.major] if cuda else sorted({m for r in rels for m in r.cuda})
    if cuda is None and gpus:
        # without a CUDA version, a cuDNN fits when some CUDA major fits both it and the GPUs
        majors = [m for m in majors if _newest_cuda_for(data, gpus, m) is not None]
    return majors


def _check_cudnn_min_for_gpus(
    data: CompatData, gpus: Sequence[Gpu], version: Version, label: str, rep: Report
) -> None:
    """A problem for the first GPU whose compute capability needs a newer cuDNN
    than ``version``."""
    for g in _distinct(gpus):
        need = data.cudnn_min_for_cc.get(g.compute_capability or "")
        if need is not None and _cmp(version, need) < 0:
            rep.problems.append(
                Problem(
                    "cudnn",
                    f"{g.name} ({g.arch.name}, {g.sm}) needs cuDNN {_vs(need)} or newer; "
                    f"cuDNN {label} does not support it.",
                )
            )
            return


def _cudnn_failure(
    data: CompatData,
    gpus: Sequence[Gpu],
    rels: Sequence[CudnnRelease],
    majors: Sequence[int],
    *,
    label: str,
    cuda: CudaToolkit | None,
) -> str:
    """Why no release of ``rels`` works (no trailing full stop): no build for the
    CUDA asked for, or what each GPU lacks, with the releases that would work."""
    has_build = [r for r in rels for m in majors if m in r.cuda]
    if cuda is not None and not has_build:
        return (
            f"cuDNN {label} has no build for CUDA {cuda.major} "
            f"(cuDNN releases for CUDA {cuda.major}: {_cudnn_ranges(data, cuda.major)})"
        )
    where = f"CUDA {cuda.major}" if cuda else "any CUDA these GPUs run"
    reasons = _cudnn_gpu_reasons(data, gpus, rels, majors)
    msg = f"cuDNN {label} does not work with {where} on these GPUs: " + "; ".join(
        dict.fromkeys(reasons) or ["no matching build"]
    )
    if cuda is not None:
        msg += (
            f" (cuDNN for CUDA {cuda.major} on these GPUs: {_cudnn_ranges(data, cuda.major, gpus)})"
        )
    return msg


def _cudnn_gpu_reasons(
    data: CompatData, gpus: Sequence[Gpu], rels: Sequence[CudnnRelease], majors: Sequence[int]
) -> list[str]:
    """What each GPU lacks for each build of ``rels`` for ``majors`` (repeats kept)."""
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
                need = data.cudnn_min_for_cc.get(g.compute_capability or "")
                if need is not None and _cmp(r.last, need) < 0:
                    reasons.append(f"{g.name} ({g.arch.name}) needs cuDNN {_vs(need)} or newer")
    return reasons


def _check_kernel_modules(
    data: CompatData, gpus: Sequence[Gpu], km: str | None, drv: _Driver | None, rep: Report
) -> None:
    distinct = _distinct(gpus)
    need_open = [g for g in distinct if g.requires_open_kernel_modules]
    no_open = [g for g in distinct if not g.open_kernel_modules]
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
        flavor = _resolve_auto_flavor(distinct, no_open, branch, rep)
        if flavor is None:
            return
    if flavor == "open":
        _check_open_modules(data, no_open, branch, rep)
    elif flavor == "proprietary":
        _check_proprietary_modules(data, need_open, no_open, branch, rep)


def _resolve_auto_flavor(
    distinct: Sequence[Gpu], no_open: Sequence[Gpu], branch: int | None, rep: Report
) -> str | None:
    """What kernel modules 'auto' means for these GPUs and ``branch`` (noted);
    None, with a problem, when no flavor of that branch drives them."""
    if branch is None:
        flavor: str | None = "proprietary" if no_open else "open"
    else:
        flavor = _recommended_for(distinct, branch)
        if flavor is None:
            rep.problems.append(
                Problem(
                    "kernel_modules",
                    (f"no kernel module flavor of driver R{branch} drives these GPUs"),
                )
            )
            return None
    rep.notes.append(f"kernel modules 'auto' resolves to {flavor}")
    return flavor


def _check_open_modules(
    data: CompatData, no_open: Sequence[Gpu], branch: int | None, rep: Report
) -> None:
    """The open kernel modules: GPUs they cannot drive, and branches without them
    or where they were not yet NVIDIA's default."""
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


def _check_proprietary_modules(
    data: CompatData,
    need_open: Sequence[Gpu],
    no_open: Sequence[Gpu],
    branch: int | None,
    rep: Report,
) -> None:
    """The proprietary kernel modules: GPUs that run only with the open ones,
    branches that no longer ship them, and NVIDIA's advice for Turing and newer."""
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
    elif not need_open and not no_open and (branch is None or branch >= data.open_default_branch):
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
