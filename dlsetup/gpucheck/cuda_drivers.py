"""The CUDA toolkit <-> driver questions gpucheck asks, answered from one table.

The table, CUDA_MIN_DRIVER ({"X.Y": driver of the toolkit's GA release}), is
generated into cuda_driver_table.py from the compat engine's data/compat.yml by
scripts/update-compat-data; these functions read it (stdlib only, Python 3.8+,
as all of gpucheck).

    min_driver_for_cuda(major, minor) -> str | None
    max_cuda_for_driver(driver_version) -> str | None   ("X.Y", newest CUDA the driver runs)
"""

from __future__ import annotations

from .cuda_driver_table import CUDA_MIN_DRIVER

__all__ = ["CUDA_MIN_DRIVER", "max_cuda_for_driver", "min_driver_for_cuda"]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def min_driver_for_cuda(major: int, minor: int) -> str | None:
    return CUDA_MIN_DRIVER.get(f"{major}.{minor}")


def max_cuda_for_driver(driver_version: str) -> str | None:
    have = _key(driver_version)
    fits = [c for c, d in CUDA_MIN_DRIVER.items() if _key(d) <= have]
    return max(fits, key=_key) if fits else None
