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
