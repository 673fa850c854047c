"""Shared set-up of the end-to-end tier: boxes over SSH, the real CLI as a subprocess.

Every test here needs the Docker engine and the base images that
`scripts/setup-host` and `python -m dlsetup.localbox images` provide; where they
are missing the whole tier is skipped with the reason, once, here.
"""

from __future__ import annotations

import pytest

from tests.boxes import docker_ready


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = docker_ready()
    for item in items:
        item.add_marker(pytest.mark.docker)
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=why))
