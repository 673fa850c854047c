"""CUDA toolkit release -> the oldest Linux x86_64 driver that runs it.

TEMPORARY hand copy, to be replaced by the output of scripts/update-compat-data
(generated from dlsetup/data/compat.yml, the one home of this fact). gpucheck
runs standalone on the target, so it gets a generated stdlib-only slice.

API (kept when generated):
    min_driver_for_cuda(major, minor) -> str | None
    max_cuda_for_driver(driver_version) -> str | None   ("X.Y", newest CUDA the driver runs)
"""

from __future__ import annotations

# "X.Y": min driver of the toolkit's GA release (Linux x86_64)
CUDA_MIN_DRIVER: dict[str, str] = {
    "10.0": "410.48", "10.1": "418.39", "10.2": "440.33",
    "11.0": "450.51.05", "11.1": "455.23", "11.2": "460.27.03", "11.3": "465.19.01",
    "11.4": "470.42.01", "11.5": "495.29.05", "11.6": "510.39.01", "11.7": "515.43.04",
    "11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
    "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
    "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06", "13.1": "590.44.01",
    "13.2": "595.45.04", "13.3": "610.43.02",
}  # fmt: skip


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def min_driver_for_cuda(major: int, minor: int) -> str | None:
    return CUDA_MIN_DRIVER.get(f"{major}.{minor}")


def max_cuda_for_driver(driver_version: str) -> str | None:
    have = _key(driver_version)
    fits = [c for c, d in CUDA_MIN_DRIVER.items() if _key(d) <= have]
    return max(fits, key=_key) if fits else None
