"""The unit tier: no Docker, no root-only devices, seconds.

A unit test that reaches for a Docker engine is in the wrong tier: every test
here runs with DOCKER_HOST pointed at a socket that does not exist, so such a
call fails at once instead of quietly using whatever engine the machine has.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dlsetup-unit-tests-use-no-docker.sock")
