"""GPU / driver / CUDA / cuDNN compatibility: the knowledge behind ``dlsetup compat``
and the preflight check.

One job per module, and the engine (everything but ``cli``) needs neither
argparse nor rich, so the preflight action plugin imports it alone:

    model     the dataclasses (GPU, architecture, CUDA toolkit, report ...)
    load      dlsetup/data/compat.yml (hand-kept tables) + gpus.json (generated)
    lookup    names users type and PCI ids -> GPU models
    rules     what each architecture allows; one check per setting
    suggest   the newest combination that works
    check     check(): a combination -> a Report
    cli       ``dlsetup compat`` (arguments, text report, --list-gpus)
    generate  what scripts/update-compat-data writes (gpus.json, cuda_driver_table.py)

The GPU table is generated from NVIDIA's supported-gpus.json and pci.ids (see
scripts/update-compat-data); the CUDA, cuDNN, architecture and distribution
tables are hand-kept in compat.yml, each with its source.
"""

from __future__ import annotations

from dlsetup.compat.check import check
from dlsetup.compat.load import load, load_path
from dlsetup.compat.lookup import find_distribution, find_gpu, gpu_spec
from dlsetup.compat.model import (
    NVIDIA_VENDOR_ID,
    AmbiguousGpuError,
    Architecture,
    CompatData,
    CompatError,
    CudaToolkit,
    CudnnRelease,
    Distribution,
    DistroDriver,
    Gpu,
    Problem,
    Report,
    Spec,
    Suggestion,
    UnknownGpuError,
)
from dlsetup.compat.rules import (
    distro_default_driver,
    recommended_kernel_modules,
    resolve_kernel_modules,
)
from dlsetup.compat.suggest import suggest

__all__ = [
    "NVIDIA_VENDOR_ID",
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
    "UnknownGpuError",
    "check",
    "distro_default_driver",
    "find_distribution",
    "find_gpu",
    "gpu_spec",
    "load",
    "load_path",
    "recommended_kernel_modules",
    "resolve_kernel_modules",
    "suggest",
]
