"""check(): one (GPUs, driver, CUDA, cuDNN, kernel modules) combination -> a Report."""

from __future__ import annotations

from collections.abc import Sequence

from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import load
from ansible_collections.dlsetup.box.plugins.module_utils.compat.lookup import (
    find_distribution,
    find_gpu,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    NVIDIA_VENDOR_ID,
    AmbiguousGpuError,
    CompatData,
    CompatError,
    CudaToolkit,
    Problem,
    Report,
    UnknownGpuError,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.rules import (
    _check_cuda,
    _check_cuda_driver,
    _check_cudnn,
    _check_driver,
    _check_kernel_modules,
    _distinct,
    _distro_defaults,
    _Driver,
    _parse_cuda,
    _parse_cudnn,
    _parse_driver,
    _parse_kernel_modules,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.suggest import suggest


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
    _find_gpus(names, rep)
    _note_inferred(data, rep)
    if distro is not None:
        driver, cuda = _apply_distro(data, distro, driver, cuda, rep)

    drv = _parse_driver(driver, rep.problems) if driver is not None else None
    cu = _parse_cuda(cuda, rep.problems) if cuda is not None else None
    dnn = _parse_cudnn(cudnn, rep.problems) if cudnn is not None else None
    km = _parse_kernel_modules(kernel_modules, rep.problems) if kernel_modules is not None else None

    if rep.gpus:
        _note_suggestion(rep)
        _check_for_gpus(data, rep, drv=drv, cu=cu, dnn=dnn, km=km)
    if cu is not None and drv is not None:
        _check_cuda_driver(data, cu, drv, rep)
    if drv is not None:
        _check_unknown(data, rep, drv.branch)
    return rep


def _find_gpus(names: Sequence[str], rep: Report) -> None:
    """Resolve each GPU name or PCI id into ``rep.gpus``; what cannot be resolved
    becomes a problem, an unknown NVIDIA device a warning (and ``rep.unknown_gpus``)."""
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
        except UnknownGpuError as e:
            rep.unknown_gpus.append(e.device)
            rep.warnings.append(Problem("gpu", f"{e}; only the driver branch is checked for it"))
        except CompatError as e:
            rep.problems.append(Problem("gpu", str(e)))


def _apply_distro(
    data: CompatData, distro: str, driver: str | None, cuda: str | None, rep: Report
) -> tuple[str | None, str | None]:
    """The driver and CUDA to check once ``distro``'s own packages fill the ones not
    given (recorded in ``rep.inputs``); an unknown distro is a problem and changes nothing."""
    try:
        dist = find_distribution(distro)
    except CompatError as e:
        rep.problems.append(Problem("distro", str(e)))
        return driver, cuda
    driver, cuda = _distro_defaults(data, dist, rep.gpus, driver=driver, cuda=cuda, rep=rep)
    rep.inputs["driver"], rep.inputs["cuda"] = driver, cuda
    return driver, cuda


def _note_suggestion(rep: Report) -> None:
    """The newest working combination for ``rep.gpus``; when there is none, why
    (no driver branch: a problem; no CUDA: a warning)."""
    rep.suggestion, rep.suggestion_missing_reason = suggest(rep.gpus)
    why = rep.suggestion_missing_reason or ""
    if rep.suggestion is None and why.startswith("no driver branch"):
        # (a kernel-module conflict is reported by _check_kernel_modules)
        rep.problems.append(Problem("driver", why))
    elif rep.suggestion is None and why.startswith("no CUDA"):
        rep.warnings.append(Problem("cuda", why))


def _check_for_gpus(
    data: CompatData,
    rep: Report,
    *,
    drv: _Driver | None,
    cu: CudaToolkit | None,
    dnn: tuple[int, int | None] | None,
    km: str | None,
) -> None:
    """The checks against the known GPUs: each version asked for, and the kernel
    module flavor (checked even when none was asked for)."""
    if drv is not None:
        _check_driver(data, rep.gpus, drv, rep)
    if cu is not None:
        _check_cuda(data, rep.gpus, cu, rep)
    if dnn is not None:
        _check_cudnn(data, rep.gpus, dnn, cu, rep)
    _check_kernel_modules(data, rep.gpus, km, drv, rep)


def _note_inferred(data: CompatData, rep: Report) -> None:
    for g in _distinct(rep.gpus):
        if g.inferred:
            rep.notes.append(
                f"{g.name} [{g.pci_id}] is in none of NVIDIA's supported-GPU lists used here "
                f"(newest R{(data.newest_list or '?').split('.')[0]}): its facts are inferred "
                f"from its chip {', '.join(g.chips)} ({g.arch.name}) and the architecture rules"
            )


def _check_unknown(data: CompatData, rep: Report, branch: int) -> None:
    """A device no source knows is newer than the newest list: that driver and
    older ones do not name it, so they do not drive it."""
    newest = data.newest_list
    if not rep.unknown_gpus or newest is None or branch > int(newest.split(".")[0]):
        return
    ids = ", ".join(f"{NVIDIA_VENDOR_ID}:{d}" for d in rep.unknown_gpus)
    rep.problems.append(
        Problem(
            "driver",
            f"R{branch} cannot drive {ids}: NVIDIA's R{newest.split('.')[0]} list does not "
            "name it, so that branch and older ones do not support it; use a newer branch",
        )
    )
