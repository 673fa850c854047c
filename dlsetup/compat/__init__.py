"""``dlsetup compat``: the command line over the compatibility engine.

The engine (model, load, lookup, rules, suggest, check) and its data live in
the collection dlsetup.box, ``plugins/module_utils/compat``, where the
preflight action plugin imports it without this package; its names are
re-exported here for dlsetup's own callers. This package adds:

    cli       ``dlsetup compat`` (arguments, text report, --list-gpus)
    generate  what scripts/update-compat-data writes (gpus.json, cuda_driver_table.py)
"""

from __future__ import annotations

from ansible_collections.dlsetup.box.plugins.module_utils.compat import (
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
    check,
    distro_default_driver,
    find_distribution,
    find_gpu,
    gpu_spec,
    load,
    load_path,
    recommended_kernel_modules,
    resolve_kernel_modules,
    suggest,
)

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
