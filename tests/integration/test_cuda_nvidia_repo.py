"""Role cuda, NVIDIA-repository path, against a stand-in for NVIDIA's servers.

NVIDIA's CUDA repository cannot be reached from CI. tests/aptrepo.py serves a
signed local repository built from tests/fixtures/aptrepo/nvidia-cuda/*.yml:
packages with NVIDIA's names and dependency structure (cuda-toolkit-12-8 ->
cuda-nvcc-12-8 ..., the alternative "cuda" for /usr/local/cuda,
libcudnn9-cuda-12 ...) whose nvcc is a stand-in script printing NVIDIA's
`nvcc --version` text. The role is pointed at it through its mirror settings
(cuda_repo_url, cuda_repo_key_url, cuda_repo_key_fingerprint) and runs the
code path users run: playbooks/cuda.yml, the shared apt_source task, apt.
The distribution path with Debian's real toolkit is the molecule scenario
(roles/cuda/molecule/default).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.boxes import plain_box, playbook, recap, said, sh

REPO = Path(__file__).resolve().parents[2]
# The base stage (python3-apt, apt's lists) runs first on every real run.
BASE = str(REPO / "playbooks" / "base.yml")
CUDA = str(REPO / "playbooks" / "cuda.yml")
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def mirror(nvidia_cuda_repo: dict[str, Any]) -> dict[str, Any]:
    repo = nvidia_cuda_repo
    return {
        "cuda_repo_url": repo["url"],
        "cuda_repo_key_url": repo["key_url"],
        "cuda_repo_key_fingerprint": repo["fingerprint"],
    }


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """A fresh Debian 12 box; g++ and gpg come from Debian, through an apt archive
    on the host that only this test uses (apt locks an archive while it
    installs, and the cuda molecule scenario may be installing at the same time)."""
    with plain_box("cudah-nvrepo", archive="debian12-cuda-e2e") as name:
        yield name


def play(
    box: str, extra: dict[str, Any], *args: str, base: bool = True
) -> subprocess.CompletedProcess[str]:
    extra = {"cuda_apt_clean": False, **extra}  # the archive is the host's shared cache
    return playbook(box, extra, [BASE, CUDA] if base else [CUDA], *args)


def task_result(out: str, task: str) -> str:
    """The first word of the line after a task's banner: ok, changed, skipping, fatal."""
    lines = out.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith(f"TASK [{task}]"))
    return next(x for x in lines[at + 1 :] if x.strip()).split(":")[0]


SIDE_BY_SIDE = {
    "cuda_source": "nvidia",
    # The default is the older one: NVIDIA's alternative would pick 12.8
    # (higher priority), so the role must select 12.6 itself.
    "cuda_version": "12.6",
    "cuda_extra_versions": ["12.8"],
    "cuda_cudnn_version": "9.8",
}


def test_distro_source_refuses_another_version(box: str) -> None:
    res = play(box, {"cuda_version": "12.8"}, base=False)  # refused before any apt step
    assert res.returncode == 2, res.stdout
    out = said(res)
    assert 'cuda_version: "12.8" is not available from Debian 12' in out
    assert "ships CUDA 11.8" in out
    assert "cuda_source: nvidia" in out


def test_nvidia_source_needs_a_version(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, {**mirror, "cuda_source": "nvidia"}, base=False)
    assert res.returncode == 2, res.stdout
    assert "cuda_version is empty" in res.stdout


def test_check_mode_on_a_fresh_box_changes_nothing(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, {**mirror, **SIDE_BY_SIDE}, "--check")
    assert res.returncode == 0, res.stdout
    assert sh(box, "ls /usr/local /etc/apt/sources.list.d | grep -e cuda; true").strip() == ""
    assert "cuda.sh" not in sh(box, "ls /etc/profile.d")


def test_installs_side_by_side_with_the_default_selected(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, {**mirror, **SIDE_BY_SIDE})
    assert res.returncode == 0, res.stdout
    # NVIDIA's repository, added with the mirror setting and the pinned key
    src = sh(box, "cat /etc/apt/sources.list.d/nvidia-cuda.sources")
    assert f"URIs: {mirror['cuda_repo_url']}" in src
    for pkg in ("cuda-toolkit-12-6", "cuda-toolkit-12-8", "cuda-nvcc-12-8", "cuda-cudart-dev-12-6"):
        assert sh(box, f"dpkg-query -W -f '${{Status}}' {pkg}") == "install ok installed", pkg
    for ver in ("12.6", "12.8"):
        assert f"release {ver}," in sh(box, f"/usr/local/cuda-{ver}/bin/nvcc --version")
    assert sh(box, "readlink -f /usr/local/cuda").strip() == "/usr/local/cuda-12.6"
    assert "/usr/local/cuda-12.6" in sh(box, "update-alternatives --query cuda | grep '^Value:'")
    # login shells: PATH and CUDA_HOME; the loader: /usr/local/cuda/lib64
    login = sh(box, "bash -lc 'command -v nvcc; echo $CUDA_HOME; nvcc --version'")
    assert login.splitlines()[:2] == ["/usr/local/cuda/bin/nvcc", "/usr/local/cuda"]
    assert "release 12.6," in login
    assert (
        sh(box, "cat /etc/ld.so.conf.d/dlsetup-cuda.conf").splitlines()[-1]
        == "/usr/local/cuda/lib64"
    )
    # cuDNN 9.8 for CUDA 12 (runtime, dev and the headers dev needs at its own
    # version), though the repository's newest is 9.10, as NVIDIA's keeps every
    # release; installed with the toolkits, in their one apt transaction
    assert "Candidate: 9.10." in sh(box, "apt-cache policy libcudnn9-dev-cuda-12")
    for pkg in ("libcudnn9-cuda-12", "libcudnn9-headers-cuda-12", "libcudnn9-dev-cuda-12"):
        assert sh(box, f"dpkg-query -W -f '${{Version}}' {pkg}").startswith("9.8."), pkg
    transactions = sh(box, "cat /var/log/apt/history.log").split("\n\n")
    with_toolkit = [t for t in transactions if "cuda-toolkit-12-8:amd64" in t]
    assert len(with_toolkit) == 1 and "libcudnn9-dev-cuda-12:amd64" in with_toolkit[0], with_toolkit
    # the check program was compiled with each toolkit (no GPU: not run)
    assert sh(box, "ls /var/lib/dlsetup/cuda-check").split() == [
        "check-12.6",
        "check-12.8",
        "check.cu",
    ]
    assert (
        task_result(
            res.stdout, "dlsetup.box.cuda : Record that the check program did not run (no GPU)"
        )
        == "ok"
    )
    assert (
        task_result(res.stdout, "dlsetup.box.cuda : Run the check program on the GPU") == "skipping"
    )


def test_second_run_changes_nothing(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, {**mirror, **SIDE_BY_SIDE})
    assert res.returncode == 0, res.stdout
    assert recap(res.stdout)["changed"] == 0, res.stdout


def test_an_nvcc_of_the_wrong_version_fails_the_run(box: str, mirror: dict[str, Any]) -> None:
    sh(
        box,
        "sed -i 's/release 12.8, V12.8.93/release 12.4, V12.4.131/' /usr/local/cuda-12.8/bin/nvcc",
    )
    try:
        res = play(box, {**mirror, **SIDE_BY_SIDE})
        assert res.returncode == 2, res.stdout
        assert "reports release 12.4, not 12.8" in said(res)
    finally:
        sh(
            box,
            "sed -i 's/release 12.4, V12.4.131/release 12.8, V12.8.93/' /usr/local/cuda-12.8/bin/nvcc",
        )
