"""The unit tier: no Docker, no root-only devices, seconds.

A unit test that reaches for a Docker engine is in the wrong tier: every test
here runs with DOCKER_HOST pointed at a socket that does not exist, so such a
call fails at once instead of quietly using whatever engine the machine has.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GPUCHECK_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpucheck"


@pytest.fixture(autouse=True)
def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dlsetup-unit-tests-use-no-docker.sock")


@pytest.fixture(scope="session")
def stub_lib(tmp_path_factory: pytest.TempPathFactory) -> str:
    """libcuda/libnvrtc/libcudnn stand-in (C, CPU only) for gpucheck's ctypes
    bindings: there is no GPU driver here. Built once per session."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stub driver")
    out = tmp_path_factory.mktemp("stub") / "libfakecuda.so"
    source = GPUCHECK_FIXTURES / "stub" / "fake_cuda.c"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(source)], check=True)
    return str(out)
