"""Shared set-up of the integration tier: one role or one stage at a time,
against throw-away containers, loop-device disks and the signed local apt
repositories that stand in for NVIDIA's servers (tests/aptrepo.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import aptrepo
from tests.boxes import docker_ready


@pytest.fixture(scope="session")
def nvidia_cuda_repo() -> dict[str, Any]:
    """The stand-in of NVIDIA's CUDA repository (url, key_url, fingerprint), served
    from a container; skips where there is no Docker engine or base image."""
    why = docker_ready()
    if why:
        pytest.skip(why)
    return aptrepo.up()["nvidia-cuda"]


# The order the files start in on scripts/test's two xdist workers (`--dist
# loadfile --no-loadscope-reorder`: files start in collection order, and each
# worker is handed two files at the start). The real DKMS compile is by far
# the longest file (~4.5 of the tier's ~6 minutes); with xdist's default
# order (most tests first) it has the fewest tests and started last, while the
# other worker ran out of files. Here it starts first, the longest of the rest
# beside it, and the file queued behind the compile on its worker is a short
# one. Files not named keep their order, after these.
START_ORDER = (
    "test_nvidia_driver_dkms.py",
    "test_nvidia_driver_nvidia_repo.py",
    "test_collection_standalone.py",
    "test_apt_source.py",
    "test_cuda_nvidia_repo.py",
    "test_apt_lock.py",
    "test_disk_layout_role.py",
    "test_prefetch.py",
)


def start_rank(filename: str) -> int:
    return START_ORDER.index(filename) if filename in START_ORDER else len(START_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: start_rank(item.path.name))  # stable: a file's own order stays
